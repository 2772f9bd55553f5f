//! Fuzzing the transport over real sockets on loopback: a peer with valid credentials that
//! sends arbitrary bytes where frames belong, and strangers that send arbitrary bytes (or
//! nothing) to a party's listening port while its real peers connect. The frame decoder itself
//! is fuzzed without sockets in `tests/fuzz_decoders.rs`.
//!
//! Each case makes TLS identities and handshakes (about 20 ms on loopback), so these run
//! `PROPTEST_CASES / 16` cases (16 by default) rather than proptest's count, which its macro
//! would take from the variable as is. A long campaign:
//! `PROPTEST_CASES=32000 cargo test --release --lib mpc::tcp::fuzz -- --test-threads 1` (2,000
//! cases each, 40 s; each case leaves a few sockets in TIME_WAIT, so a few thousand cases at a
//! time keep clear of running out of local ports).

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;

const ROLES: [Role; 2] = [Role::Client, Role::Server];

/// A runner for `PROPTEST_CASES / 16` cases, at least 4.
fn runner() -> TestRunner {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(256);
    TestRunner::new(ProptestConfig {
        cases: (cases / 16).max(4),
        ..ProptestConfig::default()
    })
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("address");
    (l, addr)
}

fn deadlines() -> Deadlines {
    Deadlines::new(Duration::from_secs(5), Duration::from_secs(20))
}

/// What a stranger does to a party's listening port.
#[derive(Clone, Debug)]
enum Stranger {
    /// Sends these bytes and hangs up.
    Sends(Vec<u8>),
    /// Sends a TLS handshake record header announcing `len` bytes, then these, and hangs up.
    Record(u16, Vec<u8>),
    /// Connects and says nothing until the real peers are connected.
    Silent,
}

fn stranger() -> impl Strategy<Value = Stranger> {
    prop_oneof![
        vec(any::<u8>(), 0..600).prop_map(Stranger::Sends),
        (any::<u16>(), vec(any::<u8>(), 0..300)).prop_map(|(n, b)| Stranger::Record(n, b)),
        Just(Stranger::Silent),
    ]
}

/// The server, authenticated like any peer, sends the client raw bytes (a header of any
/// length, then anything) and hangs up: the client's receive returns a frame its bound admits,
/// exactly as sent, or an error naming the server, at once.
#[test]
fn fuzz_tcp_authenticated_peer_sends_garbage() {
    let case = (
        proptest::option::of((prop_oneof![0..64u64, any::<u64>()], any::<u64>())),
        vec(any::<u8>(), 0..256),
        0..128usize,
        any::<bool>(),
    );
    let result = runner().run(&case, |(header, garbage, bound, exact)| {
        let tls = PartyTls::ephemeral(&ROLES).expect("identities");
        let ((client_listener, client_addr), (server_listener, server_addr)) =
            (listener(), listener());
        let mut sent = header.map_or(Vec::new(), |(len, stamp)| {
            [len.to_le_bytes(), stamp.to_le_bytes()].concat()
        });
        sent.extend_from_slice(&garbage);
        let expect = if exact {
            Expect::Exactly(bound)
        } else {
            Expect::AtMost(bound)
        };
        let started = Instant::now();
        let received = std::thread::scope(|s| {
            // The server accepts the client's connection and dials the client, as a party
            // would, then writes bytes instead of frames and closes.
            let server = s.spawn(|| -> Result<_> {
                let until = Instant::now() + deadlines().per_message;
                let wire = Arc::new(WireCounters::default());
                let (tls, wire) = (&tls[1], &wire);
                std::thread::scope(|inner| {
                    let accepted = inner
                        .spawn(|| accept_peers(server_listener, tls, &[Role::Client], until, wire));
                    let mut out = dial(Role::Client, client_addr, tls, until, wire)?;
                    out.write_all(&sent)?;
                    out.conn.send_close_notify();
                    out.flush()?;
                    let incoming = accepted
                        .join()
                        .map_err(|_| anyhow!("accepting panicked"))??;
                    Ok((out, incoming))
                })
            });
            let mut client = TcpTransport::establish(
                &ROLES,
                client_listener,
                &[(Role::Server, server_addr)],
                &tls[0],
                deadlines(),
            )
            .expect("the server authenticates");
            let received = client.recv(1, expect);
            drop(server.join().expect("server thread").expect("server"));
            received
        });
        prop_assert!(
            started.elapsed() < Duration::from_secs(4),
            "took {:?}",
            started.elapsed()
        );
        let told = (sent.len() >= FRAME_HEADER_BYTES)
            .then(|| u64::from_le_bytes(sent[..8].try_into().expect("8 bytes")));
        match received {
            Ok(frame) => {
                prop_assert!(expect.admits(frame.len() as u64));
                prop_assert_eq!(Some(frame.len() as u64), told);
                prop_assert_eq!(frame.bytes(), &sent[FRAME_HEADER_BYTES..][..frame.len()]);
            }
            Err(TransportError::Unexpected { peer, len, .. }) => {
                prop_assert_eq!(peer, Role::Server);
                prop_assert_eq!(Some(len), told);
            }
            Err(TransportError::Disconnected { peer }) => prop_assert_eq!(peer, Role::Server),
            Err(e) => prop_assert!(false, "unexpected error: {e}"),
        }
        Ok(())
    });
    result.unwrap();
}

/// Strangers reach the server's port first, with bytes that are no TLS, a handshake record
/// cut short, or silence: client and server still connect, authenticate and pass a frame, well
/// before the handshake timeout.
#[test]
fn fuzz_tls_handshake_garbage_does_not_stop_peers() {
    let result = runner().run(&vec(stranger(), 1..4), |strangers| {
        let tls = PartyTls::ephemeral(&ROLES).expect("identities");
        let ((client_listener, client_addr), (server_listener, server_addr)) =
            (listener(), listener());
        let started = Instant::now();
        let silent: Vec<TcpStream> = strangers
            .iter()
            .filter_map(|stranger| {
                let mut stream = TcpStream::connect(server_addr).expect("connect");
                let bytes = match stranger {
                    Stranger::Sends(bytes) => bytes.clone(),
                    Stranger::Record(len, bytes) => {
                        [&[0x16, 0x03, 0x01], &len.to_be_bytes()[..], bytes].concat()
                    }
                    Stranger::Silent => return Some(stream),
                };
                // The party may close first: what is not written is no matter.
                let _ = stream.write_all(&bytes);
                let _ = stream.shutdown(std::net::Shutdown::Both);
                None
            })
            .collect();
        let frame = Frame::from_bytes(b"after the strangers", 1);
        let got = std::thread::scope(|s| {
            let server = s.spawn(|| {
                let peers = [(Role::Client, client_addr)];
                let mut t =
                    TcpTransport::establish(&ROLES, server_listener, &peers, &tls[1], deadlines())?;
                t.recv(0, Expect::Exactly(frame.len()))
                    .map_err(anyhow::Error::from)
            });
            let peers = [(Role::Server, server_addr)];
            let mut client =
                TcpTransport::establish(&ROLES, client_listener, &peers, &tls[0], deadlines())
                    .expect("the client connects");
            client.send(1, frame.clone()).expect("send");
            client.finish().expect("delivered");
            server.join().expect("server thread")
        });
        drop(silent);
        prop_assert_eq!(got.expect("the server connects and receives"), frame);
        prop_assert!(
            started.elapsed() < HANDSHAKE_TIMEOUT,
            "took {:?}",
            started.elapsed()
        );
        Ok(())
    });
    result.unwrap();
}
