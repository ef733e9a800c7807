//! Where a simulation's collector events go: folded on a second thread when the machine has
//! one to spare, in batches, in the order they were emitted.
//!
//! The fold is order-sensitive (a record settles at a tick, a receipt must find its message),
//! so there is one consumer and it sees the engine's sequence of events and ticks exactly; only
//! *when* the fold does its work changes, not what it computes. A batch is a few thousand
//! events: a channel message per event would cost more than the fold saves. Emptied batches go
//! back to the engine, so the buffers are allocated once. It must not read anything back from
//! the fold during the run (nothing in the engine depends on the collector).

use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};

use crate::collector::{Event, Inline};
use crate::sim::behaviour::Micros;

/// Events per batch.
const BATCH: usize = 4096;
/// Batches on their way at most (the engine waits past that: the fold sets the pace).
const IN_FLIGHT: usize = 16;

/// One step of the fold.
enum Step {
    Event(Event),
    Tick(Micros),
}

/// What the engine folds into.
pub(super) struct Sink<'a>(To<'a>);

enum To<'a> {
    /// On this thread.
    Here(&'a mut Inline),
    /// On the folding thread.
    Thread {
        batch: Vec<Step>,
        to: SyncSender<Vec<Step>>,
        spare: Receiver<Vec<Step>>,
    },
}

impl Sink<'_> {
    /// Folds one event.
    pub(super) fn event(&mut self, e: Event) {
        match &mut self.0 {
            To::Here(fold) => fold.fold(e),
            To::Thread { batch, .. } => {
                batch.push(Step::Event(e));
                if batch.len() >= BATCH {
                    self.send();
                }
            }
        }
    }

    /// Once a second of run time `now`.
    pub(super) fn tick(&mut self, now: Micros) {
        match &mut self.0 {
            To::Here(fold) => fold.tick(now),
            To::Thread { batch, .. } => batch.push(Step::Tick(now)),
        }
    }

    fn send(&mut self) {
        if let To::Thread { batch, to, spare } = &mut self.0 {
            let next = spare.try_recv().unwrap_or_else(|_| Vec::with_capacity(BATCH));
            let full = std::mem::replace(batch, next);
            // The folding thread only stops once this side is gone.
            to.send(full).expect("the folding thread runs until the engine is done");
        }
    }
}

/// Runs `f` with a sink into `fold`: on a second thread when there is a core for it.
pub(super) fn with_sink<R>(fold: &mut Inline, f: impl FnOnce(&mut Sink<'_>) -> R) -> R {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    if cores < 2 {
        return f(&mut Sink(To::Here(fold)));
    }
    std::thread::scope(|scope| {
        let (to, from) = sync_channel::<Vec<Step>>(IN_FLIGHT);
        let (back, spare) = channel::<Vec<Step>>();
        scope.spawn(move || fold_all(fold, &from, &back));
        let mut sink = Sink(To::Thread {
            batch: Vec::with_capacity(BATCH),
            to,
            spare,
        });
        let r = f(&mut sink);
        sink.send();
        // Dropping the sender ends the folding thread; the scope waits for it.
        drop(sink);
        r
    })
}

fn fold_all(fold: &mut Inline, from: &Receiver<Vec<Step>>, back: &Sender<Vec<Step>>) {
    for mut batch in from {
        for step in batch.drain(..) {
            match step {
                Step::Event(e) => fold.fold(e),
                Step::Tick(t) => fold.tick(t),
            }
        }
        // The engine may be done and gone: then the buffer is simply dropped.
        let _ = back.send(batch);
    }
}
