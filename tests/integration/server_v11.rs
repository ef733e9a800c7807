//! PROTOCOL.md v1.1: idempotent sends (a repeat of an accepted `send` gets the original
//! `received` with `duplicate:true`, and nothing else happens), pushes that a closing
//! connection did not write (stored and replayed at the device's next login), and connection
//! health (pings and the idle timeout, the login timeout from accept, slow consumers).

use std::time::Duration;

use ackstorm::server::ServerConfig;
use ackstorm::server::outbox::QueueBound;
use ackstorm::server::store::StoreLimits;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio_tungstenite::MaybeTlsStream;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

fn send(to: &str, id: &str, msg: &str) -> Value {
    json!({"op":"send","id":id,"chatType":"singleChat","type":"txt","to":to,"msg":msg})
}

fn group_send(group: &str, id: &str, msg: &str) -> Value {
    json!({"op":"send","id":id,"chatType":"groupChat","type":"txt","to":group,"msg":msg,"msgConfig":{"allowGroupAck":true}})
}

/// The original reply and its repeat agree on everything but `req` and `duplicate`.
fn assert_repeat_of(repeat: &Value, original: &Value) {
    assert_eq!(repeat["op"], "received", "{repeat}");
    assert_eq!(repeat["duplicate"], true, "{repeat}");
    assert!(original.get("duplicate").is_none(), "{original}");
    for k in ["id", "mid", "to", "time", "groupAck"] {
        assert_eq!(repeat.get(k), original.get(k), "{k}: {repeat} vs {original}");
    }
}

async fn metric_now(server: &ackstorm::server::ServerHandle, name: &str, labels: &str) -> f64 {
    metric(&scrape(server).await, name, labels)
}

#[tokio::test]
async fn a_repeated_send_gets_the_original_reply_and_is_pushed_once() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let first = alice.request(send("bob", "m-1", "hello")).await;
    let mid = received_mid(&first);
    // The same id again, even with other fields changed: the original reply, nothing sent.
    let again = alice.request(send("bob", "m-1", "hello")).await;
    assert_keys(&again, &["op", "req", "id", "mid", "to", "time", "duplicate"]);
    assert_repeat_of(&again, &first);
    assert_ne!(again["req"], first["req"]);
    let changed = alice.request(send("carol", "m-1", "something else")).await;
    assert_repeat_of(&changed, &first);
    assert_eq!(changed["to"], "bob", "the original recipient");
    let m = bob.push_op("message").await;
    assert_eq!((&m["mid"], m["msg"].as_str()), (&mid, Some("hello")));
    bob.no_push().await;
    assert_eq!(bob.unread("alice").await, 1, "counted once");
    // Server ids did not move for the repeats: the next message takes the next id.
    let next = received_mid(&alice.request(send("bob", "m-2", "next")).await);
    assert_eq!(id_of(&next), id_of(&mid) + 1);
    assert_eq!(bob.push_op("message").await["mid"], next);
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "ackstorm_duplicate_sends_total", ""), 2.0);
    assert_eq!(metric(&m, "ackstorm_messages_total", "chat_type=\"singleChat\""), 2.0);
}

#[tokio::test]
async fn a_refused_send_is_not_remembered() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    assert_error(&alice.request(send("alice", "x", "to myself")).await, "bad_request");
    let r = alice.request(send("bob", "x", "fixed")).await;
    received_mid(&r);
    assert!(r.get("duplicate").is_none(), "{r}");
    assert_eq!(bob.push_op("message").await["msg"], "fixed");
}

#[tokio::test]
async fn a_repeat_after_reconnecting_is_still_a_repeat() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let first = alice.request(send("bob", "resend-me", "once")).await;
    bob.push_op("message").await;
    alice.logout(&server).await;
    // A new connection (another device, even) of the same user resends the frame.
    let mut again = Client::login_as(&server, "alice", Some("phone"), false).await;
    let r = again.request(send("bob", "resend-me", "once")).await;
    assert_repeat_of(&r, &first);
    bob.no_push().await;
    assert_eq!(bob.unread("alice").await, 1);
    // Offline recipient: a repeat stores nothing more either.
    bob.logout(&server).await;
    let stored = again.request(send("bob", "offline-1", "while away")).await;
    assert_repeat_of(&again.request(send("bob", "offline-1", "while away")).await, &stored);
    let mut bob = Client::login(&server, "bob").await;
    assert_eq!(bob.push_op("message").await["mid"], stored["mid"]);
    bob.no_push().await;
    assert_eq!(bob.unread("alice").await, 2);
}

#[tokio::test]
async fn another_sender_with_the_same_id_sends_a_new_message() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut carol = Client::login(&server, "carol").await;
    let mut bob = Client::login(&server, "bob").await;
    let a = alice.request(send("bob", "same", "from alice")).await;
    let c = carol.request(send("bob", "same", "from carol")).await;
    assert!(c.get("duplicate").is_none(), "{c}");
    assert_ne!(received_mid(&a), received_mid(&c));
    let got = bob.pushes(2).await;
    assert_eq!(
        got.iter().map(|m| m["from"].as_str().unwrap()).collect::<Vec<_>>(),
        ["alice", "carol"]
    );
    assert_eq!(metric_now(&server, "ackstorm_duplicate_sends_total", "").await, 0.0);
}

#[tokio::test]
async fn group_sends_are_idempotent_too() {
    let server = start(config()).await;
    let mut owner = Client::login(&server, "owner").await;
    let mut m1 = Client::login(&server, "m1").await;
    let mut m2 = Client::login(&server, "m2").await;
    assert_group_result(&owner.create_group("g", &["m1", "m2"], &[]).await, "g");
    let first = owner.request(group_send("g", "gm", "to all")).await;
    assert_eq!(first["groupAck"], true, "{first}");
    let again = owner.request(group_send("g", "gm", "to all")).await;
    assert_keys(
        &again,
        &["op", "req", "id", "mid", "to", "time", "groupAck", "duplicate"],
    );
    assert_repeat_of(&again, &first);
    for m in [&mut m1, &mut m2] {
        assert_eq!(m.push_op("message").await["mid"], first["mid"]);
        m.no_push().await;
        assert_eq!(m.unread("g").await, 1);
    }
    // The same id in a one-to-one send of the same sender is the same send.
    let cross = owner.request(send("m1", "gm", "1:1")).await;
    assert_repeat_of(&cross, &first);
    m1.no_push().await;
    // Another member may use the id for its own message.
    let mine = m1.request(group_send("g", "gm", "mine")).await;
    assert_error(&mine, "forbidden"); // only owner and admins ask for receipts
    let mine = m1
        .request(json!({"op":"send","id":"gm","chatType":"groupChat","type":"txt","to":"g","msg":"mine"}))
        .await;
    assert!(mine.get("duplicate").is_none(), "{mine}");
    assert_eq!(m2.push_op("message").await["mid"], mine["mid"]);
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "ackstorm_duplicate_sends_total", ""), 2.0);
    assert_eq!(metric(&m, "ackstorm_messages_total", "chat_type=\"groupChat\""), 2.0);
}

// ---- pushes a closing connection did not write ----------------------------------------------

/// Messages big enough that a few thousand fill the socket buffers of a client that does not
/// read, so that the rest stay queued on the server.
const BIG: usize = 5 * 1024;
const FLOOD: usize = 4000;

/// Device inboxes large enough to hold the whole flood (the default caps are 500 per inbox
/// and 1 MiB per user), and no queue bound (the flood is more than the default 4 MiB).
fn roomy() -> ServerConfig {
    ServerConfig {
        limits: StoreLimits {
            offline_single: 100_000,
            offline_user_bytes: usize::MAX,
            offline_total_bytes: usize::MAX,
            ..StoreLimits::default()
        },
        queue_bound: QueueBound::NONE,
        ..config()
    }
}

/// Sends `n` big messages from `from` to `to`; returns their mids in send order.
async fn flood(from: &mut Client, to: &str, n: usize) -> Vec<u64> {
    let body = "x".repeat(BIG - 16);
    let frames = (0..n).map(|i| single_frame(to, &format!("{i:08}{body}"))).collect();
    from.request_all(frames)
        .await
        .iter()
        .map(|r| id_of(&received_mid(r)))
        .collect()
}

/// Resets the client's TCP connection (RST, no close handshake).
fn reset(c: Client) {
    match c.ws.get_ref() {
        MaybeTlsStream::Plain(tcp) => tcp.set_zero_linger().expect("SO_LINGER 0"),
        _ => unreachable!("tests use plain TCP"),
    }
    drop(c);
}

/// The mids of the next `n` pushes, which must all be messages.
async fn message_mids(c: &mut Client, n: usize) -> Vec<u64> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(id_of(&c.push_op("message").await["mid"]));
    }
    out
}

#[tokio::test]
async fn pushes_queued_for_a_reset_connection_are_replayed_at_the_devices_next_login() {
    let server = start(roomy()).await;
    let mut alice = Client::login(&server, "alice").await;
    // Bob logs in and stops reading; alice floods him; then his connection is reset.
    let bob = Client::login(&server, "bob").await;
    let sent = flood(&mut alice, "bob", FLOOD).await;
    reset(bob);
    wait_metric(&server, "ackstorm_logged_in", "", 1.0).await;
    let stored = metric_now(&server, "ackstorm_unwritten_pushes_total", "kind=\"message\"").await as usize;
    assert!(stored > 0, "the flood outran the socket buffers, so some stayed queued");
    assert!(stored < FLOOD, "some were written before the reset: {stored}");
    // What was queued is exactly the newest `stored` messages: written ones (possibly lost
    // in socket buffers) are older than every unwritten one.
    let unwritten = &sent[FLOOD - stored..];
    let offline = id_of(&received_mid(&alice.send_single("bob", "while away").await));
    let mut bob = Client::login(&server, "bob").await;
    let live = id_of(&received_mid(&alice.send_single("bob", "live").await));
    let replay = message_mids(&mut bob, stored + 2).await;
    assert_eq!(&replay[..stored], unwritten, "replayed in mid order, first");
    assert_eq!(replay[stored..], [offline, live], "then the offline one, then live");
    bob.no_push().await;
}

#[tokio::test]
async fn a_same_device_login_takes_over_what_the_old_connection_had_not_written() {
    let server = start(roomy()).await;
    let mut alice = Client::login(&server, "alice").await;
    let old = Client::login(&server, "bob").await;
    let sent = flood(&mut alice, "bob", FLOOD).await;
    let mut bob = Client::login(&server, "bob").await;
    let live = id_of(&received_mid(&alice.send_single("bob", "live").await));
    let taken = metric_now(&server, "ackstorm_unwritten_pushes_total", "kind=\"message\"").await as usize;
    assert!(taken > 0 && taken < FLOOD, "{taken}");
    let got = message_mids(&mut bob, taken + 1).await;
    assert_eq!(&got[..taken], &sent[FLOOD - taken..]);
    assert_eq!(got[taken], live);
    bob.no_push().await;
    drop(old);
    bob.assert_alive().await;
}

// ---- connection health ------------------------------------------------------------------

/// What a client reads until the connection ends.
#[derive(Debug, Default)]
struct Drained {
    /// Mids of `message` pushes, in arrival order.
    mids: Vec<u64>,
    /// WebSocket pings from the server.
    pings: usize,
    /// The close frame's code and reason, if one arrived.
    close: Option<(u16, String)>,
}

/// Reads everything until the connection ends (close frame, EOF or error).
async fn drain(mut c: Client) -> Drained {
    let mut d = Drained::default();
    loop {
        match tokio::time::timeout(WAIT, c.ws.next())
            .await
            .expect("ends within the wait")
        {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["op"] == "message" {
                    d.mids.push(id_of(&v["mid"]));
                }
            }
            Some(Ok(Message::Ping(_))) => d.pings += 1,
            Some(Ok(Message::Close(f))) => {
                d.close = f.map(|f| (u16::from(f.code), f.reason.to_string()));
                return d;
            }
            Some(Ok(_)) => {}
            None | Some(Err(_)) => return d,
        }
    }
}

fn health(config: ServerConfig) -> ServerConfig {
    ServerConfig {
        limits: StoreLimits {
            offline_single: 100_000,
            offline_user_bytes: usize::MAX,
            offline_total_bytes: usize::MAX,
            ..StoreLimits::default()
        },
        ..config
    }
}

async fn wait_closed_for(server: &ackstorm::server::ServerHandle, reason: &str) {
    wait_metric(
        server,
        "ackstorm_health_closes_total",
        &format!("reason=\"{reason}\""),
        1.0,
    )
    .await;
}

#[tokio::test]
async fn a_client_that_answers_pings_stays_past_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let server = start(health(ServerConfig {
        idle_timeout: idle,
        ..config()
    }))
    .await;
    let mut c = Client::login(&server, "alice").await;
    // Reading is what makes a WebSocket client answer pings.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + idle * 4;
    while let Ok(m) = tokio::time::timeout_at(until, c.ws.next()).await {
        match m {
            Some(Ok(Message::Ping(_))) => pings += 1,
            Some(Ok(_)) => {}
            _ => panic!("closed while answering pings"),
        }
    }
    assert!(pings >= 6, "a ping every third of the idle timeout, got {pings}");
    c.assert_alive().await;
    assert_eq!(
        metric_now(&server, "ackstorm_health_closes_total", "reason=\"idle_timeout\"").await,
        0.0
    );
}

#[tokio::test]
async fn a_client_that_answers_no_ping_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let server = start(health(ServerConfig {
        idle_timeout: idle,
        ..config()
    }))
    .await;
    let mut c = Client::login(&server, "alice").await;
    let t0 = tokio::time::Instant::now();
    // Not reading: the pings stay unanswered.
    wait_closed_for(&server, "idle_timeout").await;
    let waited = t0.elapsed();
    assert!(waited >= idle && waited < idle * 10, "{waited:?}");
    wait_metric(&server, "ackstorm_logged_in", "", 0.0).await;
    // Read the raw bytes: a WebSocket client would answer the stale pings now, into a closed
    // socket, and the reset would discard the close frame before it is read.
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, c.ws.get_mut().read_to_end(&mut bytes))
        .await
        .unwrap()
        .unwrap();
    let pings = bytes.windows(2).filter(|w| w == &[0x89, 0x00]).count();
    assert!(pings >= 2, "{bytes:?}");
    let mut close = vec![0x88, 14, 0x03, 0xF0]; // FIN+close, 2+12 bytes, code 1008
    close.extend_from_slice(b"idle timeout");
    assert!(bytes.ends_with(&close), "{bytes:?}");
}

#[tokio::test]
async fn the_login_timeout_counts_from_accept_and_covers_the_upgrade() {
    let login = Duration::from_millis(400);
    let server = start(ServerConfig {
        login_timeout: login,
        ..config()
    })
    .await;
    // A socket that never sends its upgrade request is dropped at the login timeout.
    let t0 = tokio::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(WAIT, silent.read(&mut buf))
        .await
        .unwrap()
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without a response");
    assert!(t0.elapsed() >= login && t0.elapsed() < login * 10, "{:?}", t0.elapsed());
    wait_closed_for(&server, "login_timeout").await;
    // Slow to upgrade, then quick to log in: the deadline still counts from accept.
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tokio::time::sleep(login * 3 / 4).await;
    let (mut ws, _) = tokio_tungstenite::client_async(server.ws_url(), tcp).await.unwrap();
    tokio::time::sleep(login / 2).await;
    let frame = json!({"op":"login","req":"1","user":"alice","token":token_for("alice")});
    let _ = ws.send(Message::Text(frame.to_string().into())).await;
    match tokio::time::timeout(WAIT, ws.next()).await.unwrap() {
        Some(Ok(Message::Close(f))) => assert_eq!(f.map(|f| u16::from(f.code)), Some(1008)),
        None | Some(Err(_)) => {}
        Some(Ok(other)) => panic!("expected the close, got {other:?}"),
    }
    wait_metric(&server, "ackstorm_health_closes_total", "reason=\"login_timeout\"", 2.0).await;
}

#[tokio::test]
async fn a_queue_over_its_bound_closes_1008_slow_consumer_and_loses_nothing() {
    let server = start(health(ServerConfig {
        queue_bound: QueueBound {
            frames: 100,
            bytes: usize::MAX,
        },
        // Long: the bound, not the write timeout, decides; and the close has time to drain.
        write_timeout: Duration::from_secs(5),
        ..config()
    }))
    .await;
    let mut alice = Client::login(&server, "alice").await;
    let bob = Client::login(&server, "bob").await;
    let sent = flood(&mut alice, "bob", 2000).await;
    wait_closed_for(&server, "queue_bound").await;
    // Bob reads only now: what was written, then the close.
    let d = drain(bob).await;
    assert_eq!(d.close, Some((1008, "slow consumer".to_string())));
    wait_metric(&server, "ackstorm_logged_in", "", 1.0).await;
    let stored = metric_now(&server, "ackstorm_unwritten_pushes_total", "kind=\"message\"").await as usize;
    assert!(stored >= 100, "{stored}");
    let mut bob = Client::login(&server, "bob").await;
    let replay = message_mids(&mut bob, sent.len() - d.mids.len()).await;
    bob.no_push().await;
    // A clean close: every message was either written before it or replayed, in order.
    let all: Vec<u64> = d.mids.iter().chain(&replay).copied().collect();
    assert_eq!(all, sent);
}

#[tokio::test]
async fn a_write_without_progress_closes_the_connection_as_a_slow_consumer() {
    let server = start(health(ServerConfig {
        queue_bound: QueueBound::NONE,
        write_timeout: Duration::from_millis(300),
        ..config()
    }))
    .await;
    let mut alice = Client::login(&server, "alice").await;
    let bob = Client::login(&server, "bob").await;
    let sent = flood(&mut alice, "bob", 2000).await;
    wait_closed_for(&server, "write_timeout").await;
    wait_metric(&server, "ackstorm_logged_in", "", 1.0).await;
    let d = drain(bob).await;
    let mut bob = Client::login(&server, "bob").await;
    // Written before the close: a prefix of what was sent. Replayed: the rest but what was in
    // the WebSocket's write buffer when the server gave up (written, then lost with the
    // socket): at most a few messages of 5 KiB.
    assert_eq!(d.mids[..], sent[..d.mids.len()]);
    let first = d.mids.len();
    let mut replay = Vec::new();
    while replay.len() + first < sent.len() {
        let m = id_of(&bob.push_op("message").await["mid"]);
        replay.push(m);
        if m == *sent.last().unwrap() {
            break;
        }
    }
    bob.no_push().await;
    let start = sent.iter().position(|m| *m == replay[0]).unwrap();
    assert_eq!(replay[..], sent[start..]);
    assert!(start >= first && start - first <= 8, "lost {}", start - first);
}
