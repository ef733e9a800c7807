//! The fake's network side: the accept loop and one task per connection that reads,
//! answers and writes, misbehaving as its knobs say.

use super::*;

pub(super) async fn accept_loop(listener: TcpListener, shared: Arc<Shared>, stop: CancellationToken) {
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
