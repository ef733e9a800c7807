//! A connection's outbox: the commands its user queues, in order, for the driver's writer
//! (generic over what is queued: the XMPP session queues its stanzas in one too, and its task
//! the events it hears, bounded: [`Outbox::send_bounded`]).
//!
//! A connection and its user live on one arbiter, so this is a plain shared queue rather than
//! a channel between threads: it allocates nothing until the first command (a tokio channel
//! allocates a block of 32 slots, ~2.6 KiB of `Command`s, when it is made, for every idle
//! connection), and sending never blocks. The reader side is polled by whatever writes to the
//! socket (the native driver's connection stream, or a task). This module must not know any
//! wire protocol.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use super::Command;

/// Commands an emptied queue keeps room for (a burst's larger block is given back).
const KEPT: usize = 8;

/// What both ends share.
struct Queue<T> {
    commands: RefCell<VecDeque<T>>,
    /// The reader, woken by a send (and by the last sender going away).
    waker: RefCell<Option<Waker>>,
    /// A sender waiting for room ([`Outbox::send_bounded`]), woken when the reader takes one.
    room: RefCell<Option<Waker>>,
    /// The reader stopped taking commands: sends fail.
    closed: Cell<bool>,
}

impl<T> Default for Queue<T> {
    fn default() -> Self {
        Queue {
            commands: RefCell::new(VecDeque::new()),
            waker: RefCell::new(None),
            room: RefCell::new(None),
            closed: Cell::new(false),
        }
    }
}

impl<T> Queue<T> {
    fn wake(&self) {
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    fn wake_sender(&self) {
        if let Some(w) = self.room.borrow_mut().take() {
            w.wake();
        }
    }
}

/// The sending half of a connection (cloneable; `!Send`, like the connection).
pub struct Outbox<T = Command>(Rc<Queue<T>>);

impl<T> Clone for Outbox<T> {
    fn clone(&self) -> Self {
        Outbox(self.0.clone())
    }
}

/// The connection's end of its [`Outbox`].
pub struct OutboxReader<T = Command>(Rc<Queue<T>>);

/// A new outbox and its reader.
pub fn outbox<T>() -> (Outbox<T>, OutboxReader<T>) {
    let queue = Rc::new(Queue::default());
    (Outbox(queue.clone()), OutboxReader(queue))
}

impl<T> Outbox<T> {
    /// Queues `cmd`; gives it back when the connection no longer takes commands (its writer
    /// ended: closed, reset, or failed).
    pub fn send(&self, cmd: T) -> Result<(), T> {
        if self.0.closed.get() {
            return Err(cmd);
        }
        self.0.commands.borrow_mut().push_back(cmd);
        self.0.wake();
        Ok(())
    }

    /// Queues `cmd` once fewer than `bound` are queued, waiting for the reader to take one
    /// (one sender at a time may wait); gives it back when the reader is closed or gone. The
    /// bounded channel of a single-threaded pair: a tokio channel costs a connection ~600
    /// bytes before its first item (the channel and a block of 32 slots).
    pub async fn send_bounded(&self, cmd: T, bound: usize) -> Result<(), T> {
        poll_fn(|cx| {
            if !self.0.closed.get() && self.0.commands.borrow().len() >= bound {
                *self.0.room.borrow_mut() = Some(cx.waker().clone());
                return Poll::Pending;
            }
            Poll::Ready(())
        })
        .await;
        self.send(cmd)
    }

    /// The connection no longer takes commands.
    pub fn is_closed(&self) -> bool {
        self.0.closed.get()
    }
}

impl<T> Drop for Outbox<T> {
    fn drop(&mut self) {
        // The last sender (the reader holds the other reference): the reader sees the end.
        if Rc::strong_count(&self.0) == 2 {
            self.0.wake();
        }
    }
}

impl<T> OutboxReader<T> {
    /// The next command, if one is queued. An emptied queue that grew gives its room back.
    pub fn try_recv(&mut self) -> Option<T> {
        let mut commands = self.0.commands.borrow_mut();
        let cmd = commands.pop_front();
        if commands.is_empty() && commands.capacity() > KEPT {
            *commands = VecDeque::new();
        }
        drop(commands);
        if cmd.is_some() {
            self.0.wake_sender();
        }
        cmd
    }

    /// Queues `cmd` of the reader's own behind what is queued (an answer that must keep its
    /// place in the order); whether it was: not once the reader is closed or every sender is
    /// gone (the writer is ending then).
    pub fn push(&self, cmd: T) -> bool {
        let open = !self.0.closed.get() && !self.senders_gone();
        if open {
            self.0.commands.borrow_mut().push_back(cmd);
        }
        open
    }

    /// Every [`Outbox`] of this connection is gone (and so no command will come).
    pub fn senders_gone(&self) -> bool {
        Rc::strong_count(&self.0) == 1
    }

    /// The next command; pending (with `cx` woken by the next send) when none is queued;
    /// `None` once the queue is empty and every sender is gone.
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Option<T>> {
        if let Some(cmd) = self.try_recv() {
            return Poll::Ready(Some(cmd));
        }
        if self.senders_gone() {
            return Poll::Ready(None);
        }
        self.register(cx.waker());
        Poll::Pending
    }

    /// The next command, waiting for one; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<T> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Wakes `waker` at the next send.
    pub fn register(&self, waker: &Waker) {
        let mut slot = self.0.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|w| w.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// Takes no more commands: sends fail from now on; what is queued is dropped.
    pub fn close(&mut self) {
        self.0.closed.set(true);
        self.0.waker.borrow_mut().take();
        self.0.wake_sender();
        // Dropped outside the borrow: a command's drop never reaches back into the queue.
        let queued = std::mem::take(&mut *self.0.commands.borrow_mut());
        drop(queued);
    }
}

impl<T> Drop for OutboxReader<T> {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Op;
    use std::future::Future;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn ping(req: u64) -> Command {
        Command::Request { req, op: Op::Ping }
    }

    #[test]
    fn commands_come_out_in_order_and_a_send_wakes_the_reader() {
        let (out, mut rx) = outbox();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        out.send(ping(1)).unwrap();
        out.clone().send(ping(2)).unwrap();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            1,
            "woken once: re-registered only by a poll"
        );
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(Some(ping(1))));
        assert_eq!(rx.try_recv(), Some(ping(2)));
        assert_eq!(rx.try_recv(), None);
        assert_eq!(rx.poll_recv(&mut cx), Poll::Pending);
        drop(out);
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "the last sender going away wakes it");
        assert!(rx.senders_gone());
        assert_eq!(rx.poll_recv(&mut cx), Poll::Ready(None));
    }

    #[test]
    fn a_bounded_send_waits_for_the_reader_to_take_one() {
        let (out, mut rx) = outbox();
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let mut cx = Context::from_waker(&waker);
        let mut first = std::pin::pin!(out.send_bounded(ping(1), 1));
        assert_eq!(first.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
        let mut second = std::pin::pin!(out.send_bounded(ping(2), 1));
        assert_eq!(second.as_mut().poll(&mut cx), Poll::Pending, "full");
        assert_eq!(rx.try_recv(), Some(ping(1)));
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "taking one woke the sender");
        assert_eq!(second.as_mut().poll(&mut cx), Poll::Ready(Ok(())));
        let mut third = std::pin::pin!(out.send_bounded(ping(3), 1));
        assert_eq!(third.as_mut().poll(&mut cx), Poll::Pending);
        rx.close();
        assert_eq!(count.0.load(Ordering::SeqCst), 2, "closing wakes it too");
        assert_eq!(third.as_mut().poll(&mut cx), Poll::Ready(Err(ping(3))));
    }

    #[test]
    fn sends_fail_once_the_reader_is_closed_or_gone() {
        let (out, mut rx) = outbox();
        out.send(ping(1)).unwrap();
        rx.close();
        assert!(out.is_closed());
        assert_eq!(out.send(ping(2)), Err(ping(2)));
        assert_eq!(rx.try_recv(), None, "what was queued is dropped");
        let (out, rx) = outbox();
        drop(rx);
        assert_eq!(out.send(Command::Close), Err(Command::Close));
    }
}
