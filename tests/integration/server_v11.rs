//! PROTOCOL.md v1.1: idempotent sends (a repeat of an accepted `send` gets the original
//! `received` with `duplicate:true`, and nothing else happens) and pushes that a closing
//! connection did not write (stored and replayed at the device's next login).

use ackstorm::server::ServerConfig;
use ackstorm::server::store::StoreLimits;
use serde_json::{Value, json};
use tokio_tungstenite::MaybeTlsStream;

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

/// Device inboxes large enough to hold the whole flood (the default cap is 500 per inbox).
fn roomy() -> ServerConfig {
    ServerConfig {
        limits: StoreLimits {
            offline_single: 100_000,
            ..StoreLimits::default()
        },
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
