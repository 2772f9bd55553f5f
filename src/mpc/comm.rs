//! The communicator: a party's view of the network, which encodes ring elements and counts
//! traffic per phase and operation label.

use super::cost::{PartyCost, Traffic};
use super::transport::{Transport, TransportError};
use std::time::{Duration, Instant};

/// Whether a message carries input-independent correlated randomness (offline) or not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Online,
    Offline,
}

pub struct Communicator {
    transport: Box<dyn Transport>,
    me: usize,
    label: String,
    cost: PartyCost,
    /// Logical round (Lamport clock over online messages): the longest chain of dependent
    /// online messages that led here.
    depth: u64,
    waited: Duration,
    started: Instant,
    /// When the current label became active.
    label_since: Instant,
}

/// Words as little-endian bytes, with room for the frame's stamp.
fn encode(words: &[u64]) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * 8 + STAMP_BYTES);
    for w in words {
        out.extend_from_slice(&w.to_le_bytes());
    }
    out
}

fn decode(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8-byte chunk")))
        .collect()
}

/// Every frame ends with its sender's round stamp. A trailer, not a header: appending to and
/// cutting from the end never moves the payload, which for dealer material is tens of MB.
pub(crate) const STAMP_BYTES: usize = 8;

impl Communicator {
    pub fn new(transport: Box<dyn Transport>, me: usize) -> Self {
        Self {
            transport,
            me,
            label: "other".into(),
            cost: PartyCost::default(),
            depth: 0,
            waited: Duration::ZERO,
            started: Instant::now(),
            label_since: Instant::now(),
        }
    }

    pub fn me(&self) -> usize {
        self.me
    }

    /// Set the operation label further traffic is counted under; returns the previous one.
    pub fn set_label(&mut self, label: &str) -> String {
        let spent = self.label_since.elapsed().as_secs_f64();
        self.traffic(Phase::Online).seconds += spent;
        self.label_since = Instant::now();
        std::mem::replace(&mut self.label, label.to_string())
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    fn traffic(&mut self, phase: Phase) -> &mut Traffic {
        match phase {
            Phase::Offline => &mut self.cost.offline,
            Phase::Online => self.cost.online.entry(self.label.clone()).or_default(),
        }
    }

    /// Send one message. Online messages carry the sender's round + 1 in an 8-byte stamp
    /// (not counted as traffic), so receivers can count rounds as the longest dependency chain
    /// rather than per-party waits; offline material carries 0 and never adds rounds.
    pub fn send_bytes(
        &mut self,
        to: usize,
        mut bytes: Vec<u8>,
        phase: Phase,
    ) -> Result<(), TransportError> {
        let t = self.traffic(phase);
        t.bytes_sent += bytes.len() as u64;
        t.messages_sent += 1;
        let stamp = match phase {
            Phase::Online => self.depth + 1,
            Phase::Offline => 0,
        };
        bytes.extend_from_slice(&stamp.to_le_bytes());
        self.transport.send(to, bytes)
    }

    pub fn recv_bytes(&mut self, from: usize, phase: Phase) -> Result<Vec<u8>, TransportError> {
        let t0 = Instant::now();
        let mut bytes = self.transport.recv(from)?;
        self.waited += t0.elapsed();
        let Some(len) = bytes.len().checked_sub(STAMP_BYTES) else {
            return Err(TransportError::Malformed { peer: from });
        };
        let stamp = u64::from_le_bytes(bytes[len..].try_into().expect("8 bytes"));
        bytes.truncate(len);
        let advance = stamp.saturating_sub(self.depth);
        self.depth = self.depth.max(stamp);
        let t = self.traffic(phase);
        t.bytes_received += bytes.len() as u64;
        t.messages_received += 1;
        t.rounds += advance;
        Ok(bytes)
    }

    pub fn send(&mut self, to: usize, words: &[u64], phase: Phase) -> Result<(), TransportError> {
        self.send_bytes(to, encode(words), phase)
    }

    pub fn recv(&mut self, from: usize, phase: Phase) -> Result<Vec<u64>, TransportError> {
        Ok(decode(&self.recv_bytes(from, phase)?))
    }

    /// Send `words` to `peer` and receive the same number back: one round.
    pub fn exchange(&mut self, peer: usize, words: &[u64]) -> anyhow::Result<Vec<u64>> {
        self.send(peer, words, Phase::Online)?;
        let got = self.recv(peer, Phase::Online)?;
        anyhow::ensure!(
            got.len() == words.len(),
            "peer {peer} sent {} words, expected {}",
            got.len(),
            words.len()
        );
        Ok(got)
    }

    /// The counters so far, with compute time = wall time minus time blocked on receives.
    pub fn cost(&self) -> PartyCost {
        let wall = self.started.elapsed();
        let mut cost = PartyCost {
            compute_seconds: wall.saturating_sub(self.waited).as_secs_f64(),
            wall_seconds: wall.as_secs_f64(),
            ..self.cost.clone()
        };
        let pending = self.label_since.elapsed().as_secs_f64();
        cost.online.entry(self.label.clone()).or_default().seconds += pending;
        cost
    }

    /// Restart the counters (e.g. after a one-time setup).
    pub fn reset_cost(&mut self) {
        self.cost = PartyCost::default();
        self.waited = Duration::ZERO;
        self.started = Instant::now();
        self.label_since = Instant::now();
        self.depth = 0;
    }
}
