//! What every connection of a driver counts: frames and bytes each way, by the protocol's own
//! op names, and server frames that could not be used, by cause (never dropped silently).
//! Atomic counters shared by all connections; read once, by the run's summary.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Why a server frame could not be used; counted per cause, never dropped silently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolFault {
    /// Not JSON, or not a JSON object.
    InvalidJson,
    /// An `op` the protocol does not have.
    UnknownOp,
    /// A known op with a missing or wrong field (bad ids included).
    BadFrame,
    /// A binary WebSocket frame (the protocol uses text frames only).
    Binary,
}

impl ProtocolFault {
    /// Every cause, in counter order.
    pub const ALL: [ProtocolFault; 4] = [
        ProtocolFault::InvalidJson,
        ProtocolFault::UnknownOp,
        ProtocolFault::BadFrame,
        ProtocolFault::Binary,
    ];

    /// Name in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtocolFault::InvalidJson => "invalid_json",
            ProtocolFault::UnknownOp => "unknown_op",
            ProtocolFault::BadFrame => "bad_frame",
            ProtocolFault::Binary => "binary",
        }
    }
}

/// Frames and bytes through every connection of a driver, sent and received frames counted
/// by the protocol's own op names (the driver gives them).
#[derive(Debug)]
pub struct FrameStats {
    sent_ops: &'static [&'static str],
    received_ops: &'static [&'static str],
    sent: Box<[AtomicU64]>,
    received: Box<[AtomicU64]>,
    faults: [AtomicU64; ProtocolFault::ALL.len()],
    /// Payload bytes sent.
    pub bytes_sent: AtomicU64,
    /// Payload bytes received.
    pub bytes_received: AtomicU64,
}

impl FrameStats {
    /// Counters for a protocol with these client and server op names.
    pub fn new(sent_ops: &'static [&'static str], received_ops: &'static [&'static str]) -> FrameStats {
        FrameStats {
            sent_ops,
            received_ops,
            sent: sent_ops.iter().map(|_| AtomicU64::new(0)).collect(),
            received: received_ops.iter().map(|_| AtomicU64::new(0)).collect(),
            faults: std::array::from_fn(|_| AtomicU64::new(0)),
            bytes_sent: AtomicU64::new(0),
            bytes_received: AtomicU64::new(0),
        }
    }

    /// Counts a sent frame of client op `op` (index into the sent op names).
    pub fn sent(&self, op: usize, bytes: usize) {
        self.sent[op].fetch_add(1, Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts a received frame of server op `op` (index into the received op names).
    pub fn received(&self, op: usize, bytes: usize) {
        self.received[op].fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(bytes as u64, Relaxed);
    }

    /// Counts a server frame that could not be used.
    pub fn fault(&self, cause: ProtocolFault, bytes: usize) {
        self.faults[cause as usize].fetch_add(1, Relaxed);
        self.bytes_received.fetch_add(bytes as u64, Relaxed);
    }

    /// Unusable server frames by cause (every cause, zeros included).
    pub fn faults_by_cause(&self) -> Vec<(&'static str, u64)> {
        ProtocolFault::ALL
            .iter()
            .zip(&self.faults)
            .map(|(c, n)| (c.as_str(), n.load(Relaxed)))
            .collect()
    }

    /// All unusable server frames.
    pub fn total_faults(&self) -> u64 {
        self.faults.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Sent frames by op name.
    pub fn sent_by_op(&self) -> Vec<(&'static str, u64)> {
        self.sent_ops
            .iter()
            .zip(self.sent.iter())
            .map(|(n, c)| (*n, c.load(Relaxed)))
            .collect()
    }

    /// Received frames by op name.
    pub fn received_by_op(&self) -> Vec<(&'static str, u64)> {
        self.received_ops
            .iter()
            .zip(self.received.iter())
            .map(|(n, c)| (*n, c.load(Relaxed)))
            .collect()
    }

    /// All frames sent.
    pub fn total_sent(&self) -> u64 {
        self.sent.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// All frames received.
    pub fn total_received(&self) -> u64 {
        self.received.iter().map(|c| c.load(Relaxed)).sum()
    }
}
