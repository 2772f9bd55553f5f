//! What a party can compute from its view and what it already knows, found exactly.
//!
//! The statistics of [`super::stats`] look at frames alone, but a frame that is uniform alone
//! may still complete something the receiver holds: a share sent unmasked (the receiver has the
//! PRG stream that made the other share), or two openings whose masks the receiver can cancel
//! (a mask reused for two tensors whose shares come from a stream it shares with the sender).
//! So runs are made in which everything the receiver knows is the same: the seeds of its two
//! pairwise streams. Two runs `a` and `same` with the same secrets, differing only in the
//! stream between the two other parties, show what the receiver could compute without that
//! stream: an element equal in both, or a difference or sum of two elements anywhere in the
//! view (`d_a(p) = ±d_a(q)` for `d = a - same`, found by hashing) equal in both. Each such
//! combination must then be the same in a third run `other` with other secrets (and that stream
//! fresh again): if it changes, the receiver computes a function of the secrets.
//!
//! Elements of online frames are read at every width on the wire that divides a frame (8-byte
//! words, 6-byte truncation openings, 5- and 4-byte comparison openings); at least 29 bits of
//! each are random, so two unrelated elements agree by chance about once in 2^29: findings are
//! kept only where at least two elements of a frame, or two combinations of the same frames at
//! the same distance, agree. Offline frames are left out: they are the dealer's (helper's)
//! material, made from its streams alone before any secret is touched, and their DCF control
//! words hold as few random bits as the comparison has levels (20 for softmax's), so unrelated
//! ones agree by chance far too often for an exact test; the statistics of [`super::stats`]
//! and the key tests of [`super::dcf_keys`] cover them.

use super::record::Received;
use super::stats::{Finding, Test};
use crate::mpc::comm::Phase;
use std::collections::HashMap;

/// Element widths on the wire, in bytes.
const WIDTHS: [usize; 4] = [8, 6, 5, 4];

/// Elements sharing one difference value beyond which only neighbours are paired (a mask
/// broadcast over a tensor makes every element share one).
const BUCKET: usize = 16;

/// Combinations of `a`'s elements fixed by what its receiver knows yet changing with the
/// secrets: none when there are none. `same` must differ from `a` only in randomness the
/// receiver does not know, `other` in that and the secrets; all three of one shape.
pub(crate) fn determined(a: &[Received], same: &[Received], other: &[Received]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let shape = |v: &[Received]| v.iter().map(Received::shape).collect::<Vec<_>>();
    if shape(a) != shape(same) || shape(a) != shape(other) {
        findings.push(Finding {
            test: Test::Shape,
            detail: "the three runs' views differ in shape".into(),
        });
        return findings;
    }
    for width in WIDTHS {
        let modulus = if width == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * width)) - 1
        };
        let elements = |f: &Received| -> Vec<u64> {
            f.bytes
                .chunks_exact(width)
                .map(|c| {
                    let mut w = [0u8; 8];
                    w[..width].copy_from_slice(c);
                    u64::from_le_bytes(w)
                })
                .collect()
        };
        let frames: Vec<usize> = (0..a.len())
            .filter(|&i| a[i].phase() == Phase::Online)
            .filter(|&i| !a[i].bytes.is_empty() && a[i].bytes.len().is_multiple_of(width))
            .collect();
        let mut values: Vec<Option<[Vec<u64>; 3]>> = vec![None; a.len()];
        for &i in &frames {
            values[i] = Some([elements(&a[i]), elements(&same[i]), elements(&other[i])]);
        }
        // Every non-zero difference with its (frame, element), in order; zero ones by frame.
        let mut differences: Vec<(u64, (usize, usize))> = Vec::new();
        for &i in &frames {
            let [x, y, z] = values[i].as_ref().expect("read");
            let mut fixed = 0;
            for k in 0..x.len() {
                let d = x[k].wrapping_sub(y[k]) & modulus;
                if d != 0 {
                    differences.push((d, (i, k)));
                } else if x[k] != z[k] {
                    fixed += 1;
                }
            }
            if fixed >= 2 {
                findings.push(Finding {
                    test: Test::Determined,
                    detail: format!(
                        "{fixed} of frame {i}'s {width}-byte elements are fixed by what the \
                         party knows and change with the secrets"
                    ),
                });
            }
        }
        differences.sort_unstable();
        let with = |d: u64| -> &[(u64, (usize, usize))] {
            let from = differences.partition_point(|e| e.0 < d);
            let to = differences.partition_point(|e| e.0 <= d);
            &differences[from..to]
        };
        // (first frame, second frame, distance, sum?) -> combinations changing with the secrets.
        let mut changing: HashMap<(usize, usize, isize, bool), usize> = HashMap::new();
        let element =
            |run: usize, (i, k): (usize, usize)| values[i].as_ref().expect("read")[run][k];
        let mut check = |p: (usize, usize), q: (usize, usize), sum: bool| {
            let combine = |run: usize| {
                let (x, y) = (element(run, p), element(run, q));
                if sum {
                    x.wrapping_add(y)
                } else {
                    x.wrapping_sub(y)
                }
            };
            if (combine(0) ^ combine(2)) & modulus != 0 {
                let distance = q.1 as isize - p.1 as isize;
                *changing.entry((p.0, q.0, distance, sum)).or_default() += 1;
            }
        };
        for group in differences.chunk_by(|x, y| x.0 == y.0) {
            let d = group[0].0;
            let places: Vec<(usize, usize)> = group.iter().map(|e| e.1).collect();
            if places.len() > BUCKET {
                for w in places.windows(2) {
                    check(w[0], w[1], false);
                }
            } else {
                for (s, &p) in places.iter().enumerate() {
                    for &q in &places[s + 1..] {
                        check(p, q, false);
                    }
                }
            }
            // Equal and opposite differences: their sum is fixed. Each pair once.
            let negated = d.wrapping_neg() & modulus;
            if d < negated {
                for &p in places.iter().take(BUCKET) {
                    for &(_, q) in with(negated).iter().take(BUCKET) {
                        let (p, q) = if p < q { (p, q) } else { (q, p) };
                        check(p, q, true);
                    }
                }
            }
        }
        let mut flagged: Vec<_> = changing.into_iter().filter(|&(_, n)| n >= 2).collect();
        flagged.sort();
        for ((i, j, distance, sum), n) in flagged {
            let how = if sum { "sums" } else { "differences" };
            findings.push(Finding {
                test: Test::Determined,
                detail: format!(
                    "{n} {how} of {width}-byte elements of frame {i} and those {distance} on in \
                     frame {j} are fixed by what the party knows and change with the secrets"
                ),
            });
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::ops;
    use crate::mpc::protocol::{Protocol, ProtocolKind, Role};
    use crate::mpc::views::record::{Setup, run_recorded};
    use crate::mpc::views::stats::distinguish;
    use anyhow::Result;

    const N: usize = 512;

    /// How the toy below lets the client's input reach the server.
    #[derive(Clone, Copy, Debug)]
    enum Send {
        /// Masked by a mask from the client's stream with the dealer: correct.
        Masked,
        /// The client's share as is: the server holds the other share.
        Share,
        /// Two tensors masked alike, in one frame: their shares come from the client–server
        /// stream, so the server cancels everything.
        Reused,
    }

    /// The server's view of the client sending its input `x` (and a second one, `x / 2`), as
    /// `how` says, on 2pc-dealer with streams seeded by `seeds`.
    fn toy_view(how: Send, seeds: [u64; 3], x: f64) -> Vec<Received> {
        let program = |p: &mut dyn Protocol| -> Result<()> {
            let client = p.role() == Role::Client;
            let (one, half) = (vec![x; N], vec![x / 2.0; N]);
            let s = ops::share_f64(p, Role::Client, client.then_some(&one[..]), &[N])?;
            let t = ops::share_f64(p, Role::Client, client.then_some(&half[..]), &[N])?;
            match (how, p.role()) {
                (Send::Masked, _) => drop(p.mask(&[&s, &t])?),
                (Send::Share, Role::Client) => {
                    p.comm().send(1, s.parts()[0].data(), Phase::Online)?
                }
                (Send::Reused, Role::Client) => {
                    // One mask for both, drawn from a stream the server does not know.
                    let mask = crate::mpc::prg::Prg::from_seed([7; 32]).ring(&[N]);
                    let words = [s.parts()[0].sub(&mask)?, t.parts()[0].sub(&mask)?]
                        .iter()
                        .flat_map(|w| w.data().to_vec())
                        .collect::<Vec<u64>>();
                    p.comm().send(1, &words, Phase::Online)?;
                }
                (Send::Share, Role::Server) => drop(p.comm().recv(0, N, Phase::Online)?),
                (Send::Reused, Role::Server) => drop(p.comm().recv(0, 2 * N, Phase::Online)?),
                _ => {}
            }
            Ok(())
        };
        let run = run_recorded(ProtocolKind::TwoPartyDealer, Setup::Streams(seeds), program)
            .expect("toy run");
        run.views[Role::Server.index()].received.clone()
    }

    /// The server knows the client–server stream (0) and its own with the dealer (1): runs
    /// that differ in the dealer–client stream (2) alone show what it computes. A share sent
    /// as is and a mask reused within a frame are found, though each frame looks uniform and
    /// the statistics between runs see nothing; masking by the dealer's material passes.
    #[test]
    fn what_the_receiver_can_compute_is_found() {
        for (how, caught) in [
            (Send::Masked, false),
            (Send::Share, true),
            (Send::Reused, true),
        ] {
            let a = toy_view(how, [1, 2, 3], 1.5);
            let same = toy_view(how, [1, 2, 4], 1.5);
            let other = toy_view(how, [1, 2, 5], -20.25);
            let found = determined(&a, &same, &other);
            assert_eq!(!found.is_empty(), caught, "{how:?}: {found:?}");
            let between = distinguish(&a, &other);
            assert!(between.is_empty(), "{how:?}: {between:?}");
        }
    }
}
