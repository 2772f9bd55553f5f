//! The communicator: a party's view of the network, which encodes ring elements and counts
//! traffic per phase and operation label.

use super::cost::{CostClass, PartyCost, Traffic};
use super::role::Role;
use super::transport::{Expect, Frame, Transport, TransportError, WireBytes};
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
    /// Every party's role, by index (errors name peers by role).
    roles: Vec<Role>,
    label: CostClass,
    cost: PartyCost,
    /// Logical round (Lamport clock over online messages): the longest chain of dependent
    /// online messages that led here.
    depth: u64,
    waited: Duration,
    started: Instant,
    /// When the current label became active.
    label_since: Instant,
    /// The wire counters at the last reset.
    wire_base: WireBytes,
}

impl Communicator {
    pub fn new(transport: Box<dyn Transport>, me: usize, roles: &[Role]) -> Self {
        Self {
            transport,
            me,
            roles: roles.to_vec(),
            label: CostClass::Other,
            cost: PartyCost::default(),
            depth: 0,
            waited: Duration::ZERO,
            started: Instant::now(),
            label_since: Instant::now(),
            wire_base: WireBytes::default(),
        }
    }

    pub fn me(&self) -> usize {
        self.me
    }

    /// Set the operation class further traffic is counted under; returns the previous one.
    pub fn set_label(&mut self, label: CostClass) -> CostClass {
        let spent = self.label_since.elapsed().as_secs_f64();
        self.traffic(Phase::Online).seconds += spent;
        self.label_since = Instant::now();
        std::mem::replace(&mut self.label, label)
    }

    pub fn label(&self) -> CostClass {
        self.label
    }

    fn traffic(&mut self, phase: Phase) -> &mut Traffic {
        match phase {
            Phase::Offline => &mut self.cost.offline,
            Phase::Online => self.cost.online.entry(self.label).or_default(),
        }
    }

    /// Send one message. Online messages carry the sender's round + 1 as their stamp (not
    /// counted as traffic), so receivers can count rounds as the longest dependency chain
    /// rather than per-party waits; offline material carries 0 and never adds rounds.
    fn send_frame(
        &mut self,
        to: usize,
        frame: impl FnOnce(u64) -> Frame,
        phase: Phase,
    ) -> Result<(), TransportError> {
        let stamp = match phase {
            Phase::Online => self.depth + 1,
            Phase::Offline => 0,
        };
        let frame = frame(stamp);
        let t = self.traffic(phase);
        t.bytes_sent += frame.len() as u64;
        t.messages_sent += 1;
        self.transport.send(to, frame)
    }

    fn recv_frame(
        &mut self,
        from: usize,
        expect: Expect,
        phase: Phase,
    ) -> Result<Frame, TransportError> {
        let t0 = Instant::now();
        let frame = self.transport.recv(from, expect)?;
        self.waited += t0.elapsed();
        let advance = frame.stamp.saturating_sub(self.depth);
        self.depth = self.depth.max(frame.stamp);
        let t = self.traffic(phase);
        t.bytes_received += frame.len() as u64;
        t.messages_received += 1;
        t.rounds += advance;
        Ok(frame)
    }

    pub fn send_bytes(
        &mut self,
        to: usize,
        bytes: &[u8],
        phase: Phase,
    ) -> Result<(), TransportError> {
        self.send_frame(to, |stamp| Frame::from_bytes(bytes, stamp), phase)
    }

    /// Receive a message of bytes whose length `expect` admits (`AtMost` for one whose length
    /// only its sender knows).
    pub fn recv_bytes(
        &mut self,
        from: usize,
        expect: Expect,
        phase: Phase,
    ) -> Result<Vec<u8>, TransportError> {
        Ok(self.recv_frame(from, expect, phase)?.bytes().to_vec())
    }

    pub fn send(&mut self, to: usize, words: &[u64], phase: Phase) -> Result<(), TransportError> {
        self.send_frame(to, |stamp| Frame::from_words(words.to_vec(), stamp), phase)
    }

    /// Receive exactly `n` words; they are not copied on the way.
    pub fn recv(
        &mut self,
        from: usize,
        n: usize,
        phase: Phase,
    ) -> Result<Vec<u64>, TransportError> {
        self.recv_words(from, Expect::Exactly(n.saturating_mul(8)), phase)
    }

    /// Receive at most `max` words.
    pub fn recv_at_most(
        &mut self,
        from: usize,
        max: usize,
        phase: Phase,
    ) -> Result<Vec<u64>, TransportError> {
        self.recv_words(from, Expect::AtMost(max.saturating_mul(8)), phase)
    }

    fn recv_words(
        &mut self,
        from: usize,
        expect: Expect,
        phase: Phase,
    ) -> Result<Vec<u64>, TransportError> {
        let frame = self.recv_frame(from, expect, phase)?;
        let len = frame.len() as u64;
        frame.into_words().ok_or(TransportError::Unexpected {
            peer: self.roles[from],
            len,
            expect,
        })
    }

    /// Send `words` to `peer` and receive the same number back: one round.
    pub fn exchange(&mut self, peer: usize, words: &[u64]) -> anyhow::Result<Vec<u64>> {
        self.send(peer, words, Phase::Online)?;
        Ok(self.recv(peer, words.len(), Phase::Online)?)
    }

    /// The counters so far, with compute time = wall time minus time blocked on receives.
    pub fn cost(&self) -> PartyCost {
        let wall = self.started.elapsed();
        let mut cost = PartyCost {
            compute_seconds: wall.saturating_sub(self.waited).as_secs_f64(),
            wall_seconds: wall.as_secs_f64(),
            wire: self.transport.wire_bytes().map(|w| WireBytes {
                sent: w.sent - self.wire_base.sent,
                received: w.received - self.wire_base.received,
            }),
            ..self.cost.clone()
        };
        let pending = self.label_since.elapsed().as_secs_f64();
        cost.online.entry(self.label).or_default().seconds += pending;
        cost
    }

    /// This party's online rounds since the last reset: its logical clock, which every round
    /// it counts advances (so a difference of two readings is the rounds in between).
    pub fn rounds(&self) -> u64 {
        self.depth
    }

    /// Deliver what is still queued; a failure to is this party's failure.
    pub fn finish(&mut self) -> Result<(), TransportError> {
        self.transport.finish()
    }

    /// Restart the counters (e.g. after a one-time setup).
    pub fn reset_cost(&mut self) {
        self.cost = PartyCost::default();
        self.waited = Duration::ZERO;
        self.started = Instant::now();
        self.label_since = Instant::now();
        self.depth = 0;
        self.wire_base = self.transport.wire_bytes().unwrap_or_default();
    }
}
