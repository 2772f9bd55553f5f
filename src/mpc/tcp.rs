//! TCP transport: one connection per pair of parties, frames prefixed by their length and
//! stamp, a writer thread per connection (so two parties sending large messages at once cannot
//! deadlock on full socket buffers), read timeouts, and clear errors when a peer goes away.

use super::transport::{Frame, Transport, TransportError};
use anyhow::{Context, Result, bail};
use std::io::{BufReader, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Largest frame accepted (a guard against corrupt length prefixes).
const MAX_FRAME: u64 = 1 << 34;

struct PeerConn {
    reader: BufReader<TcpStream>,
    /// `None` once closed.
    writer: Option<Sender<Frame>>,
    writer_thread: Option<JoinHandle<()>>,
    /// Set by the writer thread when a write fails.
    write_error: Arc<Mutex<Option<String>>>,
}

pub struct TcpTransport {
    peers: Vec<Option<PeerConn>>,
    timeout: Duration,
}

fn io_error(peer: usize, e: std::io::Error) -> TransportError {
    match e.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::BrokenPipe
        | ErrorKind::ConnectionAborted => TransportError::Disconnected { peer },
        _ => TransportError::Io { peer, source: e },
    }
}

impl TcpTransport {
    /// Connect party `me` (listening on `listener`) with `peers` (index, address): it dials
    /// every lower index and accepts every higher one, retrying until `timeout`.
    pub fn establish(
        me: usize,
        listener: TcpListener,
        peers: &[(usize, SocketAddr)],
        timeout: Duration,
    ) -> Result<Self> {
        let n = peers.iter().map(|p| p.0).max().unwrap_or(0).max(me) + 1;
        let mut streams: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
        let deadline = Instant::now() + timeout;
        for &(peer, addr) in peers.iter().filter(|p| p.0 < me) {
            let mut stream = loop {
                match TcpStream::connect_timeout(&addr, Duration::from_secs(1)) {
                    Ok(s) => break s,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(100))
                    }
                    Err(e) => {
                        return Err(e)
                            .with_context(|| format!("connecting to party {peer} at {addr}"));
                    }
                }
            };
            stream.write_all(&(me as u64).to_le_bytes())?;
            streams[peer] = Some(stream);
        }
        let expected = peers.iter().filter(|p| p.0 > me).count();
        listener.set_nonblocking(true)?;
        let mut accepted = 0;
        while accepted < expected {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    stream.set_nonblocking(false)?;
                    stream.set_read_timeout(Some(timeout))?;
                    let mut idx = [0u8; 8];
                    stream
                        .read_exact(&mut idx)
                        .context("reading a peer's handshake")?;
                    let peer = u64::from_le_bytes(idx) as usize;
                    if peer >= n || peer <= me || streams[peer].is_some() {
                        bail!("unexpected handshake from party {peer}");
                    }
                    streams[peer] = Some(stream);
                    accepted += 1;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    bail!(
                        "timed out waiting for {} peer(s) to connect",
                        expected - accepted
                    )
                }
                Err(e) => return Err(e).context("accepting a peer"),
            }
        }
        let peers = streams
            .into_iter()
            .enumerate()
            .map(|(peer, s)| s.map(|s| Self::start(peer, s, timeout)).transpose())
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { peers, timeout })
    }

    /// Bind `listen` and [`establish`](Self::establish).
    pub fn connect(
        me: usize,
        listen: SocketAddr,
        peers: &[(usize, SocketAddr)],
        timeout: Duration,
    ) -> Result<Self> {
        let listener =
            TcpListener::bind(listen).with_context(|| format!("listening on {listen}"))?;
        Self::establish(me, listener, peers, timeout)
    }

    fn start(peer: usize, stream: TcpStream, timeout: Duration) -> Result<PeerConn> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        let mut write_half = stream.try_clone()?;
        let (tx, rx) = channel::<Frame>();
        let write_error = Arc::new(Mutex::new(None));
        let err_slot = write_error.clone();
        let writer_thread = std::thread::spawn(move || {
            for frame in rx {
                let header = [
                    (frame.len() as u64).to_le_bytes(),
                    frame.stamp.to_le_bytes(),
                ];
                let res = write_half
                    .write_all(header.as_flattened())
                    .and_then(|_| write_half.write_all(frame.bytes()));
                if let Err(e) = res {
                    *err_slot.lock().expect("error slot") =
                        Some(format!("write to party {peer}: {e}"));
                    return;
                }
            }
        });
        Ok(PeerConn {
            reader: BufReader::with_capacity(1 << 20, stream),
            writer: Some(tx),
            writer_thread: Some(writer_thread),
            write_error,
        })
    }

    fn conn(&mut self, peer: usize) -> Result<&mut PeerConn, TransportError> {
        self.peers
            .get_mut(peer)
            .and_then(Option::as_mut)
            .ok_or(TransportError::NoPeer { peer })
    }
}

impl Transport for TcpTransport {
    fn send(&mut self, to: usize, message: Frame) -> Result<(), TransportError> {
        let conn = self.conn(to)?;
        if let Some(e) = conn.write_error.lock().expect("error slot").take() {
            return Err(TransportError::Io {
                peer: to,
                source: std::io::Error::other(e),
            });
        }
        conn.writer
            .as_ref()
            .ok_or(TransportError::Disconnected { peer: to })?
            .send(message)
            .map_err(|_| TransportError::Disconnected { peer: to })
    }

    fn recv(&mut self, from: usize) -> Result<Frame, TransportError> {
        let secs = self.timeout.as_secs();
        let conn = self.conn(from)?;
        let read = |r: &mut BufReader<TcpStream>, buf: &mut [u8]| {
            r.read_exact(buf).map_err(|e| match e.kind() {
                ErrorKind::WouldBlock | ErrorKind::TimedOut => {
                    TransportError::Timeout { peer: from, secs }
                }
                _ => io_error(from, e),
            })
        };
        let mut header = [0u8; 16];
        read(&mut conn.reader, &mut header)?;
        let [len, stamp] =
            [0, 8].map(|i| u64::from_le_bytes(header[i..i + 8].try_into().expect("8 bytes")));
        if len > MAX_FRAME {
            return Err(TransportError::Malformed { peer: from });
        }
        let mut frame = Frame::zeroed(len as usize, stamp);
        read(&mut conn.reader, frame.bytes_mut())?;
        Ok(frame)
    }
}

/// Closing flushes: queued frames are written before the connection goes (a dealer that
/// finishes early must not take its last material with it). Bounded by the write timeout.
impl Drop for PeerConn {
    fn drop(&mut self) {
        self.writer.take();
        if let Some(t) = self.writer_thread.take() {
            let _ = t.join();
        }
    }
}
