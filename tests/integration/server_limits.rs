//! PROTOCOL.md, "Limits": the per-connection rate limit and the frame size limit.

use std::collections::HashMap;
use std::time::Duration;

use ackstorm::server::ServerConfig;
use ackstorm::server::ratelimit::RateLimit;
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

/// A limit that does not refill within a test (a token every 1,000 s).
fn no_refill(burst: u32) -> Option<RateLimit> {
    Some(RateLimit {
        per_second: 0.001,
        burst,
    })
}

#[tokio::test]
async fn every_frame_is_answered_once_and_the_excess_is_rate_limited_unprocessed() {
    const BURST: usize = 10;
    const SENT: usize = 30;
    let server = start(ServerConfig {
        rate_limit: no_refill(BURST as u32),
        ..config()
    })
    .await;
    // The login is not counted: the whole burst is left for the frames after it.
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let mut reqs = Vec::new();
    for i in 0..SENT {
        reqs.push(alice.send_frame(single_frame("bob", &i.to_string())).await);
    }
    // Read until every req is answered, counting answers per req.
    let mut answers: HashMap<String, Vec<Value>> = HashMap::new();
    let mut n = 0;
    while n < SENT {
        let v = alice.recv().await;
        let req = v["req"]
            .as_str()
            .unwrap_or_else(|| panic!("unexpected push {v}"))
            .to_string();
        answers.entry(req).or_default().push(v);
        n += 1;
    }
    alice.no_push().await;
    let mut accepted = Vec::new();
    for (i, req) in reqs.iter().enumerate() {
        let a = answers.get(req).unwrap_or_else(|| panic!("{req} unanswered"));
        assert_eq!(a.len(), 1, "{req} answered {} times", a.len());
        if i < BURST {
            accepted.push(received_mid(&a[0]));
        } else {
            assert_error(&a[0], "rate_limited");
        }
    }
    // Only the accepted ones reached bob: after them comes a marker from a fresh connection.
    let got: Vec<Value> = bob.pushes(BURST).await.iter().map(|m| m["mid"].clone()).collect();
    assert_eq!(got, accepted);
    let mut phone = Client::login_as(&server, "alice", Some("phone"), false).await;
    let marker = received_mid(&phone.send_single("bob", "marker").await);
    assert_eq!(
        bob.push_op("message").await["mid"],
        marker,
        "a refused send was delivered"
    );
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "ackstorm_rate_limited_total", ""), (SENT - BURST) as f64);
    assert_eq!(
        metric(&m, "ackstorm_errors_total", "code=\"rate_limited\""),
        (SENT - BURST) as f64
    );
    assert_eq!(
        metric(&m, "ackstorm_messages_total", "chat_type=\"singleChat\""),
        (BURST + 1) as f64
    );
}

#[tokio::test]
async fn malformed_frames_count_against_the_rate_limit_too() {
    // "login is not counted": every other frame is, parseable or not.
    let server = start(ServerConfig {
        rate_limit: no_refill(3),
        ..config()
    })
    .await;
    let mut c = Client::login(&server, "alice").await;
    for _ in 0..2 {
        c.send_text("garbage").await;
        assert_error(&c.push().await, "bad_request");
    }
    c.ws.send(Message::Binary(b"binary".to_vec().into())).await.unwrap();
    assert_error(&c.push().await, "bad_request");
    // The bucket is empty now: a valid frame and a malformed one are both refused.
    assert_error(&c.request(json!({"op":"ping"})).await, "rate_limited");
    c.send_text("garbage").await;
    let e = c.push().await;
    assert_error(&e, "rate_limited");
    assert!(e.get("req").is_none(), "{e}");
    assert_error(&c.request(json!({"op":"fly"})).await, "rate_limited");
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "ackstorm_rate_limited_total", ""), 3.0);
}

#[tokio::test]
async fn the_rate_limit_is_per_connection() {
    let server = start(ServerConfig {
        rate_limit: no_refill(3),
        ..config()
    })
    .await;
    let mut web = Client::login(&server, "alice").await;
    let mut phone = Client::login_as(&server, "alice", Some("phone"), false).await;
    for _ in 0..3 {
        web.assert_alive().await;
    }
    assert_error(&web.request(json!({"op":"ping"})).await, "rate_limited");
    for _ in 0..3 {
        phone.assert_alive().await;
    }
    assert_error(&phone.request(json!({"op":"ping"})).await, "rate_limited");
}

#[tokio::test]
async fn the_bucket_refills_at_the_configured_rate() {
    let limit = RateLimit {
        per_second: 20.0,
        burst: 2,
    };
    let server = start(ServerConfig {
        rate_limit: Some(limit),
        ..config()
    })
    .await;
    let mut c = Client::login(&server, "alice").await;
    let replies = c.request_all(vec![json!({"op":"ping"}); 4]).await;
    let limited = replies.iter().filter(|r| r["op"] == "error").count();
    assert!(limited >= 1, "4 pings against a burst of 2: {replies:?}");
    tokio::time::sleep(Duration::from_millis(120)).await; // two tokens at 20/s
    c.assert_alive().await;
    c.assert_alive().await;
}

#[tokio::test]
async fn an_oversize_frame_is_too_large_without_req_then_close_1009() {
    let server = start(ServerConfig {
        max_frame_bytes: 2048,
        ..config()
    })
    .await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    // Just under the limit: served.
    let send = |req: &str, len: usize| {
        json!({"op":"send","req":req,"id":"x","chatType":"singleChat","type":"txt","to":"bob","msg":"a".repeat(len)})
            .to_string()
    };
    let text = send("small", 1900);
    assert!(text.len() < 2048);
    alice.send_text(text).await;
    received_mid(&alice.reply_to("small").await);
    bob.push_op("message").await;
    // Over it: error without req, then close 1009; nothing delivered.
    alice.send_text(send("big", 2100)).await;
    let e = alice.push().await;
    assert_error(&e, "too_large");
    assert!(e.get("req").is_none(), "{e}");
    assert_eq!(alice.close_code().await, Some(1009));
    bob.no_push().await;
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "ackstorm_errors_total", "code=\"too_large\""), 1.0);
}

#[tokio::test]
async fn an_oversize_first_frame_is_too_large_then_close_1009() {
    let server = start(ServerConfig {
        max_frame_bytes: 1024,
        ..config()
    })
    .await;
    let mut c = Client::connect(&server).await;
    let login = json!({"op":"login","req":"l","user":"alice","token":token_for("alice"),"device":"x".repeat(2000)});
    c.send_text(login.to_string()).await;
    let e = c.recv().await;
    assert_error(&e, "too_large");
    assert!(e.get("req").is_none());
    assert_eq!(c.close_code().await, Some(1009));
}

#[tokio::test]
async fn a_binary_frame_is_counted_as_a_frame_and_refused_with_bad_request() {
    // Frames are JSON text; a binary frame is a malformed frame, not a reason to close.
    let server = start(config()).await;
    let mut c = Client::login(&server, "alice").await;
    c.ws.send(Message::Binary(br#"{"op":"ping","req":"b"}"#.to_vec().into()))
        .await
        .unwrap();
    let e = c.push().await;
    assert_error(&e, "bad_request");
    c.assert_alive().await;
}

#[tokio::test]
async fn the_defaults_are_the_protocols() {
    let d = ServerConfig::default();
    assert!(!d.group_read_ack, "group read receipts are off by default");
    assert!(!d.group_ack_anyone);
    assert_eq!((d.group_ack_max_members, d.group_max_members), (200, 3000));
    assert_eq!(d.ack_validity, Duration::from_secs(3 * 24 * 3600));
    assert_eq!((d.limits.offline_single, d.limits.offline_group), (500, 200));
    assert_eq!(
        d.rate_limit,
        Some(RateLimit {
            per_second: 100.0,
            burst: 200
        })
    );
    assert_eq!((d.max_frame_bytes, d.max_msg_bytes), (64 * 1024, 5 * 1024));
    // Ours (docs/protocol.md, "Limits"):
    assert_eq!((d.max_devices, d.groups_per_user), (4, 100));
    assert_eq!(
        (d.max_connections, d.max_handshakes, d.max_handshake_bytes),
        (100_000, 4096, 16 * 1024)
    );
    let l = d.limits;
    assert_eq!((l.offline_user_bytes, l.offline_total_bytes), (1 << 20, 128 << 20));
    assert_eq!(
        (l.message_bytes, l.conversations, l.sent_ids_total),
        (256 << 20, 1000, 1_000_000)
    );
    // And over the wire: a server with nothing but a secret.
    let server = start(ServerConfig {
        secret: SECRET.as_bytes().to_vec(),
        ..ServerConfig::default()
    })
    .await;
    let mut alice = Client::login(&server, "alice").await;
    assert_group_result(&alice.create_group("g", &[], &[]).await, "g");
    assert_error(&alice.send_group("g", "asks", true).await, "group_ack_not_open");
    let mut reqs = Vec::new();
    for _ in 0..250 {
        reqs.push(alice.send_frame(json!({"op":"ping"})).await);
    }
    let mut served = 0;
    for r in &reqs {
        if alice.reply_to(r).await["op"] == "pong" {
            served += 1;
        }
    }
    // The burst of 200 (minus the 2 frames above), plus what refilled at 100/s meanwhile.
    assert!((198..=240).contains(&served), "{served} of 250 served");
    let mut big = Client::login_as(&server, "alice", Some("big"), false).await;
    big.send_text(json!({"op":"ping","req":"p","pad":"x".repeat(64 * 1024)}).to_string())
        .await;
    assert_error(&big.push().await, "too_large");
    assert_eq!(big.close_code().await, Some(1009));
}

// ---- connection admission ----------------------------------------------------------------

/// A TCP connection that sent the start of an HTTP request head and stops there.
async fn half_open(server: &ackstorm::server::ServerHandle) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n")
        .await
        .unwrap();
    s
}

/// True when the server closed `s` (EOF or reset) within `within`.
async fn closed_within(s: &mut tokio::net::TcpStream, within: Duration) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A WebSocket that completed the upgrade and sends nothing.
async fn upgraded(server: &ackstorm::server::ServerHandle) -> Client {
    let c = Client::connect(server).await;
    // The upgrade is complete on the client's side; let the server's side catch up.
    tokio::time::sleep(Duration::from_millis(20)).await;
    c
}

/// A long login timeout: only admission can make room in these tests.
fn admission(max_connections: usize, max_handshakes: usize) -> ServerConfig {
    ServerConfig {
        max_connections,
        max_handshakes,
        login_timeout: Duration::from_secs(60),
        ..config()
    }
}

#[tokio::test]
async fn half_sent_requests_in_every_slot_do_not_keep_a_login_out() {
    // The issue's attack: four half-sent requests on a server with four connection slots.
    let server = start(admission(4, 100)).await;
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(half_open(&server).await);
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t0 = std::time::Instant::now();
    let mut alice = tokio::time::timeout(WAIT, Client::login(&server, "alice"))
        .await
        .expect("the login got in");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    alice.assert_alive().await;
    // The oldest half-sent request made room; the others still wait for their deadline.
    assert!(closed_within(&mut idle[0], WAIT).await, "the oldest was closed");
    for s in &mut idle[1..] {
        assert!(!closed_within(s, QUIET).await);
    }
    let m = scrape(&server).await;
    assert_eq!(
        metric(&m, "ackstorm_health_closes_total", "reason=\"handshake_evicted\""),
        2.0,
        "one for the login, one for the scrape"
    );
    assert_eq!(
        metric(&m, "ackstorm_handshakes", ""),
        3.0,
        "the two newest half-sent requests and the scrape"
    );
}

#[tokio::test]
async fn websockets_that_never_log_in_make_room_with_close_1013() {
    let server = start(admission(2, 100)).await;
    let mut first = upgraded(&server).await;
    let mut second = upgraded(&server).await;
    let mut alice = Client::login(&server, "alice").await;
    assert_eq!(first.close_code().await, Some(1013), "try again later");
    alice.assert_alive().await;
    // The second is still pending: it may still log in, and then it stays.
    let frame = json!({"op":"login","req":"l","user":"bob","token":token_for("bob")});
    assert_eq!(second.request(frame).await["op"], "loginOk");
    second.assert_alive().await;
}

#[tokio::test]
async fn logged_in_connections_are_never_closed_to_make_room() {
    let server = start(admission(2, 100)).await;
    let mut alice = Client::login(&server, "alice").await;
    let bob = Client::login(&server, "bob").await;
    // Every slot is held by a logged-in connection: a newcomer waits to be accepted.
    let url = server.ws_url();
    let carol = tokio::spawn(async move { Client::login_url(&url, "carol", None, false).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!carol.is_finished(), "no slot, no login");
    alice.assert_alive().await;
    // (Not `logout`: its scrape would wait behind carol.)
    drop(bob);
    let mut carol = tokio::time::timeout(WAIT, carol).await.unwrap().unwrap();
    carol.assert_alive().await;
    alice.assert_alive().await;
}

#[tokio::test]
async fn too_many_pending_connections_evict_the_oldest_even_with_slots_free() {
    let server = start(admission(1000, 3)).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(half_open(&server).await);
    }
    let mut fourth = half_open(&server).await;
    assert!(closed_within(&mut idle[0], WAIT).await);
    assert!(!closed_within(&mut idle[1], QUIET).await);
    assert!(!closed_within(&mut fourth, QUIET).await);
    drop(idle);
}

#[tokio::test]
async fn the_login_timeout_from_accept_covers_heads_bodies_and_keep_alive() {
    use tokio::io::AsyncWriteExt;
    let login = Duration::from_millis(500);
    let server = start(ServerConfig {
        login_timeout: login,
        ..config()
    })
    .await;
    // A head sent a byte at a time, forever.
    let mut slow = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let t0 = std::time::Instant::now();
    let head = b"GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Pad: ";
    let mut closed = false;
    for i in 0.. {
        if slow.write_all(&[head.get(i).copied().unwrap_or(b'a')]).await.is_err() {
            closed = true;
            break;
        }
        if closed_within(&mut slow, Duration::from_millis(50)).await {
            closed = true;
            break;
        }
        if t0.elapsed() > WAIT {
            break;
        }
    }
    assert!(closed, "dropped");
    assert!(t0.elapsed() >= login && t0.elapsed() < login * 4, "{:?}", t0.elapsed());
    // An upgrade request whose body never comes: never upgraded, closed at the deadline.
    let mut body = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let t0 = std::time::Instant::now();
    body.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: 100\r\n\r\n",
    )
    .await
    .unwrap();
    assert!(closed_within(&mut body, WAIT).await);
    assert!(t0.elapsed() < login * 4, "{:?}", t0.elapsed());
    // A keep-alive connection that never upgrades (a scraper) is served, then closed.
    let mut scraper = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let t0 = std::time::Instant::now();
    for _ in 0..3 {
        scraper
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(login / 5).await;
    }
    assert!(closed_within(&mut scraper, WAIT).await);
    assert!(t0.elapsed() < login * 4, "{:?}", t0.elapsed());
    let m = scrape(&server).await;
    assert!(metric(&m, "ackstorm_health_closes_total", "reason=\"login_timeout\"") >= 2.0);
}

#[tokio::test]
async fn an_oversize_request_head_gets_431() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start(ServerConfig {
        max_handshake_bytes: 8 * 1024,
        ..config()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "GET /ws HTTP/1.1\r\nHost: localhost\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let _ = s.write_all(head.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await.unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    // Within the cap: served.
    assert_eq!(http_get(&server, "/healthz").await.0, 200);
}
