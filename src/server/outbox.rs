//! One connection's queue of pushes: the hub puts, the connection's task takes and writes.
//!
//! A queue rather than a channel because what a connection did not write must not be lost
//! (PROTOCOL.md v1.1): when the connection closes, or a same-device login replaces it, the
//! hub takes back whatever is still queued and stores it for the device's next login. Each
//! push therefore carries, beside its encoded text, the record it can be stored as.
//!
//! The queue's own lock is held only to move one item in or out; it never waits on I/O.
//! Pushing never blocks: the hub calls it under its lock. Live pushes are bounded in frames
//! and bytes: a push that takes the queue over its bound is still queued, and tells the hub,
//! which takes everything back and closes the queue; the connection then closes as a slow
//! consumer (PROTOCOL.md v1.1, connection health).

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
    /// Write this encoded `kicked` frame, then close the connection (1008, with the kick's
    /// reason as the close reason).
    Kick {
        /// The encoded frame.
        text: Utf8Bytes,
        /// `login_elsewhere` or `too_many_devices`.
        reason: &'static str,
    },
}

impl Push {
    /// Index of the frame's op in `SERVER_OPS` (the frames-out counter).
    pub fn op(&self) -> usize {
        match self {
            Push::Message(_) => MESSAGE_OP,
            Push::Receipt { op, .. } => usize::from(*op),
            Push::Statistic { .. } => STATISTIC_OP,
            Push::Kick { .. } => KICKED_OP,
        }
    }

    /// The encoded frame.
    pub fn text(&self) -> &Utf8Bytes {
        match self {
            Push::Message(m) => &m.frame,
            Push::Receipt { text, .. } | Push::Statistic { text, .. } | Push::Kick { text, .. } => text,
        }
    }
}

/// The bound of what is pushed live to one connection and not yet written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueBound {
    /// Most pushes queued.
    pub frames: usize,
    /// Most bytes of encoded pushes queued.
    pub bytes: usize,
}

impl QueueBound {
    /// The default (`serve --max-queue-frames`, `--max-queue-bytes`): 4 MiB is about 800
    /// pushes of the largest message, seconds of traffic for any reading client, and keeps
    /// what one client that stops reading costs the server under 8 MiB (measured by
    /// `server_bounds::a_client_that_stops_reading_costs_little_and_is_closed`).
    pub const DEFAULT: QueueBound = QueueBound {
        frames: 10_000,
        bytes: 4 * 1024 * 1024,
    };

    /// No bound (tests and benches that never write).
    pub const NONE: QueueBound = QueueBound {
        frames: usize::MAX,
        bytes: usize::MAX,
    };
}

/// A queued push; `counted` pushes are what the bound applies to (live pushes; not the
/// login replay, whose size the inbox caps bound, nor a push put back).
#[derive(Debug)]
struct Item {
    push: Push,
    counted: bool,
}

#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Item>,
    /// Counted pushes queued, and their bytes.
    frames: usize,
    bytes: usize,
    /// Set when the hub took everything back and the connection must close as a slow
    /// consumer: nothing is queued any more.
    closed: bool,
}

impl Queue {
    fn pop(&mut self) -> Option<Push> {
        let item = self.items.pop_front()?;
        if item.counted {
            self.frames -= 1;
            self.bytes -= item.push.text().len();
        }
        Some(item.push)
    }
}

#[derive(Debug)]
struct Inner {
    queue: Mutex<Queue>,
    ready: Notify,
    bound: QueueBound,
    /// A driver with no tasks to wake (a simulation) learns which queues have something.
    watch: Option<(u64, Woken)>,
}

/// The ids of watched queues woken since the watcher last looked, in wake order (repeats
/// included): a virtual-time simulation drains them instead of running a task per queue.
pub type Woken = Arc<Mutex<Vec<u64>>>;

/// A connection's push queue; clones share it (the hub's registry holds one, the
/// connection's task another).
#[derive(Debug, Clone)]
pub struct Outbox(Arc<Inner>);

/// What a connection's task gets from its queue.
#[derive(Debug)]
pub enum Next {
    /// A push to write.
    Push(Push),
    /// The queue passed its bound and the hub took it back: close as a slow consumer.
    Closed,
}

impl Outbox {
    /// An empty queue with a bound on live pushes.
    pub fn new(bound: QueueBound) -> Self {
        Outbox(Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            bound,
            watch: None,
        }))
    }

    /// A queue that, besides waking its (absent) task, writes `id` into `woken` whenever it
    /// would wake it: for a driver that has no task per connection.
    pub fn watched(bound: QueueBound, id: u64, woken: Woken) -> Self {
        Outbox(Arc::new(Inner {
            queue: Mutex::new(Queue::default()),
            ready: Notify::new(),
            bound,
            watch: Some((id, woken)),
        }))
    }

    fn notify(&self) {
        self.0.ready.notify_one();
        if let Some((id, woken)) = &self.0.watch {
            woken.lock().push(*id);
        }
    }

    /// Queues a live push (never blocks). Returns false when the queue is now over its bound:
    /// the hub then takes everything back ([`Outbox::close`]).
    #[must_use = "a queue over its bound must be closed"]
    pub fn push(&self, push: Push) -> bool {
        let within = self.push_quiet(push);
        self.wake();
        within
    }

    /// [`Outbox::push`] without waking the connection's task: the hub queues under its lock
    /// and wakes ([`Outbox::wake`]) once it has let go, so that waking a task (a system call,
    /// at worst) never lengthens the lock.
    #[must_use = "a queue over its bound must be closed"]
    pub fn push_quiet(&self, push: Push) -> bool {
        let mut q = self.0.queue.lock();
        q.frames += 1;
        q.bytes += push.text().len();
        let within = q.frames <= self.0.bound.frames && q.bytes <= self.0.bound.bytes;
        q.items.push_back(Item { push, counted: true });
        within
    }

    /// Wakes the connection's task for what was queued quietly.
    pub fn wake(&self) {
        self.notify();
    }

    /// Queues a push the bound does not apply to: the login replay and `kicked`.
    pub fn push_uncounted(&self, push: Push) {
        self.0.queue.lock().items.push_back(Item { push, counted: false });
        self.notify();
    }

    /// Puts back, first in line, a push that was taken but could not be written.
    pub fn put_back(&self, push: Push) {
        self.0.queue.lock().items.push_front(Item { push, counted: false });
        self.notify();
    }

    /// The next push, if one is queued.
    pub fn try_pop(&self) -> Option<Push> {
        self.0.queue.lock().pop()
    }

    /// Waits for the next push, or for the queue to be closed. Cancel safe: a push is only
    /// taken in the poll that returns it.
    pub async fn pop(&self) -> Next {
        loop {
            {
                let mut q = self.0.queue.lock();
                if let Some(p) = q.pop() {
                    return Next::Push(p);
                }
                if q.closed {
                    return Next::Closed;
                }
            }
            // `notify_one` leaves a permit when nobody waits, so a push between the check
            // above and this wait is not missed.
            self.0.ready.notified().await;
        }
    }

    /// Resolves once the queue is closed (to abort a write that waits on a slow socket).
    pub async fn closed(&self) {
        loop {
            if self.0.queue.lock().closed {
                return;
            }
            self.0.ready.notified().await;
        }
    }

    /// Takes everything queued, oldest first (a closing or replaced connection).
    pub fn take_all(&self) -> Vec<Push> {
        let mut q = self.0.queue.lock();
        q.frames = 0;
        q.bytes = 0;
        q.items.drain(..).map(|i| i.push).collect()
    }

    /// Takes everything queued and closes the queue: its connection must close as a slow
    /// consumer.
    pub fn close(&self) -> Vec<Push> {
        let taken = self.take_all();
        self.0.queue.lock().closed = true;
        self.notify();
        taken
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

    fn text(next: Next) -> String {
        match next {
            Next::Push(p) => p.text().to_string(),
            Next::Closed => "closed".to_string(),
        }
    }

    #[tokio::test]
    async fn pops_in_order_puts_back_first_and_hands_back_the_rest() {
        let out = Outbox::new(QueueBound::NONE);
        let hub_side = out.clone();
        for mid in 1..=4 {
            assert!(hub_side.push(message(mid)));
        }
        let Next::Push(first) = out.pop().await else { panic!() };
        assert_eq!(first.text().as_str(), "1");
        out.put_back(first);
        assert_eq!(out.try_pop().map(|p| p.text().to_string()).as_deref(), Some("1"));
        assert_eq!(out.len(), 3);
        let rest: Vec<String> = hub_side.take_all().iter().map(|p| p.text().to_string()).collect();
        assert_eq!(rest, ["2", "3", "4"]);
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn a_waiting_pop_wakes_on_push_and_on_close() {
        let out = Outbox::new(QueueBound::NONE);
        let hub_side = out.clone();
        let waiter = tokio::spawn(async move {
            let first = text(out.pop().await);
            (first, text(out.pop().await))
        });
        tokio::task::yield_now().await;
        assert!(hub_side.push(message(7)));
        tokio::task::yield_now().await;
        assert!(hub_side.close().is_empty(), "the waiter took 7 already");
        let (first, second) = waiter.await.unwrap();
        assert_eq!(first, "7");
        assert_eq!(second, "closed");
    }

    #[tokio::test]
    async fn the_bound_counts_live_pushes_only_and_frees_on_pop() {
        // Bound: 2 frames, or 5 bytes ("1", "2", ... are one byte each; "12345" five).
        let out = Outbox::new(QueueBound { frames: 2, bytes: 5 });
        out.push_uncounted(message(100)); // a replay: not counted
        out.push_uncounted(message(101));
        assert!(out.push(message(1)));
        assert!(out.push(message(2)));
        assert!(!out.push(message(3)), "three live pushes are over two frames");
        out.take_all();
        assert!(out.push(message(4)));
        assert_eq!(text(out.pop().await), "4");
        assert!(out.push(message(5)) && out.push(message(6)), "a pop frees its slot");
        out.take_all();
        assert!(!out.push(message(123_456)), "six bytes are over five");
        // Closing takes everything and wakes the connection's task.
        let out = Outbox::new(QueueBound::NONE);
        assert!(out.push(message(9)));
        let taken: Vec<String> = out.close().iter().map(|p| p.text().to_string()).collect();
        assert_eq!(taken, ["9"]);
        out.closed().await;
        assert_eq!(text(out.pop().await), "closed");
    }
}
