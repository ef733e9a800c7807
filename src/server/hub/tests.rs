//! In-process tests of the hub's ordering guarantees, where threads can race it harder than
//! sockets can, and of what happens to pushes a connection did not write (an outbox nobody
//! takes from stands for a connection that writes nothing).

use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::protocol::token;
use crate::server::outbox::{Outbox, QueueBound};
use crate::server::store::MemoryStore;

const SECRET: &[u8] = b"hub-test";

fn hub() -> Hub<MemoryStore> {
    let config = ServerConfig {
        secret: SECRET.to_vec(),
        rate_limit: None,
        group_read_ack: true,
        ..ServerConfig::default()
    };
    Hub::new(
        Arc::new(config),
        Arc::new(Metrics::new(String::new())),
        MemoryStore::default(),
    )
}

/// Logs `user` in on `device`.
fn login_on(hub: &Hub<MemoryStore>, user: &str, device: &str) -> (Session, Outbox) {
    let outbox = Outbox::new(QueueBound::NONE);
    let text = format!(
        r#"{{"op":"login","req":"0","user":"{user}","token":"{}","device":"{device}"}}"#,
        token::token(SECRET, user)
    );
    let request = Request::parse(&text).unwrap();
    match hub.login(hub.next_conn(), &outbox, &request) {
        Login::Accepted(session, _) => (session, outbox),
        Login::Refused(reply) => panic!("{}", reply.encode()),
    }
}

fn login(hub: &Hub<MemoryStore>, user: &str) -> (Session, Outbox) {
    login_on(hub, user, "web")
}

fn handle(hub: &Hub<MemoryStore>, session: &Session, text: &str) -> String {
    hub.handle(session, &Request::parse(text).unwrap()).encode()
}

/// Handles a client frame given as JSON (a `req` is added); returns the reply as JSON.
fn request(hub: &Hub<MemoryStore>, session: &Session, mut frame: Value) -> Value {
    frame["req"] = json!("r");
    serde_json::from_str(&handle(hub, session, &frame.to_string())).unwrap()
}

/// The server id in a `received` reply.
fn mid_of(reply: &Value) -> String {
    assert_eq!(reply["op"], "received", "{reply}");
    reply["mid"].as_str().unwrap().to_string()
}

/// Sends a 1:1 message with client id `id` (also its text); returns its mid.
fn send(hub: &Hub<MemoryStore>, from: &Session, to: &str, id: &str) -> String {
    mid_of(&request(
        hub,
        from,
        json!({"op":"send","id":id,"chatType":"singleChat","type":"txt","to":to,"msg":id}),
    ))
}

/// Creates group `g` owned by `owner` with `members`, and sends a group message asking for
/// read receipts; returns its mid.
fn group_message(hub: &Hub<MemoryStore>, owner: &Session, members: &[&str]) -> String {
    let created = request(hub, owner, json!({"op":"createGroup","groupId":"g","members":members}));
    assert_eq!(created["op"], "result", "{created}");
    mid_of(&request(
        hub,
        owner,
        json!({"op":"send","id":"g1","chatType":"groupChat","type":"txt","to":"g","msg":"x","msgConfig":{"allowGroupAck":true}}),
    ))
}

/// Takes every queued push (what a connection would write), as JSON.
fn written(outbox: &Outbox) -> Vec<Value> {
    outbox
        .take_all()
        .iter()
        .map(|p| serde_json::from_str(p.text().as_str()).unwrap())
        .collect()
}

/// `op:id` (`mid` of messages, `id` of receipts, then `:onlineState` when there is one) of
/// each push, for compact order assertions.
fn summary(pushes: &[Value]) -> Vec<String> {
    pushes
        .iter()
        .map(|p| {
            let op = p["op"].as_str().unwrap();
            let id = if op == "message" { &p["mid"] } else { &p["id"] };
            let id = id.as_str().unwrap_or("-");
            match p.get("onlineState") {
                Some(s) => format!("{op}:{id}:{s}"),
                None => format!("{op}:{id}"),
            }
        })
        .collect()
}

#[test]
fn concurrent_senders_to_one_group_reach_members_in_mid_order() {
    let hub = Arc::new(hub());
    let (owner, _) = login(&hub, "owner");
    let senders: Vec<String> = (0..4).map(|i| format!("s{i}")).collect();
    let members: Vec<String> = senders
        .iter()
        .map(|s| format!("\"{s}\""))
        .chain(["\"watcher\"".into()])
        .collect();
    let reply = handle(
        &hub,
        &owner,
        &format!(
            r#"{{"op":"createGroup","req":"1","groupId":"g","members":[{}]}}"#,
            members.join(",")
        ),
    );
    assert!(reply.contains("\"result\""), "{reply}");
    let (_watcher, inbox) = login(&hub, "watcher");
    let threads: Vec<_> = senders
        .iter()
        .map(|s| {
            let (hub, (session, _inbox)) = (hub.clone(), login(&hub, s));
            std::thread::spawn(move || {
                for i in 0..500 {
                    let text = format!(
                        r#"{{"op":"send","req":"{i}","id":"c{i}","chatType":"groupChat","type":"txt","to":"g","msg":"m"}}"#
                    );
                    let reply = handle(&hub, &session, &text);
                    assert!(reply.contains("\"received\""), "{reply}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut last = 0;
    let mut seen = 0;
    while let Some(Push::Message(m)) = inbox.try_pop() {
        let frame = Outgoing::parse(m.frame.as_str()).unwrap();
        let ServerFrame::Message { mid, .. } = frame.frame else {
            panic!("{}", m.frame)
        };
        assert!(mid > last, "mid {mid} after {last}");
        last = mid;
        seen += 1;
    }
    assert_eq!(seen, 2000);
}

#[test]
fn replay_is_queued_before_any_live_push_after_login() {
    let hub = hub();
    let (alice, _a) = login(&hub, "alice");
    for i in 0..3 {
        handle(
            &hub,
            &alice,
            &format!(
                r#"{{"op":"send","req":"{i}","id":"c{i}","chatType":"singleChat","type":"txt","to":"bob","msg":"offline {i}"}}"#
            ),
        );
    }
    let (_bob, inbox) = login(&hub, "bob");
    handle(
        &hub,
        &alice,
        r#"{"op":"send","req":"9","id":"c9","chatType":"singleChat","type":"txt","to":"bob","msg":"live"}"#,
    );
    let texts: Vec<String> = inbox.take_all().iter().map(|p| p.text().to_string()).collect();
    assert_eq!(texts.len(), 4);
    for (i, t) in texts.iter().take(3).enumerate() {
        assert!(t.contains(&format!("offline {i}")), "{t}");
    }
    assert!(texts[3].contains("live"));
}

/// Bob's web connection gets messages, a delivery receipt, a group read receipt and a channel
/// ack queued, writes none of them, and closes. More arrives while bob is offline. At the
/// next login on web everything comes back: messages by mid, then receipts in the order made
/// with onlineState:0, and only then anything newer.
#[test]
fn pushes_a_closed_connection_did_not_write_are_replayed_first_at_the_devices_next_login() {
    let hub = hub();
    let (alice, alice_out) = login(&hub, "alice");
    let (bob, bob_out) = login(&hub, "bob");
    let g1 = group_message(&hub, &bob, &["alice"]);
    let b1 = send(&hub, &bob, "alice", "b1");
    alice_out.take_all();
    // Queued for bob's web connection, never written:
    let a1 = send(&hub, &alice, "bob", "a1");
    let d = mid_of(&request(&hub, &alice, json!({"op":"delivery","ackId":b1,"to":"bob"})));
    let gr = mid_of(&request(
        &hub,
        &alice,
        json!({"op":"read","chatType":"groupChat","id":g1,"to":"g","ackContent":"seen"}),
    ));
    let a2 = send(&hub, &alice, "bob", "a2");
    let ch = mid_of(&request(
        &hub,
        &alice,
        json!({"op":"channel","chatType":"singleChat","to":"bob"}),
    ));
    assert_eq!(bob_out.len(), 5);
    hub.logout(&bob, &bob_out);
    assert!(bob_out.is_empty(), "taken back by logout");
    // While bob is offline: the user's inbox, as before.
    let a3 = send(&hub, &alice, "bob", "a3");
    let r = mid_of(&request(
        &hub,
        &alice,
        json!({"op":"read","chatType":"singleChat","id":b1,"to":"bob"}),
    ));
    let (_bob, out) = login(&hub, "bob");
    let a4 = send(&hub, &alice, "bob", "a4");
    let got = written(&out);
    assert_eq!(
        summary(&got),
        [
            format!("message:{a1}"),
            format!("message:{a2}"),
            format!("message:{a3}"),
            format!("delivery:{d}:0"),
            format!("read:{gr}:0"),
            format!("channel:{ch}:0"),
            format!("read:{r}:0"),
            format!("message:{a4}"),
        ]
    );
    // The group read receipt comes back whole; only onlineState changed.
    let mut count = serde_json::Map::new();
    count.insert(g1.clone(), json!(1));
    assert_eq!(
        got[4],
        json!({"op":"read","id":gr,"mid":g1,"chatType":"groupChat","from":"alice","to":"g",
               "groupReadCount":count,"ackContent":"seen","onlineState":0})
    );
    assert_eq!((&got[5]["from"], &got[5]["to"]), (&json!("alice"), &json!("bob")));
    let m = hub.render_metrics();
    assert!(m.contains("ackstorm_unwritten_pushes_total{kind=\"message\"} 2"), "{m}");
    assert!(m.contains("ackstorm_unwritten_pushes_total{kind=\"receipt\"} 3"), "{m}");
}

/// What a device's connection did not write waits for that device; the user's inbox goes to
/// whichever device logs in first, as before.
#[test]
fn unwritten_pushes_wait_for_their_own_device() {
    let hub = hub();
    let (alice, _a) = login(&hub, "alice");
    let (bob, bob_out) = login(&hub, "bob");
    let a1 = send(&hub, &alice, "bob", "a1");
    hub.logout(&bob, &bob_out);
    let a2 = send(&hub, &alice, "bob", "a2");
    let (phone, phone_out) = login_on(&hub, "bob", "phone");
    assert_eq!(summary(&written(&phone_out)), [format!("message:{a2}")]);
    let (web, web_out) = login(&hub, "bob");
    assert_eq!(summary(&written(&web_out)), [format!("message:{a1}")]);
    // A channel ack of the reader goes to its other devices: stored for web when unwritten,
    // addressed as pushed (from the reader to the peer).
    let ch = mid_of(&request(
        &hub,
        &phone,
        json!({"op":"channel","chatType":"singleChat","to":"alice"}),
    ));
    hub.logout(&web, &web_out);
    hub.logout(&phone, &phone_out);
    let (_web, web_out) = login(&hub, "bob");
    let got = written(&web_out);
    assert_eq!(summary(&got), [format!("channel:{ch}:0")]);
    assert_eq!((&got[0]["from"], &got[0]["to"]), (&json!("bob"), &json!("alice")));
}

/// A same-device login takes over what the replaced connection had not written: the new
/// connection gets it first; the old one only gets `kicked`.
#[test]
fn a_replaced_connection_hands_its_unwritten_pushes_to_the_new_one() {
    let hub = hub();
    let (alice, _a) = login(&hub, "alice");
    let (old, old_out) = login(&hub, "bob");
    let a1 = send(&hub, &alice, "bob", "a1");
    let a2 = send(&hub, &alice, "bob", "a2");
    let (_new, new_out) = login(&hub, "bob");
    let a3 = send(&hub, &alice, "bob", "a3");
    assert_eq!(summary(&written(&old_out)), ["kicked:-"]);
    // The old connection closing afterwards changes nothing for the new one.
    hub.logout(&old, &old_out);
    assert_eq!(
        summary(&written(&new_out)),
        [
            format!("message:{a1}"),
            format!("message:{a2}"),
            format!("message:{a3}")
        ]
    );
}

/// A login replay that is not written (stored messages, receipts, the statistic frame) is
/// stored again: the device's next login replays the same.
#[test]
fn an_unwritten_replay_is_replayed_again() {
    let hub = hub();
    let (alice, _a) = login(&hub, "alice");
    let (bob, bob_out) = login(&hub, "bob");
    let g1 = group_message(&hub, &bob, &["alice"]);
    let b1 = send(&hub, &bob, "alice", "b1");
    hub.logout(&bob, &bob_out);
    let a1 = send(&hub, &alice, "bob", "a1");
    let d = mid_of(&request(&hub, &alice, json!({"op":"delivery","ackId":b1,"to":"bob"})));
    request(
        &hub,
        &alice,
        json!({"op":"read","chatType":"groupChat","id":g1,"to":"g"}),
    );
    let (bob, bob_out) = login(&hub, "bob");
    assert_eq!(bob_out.len(), 3);
    hub.logout(&bob, &bob_out);
    let (_bob, bob_out) = login(&hub, "bob");
    let got = written(&bob_out);
    assert_eq!(
        summary(&got),
        [
            format!("message:{a1}"),
            format!("delivery:{d}:0"),
            "statistic:-".to_string()
        ]
    );
    let location: Value = serde_json::from_str(got[2]["location"].as_str().unwrap()).unwrap();
    assert_eq!(location, json!({"group_ack":[{"mid":g1,"groupId":"g","count":1}]}));
}

/// A live push that takes a connection's queue over its bound: the hub takes the device
/// offline on the spot, stores the queue in the device's inbox and closes the queue (the
/// connection then closes as a slow consumer). Nothing is lost, nothing reordered.
#[test]
fn a_queue_over_its_bound_is_taken_offline_and_stored_within_the_push() {
    let hub = hub();
    let (alice, _a) = login(&hub, "alice");
    let bounded = Outbox::new(QueueBound {
        frames: 2,
        bytes: usize::MAX,
    });
    let text = format!(
        r#"{{"op":"login","req":"0","user":"bob","token":"{}"}}"#,
        token::token(SECRET, "bob")
    );
    let Login::Accepted(bob, _) = hub.login(hub.next_conn(), &bounded, &Request::parse(&text).unwrap()) else {
        panic!("login refused")
    };
    let mids: Vec<String> = (1..=4).map(|i| send(&hub, &alice, "bob", &format!("a{i}"))).collect();
    // The third push went over: the queue was emptied and closed, bob went offline, and the
    // fourth message went to bob's offline inbox.
    assert!(bounded.is_empty());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    assert!(matches!(
        rt.block_on(bounded.pop()),
        crate::server::outbox::Next::Closed
    ));
    let m = hub.render_metrics();
    assert!(
        m.contains("ackstorm_health_closes_total{reason=\"queue_bound\"} 1"),
        "{m}"
    );
    assert!(m.contains("ackstorm_unwritten_pushes_total{kind=\"message\"} 3"), "{m}");
    // The closing connection's own logout finds nothing left and changes nothing.
    hub.logout(&bob, &bounded);
    let (_bob, out) = login(&hub, "bob");
    let expected: Vec<String> = mids.iter().map(|m| format!("message:{m}")).collect();
    assert_eq!(summary(&written(&out)), expected);
}

#[test]
fn the_hub_keeps_the_time_of_the_clock_it_is_given() {
    let at = Arc::new(AtomicU64::new(1_700_000_000_000));
    let now = at.clone();
    let hub = Hub::with_clock(
        Arc::new(ServerConfig {
            secret: SECRET.to_vec(),
            rate_limit: None,
            ..ServerConfig::default()
        }),
        Arc::new(Metrics::new(String::new())),
        MemoryStore::default(),
        Arc::new(move || now.load(Ordering::Relaxed)),
    );
    let (a, _) = login(&hub, "a");
    let (_b, b_out) = login(&hub, "b");
    assert_eq!(request(&hub, &a, json!({"op":"ping"}))["time"], 1_700_000_000_000u64);
    at.store(1_700_000_000_500, Ordering::Relaxed);
    send(&hub, &a, "b", "m1");
    let pushes = b_out.take_all();
    let push: Value = serde_json::from_str(pushes[0].text().as_str()).unwrap();
    assert_eq!(push["op"], "message", "{push}");
    assert_eq!(push["time"], 1_700_000_000_500u64, "{push}");
}
