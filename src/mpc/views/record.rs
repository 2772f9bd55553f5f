//! Recording a run of all parties in this process: every frame each party receives (peer,
//! stamp, bytes) and sends (peer, length, stamp), what it opens, and where each party's
//! pairwise PRG streams stand when its program ends.

use crate::mpc::comm::{Communicator, Phase};
use crate::mpc::fixed::FixedPoint;
use crate::mpc::local::{RunOptions, run_local_with};
use crate::mpc::party::connect;
use crate::mpc::prg::{Prg, Stream};
use crate::mpc::protocol::{Protocol, ProtocolKind, Role};
use crate::mpc::provider::dealer::Dealer;
use crate::mpc::transport::{Expect, Frame, MemoryTransport, Transport, TransportError};
use crate::mpc::two_party::TwoParty;
use anyhow::Result;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One frame a party received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Received {
    pub from: usize,
    pub stamp: u64,
    pub bytes: Vec<u8>,
}

impl Received {
    /// The communicator stamps offline material 0 and online messages with their round.
    pub fn phase(&self) -> Phase {
        if self.stamp == 0 {
            Phase::Offline
        } else {
            Phase::Online
        }
    }

    /// What two runs' frames must share for their views to have the same shape.
    pub fn shape(&self) -> (usize, usize, u64) {
        (self.from, self.bytes.len(), self.stamp)
    }
}

/// Everything one party received, in order, the shape `(to, length, stamp)` of what it sent,
/// and what it opened.
///
/// An opening is an exchange: a party sends a peer a frame and at once receives one of the same
/// length from it (2pc-dealer's openings, 3pc's client–server openings inside truncations and
/// comparisons); what it learns is the two added up, element by element, which is also what a
/// mask reused for two tensors of computed values shows in (their shares, the frames, are
/// uniform to the receiver; their opened difference is the difference of the values). Elements
/// are added as words where the length allows (8 bytes), else as 6-, 5- or 4-byte elements
/// (truncation and comparison openings); a frame of narrower elements whose length happens to
/// be a multiple of 8 is added as words, carrying across elements, alike in every run.
#[derive(Clone, Debug, Default)]
pub(crate) struct View {
    pub received: Vec<Received>,
    pub sent: Vec<(usize, usize, u64)>,
    pub opened: Vec<Received>,
}

/// `sent + received`, element by element, at the widest element width their length allows.
fn open(sent: &[u8], received: &[u8]) -> Vec<u8> {
    let width = [8, 6, 5, 4, 1]
        .into_iter()
        .find(|w| sent.len().is_multiple_of(*w))
        .expect("1 divides");
    sent.chunks(width)
        .zip(received.chunks(width))
        .flat_map(|(x, y)| {
            let word = |c: &[u8]| {
                let mut w = [0u8; 8];
                w[..width].copy_from_slice(c);
                u64::from_le_bytes(w)
            };
            word(x).wrapping_add(word(y)).to_le_bytes()[..width].to_vec()
        })
        .collect()
}

/// A transport that logs what passes through it into a shared [`View`]. When its party ends,
/// its channels go to `kept` rather than away, so that a frame sent to a party that has ended
/// is kept unread (and shows as sent but never received) rather than failing its sender.
struct Recorder {
    inner: Option<MemoryTransport>,
    view: Arc<Mutex<View>>,
    kept: Arc<Mutex<Vec<MemoryTransport>>>,
    /// The frame just sent, and to whom, until the next receive.
    last_sent: Option<(usize, Vec<u8>)>,
}

impl Recorder {
    fn inner(&mut self) -> &mut MemoryTransport {
        self.inner.as_mut().expect("kept only once dropped")
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let inner = self.inner.take().expect("dropped once");
        self.kept.lock().expect("kept").push(inner);
    }
}

impl Transport for Recorder {
    fn send(&mut self, to: usize, message: Frame) -> Result<(), TransportError> {
        let shape = (to, message.len(), message.stamp);
        self.view.lock().expect("view").sent.push(shape);
        self.last_sent = Some((to, message.bytes().to_vec()));
        self.inner().send(to, message)
    }

    fn recv(&mut self, from: usize, expect: Expect) -> Result<Frame, TransportError> {
        let m = self.inner().recv(from, expect)?;
        let mut view = self.view.lock().expect("view");
        if let Some((to, sent)) = self.last_sent.take()
            && to == from
            && sent.len() == m.len()
        {
            view.opened.push(Received {
                from,
                stamp: m.stamp,
                bytes: open(&sent, m.bytes()),
            });
        }
        view.received.push(Received {
            from,
            stamp: m.stamp,
            bytes: m.bytes().to_vec(),
        });
        Ok(m)
    }
}

/// A recorded run, everything in party-index order.
pub(crate) struct Recorded<T> {
    pub outputs: Vec<T>,
    pub views: Vec<View>,
    pub streams: Vec<Vec<Stream>>,
}

/// How a recorded run's pairwise streams are seeded.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Setup {
    /// As in any run: every party draws the seeds it deals out from its own randomness (fixed
    /// by this number, see [`Prg::for_party`]) and sends them.
    Exchanged(u64),
    /// The stream between parties `i` and `i + 1 (mod 3)` seeded by `seeds[i]`, so that a test
    /// can change one stream and keep the others. In 3pc party `i` deals exactly that seed (its
    /// own randomness is fixed by `seeds[i]`) and sends it; 2pc-dealer's parties are built
    /// with their streams in place, as its dealer deals two seeds from one randomness.
    Streams([u64; 3]),
}

impl Setup {
    fn connect(
        self,
        kind: ProtocolKind,
        role: Role,
        comm: Communicator,
    ) -> Result<Box<dyn Protocol>> {
        let party = role.index();
        let fixed = FixedPoint::default();
        match (self, kind) {
            (Setup::Exchanged(seed), _) => connect(
                kind,
                role,
                comm,
                fixed,
                &mut Prg::for_party(Some(seed), party),
            ),
            (Setup::Streams(seeds), ProtocolKind::ThreeParty) => connect(
                kind,
                role,
                comm,
                fixed,
                &mut Prg::for_party(Some(seeds[party]), party),
            ),
            (Setup::Streams(seeds), ProtocolKind::TwoPartyDealer) => {
                // Party i's streams are seeds[i] (with i + 1) and seeds[i - 1] (with i - 1).
                let stream =
                    |i: usize| Prg::from_seed(Prg::derived_seed(seeds[i % 3], (i % 3) as u64));
                let (next, prev) = (stream(party), stream(party + 2));
                Ok(match role {
                    Role::Dealer => Box::new(Dealer::from_parts(comm, fixed, next, prev)),
                    Role::Client => Box::new(TwoParty::from_parts(role, comm, fixed, prev, next)?),
                    _ => Box::new(TwoParty::from_parts(role, comm, fixed, next, prev)?),
                })
            }
        }
    }
}

/// Runs `program` on every party of `kind` set up as `setup` says, recording each party's view
/// and, after its program, its streams.
pub(crate) fn run_recorded<T: Send>(
    kind: ProtocolKind,
    setup: Setup,
    program: impl Fn(&mut dyn Protocol) -> Result<T> + Sync,
) -> Result<Recorded<T>> {
    let views: Vec<Arc<Mutex<View>>> = (0..3).map(|_| Arc::default()).collect();
    let kept = Arc::default();
    let roles = kind.roles();
    let set_up = |role: Role, inner: MemoryTransport| {
        let recorder = Recorder {
            inner: Some(inner),
            view: views[role.index()].clone(),
            kept: Arc::clone(&kept),
            last_sent: None,
        };
        setup.connect(
            kind,
            role,
            Communicator::new(Box::new(recorder), role.index(), &roles),
        )
    };
    // With channels kept open, a party waiting for one that has failed waits for this long.
    let opts = RunOptions {
        timeout: Duration::from_secs(30),
        ..Default::default()
    };
    let run = run_local_with(kind, &opts, set_up, |p| {
        let out = program(p)?;
        Ok((out, p.streams()))
    })?;
    let (outputs, streams) = run.parties.into_iter().map(|p| p.output).unzip();
    let views = views
        .iter()
        .map(|v| std::mem::take(&mut *v.lock().expect("view")))
        .collect();
    Ok(Recorded {
        outputs,
        views,
        streams,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::ring::RingTensor;

    /// What a view records as opened is what the party opened (a value revealed to client and
    /// server, exchanged as word frames), however the streams are seeded; narrower elements add
    /// without carrying into the next.
    #[test]
    fn openings_are_what_each_party_opened() {
        let value: Vec<u64> = (0..10u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        for setup in [Setup::Exchanged(3), Setup::Streams([4, 5, 6])] {
            let run = run_recorded(ProtocolKind::TwoPartyDealer, setup, |p| {
                let mine =
                    (p.role() == Role::Client).then(|| RingTensor::new(&[10], value.clone()));
                let x = p.input(Role::Client, mine.transpose()?.as_ref(), &[10])?;
                let y = p.mask(&[&x])?.remove(0);
                let square = p.product(&y, &y, crate::mpc::protocol::Bilinear::Mul)?;
                p.reveal(&square, None)
            })
            .expect("run");
            let squares: Vec<u64> = value.iter().map(|v| v.wrapping_mul(*v)).collect();
            for party in [Role::Client, Role::Server].map(Role::index) {
                let opened = &run.views[party].opened;
                assert_eq!(opened.len(), 2, "{setup:?}: the mask and the result");
                assert_eq!(opened[1].bytes, bytemuck::cast_slice::<u64, u8>(&squares));
                let revealed = run.outputs[party].as_ref().map(|t| t.data().to_vec());
                assert_eq!(revealed, Some(squares.clone()), "{setup:?}");
            }
        }
        // 5-byte elements add with their carries dropped at 40 bits.
        let sent = [0xff, 0xff, 0xff, 0xff, 0xff, 1, 0, 0, 0, 0];
        let received = [1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(open(&sent, &received), [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    }
}
