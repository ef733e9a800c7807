//! A small receipts server that misbehaves on purpose, so that the tester's end-to-end audit
//! can be checked against figures known exactly: every fault it injects is counted here, and
//! a test compares the tester's `summary.json` with these counts.
//!
//! It is written from PROTOCOL.md with raw JSON (`serde_json::Value`), not with ackstorm's
//! protocol types or server: an independent implementation, so that a misreading shared by
//! the tester and the reference server cannot hide. It speaks just enough for a tiny 1:1 run:
//! `login` (any token), `send` (`singleChat`, idempotent per sender and client id), `delivery`,
//! `read` (`singleChat`), `channel`, `createGroup` (answered, not kept), `ping`; anything else
//! gets `error bad_request`. Offline users get their messages, then their receipts, at their
//! next login; the store is per user, not per device (the tests use one device per user).
//! Pushes queued for a connection that ends before they are written are stored as if the user
//! had been offline (the protocol's delivery guarantee). It does not rate limit, time out, or
//! limit sizes, and it must not be used as a reference for anything but these tests.
//!
//! Layout: [`Misbehave`] (the knobs, all off by default), [`Counters`] / [`Tally`] (what it
//! did, live and as a snapshot), [`FakeServer`] (start, URL, settle, stop on drop); then the
//! hub (who is connected, what is stored; one mutex, no I/O under it, only unbounded channel
//! sends) and one task per connection that reads, answers and writes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use parking_lot::Mutex;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Mids of the unexpected receipts start here; the server's own ids never get this far.
pub const UNSENT_MID_BASE: u64 = 1 << 52;
/// How long after the first login the unexpected receipts are pushed (so that the other users
/// of a tiny run are known, and one of them can be named as the receipts' `from`).
pub const UNEXPECTED_DELAY: Duration = Duration::from_millis(300);

/// What the server does wrong. `Misbehave::default()` is a correct server.
#[derive(Debug, Clone, Default)]
pub struct Misbehave {
    /// Answer sends (`received`) but never push nor store the messages.
    pub never_deliver: bool,
    /// Drop the message pushes (to every device, or the stored copy) of every Nth send
    /// (`n % N == 0`, `n` counting first-time sends from 1), unless the send is selected by
    /// `drop_received_every`: the two rules never hit the same send.
    pub drop_message_push_every: Option<u64>,
    /// Drop the `received` reply of every Nth send (`n % N == 0`); its message is still pushed.
    pub drop_received_every: Option<u64>,
    /// Read `createGroup` frames and never answer them.
    pub never_answer_create_group: bool,
    /// After `loginOk`, read every frame and answer (and process) none.
    pub silent_after_login: bool,
    /// After handling the Nth client frame of a connection (login included), write half of a
    /// WebSocket text frame on the raw TCP stream and close it. Only the first connection of
    /// each user is cut; later ones behave.
    pub close_mid_frame_after: Option<u64>,
    /// Frames pushed right after every `loginOk` that a client must refuse.
    pub garbage_after_login: Option<Garbage>,
    /// Push this many `delivery` receipts, and as many `read` receipts, for mids never sent
    /// (from [`UNSENT_MID_BASE`] on), once in the whole run: to the first connection that logs
    /// in, [`UNEXPECTED_DELAY`] after its `loginOk`, named as coming from another user that
    /// logged in by then (itself if none did).
    pub unexpected_receipts: u64,
}

/// How many frames of each bad kind follow every `loginOk`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Garbage {
    /// Text frames that are not JSON.
    pub invalid_json: u64,
    /// JSON objects whose `op` no server sends.
    pub unknown_op: u64,
    /// `message` frames whose `mid` is not a decimal string.
    pub bad_id: u64,
    /// Binary frames.
    pub binary: u64,
}

macro_rules! counters {
    ($($(#[doc = $doc:expr])* $name:ident,)*) => {
        /// What the server did, counted as it happens (read by tests while it runs).
        #[derive(Debug, Default)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $name: AtomicU64,)*
        }

        /// A snapshot of [`Counters`].
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Tally {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        impl Counters {
            /// The counts now.
            pub fn tally(&self) -> Tally {
                Tally { $($name: self.$name.load(SeqCst),)* }
            }
        }
    };
}

counters! {
    /// WebSocket connections accepted.
    connections,
    /// `loginOk` replies written.
    logins,
    /// Client text frames read after `loginOk` (login excluded), answered or not.
    frames_after_login,
    /// `received` replies written to first-time sends.
    sends_answered,
    /// Sends repeated with an already accepted (sender, id): answered with `duplicate:true`.
    sends_duplicate,
    /// `message` frames written to a connection (live or replayed).
    message_pushes,
    /// Messages stored for a user with no connected device (or left unwritten at a close).
    messages_stored,
    /// Stored messages written at a login.
    messages_replayed,
    /// Message pushes dropped by `drop_message_push_every`: one per device, or one per
    /// message for a recipient with no connected device.
    dropped_pushes,
    /// `received` replies dropped by `drop_received_every`.
    dropped_received,
    /// `received` replies written to `delivery`, `read` and `channel` frames.
    receipts_answered,
    /// `delivery`, `read` and `channel` frames written (live or replayed).
    receipt_pushes,
    /// `createGroup` frames read.
    create_group_frames,
    /// `error` replies written.
    errors,
    /// Connections cut in the middle of a frame.
    mid_frame_closes,
    /// Invalid-JSON text frames written.
    garbage_invalid_json,
    /// Unknown-op frames written.
    garbage_unknown_op,
    /// `message` frames with a bad mid written.
    garbage_bad_id,
    /// Binary frames written.
    garbage_binary,
    /// `delivery` receipts for never-sent mids written.
    unexpected_deliveries,
    /// `read` receipts for never-sent mids written.
    unexpected_reads,
    /// Plain HTTP requests (not `/ws`), answered 404.
    http_requests,
}

/// A running fake server on `127.0.0.1`; stops when dropped.
pub struct FakeServer {
    /// Its address.
    pub addr: SocketAddr,
    /// What it did so far.
    pub counters: Arc<Counters>,
    shared: Arc<Shared>,
    stop: CancellationToken,
}

impl FakeServer {
    /// Binds `127.0.0.1:0` and serves until dropped.
    pub async fn start(misbehave: Misbehave) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let counters = Arc::new(Counters::default());
        let shared = Arc::new(Shared {
            misbehave,
            counters: counters.clone(),
            hub: Mutex::new(Hub::default()),
            open: AtomicU64::new(0),
            next_conn: AtomicU64::new(0),
        });
        let stop = CancellationToken::new();
        tokio::spawn(accept_loop(listener, shared.clone(), stop.clone()));
        FakeServer {
            addr,
            counters,
            shared,
            stop,
        }
    }

    /// The WebSocket URL, `ws://127.0.0.1:PORT/ws`.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// True when `user` has a connection open (logged in).
    pub fn online(&self, user: &str) -> bool {
        self.shared.hub.lock().conns.get(user).is_some_and(|v| !v.is_empty())
    }

    /// The counters now.
    pub fn tally(&self) -> Tally {
        self.counters.tally()
    }

    /// Waits (at most 10 s) until no WebSocket connection is open, so that every frame the
    /// clients sent has been read and counted; returns the counters then.
    pub async fn settle(&self) -> Tally {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.shared.open.load(SeqCst) > 0 {
            assert!(
                Instant::now() < deadline,
                "{} connections still open on the fake server",
                self.shared.open.load(SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.tally()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Shared {
    misbehave: Misbehave,
    counters: Arc<Counters>,
    hub: Mutex<Hub>,
    /// WebSocket connections open now.
    open: AtomicU64,
    next_conn: AtomicU64,
}

impl Shared {
    fn count(&self, c: impl Fn(&Counters) -> &AtomicU64) {
        c(&self.counters).fetch_add(1, SeqCst);
    }
}

/// Who is connected and what waits for whom. Locking rule: one `parking_lot` mutex, held
/// only for map updates and unbounded channel sends, never across an await.
#[derive(Default)]
struct Hub {
    /// The last id handed out (mids and receipt ids share it, as on the reference server).
    last_id: u64,
    /// First-time sends so far (the drop rules' `n`).
    sends: u64,
    /// Live connections per user.
    conns: HashMap<String, Vec<Conn>>,
    /// Per user, what waits for its next login.
    stored: HashMap<String, Stored>,
    /// mid -> (sender, recipient).
    messages: HashMap<u64, (String, String)>,
    /// (sender, client id) -> the `received` reply it got (without `req`).
    accepted: HashMap<(String, String), Value>,
    /// (mid, user) pairs that already pushed a delivery / a read receipt.
    delivered: HashSet<(u64, String)>,
    read: HashSet<(u64, String)>,
    /// Users whose first connection was cut (`close_mid_frame_after`).
    cut: HashSet<String>,
    /// Users in login order.
    seen: Vec<String>,
    /// The unexpected receipts were given to a connection.
    unexpected_taken: bool,
}

#[derive(Default)]
struct Stored {
    messages: VecDeque<Value>,
    receipts: VecDeque<Value>,
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Push>,
}

/// A frame queued for a connection by another one.
enum Push {
    Message(Value),
    Receipt(Value),
}

impl Hub {
    fn next_id(&mut self) -> u64 {
        self.last_id += 1;
        self.last_id
    }

    /// Pushes `frame` to `user`'s connections (except `skip`), or stores it when it has
    /// none (and `store`). Returns how many connections it was queued for.
    fn route_receipt(&mut self, user: &str, skip: Option<u64>, frame: Value, store: bool) -> usize {
        let conns: Vec<&Conn> = self
            .conns
            .get(user)
            .map(|v| v.iter().filter(|c| Some(c.id) != skip).collect())
            .unwrap_or_default();
        let any_connected = self.conns.get(user).is_some_and(|v| !v.is_empty());
        for c in &conns {
            let _ = c.tx.send(Push::Receipt(frame.clone()));
        }
        if !any_connected && store {
            let mut f = frame;
            f["onlineState"] = json!(0);
            self.stored.entry(user.to_string()).or_default().receipts.push_back(f);
        }
        conns.len()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(_) => continue,
            },
        };
        let (shared, stop) = (shared.clone(), stop.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = serve(stream, shared) => {}
            }
        });
    }
}

/// The request line's path, peeked (not consumed) from the socket.
async fn peek_path(stream: &TcpStream) -> Option<String> {
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let n = tokio::time::timeout_at(deadline, stream.peek(&mut buf))
            .await
            .ok()?
            .ok()?;
        if n == 0 {
            return None;
        }
        let head = &buf[..n];
        if let Some(end) = head.windows(2).position(|w| w == b"\r\n") {
            let line = String::from_utf8_lossy(&head[..end]).to_string();
            return line.split(' ').nth(1).map(str::to_string);
        }
        if n == buf.len() || Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn serve(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let Some(path) = peek_path(&stream).await else { return };
    if path != "/ws" {
        // `/metrics` and the like: this server has none.
        shared.count(|c| &c.http_requests);
        let mut sink = [0u8; 4096];
        let _ = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut sink)).await;
        let _ = stream
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        let _ = stream.shutdown().await;
        return;
    }
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    shared.count(|c| &c.connections);
    shared.open.fetch_add(1, SeqCst);
    let mut conn = Connection {
        ws,
        shared: shared.clone(),
        id: shared.next_conn.fetch_add(1, SeqCst),
        user: String::new(),
        frames: 0,
        unwritten: Vec::new(),
    };
    let _ = conn.run().await;
    shared.open.fetch_sub(1, SeqCst);
}

/// Why a connection's task ends (the connection is then dropped).
struct Ended;

/// One WebSocket connection.
struct Connection {
    ws: WebSocketStream<TcpStream>,
    shared: Arc<Shared>,
    id: u64,
    user: String,
    /// Client frames handled, login included.
    frames: u64,
    /// Pushes taken for writing whose write failed (the client went away): stored at the end.
    unwritten: Vec<Push>,
}

fn error_frame(req: Option<&Value>, code: &str, message: &str) -> Value {
    let mut f = json!({"op":"error","code":code,"message":message});
    if let Some(r) = req {
        f["req"] = r.clone();
    }
    f
}

/// A server-assigned id as sent by a client: a decimal string (or, leniently, a number).
fn id_of(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn str_field<'a>(f: &'a Value, key: &str) -> Option<&'a str> {
    f.get(key)?.as_str()
}

impl Connection {
    async fn text(&mut self, v: &Value) -> Result<(), Ended> {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .map_err(|_| Ended)
    }

    /// Writes a reply (counting errors).
    async fn reply(&mut self, v: Value) -> Result<(), Ended> {
        self.text(&v).await?;
        if v["op"] == "error" {
            self.shared.count(|c| &c.errors);
        }
        Ok(())
    }

    async fn run(&mut self) -> Result<(), Ended> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let result = self.serve(tx, &mut rx).await;
        self.logout(&mut rx);
        result
    }

    /// Deregisters this connection and stores what was queued for it but not written (in
    /// order, after anything stored meanwhile for its user).
    fn logout(&mut self, rx: &mut mpsc::UnboundedReceiver<Push>) {
        if self.user.is_empty() {
            return;
        }
        let mut hub = self.shared.hub.lock();
        if let Some(v) = hub.conns.get_mut(&self.user) {
            v.retain(|c| c.id != self.id);
        }
        let mut left = std::mem::take(&mut self.unwritten);
        while let Ok(p) = rx.try_recv() {
            left.push(p);
        }
        let stored = hub.stored.entry(self.user.clone()).or_default();
        for p in left {
            match p {
                Push::Message(m) => {
                    stored.messages.push_back(m);
                    self.shared.count(|c| &c.messages_stored);
                }
                Push::Receipt(mut r) => {
                    r["onlineState"] = json!(0);
                    stored.receipts.push_back(r);
                }
            }
        }
    }

    async fn serve(
        &mut self,
        tx: mpsc::UnboundedSender<Push>,
        rx: &mut mpsc::UnboundedReceiver<Push>,
    ) -> Result<(), Ended> {
        let unexpected_at = self.login(tx).await?;
        self.maybe_cut().await?;
        let mut unexpected_at = unexpected_at;
        loop {
            let timer = async move {
                match unexpected_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            // Biased, pushes first: every push queued before a client frame is read is written
            // before that frame's reply (tests use a `ping` as a barrier).
            tokio::select! {
                biased;
                Some(push) = rx.recv() => self.write_push(push).await?,
                msg = self.ws.next() => {
                    match msg {
                        Some(Ok(Message::Text(t))) => {
                            self.frames += 1;
                            self.shared.count(|c| &c.frames_after_login);
                            if !self.shared.misbehave.silent_after_login {
                                self.handle(t.as_str()).await?;
                            }
                            self.maybe_cut().await?;
                        }
                        Some(Ok(Message::Binary(_))) => {
                            if !self.shared.misbehave.silent_after_login {
                                self.reply(error_frame(None, "bad_request", "binary frame")).await?;
                            }
                        }
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return Ok(()),
                        Some(Ok(_)) => {}
                    }
                }
                _ = timer => {
                    unexpected_at = None;
                    self.unexpected_receipts().await?;
                }
            }
        }
    }

    /// Writes a push and counts it; one that cannot be written is kept for the store.
    async fn write_push(&mut self, push: Push) -> Result<(), Ended> {
        let (frame, counter): (&Value, fn(&Counters) -> &AtomicU64) = match &push {
            Push::Message(m) => (m, |c| &c.message_pushes),
            Push::Receipt(r) => (r, |c| &c.receipt_pushes),
        };
        if self.text(frame).await.is_err() {
            self.unwritten.push(push);
            return Err(Ended);
        }
        self.shared.count(counter);
        Ok(())
    }

    /// Reads and answers `login`, then pushes garbage and what was stored. Returns when the
    /// unexpected receipts are due, if this connection is to push them.
    async fn login(&mut self, tx: mpsc::UnboundedSender<Push>) -> Result<Option<Instant>, Ended> {
        let first = loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => break t,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                _ => return Err(Ended),
            }
        };
        self.frames += 1;
        let frame: Value = serde_json::from_str(first.as_str()).unwrap_or(Value::Null);
        let user = str_field(&frame, "user").filter(|_| frame["op"] == "login");
        let Some(user) = user.map(str::to_string) else {
            self.reply(error_frame(None, "unauthorized", "login must come first"))
                .await?;
            let _ = self.ws.close(None).await;
            return Err(Ended);
        };
        let device = str_field(&frame, "device").unwrap_or("web").to_string();
        let (stored, unexpected) = {
            let mut hub = self.shared.hub.lock();
            hub.conns
                .entry(user.clone())
                .or_default()
                .push(Conn { id: self.id, tx });
            if !hub.seen.contains(&user) {
                hub.seen.push(user.clone());
            }
            let unexpected = self.shared.misbehave.unexpected_receipts > 0 && !hub.unexpected_taken;
            hub.unexpected_taken |= unexpected;
            (hub.stored.remove(&user).unwrap_or_default(), unexpected)
        };
        self.user = user.clone();
        let mut ok = json!({"op":"loginOk","user":user,"device":device,"time":now_ms()});
        if let Some(r) = frame.get("req") {
            ok["req"] = r.clone();
        }
        self.text(&ok).await?;
        self.shared.count(|c| &c.logins);
        if let Some(g) = self.shared.misbehave.garbage_after_login {
            self.garbage(g).await?;
        }
        let replay = stored.messages.into_iter().map(Push::Message);
        let mut replay = replay.chain(stored.receipts.into_iter().map(Push::Receipt));
        while let Some(p) = replay.next() {
            let message = matches!(p, Push::Message(_));
            if let Err(e) = self.write_push(p).await {
                self.unwritten.extend(replay);
                return Err(e);
            }
            if message {
                self.shared.count(|c| &c.messages_replayed);
            }
        }
        Ok(unexpected.then(|| Instant::now() + UNEXPECTED_DELAY))
    }

    async fn garbage(&mut self, g: Garbage) -> Result<(), Ended> {
        for i in 0..g.invalid_json {
            self.ws
                .send(Message::Text(format!("{{\"op\":\"message\",\"mid\":\"{i}").into()))
                .await
                .map_err(|_| Ended)?;
            self.shared.count(|c| &c.garbage_invalid_json);
        }
        for i in 0..g.unknown_op {
            self.text(&json!({"op":"surprise","n":i,"time":now_ms()})).await?;
            self.shared.count(|c| &c.garbage_unknown_op);
        }
        for i in 0..g.bad_id {
            let f = json!({"op":"message","mid":format!("m{i}"),"from":"nobody","to":self.user,
                "chatType":"singleChat","type":"txt","msg":"bad id","time":now_ms()});
            self.text(&f).await?;
            self.shared.count(|c| &c.garbage_bad_id);
        }
        for i in 0..g.binary {
            self.ws
                .send(Message::Binary(vec![0xde, 0xad, i as u8].into()))
                .await
                .map_err(|_| Ended)?;
            self.shared.count(|c| &c.garbage_binary);
        }
        Ok(())
    }

    async fn unexpected_receipts(&mut self) -> Result<(), Ended> {
        let (from, first_id) = {
            let mut hub = self.shared.hub.lock();
            let from = hub.seen.iter().find(|u| **u != self.user).unwrap_or(&self.user).clone();
            let n = self.shared.misbehave.unexpected_receipts;
            let first = hub.last_id + 1;
            hub.last_id += 2 * n;
            (from, first)
        };
        let n = self.shared.misbehave.unexpected_receipts;
        for i in 0..n {
            let mid = (UNSENT_MID_BASE + i).to_string();
            let f = json!({"op":"delivery","id":(first_id + i).to_string(),"mid":mid,
                "from":from,"to":self.user,"onlineState":1});
            self.text(&f).await?;
            self.shared.count(|c| &c.unexpected_deliveries);
        }
        for i in 0..n {
            let mid = (UNSENT_MID_BASE + i).to_string();
            let f = json!({"op":"read","id":(first_id + n + i).to_string(),"mid":mid,
                "chatType":"singleChat","from":from,"to":self.user,"onlineState":1});
            self.text(&f).await?;
            self.shared.count(|c| &c.unexpected_reads);
        }
        Ok(())
    }

    /// `close_mid_frame_after`: after the Nth frame of a user's first connection, half a text
    /// frame on the raw stream, then the end of the connection.
    async fn maybe_cut(&mut self) -> Result<(), Ended> {
        let Some(n) = self.shared.misbehave.close_mid_frame_after else {
            return Ok(());
        };
        if self.frames < n || !self.shared.hub.lock().cut.insert(self.user.clone()) {
            return Ok(());
        }
        let _ = self.ws.flush().await;
        let payload = json!({"op":"message","mid":"0","from":"cut","to":self.user,
            "chatType":"singleChat","type":"txt","msg":"x".repeat(40),"time":now_ms()})
        .to_string();
        // FIN + text, unmasked (server to client), length in 7 or 7+16 bits.
        let mut frame = vec![0x81];
        match u16::try_from(payload.len()) {
            Ok(n) if n < 126 => frame.push(n as u8),
            Ok(n) => {
                frame.push(126);
                frame.extend_from_slice(&n.to_be_bytes());
            }
            Err(_) => unreachable!("a short payload"),
        }
        frame.extend_from_slice(payload.as_bytes());
        let half = &frame[..frame.len() / 2];
        let tcp = self.ws.get_mut();
        let _ = tcp.write_all(half).await;
        let _ = tcp.shutdown().await;
        self.shared.count(|c| &c.mid_frame_closes);
        // Read until the client closes, so that the close is a FIN, not a reset.
        let mut sink = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(2);
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, tcp.read(&mut sink)).await {
            if n == 0 {
                break;
            }
        }
        Err(Ended)
    }

    async fn handle(&mut self, text: &str) -> Result<(), Ended> {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            return self.reply(error_frame(None, "bad_request", "not JSON")).await;
        };
        let req = frame.get("req").cloned();
        let reply = match str_field(&frame, "op").unwrap_or("") {
            "send" => self.send(&frame),
            "delivery" | "read" => self.receipt(&frame),
            "channel" => self.channel(&frame),
            "createGroup" => {
                self.shared.count(|c| &c.create_group_frames);
                if self.shared.misbehave.never_answer_create_group {
                    None
                } else {
                    match str_field(&frame, "groupId") {
                        Some(g) => Some(json!({"op":"result","data":{"groupId":g}})),
                        None => Some(error_frame(None, "bad_request", "groupId")),
                    }
                }
            }
            "ping" => Some(json!({"op":"pong","time":now_ms()})),
            _ => Some(error_frame(None, "bad_request", "unknown op")),
        };
        let Some(mut reply) = reply else { return Ok(()) };
        if let Some(r) = req {
            reply["req"] = r;
        }
        let op = reply["op"].as_str().unwrap_or("").to_string();
        let counted_send = reply.get("duplicate").is_none() && frame["op"] == "send";
        self.reply(reply).await?;
        if op == "received" {
            if frame["op"] == "send" {
                if counted_send {
                    self.shared.count(|c| &c.sends_answered);
                }
            } else {
                self.shared.count(|c| &c.receipts_answered);
            }
        }
        Ok(())
    }

    /// A `send`: the reply (None when dropped); pushes or stores the message.
    fn send(&self, f: &Value) -> Option<Value> {
        let (Some(id), Some(to), Some(msg)) = (str_field(f, "id"), str_field(f, "to"), str_field(f, "msg")) else {
            return Some(error_frame(None, "bad_request", "send needs id, to and msg"));
        };
        if f["chatType"] != "singleChat" || to == self.user {
            return Some(error_frame(None, "bad_request", "singleChat to another user only"));
        }
        let m = &self.shared.misbehave;
        let mut hub = self.shared.hub.lock();
        let key = (self.user.clone(), id.to_string());
        if let Some(original) = hub.accepted.get(&key) {
            let mut r = original.clone();
            r["duplicate"] = json!(true);
            self.shared.count(|c| &c.sends_duplicate);
            return Some(r);
        }
        hub.sends += 1;
        let n = hub.sends;
        let drop_received = m.drop_received_every.is_some_and(|k| n.is_multiple_of(k));
        let drop_push = !drop_received && m.drop_message_push_every.is_some_and(|k| n.is_multiple_of(k));
        let mid = hub.next_id();
        let time = now_ms();
        hub.messages.insert(mid, (self.user.clone(), to.to_string()));
        let received = json!({"op":"received","id":id,"mid":mid.to_string(),"to":to,"time":time});
        hub.accepted.insert(key, received.clone());
        if !m.never_deliver {
            let push = json!({"op":"message","mid":mid.to_string(),"from":self.user,"to":to,
                "chatType":"singleChat","type":"txt","msg":msg,"time":time});
            let conns = hub.conns.get(to).map_or(0, Vec::len);
            if drop_push {
                for _ in 0..conns.max(1) {
                    self.shared.count(|c| &c.dropped_pushes);
                }
            } else if conns == 0 {
                hub.stored.entry(to.to_string()).or_default().messages.push_back(push);
                self.shared.count(|c| &c.messages_stored);
            } else {
                for c in &hub.conns[to] {
                    let _ = c.tx.send(Push::Message(push.clone()));
                }
            }
        }
        if drop_received {
            self.shared.count(|c| &c.dropped_received);
            return None;
        }
        Some(received)
    }

    /// A 1:1 `delivery` or `read`.
    fn receipt(&self, f: &Value) -> Option<Value> {
        let delivery = f["op"] == "delivery";
        let mid = if delivery { id_of(&f["ackId"]) } else { id_of(&f["id"]) };
        let (Some(mid), Some(_to)) = (mid, str_field(f, "to")) else {
            return Some(error_frame(None, "bad_request", "receipt needs a mid and to"));
        };
        if !delivery && f["chatType"] != "singleChat" {
            return Some(error_frame(None, "bad_request", "only singleChat reads"));
        }
        let mut hub = self.shared.hub.lock();
        let Some((sender, recipient)) = hub.messages.get(&mid).cloned() else {
            return Some(error_frame(None, "not_found", "no such message"));
        };
        if recipient != self.user {
            return Some(error_frame(None, "forbidden", "not your message"));
        }
        let id = hub.next_id();
        let first = if delivery {
            hub.delivered.insert((mid, self.user.clone()))
        } else {
            hub.read.insert((mid, self.user.clone()))
        };
        if first {
            let push = if delivery {
                json!({"op":"delivery","id":id.to_string(),"mid":mid.to_string(),
                    "from":self.user,"to":sender,"onlineState":1})
            } else {
                json!({"op":"read","id":id.to_string(),"mid":mid.to_string(),"chatType":"singleChat",
                    "from":self.user,"to":sender,"onlineState":1})
            };
            hub.route_receipt(&sender, None, push, true);
        }
        Some(json!({"op":"received","mid":id.to_string()}))
    }

    /// A `channel` ack: 1:1 pushed to the peer and to the reader's other devices.
    fn channel(&self, f: &Value) -> Option<Value> {
        let Some(to) = str_field(f, "to") else {
            return Some(error_frame(None, "bad_request", "channel needs to"));
        };
        let chat = f["chatType"].as_str().unwrap_or("");
        if !matches!(chat, "singleChat" | "groupChat") || (chat == "singleChat" && to == self.user) {
            return Some(error_frame(None, "bad_request", "bad channel ack"));
        }
        let mut hub = self.shared.hub.lock();
        let id = hub.next_id();
        if chat == "singleChat" {
            let push = json!({"op":"channel","id":id.to_string(),"chatType":chat,"from":self.user,
                "to":to,"time":now_ms(),"onlineState":1});
            hub.route_receipt(to, None, push.clone(), true);
            let me = self.user.clone();
            hub.route_receipt(&me, Some(self.id), push, false);
        }
        Some(json!({"op":"received","mid":id.to_string()}))
    }
}

/// The fake checked on its own, with the raw test client: it must do exactly what it counts,
/// or the audit tests built on it prove nothing.
mod checks {
    use std::collections::BTreeSet;

    use futures_util::{SinkExt, StreamExt};
    use serde_json::{Value, json};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_tungstenite::tungstenite::Message;

    use super::{FakeServer, Garbage, Misbehave, UNSENT_MID_BASE};
    use crate::common::{Client, QUIET, WAIT, assert_error, id_of, received_mid};

    async fn login(s: &FakeServer, user: &str) -> Client {
        Client::login_url(&s.url(), user, None, false).await
    }

    fn send(to: &str, id: &str, msg: &str) -> Value {
        json!({"op":"send","id":id,"chatType":"singleChat","type":"txt","to":to,"msg":msg})
    }

    /// Raw frames up to (not including) the `pong` that answers a `ping` sent now: every frame
    /// the fake queued for this connection before it read the ping (the fake writes pushes
    /// before replies).
    async fn until_pong(c: &mut Client) -> Vec<Message> {
        c.ws.send(Message::Text(r#"{"op":"ping","req":"barrier"}"#.into()))
            .await
            .unwrap();
        let mut out = Vec::new();
        loop {
            let m = tokio::time::timeout(WAIT, c.ws.next())
                .await
                .expect("pong within the wait")
                .expect("open")
                .expect("a frame");
            if let Message::Text(t) = &m
                && let Ok(v) = serde_json::from_str::<Value>(t.as_str())
                && v["req"] == "barrier"
            {
                assert_eq!(v["op"], "pong", "{v}");
                return out;
            }
            out.push(m);
        }
    }

    fn json_frames(frames: &[Message]) -> Vec<Value> {
        frames
            .iter()
            .map(|m| match m {
                Message::Text(t) => serde_json::from_str(t.as_str()).unwrap(),
                other => panic!("not a text frame: {other:?}"),
            })
            .collect()
    }

    async fn wait_offline(s: &FakeServer, user: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while s.online(user) {
            assert!(tokio::time::Instant::now() < deadline, "{user} still online");
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn a_well_behaved_fake_routes_messages_and_receipts_and_stores_for_the_offline() {
        let s = FakeServer::start(Misbehave::default()).await;
        let mut a = login(&s, "a").await;
        let mut b = login(&s, "b").await;
        let mid = received_mid(&a.send_single("b", "hello").await);
        let m = b.push_op("message").await;
        assert_eq!(
            (&m["mid"], &m["from"], &m["to"], &m["msg"], &m["chatType"]),
            (&mid, &json!("a"), &json!("b"), &json!("hello"), &json!("singleChat"))
        );
        received_mid(&b.delivery(&mid, "a").await);
        let d = a.push_op("delivery").await;
        assert_eq!(
            (&d["mid"], &d["from"], &d["onlineState"]),
            (&mid, &json!("b"), &json!(1))
        );
        id_of(&d["id"]);
        received_mid(&b.read_single(&mid, "a").await);
        let r = a.push_op("read").await;
        assert_eq!((&r["mid"], &r["from"], &r["to"]), (&mid, &json!("b"), &json!("a")));
        received_mid(&b.channel("singleChat", "a").await);
        let c = a.push_op("channel").await;
        assert_eq!(
            (&c["from"], &c["to"], &c["onlineState"]),
            (&json!("b"), &json!("a"), &json!(1))
        );
        // Repeats are answered and push nothing.
        received_mid(&b.delivery(&mid, "a").await);
        received_mid(&b.read_single(&mid, "a").await);
        a.no_push().await;
        // An idempotent resend gets the original reply.
        let first = a.request(send("b", "same", "once")).await;
        let again = a.request(send("b", "same", "once")).await;
        assert_eq!((&again["mid"], &again["duplicate"]), (&first["mid"], &json!(true)));
        assert_eq!(b.push_op("message").await["msg"], "once");
        b.no_push().await;
        // Stored for the offline, in order: messages, then receipts (onlineState 0).
        let m1 = received_mid(&a.send_single("c", "later-1").await);
        received_mid(&a.send_single("c", "later-2").await);
        let mut c = login(&s, "c").await;
        assert_eq!(c.push_op("message").await["msg"], "later-1");
        assert_eq!(c.push_op("message").await["msg"], "later-2");
        a.ws.close(None).await.unwrap();
        wait_offline(&s, "a").await;
        received_mid(&c.read_single(&m1, "a").await);
        let mut a = login(&s, "a").await;
        let r = a.push_op("read").await;
        assert_eq!((&r["mid"], &r["onlineState"]), (&m1, &json!(0)));
        // The rest of the protocol it speaks, and errors.
        assert_eq!(a.request(json!({"op":"ping"})).await["op"], "pong");
        let g = a
            .request(json!({"op":"createGroup","groupId":"g1","members":["b"]}))
            .await;
        assert_eq!(g["data"], json!({"groupId":"g1"}), "{g}");
        assert_error(&a.request(json!({"op":"fly"})).await, "bad_request");
        assert_error(&a.request(send("a", "self", "me")).await, "bad_request");
        assert_error(&a.delivery(&json!("999999"), "b").await, "not_found");
        let t = s.tally();
        assert_eq!(
            (
                t.sends_answered,
                t.sends_duplicate,
                t.messages_stored,
                t.messages_replayed
            ),
            (4, 1, 2, 2),
            "{t:?}"
        );
        assert_eq!((t.receipts_answered, t.receipt_pushes, t.errors), (6, 4, 3), "{t:?}");
    }

    #[tokio::test]
    async fn the_fake_drops_exactly_what_it_counts_and_never_both_for_one_send() {
        let s = FakeServer::start(Misbehave {
            drop_message_push_every: Some(3),
            drop_received_every: Some(4),
            ..Misbehave::default()
        })
        .await;
        let mut a = login(&s, "a").await;
        let mut b = login(&s, "b").await;
        for n in 1..=24 {
            a.send_frame(send("b", &n.to_string(), &n.to_string())).await;
        }
        let replies = json_frames(&until_pong(&mut a).await);
        let pushes = json_frames(&until_pong(&mut b).await);
        let answered: BTreeSet<u64> = replies
            .iter()
            .map(|r| r["id"].as_str().unwrap().parse().unwrap())
            .collect();
        let pushed: BTreeSet<u64> = pushes
            .iter()
            .map(|p| p["msg"].as_str().unwrap().parse().unwrap())
            .collect();
        let unanswered: Vec<u64> = (1..=24).filter(|n| !answered.contains(n)).collect();
        let unpushed: Vec<u64> = (1..=24).filter(|n| !pushed.contains(n)).collect();
        assert_eq!(unanswered, [4, 8, 12, 16, 20, 24]);
        assert_eq!(unpushed, [3, 6, 9, 15, 18, 21], "12 and 24 are the received rule's");
        assert_eq!((replies.len(), pushes.len()), (18, 18));
        let t = s.tally();
        assert_eq!((t.dropped_received, t.dropped_pushes), (6, 6), "{t:?}");
        assert_eq!((t.sends_answered, t.message_pushes), (18, 18), "{t:?}");
        // A recipient offline: the dropped message is not stored either, and counted once.
        for n in 25..=30 {
            a.send_frame(send("c", &n.to_string(), &n.to_string())).await;
        }
        until_pong(&mut a).await;
        let mut c = login(&s, "c").await;
        let replayed = json_frames(&until_pong(&mut c).await);
        let msgs: Vec<&str> = replayed.iter().map(|p| p["msg"].as_str().unwrap()).collect();
        assert_eq!(
            msgs,
            ["25", "26", "28", "29"],
            "27 dropped (push), 28 kept (received dropped)"
        );
        let t = s.tally();
        assert_eq!((t.dropped_received, t.dropped_pushes), (7, 8), "{t:?}");
    }

    #[tokio::test]
    async fn never_deliver_answers_and_pushes_nothing() {
        let s = FakeServer::start(Misbehave {
            never_deliver: true,
            ..Misbehave::default()
        })
        .await;
        let mut a = login(&s, "a").await;
        let mut b = login(&s, "b").await;
        for n in 0..3 {
            received_mid(&a.send_single("b", &format!("m{n}")).await);
        }
        a.send_single("c", "to the offline").await;
        assert!(until_pong(&mut b).await.is_empty());
        let mut c = login(&s, "c").await;
        assert!(until_pong(&mut c).await.is_empty());
        let t = s.tally();
        assert_eq!(
            (t.sends_answered, t.message_pushes, t.messages_stored),
            (4, 0, 0),
            "{t:?}"
        );
    }

    #[tokio::test]
    async fn silent_after_login_reads_every_frame_and_answers_none() {
        let s = FakeServer::start(Misbehave {
            silent_after_login: true,
            ..Misbehave::default()
        })
        .await;
        let mut a = login(&s, "a").await;
        a.send_frame(send("b", "1", "x")).await;
        a.send_frame(json!({"op":"ping"})).await;
        a.send_frame(json!({"op":"createGroup","groupId":"g","members":[]}))
            .await;
        let quiet = tokio::time::timeout(QUIET, a.ws.next()).await;
        assert!(quiet.is_err(), "the fake answered: {quiet:?}");
        a.ws.close(None).await.unwrap();
        let t = s.settle().await;
        assert_eq!((t.logins, t.frames_after_login, t.sends_answered), (1, 3, 0), "{t:?}");
    }

    #[tokio::test]
    async fn create_group_can_go_unanswered() {
        let s = FakeServer::start(Misbehave {
            never_answer_create_group: true,
            ..Misbehave::default()
        })
        .await;
        let mut a = login(&s, "a").await;
        a.send_frame(json!({"op":"createGroup","groupId":"g","members":["b"]}))
            .await;
        assert!(until_pong(&mut a).await.is_empty());
        assert_eq!(s.tally().create_group_frames, 1);
    }

    #[tokio::test]
    async fn the_first_connection_of_a_user_is_cut_mid_frame_and_the_next_behaves() {
        let s = FakeServer::start(Misbehave {
            close_mid_frame_after: Some(3),
            ..Misbehave::default()
        })
        .await;
        let mut a = login(&s, "a").await;
        a.assert_alive().await;
        a.assert_alive().await;
        let end = tokio::time::timeout(WAIT, a.ws.next())
            .await
            .expect("the cut within the wait");
        assert!(
            matches!(end, None | Some(Err(_))),
            "half a frame, then the end, not a frame nor a close: {end:?}"
        );
        let mut a = login(&s, "a").await;
        for _ in 0..5 {
            a.assert_alive().await;
        }
        let mut b = login(&s, "b").await;
        b.assert_alive().await;
        b.assert_alive().await;
        assert!(b.closed().await);
        assert_eq!(s.tally().mid_frame_closes, 2);
    }

    #[tokio::test]
    async fn garbage_follows_every_login_kind_by_kind() {
        let g = Garbage {
            invalid_json: 1,
            unknown_op: 2,
            bad_id: 3,
            binary: 4,
        };
        let s = FakeServer::start(Misbehave {
            garbage_after_login: Some(g),
            ..Misbehave::default()
        })
        .await;
        let mut a = login(&s, "a").await;
        let frames = until_pong(&mut a).await;
        let (mut invalid, mut unknown, mut bad_id, mut binary) = (0, 0, 0, 0);
        for f in &frames {
            match f {
                Message::Binary(_) => binary += 1,
                Message::Text(t) => match serde_json::from_str::<Value>(t.as_str()) {
                    Err(_) => invalid += 1,
                    Ok(v) if v["op"] == "message" => {
                        assert!(!v["mid"].as_str().unwrap().bytes().all(|b| b.is_ascii_digit()));
                        bad_id += 1;
                    }
                    Ok(v) => {
                        assert_eq!(v["op"], "surprise");
                        unknown += 1;
                    }
                },
                other => panic!("{other:?}"),
            }
        }
        assert_eq!((invalid, unknown, bad_id, binary), (1, 2, 3, 4));
        let t = s.tally();
        assert_eq!(
            (
                t.garbage_invalid_json,
                t.garbage_unknown_op,
                t.garbage_bad_id,
                t.garbage_binary
            ),
            (1, 2, 3, 4)
        );
    }

    #[tokio::test]
    async fn unexpected_receipts_go_once_to_the_first_user_for_mids_never_sent() {
        let s = FakeServer::start(Misbehave {
            unexpected_receipts: 2,
            ..Misbehave::default()
        })
        .await;
        let mut a = login(&s, "a").await;
        let mut b = login(&s, "b").await;
        let pushes = a.pushes(4).await;
        let ops: Vec<&str> = pushes.iter().map(|p| p["op"].as_str().unwrap()).collect();
        assert_eq!(ops, ["delivery", "delivery", "read", "read"]);
        for p in &pushes {
            assert!(id_of(&p["mid"]) >= UNSENT_MID_BASE, "{p}");
            assert_eq!((&p["from"], &p["to"]), (&json!("b"), &json!("a")));
        }
        assert!(until_pong(&mut b).await.is_empty());
        let t = s.tally();
        assert_eq!((t.unexpected_deliveries, t.unexpected_reads), (2, 2));
    }

    #[tokio::test]
    async fn plain_http_gets_404_at_once() {
        let s = FakeServer::start(Misbehave::default()).await;
        let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        tokio::time::timeout(WAIT, tcp.read_to_end(&mut buf))
            .await
            .expect("answered")
            .unwrap();
        assert!(buf.starts_with(b"HTTP/1.1 404"), "{}", String::from_utf8_lossy(&buf));
        assert_eq!(s.tally().http_requests, 1);
    }
}
