//! In-process tests of the hub's ordering guarantees, where threads can race it harder than
//! sockets can.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::*;
use crate::protocol::server::SERVER_OPS;
use crate::server::store::MemoryStore;

const SECRET: &[u8] = b"hub-test";

fn hub() -> Hub<MemoryStore> {
    let config = ServerConfig {
        secret: SECRET.to_vec(),
        rate_limit: None,
        ..ServerConfig::default()
    };
    Hub::new(
        Arc::new(config),
        Arc::new(Metrics::new(String::new())),
        MemoryStore::default(),
    )
}

fn login(hub: &Hub<MemoryStore>, user: &str) -> (Session, mpsc::UnboundedReceiver<Push>) {
    let (outbox, inbox) = mpsc::unbounded_channel();
    let text = format!(
        r#"{{"op":"login","req":"0","user":"{user}","token":"{}"}}"#,
        token::token(SECRET, user)
    );
    let request = Request::parse(&text).unwrap();
    match hub.login(hub.next_conn(), &outbox, &request) {
        Login::Accepted(session, _) => (session, inbox),
        Login::Refused(reply) => panic!("{}", reply.encode()),
    }
}

fn handle(hub: &Hub<MemoryStore>, session: &Session, text: &str) -> String {
    hub.handle(session, &Request::parse(text).unwrap()).encode()
}

#[test]
fn message_op_constant_names_message() {
    assert_eq!(SERVER_OPS[MESSAGE_OP as usize], "message");
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
    let (_watcher, mut inbox) = login(&hub, "watcher");
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
    while let Ok(Push::Frame { text, .. }) = inbox.try_recv() {
        let frame = Outgoing::parse(text.as_str()).unwrap();
        let ServerFrame::Message { mid, .. } = frame.frame else {
            panic!("{text}")
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
    let (_bob, mut inbox) = login(&hub, "bob");
    handle(
        &hub,
        &alice,
        r#"{"op":"send","req":"9","id":"c9","chatType":"singleChat","type":"txt","to":"bob","msg":"live"}"#,
    );
    let texts: Vec<String> = std::iter::from_fn(|| match inbox.try_recv() {
        Ok(Push::Frame { text, .. }) => Some(text.to_string()),
        _ => None,
    })
    .collect();
    assert_eq!(texts.len(), 4);
    for (i, t) in texts.iter().take(3).enumerate() {
        assert!(t.contains(&format!("offline {i}")), "{t}");
    }
    assert!(texts[3].contains("live"));
}
