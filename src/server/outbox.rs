//! One connection's queue of pushes: the hub puts, the connection's task takes and writes.
//!
//! A queue rather than a channel because what a connection did not write must not be lost
//! (PROTOCOL.md v1.1): when the connection closes, or a same-device login replaces it, the
//! hub takes back whatever is still queued and stores it for the device's next login. Each
//! push therefore carries, beside its encoded text, the record it can be stored as.
//!
//! The queue's own lock is held only to move one item in or out; it never waits on I/O.
//! Pushing never blocks: the hub calls it under its lock.

use std::collections::VecDeque;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::store::{OfflineMessage, OfflineReceipt};
use crate::protocol::server::GroupAckCount;

/// Index of `message` in `SERVER_OPS` (checked by a test).
pub const MESSAGE_OP: usize = 3;
/// Index of `statistic` in `SERVER_OPS`.
pub const STATISTIC_OP: usize = 7;
/// Index of `kicked` in `SERVER_OPS`.
pub const KICKED_OP: usize = 8;

/// What the hub hands to a connection's task.
#[derive(Debug, Clone)]
pub enum Push {
    /// A `message` (its encoded text is shared with every other recipient).
    Message(OfflineMessage),
    /// A receipt: the text as pushed (`onlineState` 1 live, 0 in a login replay) and the
    /// record that replays it with `onlineState:0` if it is not written.
    Receipt {
        /// Index into `SERVER_OPS`.
        op: u8,
        /// The encoded frame.
        text: Utf8Bytes,
        /// The receipt, to store if this push is taken back.
        receipt: OfflineReceipt,
    },
    /// The `statistic` frame of a login replay, and the counts it carries.
    Statistic {
        /// The encoded frame.
        text: Utf8Bytes,
        /// Latest reader count per message, to store if this push is taken back.
        counts: Vec<GroupAckCount>,
    },
    /// Write this encoded `kicked` frame, then close the connection.
    Kick(Utf8Bytes),
}

impl Push {
    /// Index of the frame's op in `SERVER_OPS` (the frames-out counter).
    pub fn op(&self) -> usize {
        match self {
            Push::Message(_) => MESSAGE_OP,
            Push::Receipt { op, .. } => usize::from(*op),
            Push::Statistic { .. } => STATISTIC_OP,
            Push::Kick(_) => KICKED_OP,
        }
    }

    /// The encoded frame.
    pub fn text(&self) -> &Utf8Bytes {
        match self {
            Push::Message(m) => &m.frame,
            Push::Receipt { text, .. } | Push::Statistic { text, .. } | Push::Kick(text) => text,
        }
    }
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Push>,
}

#[derive(Debug, Default)]
struct Inner {
    queue: Mutex<Queue>,
    ready: Notify,
}

/// A connection's push queue; clones share it (the hub's registry holds one, the
/// connection's task another).
#[derive(Debug, Clone, Default)]
pub struct Outbox(Arc<Inner>);

impl Outbox {
    /// An empty queue.
    pub fn new() -> Self {
        Outbox::default()
    }

    /// Queues a push (never blocks).
    pub fn push(&self, push: Push) {
        self.0.queue.lock().items.push_back(push);
        self.0.ready.notify_one();
    }

    /// Puts back, first in line, a push that was taken but could not be written.
    pub fn put_back(&self, push: Push) {
        self.0.queue.lock().items.push_front(push);
        self.0.ready.notify_one();
    }

    /// The next push, if one is queued.
    pub fn try_pop(&self) -> Option<Push> {
        self.0.queue.lock().items.pop_front()
    }

    /// Waits for the next push. Cancel safe: a push is only taken in the poll that returns it.
    pub async fn pop(&self) -> Push {
        loop {
            if let Some(p) = self.try_pop() {
                return p;
            }
            // `notify_one` leaves a permit when nobody waits, so a push between the check
            // above and this wait is not missed.
            self.0.ready.notified().await;
        }
    }

    /// Takes everything queued, oldest first (a closing or replaced connection).
    pub fn take_all(&self) -> Vec<Push> {
        self.0.queue.lock().items.drain(..).collect()
    }

    /// Pushes queued.
    pub fn len(&self) -> usize {
        self.0.queue.lock().items.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ChatType;
    use crate::protocol::server::SERVER_OPS;

    fn message(mid: u64) -> Push {
        Push::Message(OfflineMessage {
            mid,
            chat_type: ChatType::Single,
            frame: mid.to_string().into(),
        })
    }

    #[test]
    fn op_constants_name_their_ops() {
        assert_eq!(SERVER_OPS[MESSAGE_OP], "message");
        assert_eq!(SERVER_OPS[STATISTIC_OP], "statistic");
        assert_eq!(SERVER_OPS[KICKED_OP], "kicked");
    }

    #[tokio::test]
    async fn pops_in_order_puts_back_first_and_hands_back_the_rest() {
        let out = Outbox::new();
        let hub_side = out.clone();
        for mid in 1..=4 {
            hub_side.push(message(mid));
        }
        let first = out.pop().await;
        assert_eq!(first.text().as_str(), "1");
        out.put_back(first);
        assert_eq!(out.try_pop().map(|p| p.text().to_string()).as_deref(), Some("1"));
        assert_eq!(out.len(), 3);
        let rest: Vec<String> = hub_side.take_all().iter().map(|p| p.text().to_string()).collect();
        assert_eq!(rest, ["2", "3", "4"]);
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn a_waiting_pop_wakes_on_push() {
        let out = Outbox::new();
        let hub_side = out.clone();
        let waiter = tokio::spawn(async move { out.pop().await.text().to_string() });
        tokio::task::yield_now().await;
        hub_side.push(message(7));
        assert_eq!(waiter.await.unwrap(), "7");
    }
}
