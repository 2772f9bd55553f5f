//! Point-to-point message transport between parties, and the in-process implementation.

use super::role::Role;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

/// Why a message could not be delivered. Peer loss is an error, never a hang; peers are named
/// by role.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("the {peer} disconnected")]
    Disconnected { peer: Role },
    #[error("timed out after {secs} s waiting for the {peer}")]
    Timeout { peer: Role, secs: u64 },
    #[error("the run's deadline passed while waiting for the {peer}")]
    Deadline { peer: Role },
    #[error("i/o with the {peer}: {source}")]
    Io {
        peer: Role,
        #[source]
        source: std::io::Error,
    },
    #[error("the {peer} sent a message of {len} bytes where {expect} were expected")]
    Unexpected {
        peer: Role,
        len: u64,
        expect: Expect,
    },
    #[error("malformed message from the {peer}")]
    Malformed { peer: Role },
    #[error("no channel to party {peer}")]
    NoPeer { peer: usize },
}

/// How long the next message from a peer may be, stated before it is read: every message's
/// shape is public, so a receiver refuses anything else before allocating for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    Exactly(usize),
    AtMost(usize),
}

impl Expect {
    pub fn admits(self, len: u64) -> bool {
        match self {
            Expect::Exactly(n) => len == n as u64,
            Expect::AtMost(n) => len <= n as u64,
        }
    }

    /// The error for a message of `len` bytes from `peer`, unless it is admitted.
    pub fn check(self, peer: Role, len: u64) -> Result<(), TransportError> {
        if self.admits(len) {
            Ok(())
        } else {
            Err(TransportError::Unexpected {
                peer,
                len,
                expect: self,
            })
        }
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Exactly(n) => write!(f, "{n}"),
            Expect::AtMost(n) => write!(f, "at most {n}"),
        }
    }
}

// Frames hold bytes in native words; the wire format is little-endian.
#[cfg(target_endian = "big")]
compile_error!("marill's wire format assumes a little-endian host");

/// A message: `len` bytes kept in whole words, so that word payloads (nearly all traffic,
/// tens of MB for dealer material) move between parties in one process without conversion,
/// and the sender's round stamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    words: Vec<u64>,
    len: usize,
    pub stamp: u64,
}

impl Frame {
    pub fn from_words(words: Vec<u64>, stamp: u64) -> Self {
        let len = words.len() * 8;
        Self { words, len, stamp }
    }

    pub fn from_bytes(bytes: &[u8], stamp: u64) -> Self {
        let mut frame = Self::zeroed(bytes.len(), stamp);
        frame.bytes_mut().copy_from_slice(bytes);
        frame
    }

    /// `len` zero bytes, to be filled through [`bytes_mut`](Self::bytes_mut).
    pub fn zeroed(len: usize, stamp: u64) -> Self {
        Self {
            words: vec![0; len.div_ceil(8)],
            len,
            stamp,
        }
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.words)[..self.len]
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut bytemuck::cast_slice_mut(&mut self.words)[..self.len]
    }

    /// The payload as words, `None` unless it is a whole number of them.
    pub fn into_words(self) -> Option<Vec<u64>> {
        self.len.is_multiple_of(8).then_some(self.words)
    }
}

/// Ordered, reliable delivery of whole messages between numbered parties.
pub trait Transport: Send {
    fn send(&mut self, to: usize, message: Frame) -> Result<(), TransportError>;
    /// The next message from `from`, refused unless its length is what `expect` admits.
    fn recv(&mut self, from: usize, expect: Expect) -> Result<Frame, TransportError>;
    /// Bytes sent and received on the wire (framing and encryption included), where the
    /// transport has one.
    fn wire_bytes(&self) -> Option<WireBytes> {
        None
    }
    /// Delivers what is still queued and reports a failure to; called once, when a party's
    /// program has ended well.
    fn finish(&mut self) -> Result<(), TransportError> {
        Ok(())
    }
}

/// What a network transport put on and took off the wire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WireBytes {
    pub sent: u64,
    pub received: u64,
}

/// Default time a party waits for a peer before giving up.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The bytes queued towards one peer and not yet taken off, bounded: a sender waits while a
/// message would overflow the bound (a larger one waits for an empty queue), so that a dealer
/// running ahead of the parties waits instead of holding all its material in memory.
#[derive(Clone, Debug)]
pub struct QueueBound {
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl QueueBound {
    /// `capacity` bytes (`usize::MAX`: unbounded).
    pub fn new(capacity: usize) -> Self {
        Self {
            queued: Arc::new(AtomicUsize::new(0)),
            capacity,
        }
    }

    /// Waits up to `timeout` for room for `len` bytes towards `peer`, then counts them in.
    pub fn reserve(&self, len: usize, timeout: Duration, peer: Role) -> Result<(), TransportError> {
        let deadline = Instant::now() + timeout;
        loop {
            let q = self.queued.load(Ordering::Acquire);
            if q == 0 || q.saturating_add(len) <= self.capacity {
                break;
            }
            if Instant::now() >= deadline {
                return Err(TransportError::Timeout {
                    peer,
                    secs: timeout.as_secs(),
                });
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        self.queued.fetch_add(len, Ordering::AcqRel);
        Ok(())
    }

    /// `len` bytes left the queue.
    pub fn release(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
    }
}

/// In-process transport: one channel per ordered pair of parties, holding at most `capacity`
/// bytes ([`QueueBound`]), as a socket's buffers would make a sender wait.
pub struct MemoryTransport {
    senders: Vec<Option<Sender<Frame>>>,
    receivers: Vec<Option<Receiver<Frame>>>,
    /// Bytes queued on the channel to (senders) or from (receivers) each party.
    sent_queued: Vec<QueueBound>,
    received_queued: Vec<QueueBound>,
    timeout: Duration,
    roles: Vec<Role>,
}

/// How many bytes a channel to one peer holds by default (memory and TCP transports).
pub const CHANNEL_CAPACITY: usize = 256 << 20;

impl MemoryTransport {
    /// Fully connected transports for the parties `roles`, index = party; each channel holds
    /// up to `capacity` bytes (`usize::MAX`: unbounded).
    pub fn mesh(roles: &[Role], timeout: Duration, capacity: usize) -> Vec<MemoryTransport> {
        let n = roles.len();
        let mut senders: Vec<Vec<Option<Sender<Frame>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let mut receivers: Vec<Vec<Option<Receiver<Frame>>>> =
            (0..n).map(|_| (0..n).map(|_| None).collect()).collect();
        let queued: Vec<Vec<QueueBound>> = (0..n)
            .map(|_| (0..n).map(|_| QueueBound::new(capacity)).collect())
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
                timeout,
                roles: roles.to_vec(),
            })
            .collect()
    }
}

impl Transport for MemoryTransport {
    fn send(&mut self, to: usize, message: Frame) -> Result<(), TransportError> {
        let tx = self
            .senders
            .get(to)
            .and_then(Option::as_ref)
            .ok_or(TransportError::NoPeer { peer: to })?;
        let peer = self.roles[to];
        self.sent_queued[to].reserve(message.len(), self.timeout, peer)?;
        tx.send(message)
            .map_err(|_| TransportError::Disconnected { peer })
    }

    fn recv(&mut self, from: usize, expect: Expect) -> Result<Frame, TransportError> {
        let rx = self
            .receivers
            .get(from)
            .and_then(Option::as_ref)
            .ok_or(TransportError::NoPeer { peer: from })?;
        let peer = self.roles[from];
        let message = rx.recv_timeout(self.timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => TransportError::Timeout {
                peer,
                secs: self.timeout.as_secs(),
            },
            RecvTimeoutError::Disconnected => TransportError::Disconnected { peer },
        })?;
        self.received_queued[from].release(message.len());
        expect.check(peer, message.len() as u64)?;
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_bytes_and_words() {
        let words = vec![0x0807_0605_0403_0201, u64::MAX];
        let f = Frame::from_words(words.clone(), 3);
        assert_eq!(f.len(), 16);
        assert_eq!(&f.bytes()[..8], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(Frame::from_bytes(f.bytes(), 3), f);
        assert_eq!(f.into_words(), Some(words));
        let odd = Frame::from_bytes(&[9, 8, 7], 0);
        assert_eq!((odd.len(), odd.bytes()), (3, &[9u8, 8, 7][..]));
        assert_eq!(odd.into_words(), None);
    }

    const PAIR: [Role; 2] = [Role::Client, Role::Server];

    #[test]
    fn dropped_peer_is_an_error_not_a_hang() {
        let mut mesh = MemoryTransport::mesh(&PAIR, Duration::from_millis(200), usize::MAX);
        let b = mesh.pop().unwrap();
        let mut a = mesh.pop().unwrap();
        a.send(1, Frame::from_bytes(&[1], 0)).unwrap();
        let err = a.recv(1, Expect::Exactly(1)).unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::Timeout {
                    peer: Role::Server,
                    ..
                }
            ),
            "{err}"
        );
        drop(b);
        let err = a.recv(1, Expect::Exactly(1)).unwrap_err();
        assert_eq!(err.to_string(), "the server disconnected");
    }

    #[test]
    fn a_message_of_another_length_is_refused() {
        let mut mesh = MemoryTransport::mesh(&PAIR, Duration::from_millis(200), usize::MAX);
        let mut b = mesh.pop().unwrap();
        let mut a = mesh.pop().unwrap();
        a.send(1, Frame::zeroed(24, 0)).unwrap();
        let err = b.recv(0, Expect::Exactly(16)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the client sent a message of 24 bytes where 16 were expected"
        );
        a.send(1, Frame::zeroed(24, 0)).unwrap();
        assert!(b.recv(0, Expect::AtMost(16)).is_err());
        a.send(1, Frame::zeroed(16, 0)).unwrap();
        assert_eq!(b.recv(0, Expect::AtMost(16)).unwrap().len(), 16);
    }

    #[test]
    fn a_full_channel_makes_the_sender_wait_not_queue() {
        let mut mesh = MemoryTransport::mesh(&PAIR, Duration::from_millis(300), 10);
        let mut b = mesh.pop().unwrap();
        let mut a = mesh.pop().unwrap();
        a.send(1, Frame::zeroed(8, 0)).unwrap();
        // 8 + 8 > 10: waits for b, which does not read, until the timeout.
        let err = a.send(1, Frame::zeroed(8, 0)).unwrap_err();
        assert!(
            matches!(
                err,
                TransportError::Timeout {
                    peer: Role::Server,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(b.recv(0, Expect::Exactly(8)).unwrap().len(), 8);
        a.send(1, Frame::zeroed(8, 0)).unwrap();
        // A message larger than the capacity passes once the channel is empty.
        assert_eq!(b.recv(0, Expect::Exactly(8)).unwrap().len(), 8);
        a.send(1, Frame::zeroed(64, 0)).unwrap();
        assert_eq!(b.recv(0, Expect::Exactly(64)).unwrap().len(), 64);
    }
}
