//! The fake checked on its own, with the raw test client: it must do exactly what it counts,
//! or the audit tests built on it prove nothing.

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
