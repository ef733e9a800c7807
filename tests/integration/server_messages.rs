//! PROTOCOL.md, "Messages": `send`, `received`, the `message` push, ordering, and the offline
//! store with its replay at login and its caps.

use std::collections::HashSet;

use ackstorm::server::ServerConfig;
use ackstorm::server::store::StoreLimits;
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn send_is_answered_with_received_id_mid_to_time() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let before = now_ms();
    let r = alice
        .request(json!({"op":"send","id":"my-1","chatType":"singleChat","type":"txt","to":"bob","msg":"hi"}))
        .await;
    assert_keys(&r, &["op", "req", "id", "mid", "to", "time"]);
    assert_eq!(r["op"], "received");
    assert_eq!(r["id"], "my-1");
    assert_eq!(r["to"], "bob");
    assert!(id_of(&r["mid"]) > 0);
    let t = r["time"].as_u64().expect("time is a number");
    assert!(t >= before && t <= now_ms(), "{r}");
    let mut carol = Client::login(&server, "carol").await;
    assert_group_result(&carol.create_group("g", &["alice"], &[]).await, "g");
    let r = carol
        .request(json!({"op":"send","id":"my-2","chatType":"groupChat","type":"txt","to":"g","msg":"x"}))
        .await;
    assert_keys(&r, &["op", "req", "id", "mid", "to", "time"]);
    assert_eq!((r["id"].as_str(), r["to"].as_str()), (Some("my-2"), Some("g")));
}

#[tokio::test]
async fn message_push_has_exactly_the_documented_fields() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let text = "héllo \"quoted\"\n☃ {\"json\":1}";
    let r = alice.send_single("bob", text).await;
    let m = bob.push_op("message").await;
    assert_keys(&m, &["op", "mid", "from", "to", "chatType", "type", "msg", "time"]);
    assert_eq!(m["mid"], r["mid"]);
    assert_eq!((m["from"].as_str(), m["to"].as_str()), (Some("alice"), Some("bob")));
    assert_eq!(
        (m["chatType"].as_str(), m["type"].as_str()),
        (Some("singleChat"), Some("txt"))
    );
    assert_eq!(m["msg"], text, "msg arrives exactly as sent");
    assert_eq!(m["time"], r["time"], "one message, one server time");
    // A group message: `to` is the group; with receipts kept, msgConfig is there.
    assert_group_result(&alice.create_group("g", &["bob"], &[]).await, "g");
    let r = alice.send_group("g", "to all", true).await;
    let m = bob.push_op("message").await;
    assert_keys(
        &m,
        &[
            "op",
            "mid",
            "from",
            "to",
            "chatType",
            "type",
            "msg",
            "time",
            "msgConfig",
        ],
    );
    assert_eq!(m["mid"], r["mid"]);
    assert_eq!((m["from"].as_str(), m["to"].as_str()), (Some("alice"), Some("g")));
    assert_eq!(m["chatType"], "groupChat");
    assert_eq!(m["msgConfig"], json!({"allowGroupAck": true}));
}

#[tokio::test]
async fn received_reaches_the_sender_before_any_receipt_of_that_message() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login_as(&server, "bob", None, true).await;
    const N: usize = 200;
    // Bob acknowledges each message the moment it arrives, without waiting for replies.
    let acker = tokio::spawn(async move {
        for _ in 0..N {
            let m = bob.push_op("message").await;
            bob.send_frame(json!({"op":"delivery","ackId":m["mid"],"to":"alice"}))
                .await;
            bob.send_frame(json!({"op":"read","chatType":"singleChat","id":m["mid"],"to":"alice"}))
                .await;
        }
        bob
    });
    let mut reqs = HashSet::new();
    for i in 0..N {
        reqs.insert(alice.send_frame(single_frame("bob", &i.to_string())).await);
    }
    // Read alice's frames in arrival order: every receipt names a mid already `received`.
    let mut received = HashSet::new();
    let mut receipts = 0;
    while received.len() < N || receipts < 2 * N {
        let v = alice.recv().await;
        match v["op"].as_str() {
            Some("received") => {
                assert!(reqs.contains(v["req"].as_str().unwrap()), "{v}");
                received.insert(v["mid"].as_str().unwrap().to_string());
            }
            Some("delivery" | "read") => {
                assert!(
                    received.contains(v["mid"].as_str().unwrap()),
                    "receipt before received: {v}"
                );
                receipts += 1;
            }
            _ => panic!("unexpected {v}"),
        }
    }
    acker.await.unwrap();
}

#[tokio::test]
async fn sending_to_oneself_is_bad_request() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut phone = Client::login_as(&server, "alice", Some("phone"), false).await;
    assert_error(&alice.request(single_frame("alice", "me")).await, "bad_request");
    phone.no_push().await;
    alice.assert_alive().await;
}

#[tokio::test]
async fn msg_over_5_kib_is_bad_request_and_not_sent() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let at_limit = "a".repeat(5 * 1024);
    let over = "a".repeat(5 * 1024 + 1);
    let over_multibyte = "é".repeat(2600); // 2,600 characters, 5,200 bytes
    assert_error(&alice.request(single_frame("bob", &over)).await, "bad_request");
    assert_error(
        &alice.request(single_frame("bob", &over_multibyte)).await,
        "bad_request",
    );
    let ok = received_mid(&alice.send_single("bob", &at_limit).await);
    let m = bob.push_op("message").await;
    assert_eq!(m["mid"], ok, "the refused messages never reached bob");
    assert_eq!(m["msg"].as_str().unwrap().len(), 5 * 1024);
}

#[tokio::test]
async fn server_ids_grow_monotonically() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    assert_group_result(&alice.create_group("g", &["bob"], &[]).await, "g");
    let mut ids = Vec::new();
    for i in 0..5 {
        let m = received_mid(&alice.send_single("bob", &format!("a{i}")).await);
        ids.push(id_of(&m));
        ids.push(id_of(&received_mid(&bob.delivery(&m, "alice").await)));
        ids.push(id_of(&received_mid(&bob.send_single("alice", &format!("b{i}")).await)));
        let g = received_mid(&alice.send_group("g", "x", true).await);
        ids.push(id_of(&g));
        ids.push(id_of(&received_mid(&bob.read_group(&g, "g").await)));
        ids.push(id_of(&received_mid(&bob.channel("singleChat", "alice").await)));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids in the order made: {ids:?}");
}

/// The mids of the next `n` pushes, asserting they are messages with increasing mids.
async fn message_mids(c: &mut Client, n: usize) -> Vec<u64> {
    let pushes = c.pushes(n).await;
    assert!(
        pushes.iter().all(|m| m["op"] == "message"),
        "{}: not only messages",
        c.user
    );
    let mids: Vec<u64> = pushes.iter().map(|m| id_of(&m["mid"])).collect();
    assert!(mids.windows(2).all(|w| w[0] < w[1]), "{}: mids out of order", c.user);
    mids
}

#[tokio::test]
async fn a_thousand_messages_from_one_sender_arrive_in_mid_order_on_every_device() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut web = Client::login(&server, "bob").await;
    let mut phone = Client::login_as(&server, "bob", Some("phone"), false).await;
    let replies = alice
        .request_all((0..1000).map(|i| single_frame("bob", &i.to_string())).collect())
        .await;
    let sent: Vec<u64> = replies.iter().map(|r| id_of(&received_mid(r))).collect();
    assert!(sent.windows(2).all(|w| w[0] < w[1]), "mids grow in send order");
    for dev in [&mut web, &mut phone] {
        let got = dev.pushes(1000).await;
        let mids: Vec<u64> = got.iter().map(|m| id_of(&m["mid"])).collect();
        assert_eq!(mids, sent);
        let texts: Vec<String> = got.iter().map(|m| m["msg"].as_str().unwrap().to_string()).collect();
        assert_eq!(texts, (0..1000).map(|i| i.to_string()).collect::<Vec<_>>());
    }
}

#[tokio::test]
async fn group_messages_from_several_senders_arrive_in_mid_order_on_every_device() {
    let server = start(config()).await;
    const SENDERS: usize = 4;
    const EACH: usize = 250;
    let names: Vec<String> = (0..SENDERS).map(|i| format!("s{i}")).collect();
    let mut owner = Client::login(&server, "reader").await;
    let mut phone = Client::login_as(&server, "reader", Some("phone"), false).await;
    let members: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_group_result(&owner.create_group("g", &members, &[]).await, "g");
    // Everyone online first: messages to an offline member would wait (and be capped).
    let senders = login_all(&server, &members).await;
    let mut tasks = Vec::new();
    for (name, mut c) in names.clone().into_iter().zip(senders) {
        tasks.push(tokio::spawn(async move {
            let frames = (0..EACH)
                .map(|i| group_frame("g", &format!("{name}-{i}"), false))
                .collect();
            let replies = c.request_all(frames).await;
            let mine: Vec<u64> = replies.iter().map(|r| id_of(&received_mid(r))).collect();
            // Meanwhile the other senders' messages came in: each sees theirs in mid order.
            let others = message_mids(&mut c, (SENDERS - 1) * EACH).await;
            (mine, others)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        let (mine, others) = t.await.unwrap();
        assert!(
            mine.iter().all(|m| !others.contains(m)),
            "a sender got its own message back"
        );
        all.extend(mine);
    }
    all.sort_unstable();
    for dev in [&mut owner, &mut phone] {
        assert_eq!(
            message_mids(dev, SENDERS * EACH).await,
            all,
            "every message once, in mid order"
        );
    }
}

#[tokio::test]
async fn a_group_message_goes_to_the_other_members_not_back_to_the_sender() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut alice_phone = Client::login_as(&server, "alice", Some("phone"), false).await;
    let mut bob = Client::login(&server, "bob").await;
    let mut carol = Client::login(&server, "carol").await;
    let mut dave = Client::login(&server, "dave").await; // not a member
    assert_group_result(&alice.create_group("g", &["bob", "carol"], &[]).await, "g");
    let mid = received_mid(&alice.send_group("g", "hi", false).await);
    assert_eq!(bob.push_op("message").await["mid"], mid);
    assert_eq!(carol.push_op("message").await["mid"], mid);
    alice.no_push().await;
    alice_phone.no_push().await;
    dave.no_push().await;
}

#[tokio::test]
async fn allow_group_ack_on_a_one_to_one_message_is_ignored() {
    let server = start(ServerConfig {
        group_read_ack: false,
        ..config()
    })
    .await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let mut f = single_frame("bob", "x");
    f["msgConfig"] = json!({"allowGroupAck": true});
    let r = alice.request(f).await;
    assert_keys(&r, &["op", "req", "id", "mid", "to", "time"]);
    let m = bob.push_op("message").await;
    assert_eq!(m["mid"], r["mid"]);
    assert!(m.get("msgConfig").is_none(), "{m}");
}

/// Sends `n` 1:1 messages from `from` to `to` and returns their mids.
async fn send_n(from: &mut Client, to: &str, n: usize, tag: &str) -> Vec<Value> {
    let replies = from
        .request_all((0..n).map(|i| single_frame(to, &format!("{tag}{i}"))).collect())
        .await;
    replies.iter().map(received_mid).collect()
}

#[tokio::test]
async fn offline_messages_are_replayed_at_login_in_mid_order() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut carol = Client::login(&server, "carol").await;
    assert_group_result(&carol.create_group("g", &["bob", "alice"], &[]).await, "g");
    // bob has never logged in: offline. 1:1 and group messages interleave.
    let mut expected = Vec::new();
    for i in 0..4 {
        expected.push(received_mid(&alice.send_single("bob", &format!("a{i}")).await));
        expected.push(received_mid(&carol.send_group("g", &format!("g{i}"), false).await));
        alice.push_op("message").await; // alice is online and in g
    }
    expected.extend(send_n(&mut alice, "bob", 3, "late").await);
    let mut bob = Client::login(&server, "bob").await;
    let got: Vec<Value> = bob
        .pushes(expected.len())
        .await
        .iter()
        .map(|m| m["mid"].clone())
        .collect();
    assert_eq!(got, expected);
    bob.no_push().await;
    // Replayed once: a second device logging in later gets nothing.
    let mut phone = Client::login_as(&server, "bob", Some("phone"), false).await;
    phone.no_push().await;
}

#[tokio::test]
async fn replay_order_is_messages_then_one_to_one_receipts_then_one_statistic() {
    let server = start(config()).await;
    let mut bob = Client::login(&server, "bob").await;
    let mut alice = Client::login(&server, "alice").await;
    let mut carol = Client::login(&server, "carol").await;
    assert_group_result(&bob.create_group("g", &["alice", "carol"], &[]).await, "g");
    let b1 = received_mid(&bob.send_single("alice", "b1").await);
    let b2 = received_mid(&bob.send_single("alice", "b2").await);
    let gm = received_mid(&bob.send_group("g", "asks", true).await);
    alice.pushes(3).await;
    carol.push_op("message").await;
    bob.logout(&server).await;
    // While bob is away: receipts for his messages and new messages for him, interleaved.
    let d1 = received_mid(&alice.delivery(&b1, "bob").await);
    let m1 = received_mid(&alice.send_single("bob", "m1").await);
    received_mid(&carol.read_group(&gm, "g").await);
    let r1 = received_mid(&alice.read_single(&b1, "bob").await);
    let g1 = received_mid(&carol.send_group("g", "g1", false).await);
    received_mid(&alice.read_group(&gm, "g").await);
    let c1 = received_mid(&alice.channel("singleChat", "bob").await);
    let d2 = received_mid(&alice.delivery(&b2, "bob").await);
    let m2 = received_mid(&alice.send_single("bob", "m2").await);
    let mut bob = Client::login(&server, "bob").await;
    let got = bob.pushes(8).await;
    let ops: Vec<&str> = got.iter().map(|v| v["op"].as_str().unwrap()).collect();
    assert_eq!(
        ops,
        [
            "message",
            "message",
            "message",
            "delivery",
            "read",
            "channel",
            "delivery",
            "statistic"
        ]
    );
    let mids: Vec<&Value> = got[..3].iter().map(|m| &m["mid"]).collect();
    assert_eq!(mids, [&m1, &g1, &m2], "messages first, oldest first");
    assert_eq!(
        got[3],
        json!({"op":"delivery","id":d1,"mid":b1,"from":"alice","to":"bob","onlineState":0})
    );
    assert_eq!(
        got[4],
        json!({"op":"read","id":r1,"mid":b1,"chatType":"singleChat","from":"alice","to":"bob","onlineState":0})
    );
    assert_keys(&got[5], &["op", "id", "chatType", "from", "to", "time", "onlineState"]);
    assert_eq!(
        (&got[5]["id"], &got[5]["from"], &got[5]["to"]),
        (&c1, &json!("alice"), &json!("bob"))
    );
    assert_eq!(
        (&got[5]["chatType"], &got[5]["onlineState"]),
        (&json!("singleChat"), &json!(0))
    );
    assert_eq!(got[6]["id"], d2);
    assert_eq!(got[6]["mid"], b2);
    assert_eq!(got[7]["operation"], 0);
    let location: Value = serde_json::from_str(got[7]["location"].as_str().expect("location is a string")).unwrap();
    assert_eq!(location, json!({"group_ack":[{"mid":gm,"groupId":"g","count":2}]}));
    bob.no_push().await;
}

#[tokio::test]
async fn offline_caps_keep_the_newest_and_count_replacements() {
    let limits = StoreLimits {
        offline_single: 3,
        offline_group: 2,
        ..StoreLimits::default()
    };
    let server = start(ServerConfig { limits, ..config() }).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut carol = Client::login(&server, "carol").await;
    assert_group_result(&carol.create_group("g", &["bob"], &[]).await, "g");
    let mut single = Vec::new();
    let mut group = Vec::new();
    for i in 0..5 {
        single.push(received_mid(&alice.send_single("bob", &format!("a{i}")).await));
        if i < 4 {
            group.push(received_mid(&carol.send_group("g", &format!("g{i}"), false).await));
        }
    }
    let m = scrape(&server).await;
    assert_eq!(
        metric(&m, "ackstorm_offline_replaced_total", "kind=\"message\""),
        4.0,
        "2 one-to-one + 2 group"
    );
    assert_eq!(metric(&m, "ackstorm_offline_replaced_total", "kind=\"receipt\""), 0.0);
    let mut kept: Vec<Value> = single[2..].iter().chain(&group[2..]).cloned().collect();
    kept.sort_by_key(id_of);
    let mut bob = Client::login(&server, "bob").await;
    let got: Vec<Value> = bob.pushes(kept.len()).await.iter().map(|m| m["mid"].clone()).collect();
    assert_eq!(got, kept, "the newest 3 one-to-one and 2 group messages, in mid order");
    bob.no_push().await;
}
