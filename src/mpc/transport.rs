//! Point-to-point message transport between parties, and the in-process implementation.

use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::Duration;

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

/// In-process transport: one unbounded channel per ordered pair of parties.
pub struct MemoryTransport {
    senders: Vec<Option<Sender<Vec<u8>>>>,
    receivers: Vec<Option<Receiver<Vec<u8>>>>,
    timeout: Duration,
}

impl MemoryTransport {
    /// Fully connected transports for `n` parties, index = party.
    pub fn mesh(n: usize, timeout: Duration) -> Vec<MemoryTransport> {
        let mut senders: Vec<Vec<Option<Sender<Vec<u8>>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut receivers: Vec<Vec<Option<Receiver<Vec<u8>>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
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
            .map(|(senders, receivers)| MemoryTransport {
                senders,
                receivers,
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
        tx.send(message)
            .map_err(|_| TransportError::Disconnected { peer: to })
    }

    fn recv(&mut self, from: usize) -> Result<Vec<u8>, TransportError> {
        let rx = self
            .receivers
            .get(from)
            .and_then(Option::as_ref)
            .ok_or(TransportError::NoPeer { peer: from })?;
        rx.recv_timeout(self.timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => TransportError::Timeout {
                peer: from,
                secs: self.timeout.as_secs(),
            },
            RecvTimeoutError::Disconnected => TransportError::Disconnected { peer: from },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_peer_is_an_error_not_a_hang() {
        let mut mesh = MemoryTransport::mesh(2, Duration::from_millis(200));
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
}
