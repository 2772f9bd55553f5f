//! The network transport: TCP with mutually authenticated TLS 1.3 between every pair of
//! parties ([`super::tls`]: each peer pinned by its certificate, bound to its role).
//!
//! Each pair talks over two one-way connections, one per direction: a party dials every peer
//! to send to it and accepts every peer's connection to receive from it. A TLS connection's
//! state cannot be split between a reading and a writing thread, and a writer thread per peer
//! is what keeps two parties sending large messages at once from deadlocking on full socket
//! buffers. Frames are `[len u64, stamp u64]` then `len` bytes ([`write_frame`],
//! [`read_frame`]); a receiver states the length it expects and refuses any other before
//! allocating. Accepted connections are authenticated in threads of their own with a short
//! deadline, so a stranger or a silent connection cannot stall the real peers; they only see a
//! failed handshake. Once every peer is connected the listener closes.

use super::protocol::Role;
use super::tls::{PartyTls, server_name};
use super::transport::{
    CHANNEL_CAPACITY, Expect, Frame, QueueBound, Transport, TransportError, WireBytes,
};
use anyhow::{Context, Result, anyhow, bail};
use rustls::{ClientConnection, ServerConnection, StreamOwned};
use std::io::{BufReader, BufWriter, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[cfg(test)]
mod fuzz;

/// Longest a connecting peer may take to authenticate.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; connections beyond are closed unanswered.
const MAX_PENDING_HANDSHAKES: usize = 16;
/// What the accepting side sends once it has authenticated the dialler: the dialler learns that
/// its own certificate was accepted before it sends anything.
const ACCEPTED: u8 = 0xA5;

/// A TCP stream that counts the bytes it moves (TLS records and frame headers included).
///
/// rustls reads the socket 4 KiB at a time and writes one 16 KiB record per `write` unless
/// given `write_vectored`; on loopback that was 8–20× the system calls of plain TCP and most of
/// TLS's overhead. So reads go through a buffer of [`SOCKET_BUFFER`] bytes and writes hand the
/// kernel every queued record at once.
struct Counted {
    stream: BufReader<TcpStream>,
    wire: Arc<WireCounters>,
}

/// Bytes read from the socket at once.
const SOCKET_BUFFER: usize = 1 << 18;
/// Encrypted bytes rustls may queue before it writes them out (its default is 64 KiB).
const SEND_BUFFER: usize = 1 << 20;

impl Counted {
    fn socket(&self) -> &TcpStream {
        self.stream.get_ref()
    }
}

#[derive(Default)]
struct WireCounters {
    sent: AtomicU64,
    received: AtomicU64,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.stream.read(buf)?;
        self.wire.received.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Write for Counted {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_vectored(&[std::io::IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let n = self.stream.get_mut().write_vectored(bufs)?;
        self.wire.sent.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.get_mut().flush()
    }
}

type Incoming = StreamOwned<ServerConnection, Counted>;
type Outgoing = StreamOwned<ClientConnection, Counted>;

/// What a transport needs to know of time: how long one message may take, and when the whole
/// run must be over.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    pub per_message: Duration,
    pub run: Instant,
}

impl Deadlines {
    pub fn new(per_message: Duration, run: Duration) -> Self {
        Self {
            per_message,
            run: Instant::now() + run,
        }
    }

    /// How long the next wait may be, and whether the run's deadline (not the per-message
    /// timeout) is what bounds it.
    fn next_wait(&self) -> (Duration, bool) {
        let left = self.run.saturating_duration_since(Instant::now());
        if left < self.per_message {
            (left.max(Duration::from_millis(1)), true)
        } else {
            (self.per_message, false)
        }
    }
}

struct Link {
    incoming: Incoming,
    /// The outgoing connection's socket, to cut it when the link is dropped on an error (a
    /// writer blocked on a peer that stopped reading then ends at once).
    outgoing_socket: TcpStream,
    /// `None` once closed.
    outgoing: Option<Sender<Frame>>,
    /// What is queued for the writer thread, bounded (a dealer running ahead waits).
    queued: QueueBound,
    writer: Option<JoinHandle<()>>,
    /// Set by the writer thread when a write fails.
    write_error: Arc<Mutex<Option<String>>>,
}

pub struct TcpTransport {
    links: Vec<Option<Link>>,
    /// Every party's role, by index.
    roles: Vec<Role>,
    deadlines: Deadlines,
    wire: Arc<WireCounters>,
}

/// An authenticated incoming connection, or why one was refused.
type Accepted = std::result::Result<(Role, Incoming), String>;

impl TcpTransport {
    /// Connect this party (listening on `listener`) with `peers`; `roles` are every party's,
    /// in index order. Fails if a peer is not there, is not who its certificate says, or does
    /// not accept this party's certificate, before `deadlines.per_message`.
    pub fn establish(
        roles: &[Role],
        listener: TcpListener,
        peers: &[(Role, SocketAddr)],
        tls: &PartyTls,
        deadlines: Deadlines,
    ) -> Result<Self> {
        let until = Instant::now() + deadlines.per_message;
        let wire = Arc::new(WireCounters::default());
        let index = |role: Role| {
            roles
                .iter()
                .position(|&r| r == role)
                .with_context(|| format!("{role} is not a party of this run"))
        };
        let expected: Vec<Role> = peers.iter().map(|p| p.0).collect();
        let (incoming, outgoing) = std::thread::scope(|s| {
            let acceptor = s.spawn(|| accept_peers(listener, tls, &expected, until, &wire));
            let outgoing = peers
                .iter()
                .map(|&(role, addr)| Ok((role, dial(role, addr, tls, until, &wire)?)))
                .collect::<Result<Vec<_>>>();
            let incoming = acceptor
                .join()
                .unwrap_or_else(|_| Err(anyhow!("the accepting thread panicked")));
            // A dialling error is the cause when both fail (the peer may have given up on us).
            let outgoing = outgoing?;
            anyhow::Ok((incoming?, outgoing))
        })?;
        let mut links: Vec<Option<Link>> = roles.iter().map(|_| None).collect();
        let mut incoming = incoming;
        for (role, out) in outgoing {
            let reader = incoming
                .iter()
                .position(|(r, _)| *r == role)
                .map(|i| incoming.swap_remove(i).1)
                .with_context(|| format!("the {role} did not connect"))?;
            links[index(role)?] = Some(Link::start(role, reader, out, deadlines)?);
        }
        Ok(Self {
            links,
            roles: roles.to_vec(),
            deadlines,
            wire,
        })
    }

    fn link(&mut self, peer: usize) -> Result<(&mut Link, Role), TransportError> {
        let role = *self
            .roles
            .get(peer)
            .ok_or(TransportError::NoPeer { peer })?;
        let link = self
            .links
            .get_mut(peer)
            .and_then(Option::as_mut)
            .ok_or(TransportError::NoPeer { peer })?;
        Ok((link, role))
    }
}

/// Dials `role` at `addr` (retrying until `until` while nothing listens there) and
/// authenticates both ways.
fn dial(
    role: Role,
    addr: SocketAddr,
    tls: &PartyTls,
    until: Instant,
    wire: &Arc<WireCounters>,
) -> Result<Outgoing> {
    let stream = loop {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(e).with_context(|| format!("connecting to the {role} at {addr}")),
        }
    };
    let config = tls.client_config(role)?;
    let mut conn = ClientConnection::new(config, server_name(role))?;
    conn.set_buffer_limit(Some(SEND_BUFFER));
    let fail = |e: std::io::Error| anyhow!("the {role} at {addr}: TLS handshake failed: {e}");
    let mut stream = handshake(conn, stream, wire).map_err(fail)?;
    let mut ack = [0u8];
    stream.read_exact(&mut ack).map_err(|e| {
        anyhow!("the {role} at {addr} did not accept this party's certificate: {e}")
    })?;
    if ack[0] != ACCEPTED {
        bail!(
            "the {role} at {addr} answered the handshake with {:#04x}",
            ack[0]
        );
    }
    Ok(stream)
}

/// Runs a TLS handshake to completion within [`HANDSHAKE_TIMEOUT`] (the caller sets the
/// timeouts it needs afterwards).
fn handshake<C, S>(
    mut conn: C,
    stream: TcpStream,
    wire: &Arc<WireCounters>,
) -> std::io::Result<StreamOwned<C, Counted>>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut sock = Counted {
        stream: BufReader::with_capacity(SOCKET_BUFFER, stream),
        wire: wire.clone(),
    };
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(StreamOwned::new(conn, sock))
}

/// Accepts until every one of `expected` has connected and authenticated, or `until`.
fn accept_peers(
    listener: TcpListener,
    tls: &PartyTls,
    expected: &[Role],
    until: Instant,
    wire: &Arc<WireCounters>,
) -> Result<Vec<(Role, Incoming)>> {
    listener.set_nonblocking(true)?;
    let config = tls.server_config()?;
    let (tx, rx) = channel::<Accepted>();
    let pending = Arc::new(AtomicUsize::new(0));
    let mut connected: Vec<(Role, Incoming)> = Vec::new();
    let mut refused: Vec<String> = Vec::new();
    while connected.len() < expected.len() {
        while let Ok(result) = rx.try_recv() {
            match result {
                Ok((role, stream)) if !expected.contains(&role) => {
                    refused.push(format!("the {role}, which is not a peer of this run"));
                    drop(stream);
                }
                Ok((role, _)) if connected.iter().any(|(r, _)| *r == role) => {
                    bail!("the {role} connected twice");
                }
                Ok(peer) => connected.push(peer),
                Err(why) => refused.push(why),
            }
        }
        if connected.len() == expected.len() {
            break;
        }
        match listener.accept() {
            Ok((stream, from)) => {
                if pending.load(Ordering::Acquire) >= MAX_PENDING_HANDSHAKES {
                    refused.push(format!("{from}: too many handshakes at once"));
                    continue;
                }
                pending.fetch_add(1, Ordering::AcqRel);
                let (config, tls, tx, pending, wire) = (
                    config.clone(),
                    tls.clone(),
                    tx.clone(),
                    pending.clone(),
                    wire.clone(),
                );
                // Detached: a silent connection ends at its own handshake timeout, after the
                // real peers may long have been served.
                std::thread::spawn(move || {
                    let result = authenticate(stream, config, &tls, &wire)
                        .map_err(|e| format!("{from}: {e}"));
                    pending.fetch_sub(1, Ordering::AcqRel);
                    let _ = tx.send(result);
                });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let missing: Vec<String> = expected
                    .iter()
                    .filter(|r| !connected.iter().any(|(c, _)| c == *r))
                    .map(|r| r.to_string())
                    .collect();
                let refused = if refused.is_empty() {
                    String::new()
                } else {
                    format!("; refused: {}", refused.join("; "))
                };
                bail!(
                    "timed out waiting for the {} to connect{refused}",
                    missing.join(" and the ")
                );
            }
            Err(e) => return Err(e).context("accepting a peer"),
        }
    }
    Ok(connected)
}

/// The server side of one incoming handshake: which pinned peer it is.
fn authenticate(
    stream: TcpStream,
    config: Arc<rustls::ServerConfig>,
    tls: &PartyTls,
    wire: &Arc<WireCounters>,
) -> std::result::Result<(Role, Incoming), String> {
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    let conn = ServerConnection::new(config).map_err(|e| e.to_string())?;
    let mut stream =
        handshake(conn, stream, wire).map_err(|e| format!("TLS handshake failed: {e}"))?;
    let role = stream
        .conn
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| tls.peer_of(cert))
        .ok_or("no pinned certificate")?;
    stream
        .write_all(&[ACCEPTED])
        .and_then(|_| stream.flush())
        .map_err(|e| e.to_string())?;
    Ok((role, stream))
}

impl Link {
    fn start(
        role: Role,
        incoming: Incoming,
        outgoing: Outgoing,
        deadlines: Deadlines,
    ) -> Result<Self> {
        outgoing
            .sock
            .socket()
            .set_write_timeout(Some(deadlines.per_message))?;
        let outgoing_socket = outgoing.sock.socket().try_clone()?;
        let (tx, rx) = channel::<Frame>();
        let write_error = Arc::new(Mutex::new(None));
        let slot = write_error.clone();
        let queued = QueueBound::new(CHANNEL_CAPACITY);
        let written = queued.clone();
        let writer = std::thread::spawn(move || {
            if let Err(e) = write_frames(outgoing, rx, &written, deadlines) {
                *slot.lock().expect("error slot") = Some(format!("writing to the {role}: {e}"));
            }
        });
        Ok(Link {
            incoming,
            outgoing_socket,
            outgoing: Some(tx),
            queued,
            writer: Some(writer),
            write_error,
        })
    }

    /// Closes the outgoing direction once everything queued is written; the writer's error.
    fn close(&mut self) -> Option<String> {
        self.outgoing.take();
        if let Some(t) = self.writer.take() {
            let _ = t.join();
        }
        self.write_error.lock().expect("error slot").take()
    }
}

/// The writer thread: frames in order, each flushed, then a TLS close.
fn write_frames(
    stream: Outgoing,
    frames: std::sync::mpsc::Receiver<Frame>,
    queued: &QueueBound,
    deadlines: Deadlines,
) -> std::io::Result<()> {
    let mut out = BufWriter::with_capacity(1 << 16, stream);
    for frame in frames {
        if Instant::now() >= deadlines.run {
            return Err(std::io::Error::other("the run's deadline passed"));
        }
        write_frame(&mut out, &frame)?;
        out.flush()?;
        queued.release(frame.len());
    }
    let mut stream = out.into_inner().map_err(|e| e.into_error())?;
    stream.conn.send_close_notify();
    stream.flush()
}

/// Bytes of a frame's header: its length and its stamp, little-endian `u64`s.
pub const FRAME_HEADER_BYTES: usize = 16;

/// Writes `frame` as its header, then its bytes.
pub fn write_frame(out: &mut impl Write, frame: &Frame) -> std::io::Result<()> {
    let header = [
        (frame.len() as u64).to_le_bytes(),
        frame.stamp.to_le_bytes(),
    ];
    out.write_all(header.as_flattened())?;
    out.write_all(frame.bytes())
}

/// Reads one frame from `peer`, refusing a length that `expect` does not admit before anything
/// is allocated for it; `io` says what a failed read means.
pub fn read_frame(
    input: &mut impl Read,
    expect: Expect,
    peer: Role,
    io: impl Fn(std::io::Error) -> TransportError,
) -> Result<Frame, TransportError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    input.read_exact(&mut header).map_err(&io)?;
    let [len, stamp] =
        [0, 8].map(|i| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes")));
    expect.check(peer, len)?;
    let mut frame = Frame::zeroed(len as usize, stamp);
    input.read_exact(frame.bytes_mut()).map_err(io)?;
    Ok(frame)
}

fn io_error(peer: Role, e: std::io::Error) -> TransportError {
    match e.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::BrokenPipe
        | ErrorKind::ConnectionAborted => TransportError::Disconnected { peer },
        _ => TransportError::Io { peer, source: e },
    }
}

impl Transport for TcpTransport {
    fn send(&mut self, to: usize, message: Frame) -> Result<(), TransportError> {
        let (wait, _) = self.deadlines.next_wait();
        let (link, peer) = self.link(to)?;
        if let Some(e) = link.write_error.lock().expect("error slot").take() {
            return Err(TransportError::Io {
                peer,
                source: std::io::Error::other(e),
            });
        }
        let tx = link
            .outgoing
            .as_ref()
            .ok_or(TransportError::Disconnected { peer })?;
        link.queued.reserve(message.len(), wait, peer)?;
        tx.send(message)
            .map_err(|_| TransportError::Disconnected { peer })
    }

    fn recv(&mut self, from: usize, expect: Expect) -> Result<Frame, TransportError> {
        let (wait, by_deadline) = self.deadlines.next_wait();
        let secs = self.deadlines.per_message.as_secs();
        let (link, peer) = self.link(from)?;
        link.incoming
            .sock
            .socket()
            .set_read_timeout(Some(wait))
            .map_err(|e| io_error(peer, e))?;
        read_frame(&mut link.incoming, expect, peer, |e| match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut if by_deadline => {
                TransportError::Deadline { peer }
            }
            ErrorKind::WouldBlock | ErrorKind::TimedOut => TransportError::Timeout { peer, secs },
            _ => io_error(peer, e),
        })
    }

    fn wire_bytes(&self) -> Option<WireBytes> {
        Some(WireBytes {
            sent: self.wire.sent.load(Ordering::Relaxed),
            received: self.wire.received.load(Ordering::Relaxed),
        })
    }

    /// Closes every link (each drains its queue), then reports the first that failed.
    fn finish(&mut self) -> Result<(), TransportError> {
        let failures: Vec<(Role, String)> = self
            .links
            .iter_mut()
            .zip(&self.roles)
            .filter_map(|(link, &peer)| Some((peer, link.as_mut()?.close()?)))
            .collect();
        match failures.into_iter().next() {
            Some((peer, e)) => Err(TransportError::Io {
                peer,
                source: std::io::Error::other(e),
            }),
            None => Ok(()),
        }
    }
}

/// A link dropped without [`Transport::finish`] belongs to a party that failed: its queued
/// frames no longer matter, so the connection is cut rather than drained (a writer blocked on a
/// peer that stopped reading would otherwise hold the party for the write timeout).
impl Drop for Link {
    fn drop(&mut self) {
        if self.writer.is_some() {
            let _ = self.outgoing_socket.shutdown(std::net::Shutdown::Both);
        }
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Shutdown;

    const PAIR: [Role; 2] = [Role::Client, Role::Server];

    fn listeners(n: usize) -> (Vec<TcpListener>, Vec<SocketAddr>) {
        let ls: Vec<TcpListener> = (0..n)
            .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs = ls.iter().map(|l| l.local_addr().unwrap()).collect();
        (ls, addrs)
    }

    /// Every party of `identities` (in role order) establishing at once.
    fn establish_all(
        identities: Vec<PartyTls>,
        listeners: Vec<TcpListener>,
        addrs: &[SocketAddr],
        deadlines: Deadlines,
    ) -> Vec<Result<TcpTransport>> {
        let roles: Vec<Role> = identities.iter().map(|t| t.role).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> = identities
                .into_iter()
                .zip(listeners)
                .map(|(tls, l)| {
                    let peers: Vec<(Role, SocketAddr)> = roles
                        .iter()
                        .zip(addrs)
                        .filter(|(r, _)| **r != tls.role)
                        .map(|(r, a)| (*r, *a))
                        .collect();
                    let roles = &roles;
                    s.spawn(move || TcpTransport::establish(roles, l, &peers, &tls, deadlines))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        })
    }

    fn short() -> Deadlines {
        Deadlines::new(Duration::from_secs(5), Duration::from_secs(30))
    }

    /// A silent connection, 16 random bytes and a TLS client with a certificate no one pinned,
    /// all at the client's port before the real peers connect: the peers connect, talk, and the
    /// strangers get nothing but a failed handshake.
    #[test]
    fn strangers_are_refused_and_do_not_stall_the_peers() {
        let (ls, addrs) = listeners(2);
        let target = addrs[0];
        let silent = TcpStream::connect(target).unwrap();
        let mut noise = TcpStream::connect(target).unwrap();
        noise
            .write_all(&[
                0x16, 3, 1, 0, 9, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7,
            ])
            .unwrap();
        let impostor = std::thread::spawn(move || {
            // Its own identity for the server role: the client has not pinned it.
            let fake = PartyTls::ephemeral(&[Role::Server, Role::Client]).unwrap();
            let wire = Arc::new(WireCounters::default());
            let until = Instant::now() + Duration::from_secs(5);
            dial(Role::Client, target, &fake[0], until, &wire).map(|_| ())
        });
        let t0 = Instant::now();
        let mut parties = establish_all(PartyTls::ephemeral(&PAIR).unwrap(), ls, &addrs, short());
        // Well before the silent connection's handshake timeout.
        assert!(t0.elapsed() < HANDSHAKE_TIMEOUT, "{:?}", t0.elapsed());
        let mut server = parties.pop().unwrap().unwrap();
        let mut client = parties.pop().unwrap().unwrap();
        client.send(1, Frame::from_bytes(b"hello", 1)).unwrap();
        assert_eq!(
            server.recv(0, Expect::Exactly(5)).unwrap().bytes(),
            b"hello"
        );
        let err = impostor.join().unwrap().unwrap_err().to_string();
        assert!(
            err.contains("TLS handshake failed") || err.contains("did not accept"),
            "{err}"
        );
        // The raw strangers learn nothing: the connection closes, at most with a TLS alert.
        let mut got = Vec::new();
        noise
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let _ = noise.read_to_end(&mut got);
        assert!(
            got.len() < 64 && got.first().is_none_or(|&b| b == 0x15),
            "{got:?}"
        );
        drop(silent);
    }

    /// A party at the server's address that is not the pinned server (another key claiming the
    /// role) is refused by the client, and refuses the client: one clear error each, in time.
    #[test]
    fn a_party_with_another_certificate_for_the_role_is_refused() {
        let (ls, addrs) = listeners(2);
        let real = PartyTls::ephemeral(&PAIR).unwrap();
        let other = PartyTls::ephemeral(&PAIR).unwrap();
        let identities = vec![real[0].clone(), other[1].clone()];
        let t0 = Instant::now();
        let results = establish_all(identities, ls, &addrs, short());
        assert!(t0.elapsed() < Duration::from_secs(12));
        for r in results {
            let err = format!("{:#}", r.err().expect("refused"));
            assert!(!err.contains('\n'), "{err}");
            assert!(
                err.contains("TLS handshake failed") || err.contains("did not accept"),
                "{err}"
            );
        }
    }

    #[test]
    fn one_identity_for_two_roles_is_refused() {
        let (key, cert) = super::super::tls::generate(Role::Server).unwrap();
        let err = PartyTls::from_pem(Role::Client, &key, &cert, &[(Role::Server, cert.clone())])
            .unwrap_err()
            .to_string();
        assert_eq!(err, "the client and the server have the same certificate");
    }

    fn pair() -> (TcpTransport, TcpTransport) {
        let (ls, addrs) = listeners(2);
        let d = Deadlines::new(Duration::from_secs(1), Duration::from_secs(30));
        let mut p = establish_all(PartyTls::ephemeral(&PAIR).unwrap(), ls, &addrs, d);
        let server = p.pop().unwrap().unwrap();
        (p.pop().unwrap().unwrap(), server)
    }

    /// A frame of another length than the receiver expects is refused, naming the peer; a peer
    /// whose connection drops mid-run (no TLS close) is a disconnection, not a hang.
    #[test]
    fn unexpected_frames_and_dropped_connections_are_errors() {
        let (mut client, mut server) = pair();
        client.send(1, Frame::zeroed(24, 1)).unwrap();
        let err = server.recv(0, Expect::Exactly(16)).unwrap_err().to_string();
        assert_eq!(
            err,
            "the client sent a message of 24 bytes where 16 were expected"
        );
        // The connection goes without a TLS close_notify, as when a party's process dies (a
        // fresh pair: a refused frame leaves its payload unread, and every error is final).
        let (mut client, mut server) = pair();
        let link = client.links[1].as_mut().unwrap();
        link.outgoing_socket.shutdown(Shutdown::Both).unwrap();
        let err = server.recv(0, Expect::Exactly(8)).unwrap_err();
        assert!(
            matches!(err, TransportError::Disconnected { peer: Role::Client }),
            "{err}"
        );
    }

    /// A peer that stops reading makes the sender fail when it finishes (its last messages
    /// cannot be delivered), within the write timeout, instead of exiting as if all went well.
    #[test]
    fn finishing_towards_a_peer_that_never_reads_is_an_error() {
        let (mut client, _server) = pair();
        for _ in 0..64 {
            client.send(1, Frame::zeroed(1 << 20, 1)).unwrap();
        }
        let t0 = Instant::now();
        let err = client.finish().unwrap_err().to_string();
        assert!(err.contains("writing to the server"), "{err}");
        // Loopback buffers take tens of MB before the first write blocks for the timeout.
        assert!(t0.elapsed() < Duration::from_secs(40), "{:?}", t0.elapsed());
    }

    /// Waiting past the run's deadline is its own error, even though the per-message timeout is
    /// longer.
    #[test]
    fn the_run_deadline_bounds_every_wait() {
        let (ls, addrs) = listeners(2);
        let d = Deadlines::new(Duration::from_secs(60), Duration::from_secs(2));
        let mut p = establish_all(PartyTls::ephemeral(&PAIR).unwrap(), ls, &addrs, d);
        let _server = p.pop().unwrap().unwrap();
        let mut client = p.pop().unwrap().unwrap();
        let t0 = Instant::now();
        let err = client.recv(1, Expect::Exactly(8)).unwrap_err().to_string();
        assert_eq!(
            err,
            "the run's deadline passed while waiting for the server"
        );
        assert!(t0.elapsed() < Duration::from_secs(4));
    }
}
