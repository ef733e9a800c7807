//! A shard's event log (`events.bin`): every event its collector folded, in folding order,
//! so that `ackstorm merge` can fold the events of all shards as one run and audit a message
//! sent in one shard and received in another exactly as a single process would.
//!
//! Format: the magic line `ackstorm-events 2\n`, then one frame per event: its length as a
//! little-endian `u32`, then the event in postcard. Written through a buffer on the collector
//! thread (a few hundred nanoseconds an event); nothing of it is kept in memory.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use super::Event;

const MAGIC: &[u8] = b"ackstorm-events 2\n";

/// What can go wrong reading or writing an event log.
#[derive(Debug, Error)]
pub enum EventLogError {
    /// The file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The log.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not an event log of this version, or it is damaged.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The log.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// Appends events to a log.
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
    buf: Vec<u8>,
    /// The first error (writing stops there; the run goes on and reports it).
    error: Option<String>,
}

impl EventWriter {
    /// Creates (truncates) the log at `path`.
    pub fn create(path: &Path) -> Result<EventWriter, EventLogError> {
        let io = |source| EventLogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut out = BufWriter::with_capacity(256 * 1024, File::create(path).map_err(io)?);
        out.write_all(MAGIC).map_err(io)?;
        Ok(EventWriter {
            path: path.to_path_buf(),
            out,
            buf: Vec::with_capacity(256),
            error: None,
        })
    }

    /// Appends `e` (control events are not logged).
    pub fn write(&mut self, e: &Event) {
        if self.error.is_some() || matches!(e, Event::Snapshot(_) | Event::Finish(_)) {
            return;
        }
        self.buf.clear();
        self.buf.extend_from_slice(&[0; 4]);
        let r = match postcard::to_extend(e, std::mem::take(&mut self.buf)) {
            Ok(mut b) => {
                let n = (b.len() - 4) as u32;
                b[..4].copy_from_slice(&n.to_le_bytes());
                let r = self.out.write_all(&b).map_err(|e| e.to_string());
                self.buf = b;
                r
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = r {
            self.error = Some(format!("{}: {e}", self.path.display()));
        }
    }

    /// Flushes the log; returns the first error, if writing failed.
    pub fn finish(mut self) -> Option<String> {
        if self.error.is_none()
            && let Err(e) = self.out.flush()
        {
            self.error = Some(format!("{}: {e}", self.path.display()));
        }
        self.error
    }
}

/// Reads a log back, event by event.
pub struct EventReader {
    path: PathBuf,
    input: BufReader<File>,
    buf: Vec<u8>,
}

impl EventReader {
    /// Opens the log at `path` and checks its magic line.
    pub fn open(path: &Path) -> Result<EventReader, EventLogError> {
        let io = |source| EventLogError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut input = BufReader::with_capacity(256 * 1024, File::open(path).map_err(io)?);
        let mut magic = [0u8; MAGIC.len()];
        if input.read_exact(&mut magic).is_err() || magic != MAGIC {
            return Err(EventLogError::Corrupt {
                path: path.to_path_buf(),
                reason: "not an ackstorm event log (version 1)".into(),
            });
        }
        Ok(EventReader {
            path: path.to_path_buf(),
            input,
            buf: Vec::new(),
        })
    }

    fn corrupt(&self, reason: String) -> EventLogError {
        EventLogError::Corrupt {
            path: self.path.clone(),
            reason,
        }
    }

    /// The next event; `None` at the end.
    pub fn next_event(&mut self) -> Result<Option<Event>, EventLogError> {
        let mut len = [0u8; 4];
        match self.input.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(source) => {
                return Err(EventLogError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        }
        let n = u32::from_le_bytes(len) as usize;
        if n > 64 << 20 {
            return Err(self.corrupt(format!("a frame of {n} bytes")));
        }
        self.buf.resize(n, 0);
        if let Err(e) = self.input.read_exact(&mut self.buf) {
            return Err(self.corrupt(format!("the last event is cut short ({e})")));
        }
        postcard::from_bytes(&self.buf)
            .map(Some)
            .map_err(|e| self.corrupt(format!("an event does not decode: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collector::{Answer, ReqKind};
    use crate::sim::behaviour::MsgKey;
    use crate::transport::{MsgId, Refusal};

    #[test]
    fn events_read_back_as_written_and_damage_is_named() {
        let dir = std::env::temp_dir().join(format!("ackstorm-eventlog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.bin");
        let mut w = EventWriter::create(&path).unwrap();
        let key = MsgKey { sender: 7, seq: 3 };
        let events = [
            Event::Replied {
                user: 7,
                kind: ReqKind::Send,
                key: Some(key),
                conv: 2,
                answer: Answer::Accepted {
                    mid: MsgId::new("abc-123"),
                    group_ack: Some(true),
                    duplicate: false,
                },
                at: 1_500,
            },
            Event::Replied {
                user: 7,
                kind: ReqKind::Ping,
                key: None,
                conv: 0,
                answer: Answer::Refused(Refusal {
                    code: "rate_limited",
                    rate_limited: true,
                }),
                at: 1_600,
            },
            Event::Resent { n: 4 },
        ];
        for e in &events {
            w.write(e);
        }
        let (tx, _rx) = std::sync::mpsc::channel();
        w.write(&Event::Snapshot(tx));
        assert_eq!(w.finish(), None);
        let mut r = EventReader::open(&path).unwrap();
        let mut back = Vec::new();
        while let Some(e) = r.next_event().unwrap() {
            back.push(format!("{e:?}"));
        }
        let want: Vec<String> = events.iter().map(|e| format!("{e:?}")).collect();
        assert_eq!(back, want);

        // Cut the last frame short: the reader says so instead of stopping quietly.
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 2]).unwrap();
        let mut r = EventReader::open(&path).unwrap();
        let err = loop {
            match r.next_event() {
                Ok(Some(_)) => continue,
                Ok(None) => panic!("a cut log read to its end"),
                Err(e) => break e.to_string(),
            }
        };
        assert!(err.contains("cut short"), "{err}");
        std::fs::write(&path, b"something else").unwrap();
        assert!(EventReader::open(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
