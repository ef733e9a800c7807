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

mod checks;
mod conn;

use conn::accept_loop;
