//! The checks of views on one computation, for every protocol: what the tests of operations
//! ([`super::ops`]) and of the whole secure forward (`secure::views`) run.

use super::determined::determined;
use super::ops::{Draw, PAIRS};
use super::record::{Received, Recorded, Setup};
use super::stats::{MIN_BYTES, distinguish};
use crate::mpc::prg::SEED_BYTES;
use crate::mpc::protocol::{ProtocolKind, Role};
use anyhow::Result;

/// A computation run on a protocol, with its secrets drawn as told (the number telling draws
/// apart), set up as told.
pub(crate) type Runs<'a, T> = dyn Fn(ProtocolKind, (Draw, u64), Setup) -> Result<Recorded<T>> + 'a;

/// What of a party's view (by party index) is public by design, as (tested, public): the
/// public frames are left out of the statistics and must be the same in both runs instead.
pub(crate) type Public<'a> = dyn Fn(&[Received], usize) -> (Vec<Received>, Vec<Received>) + 'a;

/// Everything that tells apart what should not be told apart, one line each; none when nothing
/// does. For every protocol:
/// - for each pair of draws, two runs: every party's view less its public frames, and its
///   openings, are not told apart ([`distinguish`]), its public frames are the same, and
///   2pc-dealer's dealer receives nothing else;
/// - three runs that keep everything a computing party knows (the seeds of its two streams,
///   `seeds[r - 1]` and `seeds[r]` for party `r`) and change the third stream, the last with
///   other secrets too: nothing in its view is fixed by what it knows and changes with the
///   secrets ([`determined`]).
pub(crate) fn check<T>(runs: &Runs<T>, public: &Public) -> Vec<String> {
    let mut failures = Vec::new();
    for kind in ProtocolKind::ALL {
        let mut fail = |what: String, findings: Vec<_>| {
            failures.extend(findings.into_iter().map(|f| format!("{kind}, {what}: {f}")));
        };
        for (k, (first, second)) in PAIRS.into_iter().enumerate() {
            let seed = 100 + 10 * k as u64;
            let a = runs(kind, (first, 1), Setup::Exchanged(seed)).expect("first run");
            let b = runs(kind, (second, 2), Setup::Exchanged(seed + 1)).expect("second run");
            for (party, role) in kind.roles().into_iter().enumerate() {
                let (ta, pa) = public(&a.views[party].received, party);
                let (tb, pb) = public(&b.views[party].received, party);
                assert_eq!(pa, pb, "{kind}: the {role}'s public frames differ");
                if role == Role::Dealer {
                    assert!(
                        ta.is_empty() && tb.is_empty(),
                        "{kind}: the dealer received"
                    );
                    continue;
                }
                // Enough to test, unless the run sent this party nothing but its seeds.
                let bytes: usize = ta.iter().map(|f| f.bytes.len()).sum();
                let seeds_only = ta.iter().all(|f| f.bytes.len() == SEED_BYTES);
                assert!(
                    bytes >= MIN_BYTES || seeds_only,
                    "{kind}: the {role} sees {bytes} bytes"
                );
                let what = format!("{first:?} vs {second:?}, {role}'s view");
                fail(what.clone(), distinguish(&ta, &tb));
                let (oa, ob) = (&a.views[party].opened, &b.views[party].opened);
                fail(format!("{what}, opened"), distinguish(oa, ob));
            }
        }
        let seeds = [11, 12, 13];
        let a = runs(kind, (Draw::Normal, 1), Setup::Streams(seeds)).expect("run");
        for (r, role) in kind.roles().into_iter().enumerate() {
            if role == Role::Dealer {
                continue;
            }
            let unknown = |seed: u64| {
                let mut s = seeds;
                s[(r + 1) % 3] = seed;
                Setup::Streams(s)
            };
            let same = runs(kind, (Draw::Normal, 1), unknown(20)).expect("run");
            let other = runs(kind, (Draw::Uniform, 2), unknown(30)).expect("run");
            let [x, y, z] = [&a, &same, &other].map(|run| public(&run.views[r].received, r).0);
            fail(format!("what the {role} knows"), determined(&x, &y, &z));
        }
    }
    failures
}
