//! Frames held for a durable store's commit (see the parent module): what is held, the wait,
//! and what becomes of held frames when the commit fails or the connection ends. It writes
//! nothing before the wait completes and never drops a held push (it goes back to the queue).

use std::borrow::Cow;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::{Conn, ConnError};
use crate::protocol::Outgoing;
use crate::server::hub::Reject;
use crate::server::outbox::Push;
use crate::server::store::Store;

/// A frame waiting for the store's commit.
pub(super) enum Deferred {
    /// A reply: its op and text, and its `req` in case the commit fails and it must be
    /// answered `internal` instead.
    Reply {
        op: usize,
        text: Utf8Bytes,
        req: Option<Box<str>>,
    },
    /// A push taken from the queue (back to the queue if it is not written).
    Push(Push),
}

impl<T, S> Conn<T, S>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Store,
{
    /// Waits until the store's changes up to `target` (and those the held frames reflect) are
    /// durable. If a commit failed instead, the held replies are answered `internal` (they
    /// reflect what will never be durable), the held pushes go back to the queue, and the
    /// connection is to end.
    pub(super) async fn settle(&mut self, target: u64) -> Result<(), ConnError> {
        let Err(e) = self.hub.settled_to(target.max(self.target)).await else {
            return Ok(());
        };
        let held = std::mem::take(&mut self.deferred);
        let mut pushes = Vec::new();
        for d in held {
            match d {
                Deferred::Push(p) => pushes.push(p),
                Deferred::Reply { req, .. } => {
                    let frame = self.hub.error_frame(Reject::from(e.clone()));
                    let out = Outgoing {
                        frame,
                        req: req.map(|r| Cow::Owned(r.into())),
                    };
                    // A write error ends the connection anyway; the other replies are moot.
                    let _ = self.feed_text(out.frame.op_index(), out.encode().into()).await;
                }
            }
        }
        self.deferred = pushes.into_iter().map(Deferred::Push).collect();
        self.unhold();
        Err(ConnError::Store(e))
    }

    /// Puts the held pushes back at the head of the queue, in order (for logout to store).
    pub(super) fn unhold(&mut self) {
        for d in std::mem::take(&mut self.deferred).into_iter().rev() {
            if let Deferred::Push(p) = d {
                self.outbox.put_back(p);
            }
        }
    }

    /// Writes the held frames, in order (the caller waited for the commit). A push whose
    /// write did not complete goes back to the queue with those after it.
    pub(super) async fn write_deferred(&mut self) -> Result<(), ConnError> {
        if self.deferred.is_empty() {
            return Ok(());
        }
        let mut held = std::mem::take(&mut self.deferred).into_iter();
        while let Some(d) = held.next() {
            let written = match &d {
                Deferred::Reply { op, text, .. } => self.feed_text(*op, text.clone()).await,
                Deferred::Push(p) => self.feed_text(p.op(), p.text().clone()).await,
            };
            if let Err(e) = written {
                self.deferred = std::iter::once(d).chain(held).collect();
                self.unhold();
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ERROR_OP;
    use crate::protocol::{ErrorCode, ServerFrame};

    #[test]
    fn the_error_op_index_is_that_of_error_frames() {
        let frame = ServerFrame::Error {
            code: ErrorCode::Internal,
            message: "".into(),
        };
        assert_eq!(frame.op_index(), ERROR_OP);
    }
}
