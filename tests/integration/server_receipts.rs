//! PROTOCOL.md, "Receipts": delivery, 1:1 and group read receipts, channel acks, deduplication,
//! unread counts, group read counts (live and as one `statistic` at login), the validity window,
//! the receipts size limit and the server switches.

use std::time::Duration;

use ackstorm::server::ServerConfig;
use ackstorm::server::store::StoreLimits;
use serde_json::{Value, json};

use crate::common::*;

/// alice (web and phone) sends one 1:1 message to bob (web and phone); returns the four
/// clients and the message's mid, after both of bob's devices got it.
async fn alice_to_bob(server: &ackstorm::server::ServerHandle) -> (Client, Client, Client, Client, Value) {
    let mut alice = Client::login(server, "alice").await;
    let alice_phone = Client::login_as(server, "alice", Some("phone"), false).await;
    let mut bob = Client::login_as(server, "bob", None, true).await;
    let mut bob_phone = Client::login_as(server, "bob", Some("phone"), true).await;
    let mid = received_mid(&alice.send_single("bob", "hi").await);
    assert_eq!(bob.push_op("message").await["mid"], mid);
    assert_eq!(bob_phone.push_op("message").await["mid"], mid);
    (alice, alice_phone, bob, bob_phone, mid)
}

#[tokio::test]
async fn delivery_is_pushed_to_every_device_of_the_sender() {
    let server = start(config()).await;
    let (mut alice, mut alice_phone, mut bob, _bob_phone, mid) = alice_to_bob(&server).await;
    let r = bob.delivery(&mid, "alice").await;
    assert_keys(&r, &["op", "req", "mid"]);
    let id = received_mid(&r);
    assert!(id_of(&id) > id_of(&mid), "a receipt's id is a fresh server id");
    let expected = json!({"op":"delivery","id":id,"mid":mid,"from":"bob","to":"alice","onlineState":1});
    assert_eq!(alice.push().await, expected);
    assert_eq!(alice_phone.push().await, expected);
    bob.no_push().await;
}

#[tokio::test]
async fn one_to_one_read_is_pushed_to_every_device_of_the_sender() {
    let server = start(config()).await;
    let (mut alice, mut alice_phone, mut bob, _bob_phone, mid) = alice_to_bob(&server).await;
    let id = received_mid(&bob.read_single(&mid, "alice").await);
    let expected =
        json!({"op":"read","id":id,"mid":mid,"chatType":"singleChat","from":"bob","to":"alice","onlineState":1});
    assert_eq!(alice.push().await, expected);
    assert_eq!(alice_phone.push().await, expected);
}

#[tokio::test]
async fn repeated_receipts_get_the_first_id_and_push_nothing() {
    let server = start(config()).await;
    let (mut alice, mut alice_phone, mut bob, mut bob_phone, mid) = alice_to_bob(&server).await;
    let d = received_mid(&bob.delivery(&mid, "alice").await);
    assert_eq!(
        received_mid(&bob_phone.delivery(&mid, "alice").await),
        d,
        "other device"
    );
    assert_eq!(received_mid(&bob.delivery(&mid, "alice").await), d, "retry");
    let r = received_mid(&bob_phone.read_single(&mid, "alice").await);
    assert_ne!(r, d, "read and delivery are separate receipts");
    assert_eq!(received_mid(&bob.read_single(&mid, "alice").await), r, "other device");
    assert_eq!(received_mid(&bob_phone.read_single(&mid, "alice").await), r, "retry");
    for dev in [&mut alice, &mut alice_phone] {
        assert_eq!(dev.push_op("delivery").await["id"], d);
        assert_eq!(dev.push_op("read").await["id"], r);
        dev.no_push().await;
    }
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "ackstorm_receipts_total", "kind=\"delivery\""), 1.0);
    assert_eq!(metric(&m, "ackstorm_receipts_repeated_total", "kind=\"delivery\""), 2.0);
    assert_eq!(metric(&m, "ackstorm_receipts_repeated_total", "kind=\"read\""), 2.0);
}

#[tokio::test]
async fn a_receipt_needs_a_message_from_to_to_the_caller() {
    let server = start(config()).await;
    let (alice, _alice_phone, bob, _bob_phone, mid) = alice_to_bob(&server).await;
    let carol = Client::login(&server, "carol").await;
    let mut c = [alice, bob, carol];
    for (who, to, code) in [
        (2, "alice", "forbidden"), // carol: not the recipient
        (1, "carol", "forbidden"), // bob: carol is not the sender
        (1, "bob", "bad_request"), // bob acking himself
        (0, "bob", "bad_request"), // alice: her own message
    ] {
        assert_error(&c[who].delivery(&mid, to).await, code);
        assert_error(&c[who].read_single(&mid, to).await, code);
        c[who].assert_alive().await;
    }
    let [alice, bob, _] = &mut c;
    assert_error(&bob.delivery(&json!("987654321"), "alice").await, "not_found");
    assert_error(&bob.read_single(&json!("987654321"), "alice").await, "not_found");
    // Nothing refused was pushed: alice's next push is the real receipt.
    let d = received_mid(&bob.delivery(&mid, "alice").await);
    assert_eq!(alice.push_op("delivery").await["id"], d);
}

#[tokio::test]
async fn delivery_or_one_to_one_read_of_a_group_message_is_bad_request() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    assert_group_result(&alice.create_group("g", &["bob"], &[]).await, "g");
    let mid = received_mid(&alice.send_group("g", "x", true).await);
    bob.push_op("message").await;
    assert_error(&bob.delivery(&mid, "alice").await, "bad_request");
    assert_error(&bob.read_single(&mid, "alice").await, "bad_request");
    bob.assert_alive().await;
    alice.no_push().await;
}

#[tokio::test]
async fn one_to_one_channel_ack_goes_to_the_peer_and_the_readers_other_devices() {
    let server = start(config()).await;
    let (mut alice, mut alice_phone, mut bob, mut bob_phone, _mid) = alice_to_bob(&server).await;
    let before = now_ms();
    let id = received_mid(&bob.channel("singleChat", "alice").await);
    for dev in [&mut alice, &mut alice_phone, &mut bob_phone] {
        let c = dev.push_op("channel").await;
        assert_keys(&c, &["op", "id", "chatType", "from", "to", "time", "onlineState"]);
        assert_eq!(c["id"], id);
        assert_eq!(
            (c["chatType"].as_str(), c["from"].as_str(), c["to"].as_str()),
            (Some("singleChat"), Some("bob"), Some("alice"))
        );
        assert_eq!(c["onlineState"], 1);
        let t = c["time"].as_u64().unwrap();
        assert!(t >= before && t <= now_ms(), "{c}");
    }
    bob.no_push().await; // not the acking connection
    assert_error(&bob.channel("singleChat", "bob").await, "bad_request");
}

#[tokio::test]
async fn channel_ack_zeroes_unread_and_a_later_read_still_pushes() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let mids: Vec<Value> = alice
        .request_all((0..3).map(|i| single_frame("bob", &i.to_string())).collect())
        .await;
    let mids: Vec<Value> = mids.iter().map(received_mid).collect();
    bob.pushes(3).await;
    assert_eq!(bob.unread("alice").await, 3);
    received_mid(&bob.channel("singleChat", "alice").await);
    alice.push_op("channel").await;
    assert_eq!(bob.unread("alice").await, 0);
    // The first read receipt of a message the channel ack covered: pushed, unread unchanged.
    let r = received_mid(&bob.read_single(&mids[1], "alice").await);
    let p = alice.push_op("read").await;
    assert_eq!((&p["id"], &p["mid"]), (&r, &mids[1]));
    assert_eq!(bob.unread("alice").await, 0);
    // A message after the ack counts again, and its read takes it away.
    let m4 = received_mid(&alice.send_single("bob", "4").await);
    assert_eq!(bob.unread("alice").await, 1);
    received_mid(&bob.read_single(&mids[2], "alice").await);
    assert_eq!(
        bob.unread("alice").await,
        1,
        "an old message's read does not touch the new one"
    );
    received_mid(&bob.read_single(&m4, "alice").await);
    assert_eq!(bob.unread("alice").await, 0);
}

#[tokio::test]
async fn group_channel_ack_clears_unread_and_pushes_nothing() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let mut bob_phone = Client::login_as(&server, "bob", Some("phone"), false).await;
    let mut carol = Client::login(&server, "carol").await;
    assert_group_result(&alice.create_group("g", &["bob"], &[]).await, "g");
    for i in 0..2 {
        received_mid(&alice.send_group("g", &i.to_string(), false).await);
    }
    bob.pushes(2).await;
    bob_phone.pushes(2).await;
    assert_eq!(bob.unread("g").await, 2);
    let r = bob.channel("groupChat", "g").await;
    assert_keys(&r, &["op", "req", "mid"]);
    received_mid(&r);
    assert_eq!(bob.unread("g").await, 0);
    alice.no_push().await;
    bob_phone.no_push().await;
    bob.no_push().await;
    assert_error(&carol.channel("groupChat", "g").await, "forbidden");
    assert_error(&carol.channel("groupChat", "nope").await, "not_found");
}

#[tokio::test]
async fn get_conversations_lists_unread_counts_newest_first() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut carol = Client::login(&server, "carol").await;
    assert_group_result(&carol.create_group("g", &["alice", "bob"], &[]).await, "g");
    // bob is offline: counts are added at send time all the same.
    let a1 = received_mid(&alice.send_single("bob", "a1").await);
    let g1 = received_mid(&carol.send_group("g", "g1", false).await);
    let a2 = received_mid(&alice.send_single("bob", "a2").await);
    let c1 = received_mid(&carol.send_single("bob", "c1").await);
    let mut bob = Client::login(&server, "bob").await;
    bob.pushes(4).await;
    let convs = bob.conversations().await;
    assert_eq!(
        convs,
        vec![
            json!({"conversationId":"carol","chatType":"singleChat","unread":1,"lastMid":c1}),
            json!({"conversationId":"alice","chatType":"singleChat","unread":2,"lastMid":a2}),
            json!({"conversationId":"g","chatType":"groupChat","unread":1,"lastMid":g1}),
        ]
    );
    // Reading one message takes one away; reading it again changes nothing.
    received_mid(&bob.read_single(&a1, "alice").await);
    received_mid(&bob.read_single(&a1, "alice").await);
    assert_eq!(bob.unread("alice").await, 1);
    // The sender's own conversations are listed with unread 0.
    let convs = alice.conversations().await;
    let bob_conv = convs
        .iter()
        .find(|c| c["conversationId"] == "bob")
        .expect("alice-bob listed");
    assert_eq!((&bob_conv["unread"], &bob_conv["lastMid"]), (&json!(0), &a2));
    let group = convs
        .iter()
        .find(|c| c["conversationId"] == "g")
        .expect("g listed for alice");
    assert_eq!(group["unread"], 1, "alice did not send g1: {group}");
    let carol_convs = carol.conversations().await;
    let g = carol_convs.iter().find(|c| c["conversationId"] == "g").unwrap();
    assert_eq!((&g["unread"], &g["lastMid"]), (&json!(0), &g1));
}

/// alice owns g with `members` (all logged in, returned in order) and sends one message asking
/// for receipts; returns the clients and the mid once every member got it.
async fn group_with_receipts(
    server: &ackstorm::server::ServerHandle,
    members: &[&str],
) -> (Client, Vec<Client>, Value) {
    let mut alice = Client::login(server, "alice").await;
    let mut others = login_all(server, members).await;
    assert_group_result(&alice.create_group("g", members, &[]).await, "g");
    let r = alice.send_group("g", "please read", true).await;
    assert_eq!(r["groupAck"], true, "{r}");
    let mid = received_mid(&r);
    for c in &mut others {
        let m = c.push_op("message").await;
        assert_eq!(m["msgConfig"], json!({"allowGroupAck": true}));
    }
    (alice, others, mid)
}

#[tokio::test]
async fn group_read_counts_distinct_readers_and_echoes_ack_content() {
    let server = start(config()).await;
    let (mut alice, mut others, mid) = group_with_receipts(&server, &["bob", "carol"]).await;
    let mut alice_phone = Client::login_as(&server, "alice", Some("phone"), false).await;
    let id1 = received_mid(&others[0].read_group_with(&mid, "g", "seen 👀").await);
    let key = mid.as_str().unwrap();
    let expected = json!({"op":"read","id":id1,"mid":mid,"chatType":"groupChat","from":"bob","to":"g",
        "groupReadCount":{key:1},"ackContent":"seen 👀","onlineState":1});
    assert_eq!(alice.push().await, expected);
    assert_eq!(alice_phone.push().await, expected);
    let id2 = received_mid(&others[1].read_group(&mid, "g").await);
    let p = alice.push_op("read").await;
    assert_eq!(
        (&p["id"], &p["from"], &p["groupReadCount"]),
        (&id2, &json!("carol"), &json!({key:2}))
    );
    assert_eq!(p["ackContent"], "", "absent ackContent is echoed as \"\"");
    assert_eq!(alice_phone.push_op("read").await, p);
}

#[tokio::test]
async fn group_read_is_deduplicated_per_user() {
    let server = start(config()).await;
    let (mut alice, mut others, mid) = group_with_receipts(&server, &["bob", "carol"]).await;
    let mut bob_phone = Client::login_as(&server, "bob", Some("phone"), false).await;
    let id = received_mid(&others[0].read_group(&mid, "g").await);
    assert_eq!(alice.push_op("read").await["groupReadCount"][mid.as_str().unwrap()], 1);
    assert_eq!(
        received_mid(&bob_phone.read_group(&mid, "g").await),
        id,
        "second device of the same reader"
    );
    assert_eq!(received_mid(&others[0].read_group(&mid, "g").await), id, "retry");
    alice.no_push().await;
    received_mid(&others[1].read_group(&mid, "g").await);
    let p = alice.push_op("read").await;
    assert_eq!(
        p["groupReadCount"][mid.as_str().unwrap()],
        2,
        "repeats did not count: {p}"
    );
    let page = alice.read_users("g", &mid, None, None).await;
    assert_eq!(page["data"]["total"], 2);
}

#[tokio::test]
async fn an_offline_sender_gets_one_statistic_with_the_latest_counts() {
    let server = start(config()).await;
    let (mut alice, mut others, m1) = group_with_receipts(&server, &["bob", "carol", "dave"]).await;
    let m2 = received_mid(&alice.send_group("g", "second", true).await);
    let plain = received_mid(&alice.send_group("g", "third", false).await);
    for c in &mut others {
        c.pushes(2).await;
    }
    alice.logout(&server).await;
    let [bob, carol, dave] = &mut others[..] else {
        unreachable!()
    };
    received_mid(&bob.read_group(&m1, "g").await);
    received_mid(&carol.read_group(&m2, "g").await);
    received_mid(&carol.read_group(&m1, "g").await);
    received_mid(&dave.read_group(&m1, "g").await);
    received_mid(&dave.read_group(&m1, "g").await); // a repeat does not count
    assert_error(&dave.read_group(&plain, "g").await, "group_ack_msg_not_found");
    let mut alice = Client::login(&server, "alice").await;
    let s = alice.push_op("statistic").await;
    assert_keys(&s, &["op", "operation", "location"]);
    assert_eq!(s["operation"], 0);
    let location: Value = serde_json::from_str(s["location"].as_str().expect("location is a JSON string")).unwrap();
    assert_eq!(
        location,
        json!({"group_ack":[{"mid":m1,"groupId":"g","count":3},{"mid":m2,"groupId":"g","count":1}]})
    );
    alice.no_push().await;
}

#[tokio::test]
async fn a_group_read_past_the_validity_window_is_group_ack_msg_not_found() {
    let window = Duration::from_millis(200);
    let server = start(ServerConfig {
        ack_validity: window,
        ..config()
    })
    .await;
    let (mut alice, mut others, mid) = group_with_receipts(&server, &["bob", "carol"]).await;
    received_mid(&others[0].read_group(&mid, "g").await);
    alice.push_op("read").await;
    tokio::time::sleep(window + Duration::from_millis(50)).await; // the rule is about time
    assert_error(&others[1].read_group(&mid, "g").await, "group_ack_msg_not_found");
    others[1].assert_alive().await;
    alice.no_push().await;
}

#[tokio::test]
async fn a_group_over_the_receipts_size_limit_keeps_no_receipts() {
    let server = start(ServerConfig {
        group_ack_max_members: 2,
        ..config()
    })
    .await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let mut carol = Client::login(&server, "carol").await;
    // Two members, the owner counted: within the limit.
    assert_group_result(&alice.create_group("small", &["bob"], &[]).await, "small");
    assert_eq!(alice.send_group("small", "x", true).await["groupAck"], true);
    assert!(bob.push_op("message").await.get("msgConfig").is_some());
    // Three members: over it. Still sent, but without receipts.
    assert_group_result(&alice.create_group("big", &["bob", "carol"], &[]).await, "big");
    let r = alice.send_group("big", "y", true).await;
    assert_keys(&r, &["op", "req", "id", "mid", "to", "time", "groupAck"]);
    assert_eq!(r["groupAck"], false);
    for c in [&mut bob, &mut carol] {
        let m = c.push_op("message").await;
        assert_eq!(m["mid"], r["mid"]);
        assert!(m.get("msgConfig").is_none(), "no receipts kept, no msgConfig: {m}");
    }
    assert_error(&bob.read_group(&r["mid"], "big").await, "group_ack_msg_not_found");
    alice.no_push().await;
}

#[tokio::test]
async fn messages_that_did_not_ask_carry_no_group_ack() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    assert_group_result(&alice.create_group("g", &["bob"], &[]).await, "g");
    let mut no = group_frame("g", "explicit no", false);
    no["msgConfig"] = json!({"allowGroupAck": false});
    for f in [group_frame("g", "plain", false), no] {
        let r = alice.request(f).await;
        assert_keys(&r, &["op", "req", "id", "mid", "to", "time"]);
        let m = bob.push_op("message").await;
        assert!(m.get("msgConfig").is_none(), "{m}");
        assert_error(&bob.read_group(&r["mid"], "g").await, "group_ack_msg_not_found");
    }
}

#[tokio::test]
async fn with_group_receipts_switched_off_asking_and_reading_are_group_ack_not_open() {
    let server = start(ServerConfig {
        group_read_ack: false,
        ..config()
    })
    .await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    assert_group_result(&alice.create_group("g", &["bob"], &[]).await, "g");
    assert_error(&alice.send_group("g", "asks", true).await, "group_ack_not_open");
    let plain = received_mid(&alice.send_group("g", "plain", false).await);
    assert_eq!(
        bob.push_op("message").await["mid"],
        plain,
        "the refused send was not delivered"
    );
    assert_error(&bob.read_group(&plain, "g").await, "group_ack_not_open");
    assert_error(&bob.read_group(&plain, "nope").await, "group_ack_not_open");
    assert_error(&alice.read_users("g", &plain, None, None).await, "group_ack_not_open");
    alice.no_push().await;
}

#[tokio::test]
async fn only_owner_and_admins_may_ask_for_group_receipts_unless_anyone_may() {
    for anyone in [false, true] {
        let server = start(ServerConfig {
            group_ack_anyone: anyone,
            ..config()
        })
        .await;
        let mut clients = login_all(&server, &["owner", "admin", "member"]).await;
        let r = clients[0].create_group("g", &["member"], &["admin"]).await;
        assert_group_result(&r, "g");
        for (i, name) in ["owner", "admin"].iter().enumerate() {
            assert_eq!(clients[i].send_group("g", name, true).await["groupAck"], true);
        }
        let r = clients[2].send_group("g", "member", true).await;
        if anyone {
            assert_eq!(r["groupAck"], true, "{r}");
        } else {
            assert_error(&r, "forbidden");
        }
        let pushed = clients[0].pushes(if anyone { 2 } else { 1 }).await;
        assert_eq!(pushed.last().unwrap()["msg"], if anyone { "member" } else { "admin" });
        clients[0].no_push().await;
    }
}

#[tokio::test]
async fn group_read_checks_run_in_the_documented_order() {
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let bob = Client::login(&server, "bob").await;
    let eve = Client::login(&server, "eve").await; // in h, not in g
    assert_group_result(&alice.create_group("g", &["bob"], &[]).await, "g");
    assert_group_result(&alice.create_group("h", &["bob", "eve"], &[]).await, "h");
    let plain = received_mid(&alice.send_group("g", "plain", false).await);
    let asked = received_mid(&alice.send_group("g", "asked", true).await);
    let in_h = received_mid(&alice.send_group("h", "h", true).await);
    let single = received_mid(&alice.send_single("bob", "1:1").await);
    let unknown = json!("99999999");
    let cases = [
        (2, &asked, "nope", "not_found"), // group missing
        (2, &unknown, "g", "not_found"),  // message missing, even for a non-member
        (1, &in_h, "g", "not_found"),     // message of another group
        (1, &single, "g", "not_found"),   // a 1:1 message
        (2, &plain, "g", "forbidden"),    // not a member, before "no receipts"
        (2, &asked, "g", "forbidden"),    // not a member
        (0, &plain, "g", "bad_request"),  // own message, before "no receipts"
        (0, &asked, "g", "bad_request"),  // own message
        (1, &plain, "g", "group_ack_msg_not_found"),
    ];
    let mut c = [alice, bob, eve];
    for (who, mid, group, code) in cases {
        let r = c[who].read_group(mid, group).await;
        assert_error(&r, code);
    }
    let [alice, bob, _] = &mut c;
    received_mid(&bob.read_group(&asked, "g").await);
    assert_eq!(
        alice.push_op("read").await["mid"],
        asked,
        "only the valid read was pushed"
    );
}

#[tokio::test]
async fn offline_one_to_one_receipts_are_capped_keeping_the_newest() {
    let limits = StoreLimits {
        offline_receipts: 2,
        ..StoreLimits::default()
    };
    let server = start(ServerConfig { limits, ..config() }).await;
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let mid = received_mid(&alice.send_single("bob", "x").await);
    bob.push_op("message").await;
    alice.logout(&server).await;
    received_mid(&bob.delivery(&mid, "alice").await);
    let r = received_mid(&bob.read_single(&mid, "alice").await);
    let c = received_mid(&bob.channel("singleChat", "alice").await);
    let m = scrape(&server).await;
    assert_eq!(metric(&m, "ackstorm_offline_replaced_total", "kind=\"receipt\""), 1.0);
    let mut alice = Client::login(&server, "alice").await;
    let got = alice.pushes(2).await;
    assert_eq!((got[0]["op"].as_str(), &got[0]["id"]), (Some("read"), &r));
    assert_eq!((got[1]["op"].as_str(), &got[1]["id"]), (Some("channel"), &c));
    assert!(got.iter().all(|p| p["onlineState"] == 0));
    alice.no_push().await;
}
