//! PROTOCOL.md, "Queries and groups": create, join, leave, who may send to a group, and
//! `getGroupMsgReadUser` (permissions and paging).

use std::collections::HashSet;

use ackstorm::server::ServerConfig;
use serde_json::{Value, json};

use crate::common::*;

#[tokio::test]
async fn the_creator_owns_the_group_and_admins_are_members() {
    let server = start(config()).await;
    let mut c = login_all(&server, &["alice", "bob", "carol"]).await;
    let r = c[0].create_group("g", &["bob"], &["carol"]).await;
    assert_keys(&r, &["op", "req", "data"]);
    assert_group_result(&r, "g");
    // carol, an admin not listed in members, is a member: she gets bob's message and may send.
    let mid = received_mid(&c[1].send_group("g", "from bob", false).await);
    assert_eq!(c[2].push_op("message").await["mid"], mid);
    assert_eq!(c[0].push_op("message").await["mid"], mid, "the owner is a member");
    // Owner and admin may ask for receipts; the owner cannot leave; the admin can.
    assert_eq!(c[0].send_group("g", "owner asks", true).await["groupAck"], true);
    assert_eq!(c[2].send_group("g", "admin asks", true).await["groupAck"], true);
    assert_error(&c[0].leave("g").await, "forbidden");
    assert_group_result(&c[2].leave("g").await, "g");
    assert_error(&c[2].send_group("g", "gone", false).await, "forbidden");
}

#[tokio::test]
async fn creating_an_existing_group_is_bad_request_and_changes_nothing() {
    let server = start(config()).await;
    let mut c = login_all(&server, &["alice", "bob", "dave"]).await;
    assert_group_result(&c[0].create_group("g", &["bob"], &[]).await, "g");
    assert_error(&c[0].create_group("g", &[], &[]).await, "bad_request");
    assert_error(&c[2].create_group("g", &["dave"], &["dave"]).await, "bad_request");
    // dave did not become owner, admin or member.
    assert_error(&c[2].send_group("g", "x", false).await, "forbidden");
    // bob is still a member.
    let mid = received_mid(&c[0].send_group("g", "still", false).await);
    assert_eq!(c[1].push_op("message").await["mid"], mid);
}

#[tokio::test]
async fn creating_a_group_over_the_size_limit_is_forbidden() {
    let server = start(ServerConfig {
        group_max_members: 3,
        ..config()
    })
    .await;
    let mut alice = Client::login(&server, "alice").await;
    // The owner counts: 1 + 3 is over 3.
    assert_error(&alice.create_group("big", &["b", "c", "d"], &[]).await, "forbidden");
    assert_error(&alice.create_group("big2", &["b", "c"], &["d"]).await, "forbidden");
    assert_error(&alice.join("big").await, "not_found");
    assert_group_result(&alice.create_group("fits", &["b", "c", "b"], &["c"]).await, "fits");
}

#[tokio::test]
async fn join_and_leave() {
    let server = start(config()).await;
    let mut c = login_all(&server, &["alice", "bob"]).await;
    assert_group_result(&c[0].create_group("g", &[], &[]).await, "g");
    assert_group_result(&c[1].join("g").await, "g");
    assert_group_result(&c[1].join("g").await, "g"); // already in: no change
    let m1 = received_mid(&c[0].send_group("g", "1", false).await);
    assert_eq!(c[1].push_op("message").await["mid"], m1);
    c[1].no_push().await; // one copy, not two
    assert_group_result(&c[1].leave("g").await, "g");
    received_mid(&c[0].send_group("g", "2", false).await);
    c[1].no_push().await;
    assert_error(&c[1].send_group("g", "3", false).await, "forbidden");
    assert_error(&c[1].leave("g").await, "forbidden"); // not in it any more
    assert_error(&c[0].leave("g").await, "forbidden"); // the owner
    assert_error(&c[1].join("nope").await, "not_found");
    assert_error(&c[1].leave("nope").await, "not_found");
    // The group outlives bob's leaving: he can join again.
    assert_group_result(&c[1].join("g").await, "g");
}

#[tokio::test]
async fn joining_a_full_group_is_forbidden() {
    let server = start(ServerConfig {
        group_max_members: 2,
        ..config()
    })
    .await;
    let mut c = login_all(&server, &["alice", "bob", "carol"]).await;
    assert_group_result(&c[0].create_group("g", &[], &[]).await, "g");
    assert_group_result(&c[1].join("g").await, "g");
    assert_error(&c[2].join("g").await, "forbidden");
    assert_group_result(&c[1].join("g").await, "g"); // a member re-joining a full group: no change
    assert_group_result(&c[1].leave("g").await, "g");
    assert_group_result(&c[2].join("g").await, "g"); // room again
}

#[tokio::test]
async fn sending_to_a_group_needs_membership() {
    let server = start(config()).await;
    let mut c = login_all(&server, &["alice", "bob", "eve"]).await;
    assert_group_result(&c[0].create_group("g", &["bob"], &[]).await, "g");
    assert_error(&c[2].send_group("g", "let me in", false).await, "forbidden");
    assert_error(&c[2].send_group("nope", "x", false).await, "not_found");
    c[1].no_push().await;
    c[0].no_push().await;
    c[2].assert_alive().await;
}

/// A group with owner `alice`, admin `carol`, members `bob` and `dave`; `bob` (a plain member,
/// allowed by `group_ack_anyone`) sends a message with receipts that `readers` read in order.
async fn read_by(readers: &[&str], config: ServerConfig) -> (ackstorm::server::ServerHandle, Vec<Client>, Value) {
    let server = start(ServerConfig {
        group_ack_anyone: true,
        ..config
    })
    .await;
    let mut c = login_all(&server, &["alice", "bob", "carol", "dave", "eve"]).await;
    let mut members = vec!["bob", "dave"];
    members.extend(readers);
    assert_group_result(&c[0].create_group("g", &members, &["carol"]).await, "g");
    let r = c[1].send_group("g", "read me", true).await;
    assert_eq!(r["groupAck"], true, "{r}");
    let mid = received_mid(&r);
    for r in readers {
        let mut reader = Client::login(&server, r).await;
        received_mid(&reader.read_group(&mid, "g").await);
    }
    (server, c, mid)
}

#[tokio::test]
async fn readers_may_be_listed_by_the_sender_owner_and_admins_only() {
    let (_server, mut c, mid) = read_by(&["r1"], config()).await;
    for who in &mut c[..3] {
        let r = who.read_users("g", &mid, None, None).await;
        assert_eq!(r["op"], "result", "{} may list: {r}", who.user);
        assert_eq!(r["data"]["userlist"], json!(["r1"]));
    }
    assert_error(&c[3].read_users("g", &mid, None, None).await, "forbidden"); // a member
    assert_error(&c[4].read_users("g", &mid, None, None).await, "forbidden"); // not a member
    assert_error(&c[0].read_users("nope", &mid, None, None).await, "not_found");
    assert_error(
        &c[0].read_users("g", &json!("987654321"), None, None).await,
        "not_found",
    );
}

#[tokio::test]
async fn reader_pages_run_newest_first_until_the_last_page() {
    let readers = ["r1", "r2", "r3", "r4", "r5"];
    let (_server, mut c, mid) = read_by(&readers, config()).await;
    let all = c[1].read_users("g", &mid, None, None).await;
    let data = &all["data"];
    assert_keys(
        data,
        &["ackmid", "total", "userlist", "next_key", "is_last", "timestamp"],
    );
    assert_eq!(data["ackmid"], mid);
    assert_eq!(data["total"], 5);
    assert_eq!(data["userlist"], json!(["r5", "r4", "r3", "r2", "r1"]));
    assert_eq!((&data["next_key"], &data["is_last"]), (&Value::Null, &json!(true)));
    assert!(data["timestamp"].as_u64().unwrap() <= now_ms());
    // Pages of one: every reader exactly once, newest first.
    let mut seen = Vec::new();
    let mut key: Option<Value> = None;
    loop {
        let r = c[1].read_users("g", &mid, Some(1), key.as_ref()).await;
        let d = &r["data"];
        assert_eq!(d["total"], 5);
        let page = d["userlist"].as_array().unwrap();
        assert_eq!(page.len(), 1, "{r}");
        seen.push(page[0].as_str().unwrap().to_string());
        if d["is_last"] == true {
            assert_eq!(d["next_key"], Value::Null);
            break;
        }
        assert!(d["next_key"].is_string(), "{r}");
        key = Some(d["next_key"].clone());
        assert!(seen.len() < 5, "more pages than readers");
    }
    assert_eq!(seen, ["r5", "r4", "r3", "r2", "r1"]);
    // Pages of two: 2, 2, 1.
    let p1 = c[0].read_users("g", &mid, Some(2), None).await;
    assert_eq!(
        (&p1["data"]["userlist"], &p1["data"]["is_last"]),
        (&json!(["r5", "r4"]), &json!(false))
    );
    let p2 = c[0].read_users("g", &mid, Some(2), Some(&p1["data"]["next_key"])).await;
    assert_eq!(p2["data"]["userlist"], json!(["r3", "r2"]));
    let p3 = c[0].read_users("g", &mid, Some(2), Some(&p2["data"]["next_key"])).await;
    assert_eq!(p3["data"]["userlist"], json!(["r1"]));
    assert_eq!(
        (&p3["data"]["next_key"], &p3["data"]["is_last"]),
        (&Value::Null, &json!(true))
    );
}

#[tokio::test]
async fn reader_pages_are_clamped_to_500() {
    const READERS: usize = 501;
    let server = start(ServerConfig {
        group_ack_max_members: 1000,
        ..config()
    })
    .await;
    let mut alice = Client::login(&server, "alice").await;
    let names: Vec<String> = (0..READERS).map(|i| format!("r{i}")).collect();
    let members: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_group_result(&alice.create_group("g", &members, &[]).await, "g");
    let mid = received_mid(&alice.send_group("g", "read me", true).await);
    // The readers read in waves of concurrent connections (they are offline otherwise).
    for wave in names.chunks(100) {
        let tasks: Vec<_> = wave
            .iter()
            .map(|name| {
                let (addr, name, mid) = (server.ws_url(), name.clone(), mid.clone());
                tokio::spawn(async move { read_once(&addr, &name, &mid).await })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    }
    alice.pushes(READERS).await;
    let mut seen = HashSet::new();
    for (limit, expect_len, last) in [(Some(10_000), 500, false), (None, 500, false)] {
        let r = alice.read_users("g", &mid, limit, None).await;
        let d = &r["data"];
        assert_eq!(d["total"], READERS);
        assert_eq!(d["userlist"].as_array().unwrap().len(), expect_len, "limit {limit:?}");
        assert_eq!(d["is_last"], last);
        let rest = alice.read_users("g", &mid, limit, Some(&d["next_key"])).await;
        assert_eq!(
            rest["data"]["userlist"],
            json!(["r0"]),
            "the first reader is the oldest"
        );
        assert_eq!(rest["data"]["is_last"], true);
        seen = d["userlist"]
            .as_array()
            .unwrap()
            .iter()
            .chain(rest["data"]["userlist"].as_array().unwrap())
            .map(|u| u.as_str().unwrap().to_string())
            .collect();
    }
    assert_eq!(seen.len(), READERS, "every reader once");
}

/// Logs `user` in on its own connection, reads `mid` of group `g`, and disconnects.
async fn read_once(url: &str, user: &str, mid: &Value) {
    let mut c = Client::login_url(url, user, None, false).await;
    received_mid(&c.read_group(mid, "g").await);
}
