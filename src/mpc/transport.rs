//! Point-to-point message transport between parties, and the in-process implementation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

/// Why a message could not be delivered. Peer loss is an error, never a hang.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("peer {peer} disconnected")]
    Disconnected { peer: usize },
    #[error("timed out after {secs} s waiting for peer {peer}")]
    Timeout { peer: usize, secs: u64 },
    #[error("i/o with peer {peer}: {source}")]
    Io {
        peer: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed message from peer {peer}")]
    Malformed { peer: usize },
    #[error("no channel to peer {peer}")]
    NoPeer { peer: usize },
}

/// Ordered, reliable delivery of whole messages between numbered parties.
pub trait Transport: Send {
    fn send(&mut self, to: usize, message: Vec<u8>) -> Result<(), TransportError>;
    fn recv(&mut self, from: usize) -> Result<Vec<u8>, TransportError>;
}

/// Default time a party waits for a peer before giving up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// In-process transport: one channel per ordered pair of parties, holding at most `capacity`
/// bytes (a larger message waits for an empty channel), so that a dealer running ahead of the
/// parties waits instead of queueing all its material in memory, as a socket's buffers would
/// make it wait.
pub struct MemoryTransport {
    senders: Vec<Option<Sender<Vec<u8>>>>,
    receivers: Vec<Option<Receiver<Vec<u8>>>>,
    /// Bytes queued on the channel to (senders) or from (receivers) each party.
    sent_queued: Vec<Arc<AtomicUsize>>,
    received_queued: Vec<Arc<AtomicUsize>>,
    capacity: usize,
    timeout: Duration,
}

/// How many bytes a [`MemoryTransport`] channel holds by default.
pub const CHANNEL_CAPACITY: usize = 256 << 20;

impl MemoryTransport {
    /// Fully connected transports for `n` parties, index = party; each channel holds up to
    /// `capacity` bytes (`usize::MAX`: unbounded).
    pub fn mesh(n: usize, timeout: Duration, capacity: usize) -> Vec<MemoryTransport> {
        let mut senders: Vec<Vec<Option<Sender<Vec<u8>>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut receivers: Vec<Vec<Option<Receiver<Vec<u8>>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let queued: Vec<Vec<Arc<AtomicUsize>>> = (0..n)
            .map(|_| (0..n).map(|_| Arc::new(AtomicUsize::new(0))).collect())
            .collect();
        for from in 0..n {
            for to in 0..n {
                if from != to {
                    let (tx, rx) = channel();
                    senders[from][to] = Some(tx);
                    receivers[to][from] = Some(rx);
                }
            }
        }
        senders
            .into_iter()
            .zip(receivers)
            .enumerate()
            .map(|(me, (senders, receivers))| MemoryTransport {
                senders,
                receivers,
                sent_queued: (0..n).map(|to| queued[me][to].clone()).collect(),
                received_queued: (0..n).map(|from| queued[from][me].clone()).collect(),
                capacity,
                timeout,
            })
            .collect()
    }
}

impl Transport for MemoryTransport {
    fn send(&mut self, to: usize, message: Vec<u8>) -> Result<(), TransportError> {
        let tx = self
            .senders
            .get(to)
            .and_then(Option::as_ref)
            .ok_or(TransportError::NoPeer { peer: to })?;
        let queued = &self.sent_queued[to];
        let deadline = Instant::now() + self.timeout;
        loop {
            let q = queued.load(Ordering::Acquire);
            if q == 0 || q.saturating_add(message.len()) <= self.capacity {
                break;
            }
            if Instant::now() >= deadline {
                return Err(TransportError::Timeout {
                    peer: to,
                    secs: self.timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        queued.fetch_add(message.len(), Ordering::AcqRel);
        tx.send(message)
            .map_err(|_| TransportError::Disconnected { peer: to })
    }

    fn recv(&mut self, from: usize) -> Result<Vec<u8>, TransportError> {
        let rx = self
            .receivers
            .get(from)
            .and_then(Option::as_ref)
            .ok_or(TransportError::NoPeer { peer: from })?;
        let message = rx.recv_timeout(self.timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => TransportError::Timeout {
                peer: from,
                secs: self.timeout.as_secs(),
            },
            RecvTimeoutError::Disconnected => TransportError::Disconnected { peer: from },
        })?;
        self.received_queued[from].fetch_sub(message.len(), Ordering::AcqRel);
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_peer_is_an_error_not_a_hang() {
        let mut mesh = MemoryTransport::mesh(2, Duration::from_millis(200), usize::MAX);
        let b = mesh.pop().unwrap();
        let mut a = mesh.pop().unwrap();
        a.send(1, vec![1]).unwrap();
        let err = a.recv(1).unwrap_err();
        assert!(
            matches!(err, TransportError::Timeout { peer: 1, .. }),
            "{err}"
        );
        drop(b);
        let err = a.recv(1).unwrap_err();
        assert_eq!(err.to_string(), "peer 1 disconnected");
    }

    #[test]
    fn a_full_channel_makes_the_sender_wait_not_queue() {
        let mut mesh = MemoryTransport::mesh(2, Duration::from_millis(300), 10);
        let mut b = mesh.pop().unwrap();
        let mut a = mesh.pop().unwrap();
        a.send(1, vec![0; 8]).unwrap();
        // 8 + 8 > 10: waits for b, which does not read, until the timeout.
        let err = a.send(1, vec![0; 8]).unwrap_err();
        assert!(
            matches!(err, TransportError::Timeout { peer: 1, .. }),
            "{err}"
        );
        assert_eq!(b.recv(0).unwrap().len(), 8);
        a.send(1, vec![0; 8]).unwrap();
        // A message larger than the capacity passes once the channel is empty.
        assert_eq!(b.recv(0).unwrap().len(), 8);
        a.send(1, vec![0; 64]).unwrap();
        assert_eq!(b.recv(0).unwrap().len(), 64);
    }
}
