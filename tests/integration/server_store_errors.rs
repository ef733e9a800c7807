//! A store that fails: the frame concerned is answered `internal` exactly once, counted in
//! `ackstorm_store_errors_total`, and the server stays up and serves the next frame as usual.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ackstorm::protocol::ChatType;
use ackstorm::server::ServerHandle;
use ackstorm::server::store::{
    ConversationState, Group, GroupId, Inbox, MemoryStore, MessageMeta, OfflineBatch, OfflineMessage, OfflineReceipt,
    ReaderPage, ReceiptKind, Recorded, SentRecord, Store, StoreError, StoreStats, UserId,
};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Client, assert_error, config, http_get, metric, received_mid, scrape};

/// The in-memory store, failing the calls named in `fail` (shared with the test).
struct Failing {
    inner: MemoryStore,
    fail: Arc<Mutex<HashSet<&'static str>>>,
}

impl Failing {
    fn gate(&self, call: &'static str) -> Result<(), StoreError> {
        if self.fail.lock().unwrap().contains(call) {
            return Err(StoreError::Io {
                op: call,
                reason: "injected by the test".into(),
            });
        }
        Ok(())
    }
}

impl Store for Failing {
    fn next_id(&mut self) -> Result<u64, StoreError> {
        self.gate("next_id")?;
        self.inner.next_id()
    }
    fn intern_user(&mut self, user: &str) -> Result<UserId, StoreError> {
        self.gate("intern_user")?;
        self.inner.intern_user(user)
    }
    fn login_user(&mut self, user: &str) -> Result<UserId, StoreError> {
        self.gate("login_user")?;
        self.inner.login_user(user)
    }
    fn insert_message(&mut self, mid: u64, meta: MessageMeta) -> Result<(), StoreError> {
        self.gate("insert_message")?;
        self.inner.insert_message(mid, meta)
    }
    fn message(&self, mid: u64) -> Result<Option<MessageMeta>, StoreError> {
        self.gate("message")?;
        self.inner.message(mid)
    }
    fn forgotten(&self, mid: u64) -> Result<bool, StoreError> {
        self.gate("forgotten")?;
        self.inner.forgotten(mid)
    }
    fn record_receipt(&mut self, mid: u64, kind: ReceiptKind) -> Result<Recorded, StoreError> {
        self.gate("record_receipt")?;
        self.inner.record_receipt(mid, kind)
    }
    fn record_group_read(&mut self, mid: u64, reader: &UserId) -> Result<Recorded, StoreError> {
        self.gate("record_group_read")?;
        self.inner.record_group_read(mid, reader)
    }
    fn group_readers(&self, mid: u64, before: Option<usize>, limit: usize) -> Result<ReaderPage, StoreError> {
        self.gate("group_readers")?;
        self.inner.group_readers(mid, before, limit)
    }
    fn group(&self, id: &str) -> Result<Option<Arc<Group>>, StoreError> {
        self.gate("group")?;
        self.inner.group(id)
    }
    fn insert_group(&mut self, group: Group) -> Result<bool, StoreError> {
        self.gate("insert_group")?;
        self.inner.insert_group(group)
    }
    fn add_member(&mut self, id: &str, user: &UserId) -> Result<bool, StoreError> {
        self.gate("add_member")?;
        self.inner.add_member(id, user)
    }
    fn remove_member(&mut self, id: &str, user: &UserId) -> Result<bool, StoreError> {
        self.gate("remove_member")?;
        self.inner.remove_member(id, user)
    }
    fn groups_owned(&self, user: &str) -> Result<usize, StoreError> {
        self.gate("groups_owned")?;
        self.inner.groups_owned(user)
    }
    fn note_message(&mut self, user: &UserId, peer: &UserId, mid: u64, unread: bool) -> Result<(), StoreError> {
        self.gate("note_message")?;
        self.inner.note_message(user, peer, mid, unread)
    }
    fn note_group_message(&mut self, id: &GroupId, sender: &UserId, mid: u64) -> Result<(), StoreError> {
        self.gate("note_group_message")?;
        self.inner.note_group_message(id, sender, mid)
    }
    fn mark_read(&mut self, user: &UserId, peer: &UserId, mid: u64) -> Result<bool, StoreError> {
        self.gate("mark_read")?;
        self.inner.mark_read(user, peer, mid)
    }
    fn mark_all_read(&mut self, user: &UserId, t: ChatType, conv: &Arc<str>, upto: u64) -> Result<(), StoreError> {
        self.gate("mark_all_read")?;
        self.inner.mark_all_read(user, t, conv, upto)
    }
    fn conversations(&self, user: &str) -> Result<Vec<ConversationState>, StoreError> {
        self.gate("conversations")?;
        self.inner.conversations(user)
    }
    fn sent(&self, user: &str, id: &str) -> Result<Option<SentRecord>, StoreError> {
        self.gate("sent")?;
        self.inner.sent(user, id)
    }
    fn remember_sent(&mut self, user: &UserId, id: &str, r: SentRecord, cutoff: u64) -> Result<usize, StoreError> {
        self.gate("remember_sent")?;
        self.inner.remember_sent(user, id, r, cutoff)
    }
    fn push_offline_message(&mut self, user: &UserId, inbox: Inbox<'_>, m: OfflineMessage) -> Result<(), StoreError> {
        self.gate("push_offline_message")?;
        self.inner.push_offline_message(user, inbox, m)
    }
    fn push_offline_receipt(&mut self, user: &UserId, inbox: Inbox<'_>, r: OfflineReceipt) -> Result<(), StoreError> {
        self.gate("push_offline_receipt")?;
        self.inner.push_offline_receipt(user, inbox, r)
    }
    fn set_offline_group_count(
        &mut self,
        user: &UserId,
        inbox: Inbox<'_>,
        mid: u64,
        group: &GroupId,
        count: u64,
    ) -> Result<(), StoreError> {
        self.gate("set_offline_group_count")?;
        self.inner.set_offline_group_count(user, inbox, mid, group, count)
    }
    fn take_offline(&mut self, user: &UserId, inbox: Inbox<'_>) -> Result<OfflineBatch, StoreError> {
        self.gate("take_offline")?;
        self.inner.take_offline(user, inbox)
    }
    fn stats(&self) -> StoreStats {
        self.inner.stats()
    }
}

/// Sends `frame` with `req` and returns every frame answering it that arrives until the
/// connection has been quiet a while (pushes are set aside), and the close code if the server
/// closed the connection meanwhile.
async fn answers(c: &mut Client, req: &str, mut frame: Value) -> (Vec<Value>, Option<u16>) {
    frame["req"] = json!(req);
    c.send_text(frame.to_string()).await;
    let (mut out, mut close) = (Vec::new(), None);
    while let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(300), c.ws.next()).await {
        match m {
            Message::Text(t) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["req"] == req {
                    out.push(v);
                }
            }
            Message::Close(f) => close = f.map(|f| u16::from(f.code)),
            _ => {}
        }
    }
    (out, close)
}

/// The one answer to a frame, asserted to be `internal`; the close code that followed, if any.
async fn internal(c: &mut Client, req: &str, frame: Value) -> Option<u16> {
    let (got, close) = answers(c, req, frame).await;
    assert_eq!(got.len(), 1, "answered exactly once: {got:?}");
    assert_error(&got[0], "internal");
    close
}

#[tokio::test]
async fn a_failing_store_answers_internal_once_and_the_server_stays_up() {
    let fail = Arc::new(Mutex::new(HashSet::new()));
    let store = Failing {
        inner: MemoryStore::new(config().limits),
        fail: fail.clone(),
    };
    let server = ServerHandle::start_with_store("127.0.0.1:0", config(), store)
        .await
        .unwrap();
    let set = |calls: &[&'static str]| *fail.lock().unwrap() = calls.iter().copied().collect();
    let mut alice = Client::login(&server, "alice").await;
    let mut bob = Client::login(&server, "bob").await;
    let send = |id: &str| json!({"op":"send","id":id,"chatType":"singleChat","type":"txt","to":"bob","msg":"hi"});

    // A write that fails half-way through a send, then a read.
    set(&["remember_sent"]);
    internal(&mut alice, "s1", send("k1")).await;
    set(&["conversations"]);
    internal(&mut alice, "c1", json!({"op":"getConversations"})).await;
    // A receipt whose message lookup fails.
    set(&[]);
    let mid = received_mid(&alice.send_single("bob", "two").await);
    let push = bob.push_op("message").await;
    let push = if push["mid"] == mid {
        push
    } else {
        bob.push_op("message").await
    };
    assert_eq!(push["mid"], mid);
    set(&["message"]);
    internal(&mut bob, "d1", json!({"op":"delivery","ackId":mid,"to":"alice"})).await;
    // A login whose user record cannot be made: refused, `internal`.
    set(&["login_user"]);
    let mut carol = Client::connect(&server).await;
    let token = crate::common::token_for("carol");
    internal(&mut carol, "l1", json!({"op":"login","user":"carol","token":token})).await;

    // All is well again: the same connections go on.
    set(&[]);
    let r = bob.delivery(&mid, "alice").await;
    assert_eq!(r["op"], "received", "{r}");
    let again = alice.send_single("bob", "three").await;
    received_mid(&again);
    Client::login(&server, "carol").await;
    let (status, _) = http_get(&server, "/healthz").await;
    assert_eq!(status, 200);
    let text = scrape(&server).await;
    assert_eq!(metric(&text, "ackstorm_store_errors_total", ""), 4.0);
    assert_eq!(metric(&text, "ackstorm_errors_total", "code=\"internal\""), 4.0);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn a_failed_commit_is_answered_internal_and_nothing_it_held_is_kept() {
    use ackstorm::server::store::{Compaction, DurableStore};
    let data = tempfile::tempdir().unwrap();
    let open = || DurableStore::open(data.path(), config().limits, Compaction::default()).unwrap();
    let store = open();
    let journal = store.journal().unwrap();
    let server = ServerHandle::start_with_store("127.0.0.1:0", config(), store)
        .await
        .unwrap();
    let mut alice = Client::login(&server, "alice").await;
    let kept = received_mid(&alice.send_single("bob", "kept").await);
    journal.fail_next_commit();
    // The send is handled, its reply held for the commit, which fails: `internal` instead.
    let lost = json!({"op":"send","id":"k2","chatType":"singleChat","type":"txt","to":"bob","msg":"lost"});
    let close = internal(&mut alice, "s2", lost).await;
    assert_eq!(close, Some(1011), "closed: the store failed");
    // The server stays up, says so, and refuses what needs the store.
    let (status, body) = http_get(&server, "/healthz").await;
    assert_eq!((status, body.trim()), (503, "store failed"));
    let mut carol = Client::connect(&server).await;
    let token = crate::common::token_for("carol");
    internal(&mut carol, "l1", json!({"op":"login","user":"carol","token":token})).await;
    let text = scrape(&server).await;
    assert!(metric(&text, "ackstorm_store_errors_total", "") >= 2.0, "{text}");
    server.stop().await.unwrap();
    // A restart has what was committed, and not what the failed commit held.
    let store = open();
    let server = ServerHandle::start_with_store("127.0.0.1:0", config(), store)
        .await
        .unwrap();
    let mut bob = Client::login(&server, "bob").await;
    let replay = bob.pushes(1).await;
    assert_eq!(replay[0]["mid"], kept);
    assert_eq!(replay[0]["msg"], "kept");
    bob.no_push().await;
    assert_eq!(bob.unread("alice").await, 1);
    server.stop().await.unwrap();
}
