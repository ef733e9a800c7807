//! PROTOCOL.md, "Transport", "Errors" and "Session": login, devices, kicks, the login timeout,
//! ping, the HTTP side (`/healthz`, `/metrics`, 404) and which errors close the connection.

use std::time::{Duration, Instant};

use ackstorm::server::ratelimit::RateLimit;
use ackstorm::server::{ServerConfig, ServerHandle};
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::common::*;

fn login_text(user: &str, token: &str) -> String {
    json!({"op":"login","req":"l1","user":user,"token":token}).to_string()
}

/// A login frame with a wrong token is answered `error unauthorized` (echoing `req`), then the
/// connection is closed.
async fn assert_refused(server: &ServerHandle, text: &str) {
    let (mut c, v) = Client::first_frame(server, text).await;
    assert_error(&v, "unauthorized");
    assert_eq!(v["req"], "l1", "{v}");
    assert!(c.closed().await, "connection left open after {v}");
}

#[tokio::test]
async fn login_with_a_good_token_is_login_ok() {
    let server = start(config()).await;
    let before = now_ms();
    let (mut c, v) = Client::first_frame(&server, &login_text("alice", &token_for("alice"))).await;
    assert_keys(&v, &["op", "req", "user", "device", "time"]);
    assert_eq!(v["op"], "loginOk");
    assert_eq!(v["req"], "l1");
    assert_eq!(v["user"], "alice");
    assert_eq!(v["device"], "web");
    let time = v["time"].as_u64().expect("time is a number");
    assert!(time >= before && time <= now_ms(), "time {time} is not now");
    c.assert_alive().await;
}

#[tokio::test]
async fn login_with_a_bad_token_is_unauthorized_then_closed() {
    let server = start(config()).await;
    let good = token_for("alice");
    assert_refused(&server, &login_text("alice", "0123")).await;
    assert_refused(&server, &login_text("alice", &token_for("bob"))).await;
    assert_refused(&server, &login_text("alice", &good.to_uppercase())).await;
    let other_secret = ackstorm::protocol::token::token(b"other", "alice");
    assert_refused(&server, &login_text("alice", &other_secret)).await;
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "ackstorm_errors_total", "code=\"unauthorized\""), 4.0);
    assert_eq!(metric(&m, "ackstorm_logged_in", ""), 0.0);
}

#[tokio::test]
async fn a_first_frame_other_than_login_is_unauthorized_then_closed() {
    let server = start(config()).await;
    for mut first in [json!({"op":"ping"}), single_frame("bob", "hi")] {
        first["req"] = json!("l1");
        let (mut c, v) = Client::first_frame(&server, &first.to_string()).await;
        assert_error(&v, "unauthorized");
        assert!(c.closed().await, "connection left open after {v}");
    }
    // The refused send was not processed: bob, logging in now, finds nothing waiting.
    let mut bob = Client::login(&server, "bob").await;
    bob.no_push().await;
}

#[tokio::test]
async fn an_unparseable_first_frame_is_unauthorized_without_req_then_closed() {
    let server = start(config()).await;
    for text in ["not json", "{\"op\":\"login\",\"req\":\"l1\"", "[1,2]"] {
        let (mut c, v) = Client::first_frame(&server, text).await;
        assert_error(&v, "unauthorized");
        assert!(v.get("req").is_none(), "an unparseable frame has no readable req: {v}");
        assert!(c.closed().await, "connection left open after {text:?}");
    }
}

#[tokio::test]
async fn websocket_pings_before_login_are_transport_not_a_first_frame() {
    let server = start(config()).await;
    let mut c = Client::connect(&server).await;
    c.ws.send(Message::Ping(b"keepalive".to_vec().into())).await.unwrap();
    c.send_text(login_text("alice", &token_for("alice"))).await;
    let (mut pong, mut login_ok) = (false, false);
    while !(pong && login_ok) {
        match tokio::time::timeout(WAIT, c.ws.next())
            .await
            .expect("pong and loginOk in time")
        {
            Some(Ok(Message::Pong(p))) => pong = &p[..] == b"keepalive",
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["op"], "loginOk", "{v}");
                login_ok = true;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    c.assert_alive().await;
}

#[tokio::test]
async fn the_delivery_flag_is_a_client_duty_the_server_does_not_enforce() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut duty = Client::login_as(&server, "bob", None, true).await;
    let mut no_duty = Client::login_as(&server, "carol", None, false).await;
    let m1 = received_mid(&alice.send_single("bob", "1").await);
    let m2 = received_mid(&alice.send_single("carol", "2").await);
    duty.push_op("message").await;
    no_duty.push_op("message").await;
    // bob promised receipts but sends none: the server makes none up for him.
    alice.no_push().await;
    // carol did not promise, yet hers is routed like any other.
    received_mid(&no_duty.delivery(&m2, "alice").await);
    assert_eq!(alice.push_op("delivery").await["mid"], m2);
    received_mid(&duty.delivery(&m1, "alice").await);
    assert_eq!(alice.push_op("delivery").await["mid"], m1);
}

#[tokio::test]
async fn device_defaults_to_web() {
    let server = start(config()).await;
    let mut first = Client::login(&server, "alice").await; // no device: asserts loginOk device "web"
    let mut phone = Client::login_as(&server, "alice", Some("phone"), false).await;
    // Naming "web" explicitly is the same device as the default one: it replaces it.
    let mut web = Client::login_as(&server, "alice", Some("web"), false).await;
    first.push_op("kicked").await;
    assert!(first.closed().await);
    phone.assert_alive().await;
    web.assert_alive().await;
}

#[tokio::test]
async fn one_user_on_several_devices_gets_every_push_on_each() {
    let server = start(config()).await;
    let mut web = Client::login(&server, "alice").await;
    let mut phone = Client::login_as(&server, "alice", Some("phone"), false).await;
    let mut pad = Client::login_as(&server, "alice", Some("pad"), false).await;
    let mut bob = Client::login(&server, "bob").await;
    let mid = received_mid(&bob.send_single("alice", "hello").await);
    for dev in [&mut web, &mut phone, &mut pad] {
        let m = dev.push_op("message").await;
        assert_eq!(m["mid"], mid);
    }
    // And the receipt of one device reaches every device of bob (one here) once.
    received_mid(&phone.read_single(&mid, "bob").await);
    assert_eq!(bob.push_op("read").await["mid"], mid);
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "ackstorm_logged_in", ""), 4.0);
}

#[tokio::test]
async fn same_device_login_kicks_the_old_connection_and_the_new_one_works() {
    let server = start(config()).await;
    let mut old = Client::login_as(&server, "alice", Some("phone"), false).await;
    let mut other = Client::login_as(&server, "alice", Some("web"), false).await;
    let mut new = Client::login_as(&server, "alice", Some("phone"), false).await;
    let k = old.push().await;
    assert_eq!(k, json!({"op":"kicked","reason":"login_elsewhere"}));
    assert_eq!(
        old.close_code().await,
        Some(1008),
        "a kicked connection closes with 1008"
    );
    other.no_push().await;
    let mut bob = Client::login(&server, "bob").await;
    let mid = received_mid(&bob.send_single("alice", "after").await);
    assert_eq!(new.push_op("message").await["mid"], mid);
    assert_eq!(other.push_op("message").await["mid"], mid);
    new.assert_alive().await;
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "ackstorm_kicked_total", ""), 1.0);
}

#[tokio::test]
async fn a_second_login_on_the_same_connection_is_bad_request() {
    let server = start(config()).await;
    let mut c = Client::login(&server, "alice").await;
    for user in ["alice", "bob"] {
        let r = c
            .request(json!({"op":"login","user":user,"token":token_for(user)}))
            .await;
        assert_error(&r, "bad_request");
    }
    // Still alice, still open.
    let mut bob = Client::login(&server, "bob").await;
    let mid = received_mid(&bob.send_single("alice", "x").await);
    assert_eq!(c.push_op("message").await["mid"], mid);
    c.assert_alive().await;
}

#[tokio::test]
async fn no_login_within_the_login_timeout_closes_the_connection() {
    let timeout = Duration::from_millis(100);
    let server = start(ServerConfig {
        login_timeout: timeout,
        ..config()
    })
    .await;
    let started = Instant::now();
    let mut idle = Client::connect(&server).await;
    assert!(idle.closed().await, "an idle connection must be closed");
    assert!(
        started.elapsed() >= timeout,
        "closed after {:?}, before the timeout",
        started.elapsed()
    );
    // A connection that logs in in time stays open past the timeout.
    let mut c = Client::login(&server, "alice").await;
    tokio::time::sleep(timeout + Duration::from_millis(50)).await; // the rule is about time
    c.assert_alive().await;
}

#[tokio::test]
async fn ping_is_answered_with_pong_and_server_time() {
    let server = start(config()).await;
    let mut c = Client::login(&server, "alice").await;
    let before = now_ms();
    let r = c.request(json!({"op":"ping"})).await;
    assert_keys(&r, &["op", "req", "time"]);
    assert_eq!(r["op"], "pong");
    let t = r["time"].as_u64().unwrap();
    assert!(t >= before && t <= now_ms(), "{r}");
}

#[tokio::test]
async fn healthz_answers_and_other_paths_are_404() {
    let server = start(config()).await;
    let (status, _) = http_get(&server, "/healthz").await;
    assert_eq!(status, 200);
    for path in ["/", "/nope", "/ws/extra", "/metricsx"] {
        let (status, _) = http_get(&server, path).await;
        assert_eq!(status, 404, "{path}");
    }
}

#[tokio::test]
async fn metrics_is_prometheus_text_with_help_and_type_lines() {
    let server = start(config()).await;
    let _c = Client::login(&server, "alice").await;
    let text = scrape(&server).await;
    let scraped =
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).expect("valid exposition text");
    assert!(!scraped.samples.is_empty());
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let name = line.split(['{', ' ']).next().unwrap();
        assert!(text.contains(&format!("# HELP {name} ")), "{name} has no HELP line");
        assert!(text.contains(&format!("# TYPE {name} ")), "{name} has no TYPE line");
    }
    for family in [
        "ackstorm_frames_in_total",
        "ackstorm_frames_out_total",
        "ackstorm_receipts_total",
        "ackstorm_errors_total",
    ] {
        assert!(text.contains(&format!("# TYPE {family} counter")), "{family}");
    }
}

#[tokio::test]
async fn metrics_count_frames_receipts_and_errors() {
    let server = start(config()).await;
    let mut a = Client::login(&server, "alice").await;
    let mut b = Client::login(&server, "bob").await;
    let m0 = scrape(&server).await;
    let delta = |m: &str, name: &str, labels: &str| metric(m, name, labels) - metric(&m0, name, labels);
    let mid = received_mid(&a.send_single("bob", "1").await);
    b.push_op("message").await;
    received_mid(&b.delivery(&mid, "alice").await);
    received_mid(&b.delivery(&mid, "alice").await); // a repeat: answered, not counted as a receipt
    a.push_op("delivery").await;
    received_mid(&b.read_single(&mid, "alice").await);
    a.push_op("read").await;
    received_mid(&b.channel("singleChat", "alice").await);
    a.push_op("channel").await;
    assert_error(&a.request(json!({"op":"nope"})).await, "bad_request");
    b.send_text("{oops").await;
    assert_error(&b.push_op("error").await, "bad_request");
    assert_error(&a.read_single(&json!("999999"), "bob").await, "not_found");
    let m = scrape(&server).await;
    let op_in = |op: &str| delta(&m, "ackstorm_frames_in_total", &format!("op=\"{op}\""));
    let op_out = |op: &str| delta(&m, "ackstorm_frames_out_total", &format!("op=\"{op}\""));
    assert_eq!(op_in("send"), 1.0);
    assert_eq!(op_in("delivery"), 2.0);
    assert_eq!(op_in("read"), 2.0);
    assert_eq!(op_in("channel"), 1.0);
    assert_eq!(op_in("invalid"), 2.0, "unknown op and broken JSON");
    assert_eq!(op_out("received"), 5.0);
    assert_eq!(op_out("message"), 1.0);
    assert_eq!(op_out("delivery"), 1.0);
    assert_eq!(op_out("read"), 1.0);
    assert_eq!(op_out("channel"), 1.0);
    assert_eq!(op_out("error"), 3.0);
    let kind = |k: &str| delta(&m, "ackstorm_receipts_total", &format!("kind=\"{k}\""));
    assert_eq!(
        (kind("delivery"), kind("read"), kind("channel"), kind("group_read")),
        (1.0, 1.0, 1.0, 0.0)
    );
    assert_eq!(delta(&m, "ackstorm_receipts_repeated_total", "kind=\"delivery\""), 1.0);
    assert_eq!(delta(&m, "ackstorm_errors_total", "code=\"bad_request\""), 2.0);
    assert_eq!(delta(&m, "ackstorm_errors_total", "code=\"not_found\""), 1.0);
    assert_eq!(delta(&m, "ackstorm_messages_total", "chat_type=\"singleChat\""), 1.0);
}

// ---- errors ---------------------------------------------------------------------------------

#[tokio::test]
async fn malformed_json_is_bad_request_without_req() {
    let server = start(config()).await;
    let mut c = Client::login(&server, "alice").await;
    for text in [
        "{\"op\":\"ping\",\"req\":\"x\"",
        "nonsense",
        "42",
        "[]",
        "{\"op\":\"ping\"}",
    ] {
        c.send_text(text).await;
        let e = c.push().await;
        assert_error(&e, "bad_request");
        assert!(e.get("req").is_none(), "{text:?}: {e}");
        c.assert_alive().await;
    }
}

#[tokio::test]
async fn unknown_op_missing_field_and_wrong_type_are_bad_request_echoing_req() {
    let server = start(config()).await;
    let mut c = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let frames = [
        json!({"op":"fly"}),
        json!({"req":"ignored-op-missing"}),
        json!({"op":"send","id":"1","chatType":"singleChat","type":"txt","msg":"no to"}),
        json!({"op":"send","id":"1","chatType":"singleChat","type":"txt","to":"bob"}),
        json!({"op":"send","id":"1","chatType":"fooChat","type":"txt","to":"bob","msg":"x"}),
        json!({"op":"send","id":"1","chatType":"singleChat","type":"img","to":"bob","msg":"x"}),
        json!({"op":"send","id":"1","chatType":"singleChat","type":"txt","to":"bob","msg":5}),
        json!({"op":"delivery","ackId":5,"to":"bob"}),
        json!({"op":"delivery","ackId":"-1","to":"bob"}),
        json!({"op":"read","chatType":"singleChat","id":"1"}),
        json!({"op":"createGroup","groupId":"g"}),
        json!({"op":"createGroup","groupId":"g","members":"bob"}),
        json!({"op":"getGroupMsgReadUser","groupId":"g","msgId":"1","limit":"ten"}),
    ];
    for f in frames {
        let r = c.request(f.clone()).await; // `request` asserts the reply echoes its req
        assert_error(&r, "bad_request");
        c.assert_alive().await;
    }
    bob.no_push().await;
}

#[tokio::test]
async fn ids_outside_the_alphabet_are_bad_request() {
    let server = start(config()).await;
    let mut c = Client::login(&server, "alice").await;
    let long = "x".repeat(65);
    for bad in ["bob smith", "bob/1", "é", "", long.as_str()] {
        assert_error(&c.request(single_frame(bad, "x")).await, "bad_request");
        assert_error(&c.create_group(bad, &[], &[]).await, "bad_request");
        assert_error(
            &c.request(json!({"op":"createGroup","groupId":"ok","members":["bob",bad]}))
                .await,
            "bad_request",
        );
        assert_error(&c.channel("singleChat", bad).await, "bad_request");
    }
    // The longest valid id is fine.
    let longest = "y".repeat(64);
    received_mid(&c.send_single(&longest, "x").await);
    // A bad id at login (before login) is unauthorized and closes.
    let (mut d, v) = Client::first_frame(
        &server,
        &json!({"op":"login","req":"l","user":"a b","token":"t"}).to_string(),
    )
    .await;
    assert_error(&v, "unauthorized");
    assert!(d.closed().await);
}

#[tokio::test]
async fn errors_other_than_login_and_too_large_leave_the_connection_open() {
    let limit = RateLimit {
        per_second: 50.0,
        burst: 40,
    };
    let server = start(ServerConfig {
        rate_limit: Some(limit),
        ..config()
    })
    .await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    assert_group_result(&alice.create_group("g", &["bob"], &[]).await, "g");
    assert_group_result(&alice.create_group("h", &[], &[]).await, "h");
    let plain = received_mid(&alice.send_group("g", "no receipts", false).await);
    bob.push_op("message").await;
    let cases = [
        (json!({"op":"fly"}), "bad_request"),
        (json!({"op":"joinGroup","groupId":"nope"}), "not_found"),
        (json!({"op":"leaveGroup","groupId":"h"}), "forbidden"),
        (group_frame("h", "not a member", false), "forbidden"),
        (
            json!({"op":"read","chatType":"groupChat","id":plain,"to":"g"}),
            "group_ack_msg_not_found",
        ),
    ];
    for (f, code) in cases {
        assert_error(&bob.request(f).await, code);
        bob.assert_alive().await;
    }
    // Drain the bucket: the excess is rate_limited, then after a refill the connection serves.
    let mut sent = Vec::new();
    for _ in 0..60 {
        sent.push(bob.send_frame(json!({"op":"ping"})).await);
    }
    let mut limited = 0;
    for r in &sent {
        let v = bob.reply_to(r).await;
        if v["op"] == "error" {
            assert_error(&v, "rate_limited");
            limited += 1;
        }
    }
    assert!(limited > 0, "60 frames against a burst of 40 must hit the limit");
    tokio::time::sleep(Duration::from_millis(60)).await; // the rule is about time: refill
    bob.assert_alive().await;
    // group_ack_not_open needs a server with group receipts off.
    let off = start(ServerConfig {
        group_read_ack: false,
        ..config()
    })
    .await;
    let mut carol = Client::login(&off, "carol").await;
    assert_group_result(&carol.create_group("h", &[], &[]).await, "h");
    assert_error(&carol.send_group("h", "x", true).await, "group_ack_not_open");
    carol.assert_alive().await;
}
