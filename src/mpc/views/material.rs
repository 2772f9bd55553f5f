//! Every mask, share, triple, truncation pair and DCF key is drawn exactly once.
//!
//! All correlated randomness comes from pairwise PRG streams: the dealer's (or helper's) stream
//! with each computing party supplies masks, triples' random parts, truncation masks and DCF
//! seeds; client and server share one for input masks (and 3pc's resharing); 3pc's neighbours
//! share zero-sharing streams. Whatever one end draws for a purpose the other end must draw
//! for the same purpose, in the same order. So at the end of a run both ends of every stream
//! must have drawn the same number of words and agree on the next one: a skipped draw, a value
//! used twice where the other end drew two, or material one side drew alone all show as two
//! ends out of step. What the dealer computes from its draws and sends (the correlated parts,
//! DCF correction words) must also all be read: for every pair of parties, the frames one sent
//! to the other are exactly those the other received.

use super::record::Recorded;
use crate::mpc::prg::Stream;
use std::collections::BTreeMap;

/// What breaks lock-step in `run`: none when every stream's ends agree and every frame sent
/// was received.
pub(crate) fn lock_step<T>(run: &Recorded<T>) -> Vec<String> {
    let mut findings = Vec::new();
    // Each stream's ends, by (purpose, holders): (party, where it stands).
    type Ends<'a> = BTreeMap<(&'a str, [usize; 2]), Vec<(usize, &'a Stream)>>;
    let mut ends = Ends::new();
    for (party, streams) in run.streams.iter().enumerate() {
        for s in streams {
            if !s.holders.contains(&party) {
                findings.push(format!("party {party} holds a stream of {:?}", s.holders));
            }
            ends.entry((s.purpose, s.holders))
                .or_default()
                .push((party, s));
        }
    }
    for ((purpose, holders), held) in &ends {
        let parties: Vec<usize> = held.iter().map(|(p, _)| *p).collect();
        match held.as_slice() {
            [(_, x), (_, y)] if parties == holders => {
                if (x.position, x.next) != (y.position, y.next) {
                    findings.push(format!(
                        "the {purpose} stream of parties {holders:?} is out of step: word {} \
                         (next {:#x}) at party {}, word {} (next {:#x}) at party {}",
                        x.position, x.next, holders[0], y.position, y.next, holders[1]
                    ));
                }
            }
            _ => findings.push(format!(
                "the {purpose} stream of parties {holders:?} is held by parties {parties:?}"
            )),
        }
    }
    for (from, view) in run.views.iter().enumerate() {
        for (to, other) in run.views.iter().enumerate().filter(|(to, _)| *to != from) {
            let sent: Vec<(usize, u64)> = view
                .sent
                .iter()
                .filter(|s| s.0 == to)
                .map(|s| (s.1, s.2))
                .collect();
            let received: Vec<(usize, u64)> = other
                .received
                .iter()
                .filter(|r| r.from == from)
                .map(|r| (r.bytes.len(), r.stamp))
                .collect();
            if sent != received {
                let bytes = |v: &[(usize, u64)]| v.iter().map(|m| m.0).sum::<usize>();
                findings.push(format!(
                    "party {from} sent party {to} {} frames ({} bytes), which received {} ({} bytes)",
                    sent.len(),
                    bytes(&sent),
                    received.len(),
                    bytes(&received)
                ));
            }
        }
    }
    findings
}

/// Words drawn from every stream, counted once per stream.
pub(crate) fn words_drawn<T>(run: &Recorded<T>) -> u128 {
    run.streams
        .iter()
        .flatten()
        .map(|s| s.position)
        .sum::<u128>()
        / 2
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::protocol::{ProtocolKind, Role};
    use crate::mpc::ring::RingTensor;
    use crate::mpc::views::ops::{CASES, Draw};
    use crate::mpc::views::record::{Setup, run_recorded};

    /// For every operation on every protocol, each stream's ends agree, every frame is read,
    /// and something was drawn beyond the setup; with seeds exchanged, and with streams seeded
    /// one by one (which this shows are wired as their seeds say).
    #[test]
    fn material_is_drawn_in_lock_step_by_every_op() {
        let mut failures = Vec::new();
        let setups = [Setup::Exchanged(7), Setup::Streams([1, 2, 3])];
        for (case, setup) in CASES.iter().flat_map(|c| setups.map(|s| (c, s))) {
            for kind in ProtocolKind::ALL {
                let run = case.run(kind, (Draw::Normal, 1), setup).expect("run");
                let bare = run_recorded(kind, setup, |_| Ok(())).expect("setup only");
                assert!(
                    words_drawn(&run) > words_drawn(&bare),
                    "{} {kind} {setup:?}: nothing drawn",
                    case.name
                );
                for finding in lock_step(&run) {
                    failures.push(format!("{} {kind} {setup:?}: {finding}", case.name));
                }
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// The check can fail: a client that shares an input the others know nothing of draws its
    /// mask alone (2pc-dealer: from the stream it shares with the server; 3pc: from both its
    /// zero-sharing streams, and its shares to the others are never read).
    #[test]
    fn material_drawn_by_one_party_alone_breaks_lock_step() {
        for kind in ProtocolKind::ALL {
            let run = run_recorded(kind, Setup::Exchanged(8), |p| {
                if p.role() == Role::Client {
                    let t = RingTensor::zeros(&[16]);
                    p.input(Role::Client, Some(&t), &[16])?;
                }
                Ok(())
            })
            .expect("run");
            let findings = lock_step(&run).join("\n");
            let wanted: &[&str] = match kind {
                ProtocolKind::TwoPartyDealer => &["the pair stream of parties [0, 1]"],
                ProtocolKind::ThreeParty => &[
                    "the zero stream of parties [0, 1]",
                    "the zero stream of parties [0, 2]",
                    // After the seed it sends the server at setup.
                    "party 0 sent party 1 2 frames (160 bytes), which received 1 (32 bytes)",
                    "party 0 sent party 2 1 frames (128 bytes), which received 0 (0 bytes)",
                ],
            };
            for w in wanted {
                assert!(
                    findings.contains(w),
                    "{kind}: `{w}` missing from:\n{findings}"
                );
            }
        }
    }
}
