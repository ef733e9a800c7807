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
