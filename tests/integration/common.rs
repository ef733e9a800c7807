//! Test helpers: start the real server on `127.0.0.1:0` and talk to it as an independent client
//! would, with raw JSON (`serde_json::Value`), not with ackstorm's own protocol types, so the
//! tests check the wire contract of PROTOCOL.md rather than our reading of it.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::time::Duration;

use ackstorm::protocol::token;
use ackstorm::server::{ServerConfig, ServerHandle};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

pub const SECRET: &str = "test-secret";
/// How long a test waits for a frame it expects before failing.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure a frame does not come.
pub const QUIET: Duration = Duration::from_millis(150);

/// A server with the protocol's defaults, except rate limiting off and group receipts on
/// (tests that check those switch them back).
pub fn config() -> ServerConfig {
    ServerConfig {
        secret: SECRET.as_bytes().to_vec(),
        group_read_ack: true,
        rate_limit: None,
        ..ServerConfig::default()
    }
}

pub async fn start(config: ServerConfig) -> ServerHandle {
    ServerHandle::start("127.0.0.1:0", config)
        .await
        .expect("server starts on loopback")
}

pub fn token_for(user: &str) -> String {
    token::token(SECRET.as_bytes(), user)
}

/// An HTTP GET on the server's port; returns (status, body).
pub async fn http_get(server: &ServerHandle, path: &str) -> (u16, String) {
    http_get_at(server.addr, path).await
}

/// An HTTP GET on `addr` (a server in another process); returns (status, body).
pub async fn http_get_at(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut buf))
        .await
        .expect("http reply in time")
        .unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of a metric sample (`name` with `labels` as `k="v"` pairs, or none).
pub fn metric(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no sample {prefix:?} in metrics"))
        .trim()
        .parse()
        .unwrap()
}

/// Milliseconds since the Unix epoch on this machine (the server's clock: same host).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A server-assigned id (`mid`, a receipt `id`, `lastMid`, `ackmid`): asserts the wire form, a
/// decimal string of a u64, and returns its value.
pub fn id_of(v: &Value) -> u64 {
    let s = v.as_str().unwrap_or_else(|| panic!("id {v} is not a JSON string"));
    assert!(
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
        "id {s:?} is not a decimal string"
    );
    s.parse().unwrap_or_else(|_| panic!("id {s:?} is not a u64"))
}

/// Asserts that the JSON object `v` has exactly the fields `expected` (any order).
pub fn assert_keys(v: &Value, expected: &[&str]) {
    let mut got: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("{v} is not an object"))
        .keys()
        .map(|k| k.as_str())
        .collect();
    got.sort_unstable();
    let mut want = expected.to_vec();
    want.sort_unstable();
    assert_eq!(got, want, "fields of {v}");
}

/// The `/metrics` text.
pub async fn scrape(server: &ServerHandle) -> String {
    let (status, body) = http_get(server, "/metrics").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits until a metric sample reaches `value` (a state the test cannot observe on the wire,
/// such as a closed connection having been logged out), polling `/metrics`.
pub async fn wait_metric(server: &ServerHandle, name: &str, labels: &str, value: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = metric(&scrape(server).await, name, labels);
        if now == value {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name}{{{labels}}} stayed at {now}, expected {value}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A client message id never used before in this test process: sends are idempotent per
/// (sender, id), so every helper send needs a fresh one.
pub fn fresh_id(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!("{prefix}{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// A `send` frame without `req` (for [`Client::send_frame`] and [`Client::request_all`]).
pub fn single_frame(to: &str, msg: &str) -> Value {
    json!({"op":"send","id":fresh_id("c-"),"chatType":"singleChat","type":"txt","to":to,"msg":msg})
}

/// A group `send` frame without `req`.
pub fn group_frame(group: &str, msg: &str, ack: bool) -> Value {
    let mut f = json!({"op":"send","id":fresh_id("g-"),"chatType":"groupChat","type":"txt","to":group,"msg":msg});
    if ack {
        f["msgConfig"] = json!({"allowGroupAck": true});
    }
    f
}

/// Logs in every user of `users` (device `web`, no delivery duty).
pub async fn login_all(server: &ServerHandle, users: &[&str]) -> Vec<Client> {
    let mut out = Vec::with_capacity(users.len());
    for u in users {
        out.push(Client::login(server, u).await);
    }
    out
}

pub struct Client {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    next_req: u64,
    /// Frames read while waiting for something else, oldest first.
    buffered: VecDeque<Value>,
    pub user: String,
}

impl Client {
    pub async fn connect(server: &ServerHandle) -> Client {
        Client::connect_url(&server.ws_url()).await
    }

    pub async fn connect_url(url: &str) -> Client {
        let (ws, _) = connect_async(url).await.expect("websocket connects");
        Client {
            ws,
            next_req: 0,
            buffered: VecDeque::new(),
            user: String::new(),
        }
    }

    /// Connects and logs in `user` on `device` (None: default), asserting `loginOk`.
    pub async fn login_as(server: &ServerHandle, user: &str, device: Option<&str>, delivery: bool) -> Client {
        Client::login_url(&server.ws_url(), user, device, delivery).await
    }

    /// [`Client::login_as`] by URL (for tasks that do not hold the server handle).
    pub async fn login_url(url: &str, user: &str, device: Option<&str>, delivery: bool) -> Client {
        let mut c = Client::connect_url(url).await;
        let mut frame = json!({"op":"login","user":user,"token":token_for(user),"delivery":delivery});
        if let Some(d) = device {
            frame["device"] = json!(d);
        }
        let reply = c.request(frame).await;
        assert_eq!(reply["op"], "loginOk", "{reply}");
        assert_eq!(reply["user"], user);
        assert_eq!(reply["device"], device.unwrap_or("web"));
        c.user = user.to_string();
        c
    }

    pub async fn login(server: &ServerHandle, user: &str) -> Client {
        Client::login_as(server, user, None, false).await
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.ws.send(Message::Text(text.into().into())).await.expect("send");
    }

    /// Next frame from the socket (not the buffer); `None` when the connection closed.
    async fn read_socket(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("a frame within the wait")?;
            match msg {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).expect("server frames are JSON")),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Next frame of any kind.
    pub async fn recv(&mut self) -> Value {
        if let Some(v) = self.buffered.pop_front() {
            return v;
        }
        self.read_socket().await.expect("connection open")
    }

    /// Sends `frame` with a fresh `req` and returns the reply echoing it; pushes read
    /// meanwhile stay buffered for [`Client::push`].
    pub async fn request(&mut self, mut frame: Value) -> Value {
        self.next_req += 1;
        let req = format!("r{}", self.next_req);
        frame["req"] = json!(req);
        self.send_text(frame.to_string()).await;
        self.reply_to(&req).await
    }

    /// Waits for the reply carrying `req`.
    pub async fn reply_to(&mut self, req: &str) -> Value {
        if let Some(i) = self.buffered.iter().position(|v| v["req"] == req) {
            return self.buffered.remove(i).unwrap();
        }
        loop {
            let v = self
                .read_socket()
                .await
                .unwrap_or_else(|| panic!("closed before the reply to {req}"));
            if v["req"] == req {
                return v;
            }
            self.buffered.push_back(v);
        }
    }

    /// Next frame without `req` (a push).
    pub async fn push(&mut self) -> Value {
        if let Some(i) = self.buffered.iter().position(|v| v.get("req").is_none()) {
            return self.buffered.remove(i).unwrap();
        }
        loop {
            let v = self
                .read_socket()
                .await
                .expect("connection open while waiting for a push");
            if v.get("req").is_none() {
                return v;
            }
            self.buffered.push_back(v);
        }
    }

    /// Next push, which must have op `op`.
    pub async fn push_op(&mut self, op: &str) -> Value {
        let v = self.push().await;
        assert_eq!(v["op"], op, "expected a {op} push, got {v}");
        v
    }

    /// Asserts that no push arrives within [`QUIET`] (replies are buffered, not counted).
    pub async fn no_push(&mut self) {
        if let Some(v) = self.buffered.iter().find(|v| v.get("req").is_none()) {
            panic!("unexpected push {v}");
        }
        let deadline = tokio::time::Instant::now() + QUIET;
        while let Ok(msg) = tokio::time::timeout_at(deadline, self.ws.next()).await {
            match msg {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    assert!(v.get("req").is_some(), "unexpected push {v}");
                    self.buffered.push_back(v);
                }
                Some(Ok(_)) => {}
                _ => return,
            }
        }
    }

    /// True when the server closed the connection (reads until close, within the wait).
    pub async fn closed(&mut self) -> bool {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next()).await {
                Err(_) => return false,
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
                Ok(Some(Ok(Message::Text(t)))) => self.buffered.push_back(serde_json::from_str(&t).unwrap()),
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    /// The close frame's code, reading until the server closes.
    pub async fn close_code(&mut self) -> Option<u16> {
        loop {
            match tokio::time::timeout(WAIT, self.ws.next())
                .await
                .expect("closed within the wait")
            {
                Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
                Some(Ok(Message::Text(t))) => self.buffered.push_back(serde_json::from_str(&t).unwrap()),
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return None,
            }
        }
    }

    /// Connects and sends `text` as the first frame; returns the client and the first frame the
    /// server answers with.
    pub async fn first_frame(server: &ServerHandle, text: &str) -> (Client, Value) {
        let mut c = Client::connect(server).await;
        c.send_text(text).await;
        let v = c.recv().await;
        (c, v)
    }

    /// Sends `frame` with a fresh `req` without waiting; returns the `req`.
    pub async fn send_frame(&mut self, mut frame: Value) -> String {
        self.next_req += 1;
        let req = format!("r{}", self.next_req);
        frame["req"] = json!(req);
        self.send_text(frame.to_string()).await;
        req
    }

    /// Sends every frame, pipelined a window at a time, and returns the replies in frame order.
    pub async fn request_all(&mut self, frames: Vec<Value>) -> Vec<Value> {
        const WINDOW: usize = 64;
        let mut replies = Vec::with_capacity(frames.len());
        let mut frames = frames.into_iter().peekable();
        while frames.peek().is_some() {
            let mut reqs = Vec::with_capacity(WINDOW);
            for f in frames.by_ref().take(WINDOW) {
                reqs.push(self.send_frame(f).await);
            }
            for r in &reqs {
                replies.push(self.reply_to(r).await);
            }
        }
        replies
    }

    /// The next `n` pushes, in arrival order.
    pub async fn pushes(&mut self, n: usize) -> Vec<Value> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            out.push(self.push().await);
        }
        out
    }

    /// Asserts that the connection is open and served: `ping` gets `pong`.
    pub async fn assert_alive(&mut self) {
        let r = self.request(json!({"op":"ping"})).await;
        assert_eq!(r["op"], "pong", "{r}");
    }

    /// Closes the connection and waits until the server has logged it out (the
    /// `ackstorm_connections` gauge fell by one), so that what follows counts as offline for
    /// this device. No other connection of `server` may be opening or closing meanwhile.
    pub async fn logout(mut self, server: &ServerHandle) {
        let open = metric(&scrape(server).await, "ackstorm_connections", "");
        self.ws.close(None).await.expect("close");
        while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, self.ws.next()).await {}
        wait_metric(server, "ackstorm_connections", "", open - 1.0).await;
    }

    // ---- protocol shorthands -------------------------------------------------------------

    /// Sends a 1:1 text message; returns the `received` reply.
    pub async fn send_single(&mut self, to: &str, msg: &str) -> Value {
        let r = self
            .request(json!({"op":"send","id":fresh_id("c"),"chatType":"singleChat","type":"txt","to":to,"msg":msg}))
            .await;
        assert_eq!(r["op"], "received", "{r}");
        r
    }

    /// Sends a group message, optionally asking for receipts; returns the reply (received or error).
    pub async fn send_group(&mut self, group: &str, msg: &str, ack: bool) -> Value {
        let mut f = json!({"op":"send","id":fresh_id("g"),"chatType":"groupChat","type":"txt","to":group,"msg":msg});
        if ack {
            f["msgConfig"] = json!({"allowGroupAck": true});
        }
        self.request(f).await
    }

    pub async fn create_group(&mut self, group: &str, members: &[&str], admins: &[&str]) -> Value {
        self.request(json!({"op":"createGroup","groupId":group,"members":members,"admins":admins}))
            .await
    }

    pub async fn delivery(&mut self, mid: &Value, to: &str) -> Value {
        self.request(json!({"op":"delivery","ackId":mid,"to":to})).await
    }

    pub async fn read_single(&mut self, mid: &Value, to: &str) -> Value {
        self.request(json!({"op":"read","chatType":"singleChat","id":mid,"to":to}))
            .await
    }

    pub async fn read_group(&mut self, mid: &Value, group: &str) -> Value {
        self.request(json!({"op":"read","chatType":"groupChat","id":mid,"to":group}))
            .await
    }

    /// A group read receipt with an `ackContent`.
    pub async fn read_group_with(&mut self, mid: &Value, group: &str, ack_content: &str) -> Value {
        self.request(json!({"op":"read","chatType":"groupChat","id":mid,"to":group,"ackContent":ack_content}))
            .await
    }

    pub async fn join(&mut self, group: &str) -> Value {
        self.request(json!({"op":"joinGroup","groupId":group})).await
    }

    pub async fn leave(&mut self, group: &str) -> Value {
        self.request(json!({"op":"leaveGroup","groupId":group})).await
    }

    /// `getGroupMsgReadUser` with optional `limit` and `key`.
    pub async fn read_users(&mut self, group: &str, mid: &Value, limit: Option<u32>, key: Option<&Value>) -> Value {
        let mut f = json!({"op":"getGroupMsgReadUser","groupId":group,"msgId":mid});
        if let Some(l) = limit {
            f["limit"] = json!(l);
        }
        if let Some(k) = key {
            f["key"] = k.clone();
        }
        self.request(f).await
    }

    pub async fn channel(&mut self, chat_type: &str, to: &str) -> Value {
        self.request(json!({"op":"channel","chatType":chat_type,"to":to})).await
    }

    pub async fn conversations(&mut self) -> Vec<Value> {
        let r = self.request(json!({"op":"getConversations"})).await;
        assert_eq!(r["op"], "result", "{r}");
        r["data"].as_array().unwrap().clone()
    }

    /// Unread count of one conversation (0 when absent).
    pub async fn unread(&mut self, id: &str) -> u64 {
        self.conversations()
            .await
            .iter()
            .find(|c| c["conversationId"] == id)
            .map(|c| c["unread"].as_u64().unwrap())
            .unwrap_or(0)
    }
}

/// Asserts an `error` reply with `code`.
pub fn assert_error(v: &Value, code: &str) {
    assert_eq!(v["op"], "error", "expected error {code}, got {v}");
    assert_eq!(v["code"], code, "{v}");
    assert!(v["message"].is_string(), "{v}");
}

/// Asserts a `result {data:{groupId}}` reply.
pub fn assert_group_result(v: &Value, group: &str) {
    assert_eq!(v["op"], "result", "{v}");
    assert_eq!(v["data"], json!({"groupId": group}), "{v}");
}

/// Asserts a `received` reply and returns its `mid` (as on the wire).
pub fn received_mid(v: &Value) -> Value {
    assert_eq!(v["op"], "received", "expected received, got {v}");
    id_of(&v["mid"]);
    v["mid"].clone()
}

// ---- the ackstorm binary ------------------------------------------------------------------

/// Runs the ackstorm binary built for these tests.
pub fn ackstorm(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ackstorm"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Stdout and stderr of a finished command, for assertion messages.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The one folder under `root` whose name starts with `prefix`.
pub fn only_folder(root: &std::path::Path, prefix: &str) -> std::path::PathBuf {
    let found: Vec<std::path::PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_str().unwrap().starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found[0].clone()
}

/// Runs the binary with `args`, killed if it has not ended within `limit`; its exit code and
/// its stdout then stderr.
pub async fn ackstorm_within(args: &[&str], limit: std::time::Duration) -> (Option<i32>, String) {
    ackstorm_in_env(args, None, limit).await
}

/// [`ackstorm_within`] with exactly the environment `env` when one is given (nothing
/// inherited: a pod's environment).
pub async fn ackstorm_in_env(
    args: &[&str],
    env: Option<&std::collections::BTreeMap<String, String>>,
    limit: std::time::Duration,
) -> (Option<i32>, String) {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ackstorm"));
    if let Some(env) = env {
        cmd.env_clear().envs(env);
    }
    let child = cmd
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the binary starts");
    let out = tokio::time::timeout(limit, child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("`ackstorm {}` had not ended after {limit:?}: killed", args.join(" ")))
        .expect("the binary runs");
    (out.status.code(), output_text(&out))
}
