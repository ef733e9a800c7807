//! Many clients at once: no receipt lost, none duplicated, counts consistent.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::Barrier;

use crate::common::*;

const USERS: usize = 300;
/// Each user sends one message to each of these offsets (users `i + offset`).
const OFFSETS: [usize; 3] = [1, 7, 101];

fn name(i: usize) -> String {
    format!("u{i}")
}

/// What one user saw: per message it sent, how many delivery and read pushes came back.
struct Tally {
    receipts: HashMap<String, (u32, u32)>,
    extra: Vec<Value>,
}

async fn user(mut c: Client, i: usize, barrier: Arc<Barrier>) -> Tally {
    barrier.wait().await; // everyone online before anyone sends
    let mut pending = HashMap::new(); // req -> true for a send, false for a receipt
    for off in OFFSETS {
        let req = c
            .send_frame(single_frame(&name((i + off) % USERS), &format!("{i}->{off}")))
            .await;
        pending.insert(req, true);
    }
    let mut receipts: HashMap<String, (u32, u32)> = HashMap::new();
    let mut incoming = 0;
    let done = |receipts: &HashMap<String, (u32, u32)>, incoming: usize, pending: &HashMap<String, bool>| {
        incoming == OFFSETS.len()
            && pending.is_empty()
            && receipts.len() == OFFSETS.len()
            && receipts.values().all(|&(d, r)| d >= 1 && r >= 1)
    };
    while !done(&receipts, incoming, &pending) {
        let v = c.recv().await;
        if let Some(req) = v["req"].as_str() {
            let was_send = pending
                .remove(req)
                .unwrap_or_else(|| panic!("{}: reply to unknown {req}", c.user));
            let mid = received_mid(&v);
            if was_send {
                receipts.entry(mid.as_str().unwrap().to_string()).or_default();
            }
            continue;
        }
        match v["op"].as_str().unwrap() {
            "message" => {
                incoming += 1;
                let from = v["from"].as_str().unwrap();
                let d = c.send_frame(json!({"op":"delivery","ackId":v["mid"],"to":from})).await;
                let r = c
                    .send_frame(json!({"op":"read","chatType":"singleChat","id":v["mid"],"to":from}))
                    .await;
                pending.insert(d, false);
                pending.insert(r, false);
            }
            op @ ("delivery" | "read") => {
                assert_eq!(v["onlineState"], 1);
                let e = receipts.entry(v["mid"].as_str().unwrap().to_string()).or_default();
                if op == "delivery" { e.0 += 1 } else { e.1 += 1 }
            }
            _ => panic!("{}: unexpected {v}", c.user),
        }
    }
    // Every receipt for this user's messages was answered before everyone passes this barrier,
    // and the server queues pushes before it answers: what arrives before a pong is all of it.
    barrier.wait().await;
    let mut extra = Vec::new();
    let req = c.send_frame(json!({"op":"ping"})).await;
    loop {
        let v = c.recv().await;
        if v["req"] == req.as_str() {
            break;
        }
        extra.push(v);
    }
    Tally { receipts, extra }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_clients_get_every_receipt_exactly_once() {
    let server = start(config()).await;
    let barrier = Arc::new(Barrier::new(USERS));
    // Log in a wave at a time (each login is a TCP and WebSocket handshake).
    let mut clients = Vec::with_capacity(USERS);
    for wave in (0..USERS).collect::<Vec<_>>().chunks(50) {
        let logins: Vec<_> = wave
            .iter()
            .map(|&i| {
                let url = server.ws_url();
                tokio::spawn(async move { Client::login_url(&url, &name(i), None, true).await })
            })
            .collect();
        for l in logins {
            clients.push(l.await.unwrap());
        }
    }
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| tokio::spawn(user(c, i, barrier.clone())))
        .collect();
    let run = async {
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    };
    let tallies = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("all users done in time");
    for (i, t) in tallies.iter().enumerate() {
        assert!(t.extra.is_empty(), "{}: pushes after the end: {:?}", name(i), t.extra);
        assert_eq!(t.receipts.len(), OFFSETS.len());
        for (mid, counts) in &t.receipts {
            assert_eq!(*counts, (1, 1), "{}: message {mid}: (deliveries, reads)", name(i));
        }
    }
    let m = scrape(&server).await;
    let total = (USERS * OFFSETS.len()) as f64;
    assert_eq!(metric(&m, "ackstorm_messages_total", "chat_type=\"singleChat\""), total);
    assert_eq!(metric(&m, "ackstorm_receipts_total", "kind=\"delivery\""), total);
    assert_eq!(metric(&m, "ackstorm_receipts_total", "kind=\"read\""), total);
    assert_eq!(metric(&m, "ackstorm_receipts_repeated_total", "kind=\"read\""), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_group_readers_each_count_once() {
    const READERS: usize = 100;
    let server = start(config()).await;
    let mut alice = Client::login(&server, "alice").await;
    let names: Vec<String> = (0..READERS).map(|i| format!("r{i}")).collect();
    let members: Vec<&str> = names.iter().map(String::as_str).collect();
    let readers = login_all(&server, &members).await;
    assert_group_result(&alice.create_group("g", &members, &[]).await, "g");
    let mid = received_mid(&alice.send_group("g", "read me", true).await);
    let barrier = Arc::new(Barrier::new(READERS));
    let tasks: Vec<_> = readers
        .into_iter()
        .map(|mut c| {
            let (mid, barrier) = (mid.clone(), barrier.clone());
            tokio::spawn(async move {
                c.push_op("message").await;
                barrier.wait().await;
                // The receipt and a retry of it: the repeat must not count.
                let a = c
                    .send_frame(json!({"op":"read","chatType":"groupChat","id":mid,"to":"g"}))
                    .await;
                let b = c
                    .send_frame(json!({"op":"read","chatType":"groupChat","id":mid,"to":"g"}))
                    .await;
                let (a, b) = (c.reply_to(&a).await, c.reply_to(&b).await);
                assert_eq!(received_mid(&a), received_mid(&b));
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let mut counts: Vec<u64> = Vec::new();
    let mut from = std::collections::HashSet::new();
    for p in alice.pushes(READERS).await {
        assert_eq!(p["op"], "read");
        counts.push(p["groupReadCount"][mid.as_str().unwrap()].as_u64().unwrap());
        assert!(
            from.insert(p["from"].as_str().unwrap().to_string()),
            "two pushes for one reader"
        );
    }
    assert_eq!(
        counts,
        (1..=READERS as u64).collect::<Vec<_>>(),
        "counts 1..N, in order"
    );
    alice.no_push().await;
    let page = alice.read_users("g", &mid, None, None).await;
    assert_eq!(page["data"]["total"], READERS);
}
