//! `serve --data`: the server process is killed (SIGKILL) mid-traffic and restarted on the same
//! port and data directory; whatever a client was answered survives, exactly once.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Client, SECRET, id_of, received_mid};

/// A server child process on `listen` keeping its store in `data`; returns it and its URL.
fn spawn_server(listen: &str, data: &Path) -> (Child, String) {
    for _ in 0..50 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ackstorm"))
            .args([
                "serve",
                "--secret",
                SECRET,
                "--listen",
                listen,
                "--rate-limit",
                "0",
                "--group-read-ack",
                // Compactions mid-traffic: the kill may land before, during or after one.
                "--compact-log-ops",
                "300",
            ])
            .arg("--data")
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ackstorm serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            return (child, format!("ws://{addr}/ws"));
        }
        // The port may still be held a moment after the kill: try again.
        let _ = child.wait();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("the server did not start on {listen}");
}

/// Every push that arrives until none has for a while.
async fn drain(c: &mut Client) -> Vec<Value> {
    let mut out = Vec::new();
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(500), c.ws.next()).await {
        if let Message::Text(t) = m {
            out.push(serde_json::from_str(&t).unwrap());
        }
    }
    out
}

/// Sends 1:1 messages to `to`, a window of them in flight, until the connection breaks (or
/// `max` are answered); records the (client id, mid) of every `received`.
async fn send_until_killed(mut c: Client, to: &str, max: usize, got: Arc<Mutex<Vec<(String, u64)>>>) {
    const WINDOW: usize = 16;
    let mut sent = 0;
    let mut in_flight = 0;
    loop {
        while in_flight < WINDOW && sent < max {
            let f = json!({"op":"send","req":format!("r{sent}"),"id":format!("k{sent}"),
                "chatType":"singleChat","type":"txt","to":to,"msg":format!("m{sent}")});
            if c.ws.send(Message::Text(f.to_string().into())).await.is_err() {
                return;
            }
            sent += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            return;
        }
        match tokio::time::timeout(Duration::from_secs(5), c.ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                assert_eq!(v["op"], "received", "{v}");
                got.lock()
                    .unwrap()
                    .push((v["id"].as_str().unwrap().to_string(), id_of(&v["mid"])));
                in_flight -= 1;
            }
            Ok(Some(Ok(_))) => {}
            _ => return,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_keeps_what_it_answered() {
    let data = tempfile::tempdir().unwrap();
    let (mut server, url) = spawn_server("127.0.0.1:0", data.path());
    let listen = url.trim_start_matches("ws://").trim_end_matches("/ws").to_string();

    // A group message with two readers of three.
    let mut owner = Client::login_url(&url, "o", None, false).await;
    let r = owner.create_group("g", &["m1", "m2", "m3"], &[]).await;
    assert_eq!(r["op"], "result", "{r}");
    let gmid = received_mid(&owner.send_group("g", "hello", true).await);
    for m in ["m1", "m2"] {
        let mut c = Client::login_url(&url, m, None, false).await;
        let r = c.read_group(&gmid, "g").await;
        assert_eq!(r["op"], "received", "{r}");
    }
    // An online recipient gets 20 messages live.
    let mut dave = Client::login_url(&url, "dave", None, false).await;
    let mut carol = Client::login_url(&url, "carol", None, false).await;
    let mut live = Vec::new();
    for i in 0..20 {
        live.push(id_of(&received_mid(
            &carol.send_single("dave", &format!("live {i}")).await,
        )));
    }
    let got: Vec<u64> = dave.pushes(20).await.iter().map(|p| id_of(&p["mid"])).collect();
    assert_eq!(got, live);
    // An offline recipient: bob logs in once and leaves; alice sends to him until the kill.
    let bob = Client::login_url(&url, "bob", None, false).await;
    drop(bob);
    let alice = Client::login_url(&url, "alice", None, false).await;
    let answered = Arc::new(Mutex::new(Vec::new()));
    let sender = tokio::spawn(send_until_killed(alice, "bob", 480, answered.clone()));
    while answered.lock().unwrap().len() < 100 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill().unwrap(); // SIGKILL
    server.wait().unwrap();
    sender.await.unwrap();
    drop((owner, dave, carol));
    let answered = answered.lock().unwrap().clone();
    assert!(
        answered.len() >= 100 && answered.len() < 480,
        "killed mid-traffic: {}",
        answered.len()
    );
    let highest_seen = answered.iter().map(|a| a.1).chain(live.iter().copied()).max().unwrap();

    let (mut server, url2) = spawn_server(&listen, data.path());
    assert_eq!(url2, url, "same port");

    // Every answered send reaches bob exactly once, with his unread count matching.
    let mut bob = Client::login_url(&url, "bob", None, false).await;
    let replay = drain(&mut bob).await;
    let mids: Vec<u64> = replay
        .iter()
        .filter(|p| p["op"] == "message" && p["from"] == "alice")
        .map(|p| id_of(&p["mid"]))
        .collect();
    let distinct: HashSet<u64> = mids.iter().copied().collect();
    assert_eq!(distinct.len(), mids.len(), "no message twice");
    for (id, mid) in &answered {
        assert!(distinct.contains(mid), "send {id} (mid {mid}) was answered and is lost");
    }
    eprintln!("answered {}, replayed {}", answered.len(), mids.len());
    assert!(mids.windows(2).all(|w| w[0] < w[1]), "in mid order");
    assert_eq!(bob.unread("alice").await, mids.len() as u64);
    // Taken once: a second login replays nothing.
    drop(bob);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bob = Client::login_url(&url, "bob", None, false).await;
    assert!(drain(&mut bob).await.is_empty(), "replayed twice");

    // Dave got his live: nothing replayed, the unread count kept.
    let mut dave = Client::login_url(&url, "dave", None, false).await;
    let again = drain(&mut dave).await;
    assert!(
        again.iter().all(|p| p["op"] != "message"),
        "live messages replayed: {again:?}"
    );
    assert_eq!(dave.unread("carol").await, 20);

    // The group's reader set and unread counts.
    let mut owner = Client::login_url(&url, "o", None, false).await;
    let page = owner.read_users("g", &gmid, None, None).await;
    assert_eq!(page["data"]["total"], 2, "{page}");
    let readers: HashSet<&str> = page["data"]["userlist"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap())
        .collect();
    assert_eq!(readers, HashSet::from(["m1", "m2"]));
    let mut m3 = Client::login_url(&url, "m3", None, false).await;
    assert_eq!(m3.unread("g").await, 1);

    // Remembered sends: a repeat gets the original reply; ids keep growing.
    let mut alice = Client::login_url(&url, "alice", None, false).await;
    let by_id: HashMap<&str, u64> = answered.iter().map(|(i, m)| (i.as_str(), *m)).collect();
    let (id, mid) = answered[answered.len() / 2].clone();
    let r = alice
        .request(json!({"op":"send","id":id,"chatType":"singleChat","type":"txt","to":"bob","msg":"again"}))
        .await;
    assert_eq!(
        (r["duplicate"].clone(), id_of(&r["mid"])),
        (json!(true), by_id[id.as_str()])
    );
    assert_eq!(id_of(&r["mid"]), mid);
    let fresh = id_of(&received_mid(&alice.send_single("bob", "after").await));
    let highest = highest_seen.max(mids.iter().copied().max().unwrap_or(0));
    assert!(fresh > highest, "mid {fresh} after a restart, {highest} before");

    server.kill().unwrap();
    server.wait().unwrap();
}
