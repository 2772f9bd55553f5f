//! Telling two views apart: the statistics behind the tests of views.
//!
//! Two runs with different secrets must give views of the same shape (the same sequence of
//! peer, length and stamp) whose bytes a two-sample chi² test cannot tell apart: over the whole
//! view, and over each frame (small frames in runs of consecutive ones), so that a leak in one
//! frame is not drowned by the rest.
//!
//! That test passes a mask reused for two secrets: each masked frame alone is uniform. Within
//! one view, then, the bytewise difference and sum of pairs of frames of the same length (each
//! with the next few of its length, from any peer), of every frame with itself shifted by 1 to
//! 8 bytes (masks reused across a frame's elements) and the small words among the differences
//! and sums of a word frame's words at every distance (two tensors of one opening masked alike)
//! must be distributed like the same combination of that view's frame with the other run's,
//! which are independent by construction: a reused mask makes the difference the difference of
//! the secrets, a negated one makes the sum their sum, both far from the reference when the
//! secrets are small. Comparing with the other run rather than with the uniform distribution
//! keeps legitimately structured bytes out of the verdict: the zero bits above a comparison's
//! width, the packed control bits of DCF keys are the same in both samples.

use super::record::Received;

/// Chi-square statistic of a byte histogram against the uniform one; 255 degrees of freedom.
pub(crate) fn chi_square_bytes(bytes: &[u8]) -> f64 {
    let mut h = [0usize; 256];
    bytes.iter().for_each(|&b| h[b as usize] += 1);
    let e = bytes.len() as f64 / 256.0;
    h.iter().map(|&c| (c as f64 - e).powi(2) / e).sum()
}

/// Two-sample chi-square (homogeneity) of two byte streams' histograms; 255 degrees of freedom.
pub(crate) fn chi_square_two_sample(a: &[u8], b: &[u8]) -> f64 {
    let (mut ha, mut hb) = ([0f64; 256], [0f64; 256]);
    a.iter().for_each(|&x| ha[x as usize] += 1.0);
    b.iter().for_each(|&x| hb[x as usize] += 1.0);
    let (na, nb) = (a.len() as f64, b.len() as f64);
    ha.iter()
        .zip(&hb)
        .filter(|(x, y)| **x + **y > 0.0)
        .map(|(x, y)| (x * (nb / na).sqrt() - y * (na / nb).sqrt()).powi(2) / (x + y))
        .sum()
}

/// Chi-square(255) exceeds 450 with probability 6e-13: thousands of tests per view stay far
/// from a false alarm, while a leak moves the statistic by thousands.
pub(crate) const CHI_LIMIT: f64 = 450.0;

/// The fewest bytes in a sample: 16 per histogram bin, where the chi-square approximation holds.
pub(crate) const MIN_BYTES: usize = 4096;

/// Bytes compared of a pair of frames, and how many later frames of its length a frame is paired
/// with (the exact test of [`super::determined`] pairs every element with every other).
const PAIR_BYTES: usize = 1024;
const PARTNERS: usize = 8;

/// Shifts of a frame against itself: every element width on the wire (8-byte words, 6-byte
/// truncation openings, comparison openings of 1 to 8 bytes).
const LAGS: std::ops::RangeInclusive<usize> = 1..=8;

/// How far apart two words of a frame are compared, each distance a test: as far as the
/// tensors one opening concatenates are long.
const WORD_DISTANCE: usize = 8192;

/// `-ln` of the false-alarm probability bound of one shift's test, and the fewest pairs that can
/// reach it (all of them within the frame: `n ln 2 > SHIFT_LIMIT`).
const SHIFT_LIMIT: f64 = 27.6;
const MIN_SHIFT_PAIRS: usize = 40;

/// Which statistic told two views apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Test {
    /// The two runs' frames differ in peer, length or stamp.
    Shape,
    /// Byte histograms of the two runs.
    Histogram,
    /// Bytewise differences within a view against those across views.
    Difference,
    /// Bytewise sums within a view against those across views.
    Sum,
    /// A combination of frames the receiver can compute that depends on the secrets
    /// ([`super::determined`]).
    Determined,
}

/// What one test saw: frames of a view, pairs of them, or a frame against itself shifted.
#[derive(Clone, Copy, Debug)]
enum Item {
    Frame(usize),
    Pair(usize, usize),
    Lag(usize, usize),
}

impl std::fmt::Display for Item {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Frame(i) => write!(f, "frame {i}"),
            Item::Pair(i, j) => write!(f, "frames {i} and {j}"),
            Item::Lag(i, lag) => write!(f, "frame {i} against itself {lag} bytes on"),
        }
    }
}

/// Something that tells two views apart.
#[derive(Clone, Debug)]
pub(crate) struct Finding {
    pub test: Test,
    pub detail: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.test, self.detail)
    }
}

/// Paired samples cut into chi-square tests of at least [`MIN_BYTES`] each (the remainder joins
/// the last test), so that one odd item is never diluted by more than a test's worth of others.
struct Tests<'a> {
    test: Test,
    /// Filling, and full but not yet tested (the remainder may still join it).
    filling: (Vec<u8>, Vec<u8>, Vec<Item>),
    full: Option<(Vec<u8>, Vec<u8>, Vec<Item>)>,
    findings: &'a mut Vec<Finding>,
}

impl<'a> Tests<'a> {
    fn new(test: Test, findings: &'a mut Vec<Finding>) -> Self {
        Self {
            test,
            filling: Default::default(),
            full: None,
            findings,
        }
    }

    fn add(
        &mut self,
        item: Item,
        a: impl IntoIterator<Item = u8>,
        b: impl IntoIterator<Item = u8>,
    ) {
        self.filling.0.extend(a);
        self.filling.1.extend(b);
        self.filling.2.push(item);
        if self.filling.0.len() >= MIN_BYTES {
            if let Some(full) = self.full.take() {
                self.run(full);
            }
            self.full = Some(std::mem::take(&mut self.filling));
        }
    }

    fn run(&mut self, (a, b, items): (Vec<u8>, Vec<u8>, Vec<Item>)) {
        if a.is_empty() {
            return;
        }
        let chi = chi_square_two_sample(&a, &b);
        if chi > CHI_LIMIT {
            let shown: Vec<String> = items.iter().take(6).map(Item::to_string).collect();
            let more = items.len().saturating_sub(shown.len());
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            self.findings.push(Finding {
                test: self.test,
                detail: format!(
                    "chi^2 {chi:.0} over {} bytes of {}{more}",
                    a.len(),
                    shown.join(", ")
                ),
            });
        }
    }

    /// Tests what is left; fewer than [`MIN_BYTES`] in all make no test.
    fn finish(mut self) {
        let rest = std::mem::take(&mut self.filling);
        if let Some((mut a, mut b, mut items)) = self.full.take() {
            a.extend(rest.0);
            b.extend(rest.1);
            items.extend(rest.2);
            self.run((a, b, items));
        }
    }
}

/// What tells apart two views that should be indistinguishable: none when nothing does.
pub(crate) fn distinguish(a: &[Received], b: &[Received]) -> Vec<Finding> {
    let mut findings = Vec::new();
    if let Some(i) = (0..a.len().max(b.len()))
        .find(|&i| a.get(i).map(Received::shape) != b.get(i).map(Received::shape))
    {
        findings.push(Finding {
            test: Test::Shape,
            detail: format!(
                "frame {i} is (peer, bytes, stamp) {:?} in one run and {:?} in the other",
                a.get(i).map(Received::shape),
                b.get(i).map(Received::shape)
            ),
        });
        return findings;
    }
    let all = |v: &[Received]| {
        v.iter()
            .flat_map(|f| f.bytes.iter().copied())
            .collect::<Vec<_>>()
    };
    let (whole_a, whole_b) = (all(a), all(b));
    if whole_a.len() >= MIN_BYTES {
        let chi = chi_square_two_sample(&whole_a, &whole_b);
        if chi > CHI_LIMIT {
            findings.push(Finding {
                test: Test::Histogram,
                detail: format!(
                    "chi^2 {chi:.0} over the whole view, {} bytes",
                    whole_a.len()
                ),
            });
        }
    }
    let mut frames = Tests::new(Test::Histogram, &mut findings);
    for (i, (fa, fb)) in a.iter().zip(b).enumerate() {
        frames.add(
            Item::Frame(i),
            fa.bytes.iter().copied(),
            fb.bytes.iter().copied(),
        );
    }
    frames.finish();
    combinations(a, b, &mut findings);
    combinations(b, a, &mut findings);
    word_shifts(a, b, &mut findings);
    word_shifts(b, a, &mut findings);
    findings
}

/// Within each word frame of `view`, word `k` against word `k + s` at every distance `s` up to
/// [`WORD_DISTANCE`]: how many of their differences (sums) are small, the top 16 bits of the
/// two words (of one and of the other negated) being equal, against the same with `other`'s
/// frame. A mask reused within one opening (two tensors of one frame masked alike) makes nearly
/// all of them small at the tensors' distance, where independent words make one in 2^16. Both
/// counts are then equally likely to take each small pair: a count `w` of `t` in all is flagged
/// when the Chernoff bound on `Binomial(t, 1/2) >= w` falls below `e^-SHIFT_LIMIT`. Words are
/// paired through a table of their top bits, so this costs about a pass over the frame;
/// tops shared by far more words than uniform ones would (DCF control words, whose top bits are
/// zero) are passed over: small words the histograms and the other combinations see.
fn word_shifts(view: &[Received], other: &[Received], findings: &mut Vec<Finding>) {
    let words = |bytes: &[u8]| -> Vec<u64> {
        bytes
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect()
    };
    // A frame's word positions by their top 16 bits (counting sort): those of top `t`,
    // ascending, are `positions[starts[t]..starts[t + 1]]`.
    let by_top = |words: &[u64]| -> (Vec<usize>, Vec<usize>) {
        let mut starts = vec![0; (1 << 16) + 1];
        for w in words {
            starts[(w >> 48) as usize + 1] += 1;
        }
        for t in 0..1 << 16 {
            starts[t + 1] += starts[t];
        }
        let mut next = starts.clone();
        let mut positions = vec![0; words.len()];
        for (j, w) in words.iter().enumerate() {
            let t = (w >> 48) as usize;
            positions[next[t]] = j;
            next[t] += 1;
        }
        (starts, positions)
    };
    for (i, (x, y)) in view.iter().zip(other).enumerate() {
        // Fewer pairs at one distance can never be flagged.
        if !x.bytes.len().is_multiple_of(8) || x.bytes.len() < 8 * MIN_SHIFT_PAIRS {
            continue;
        }
        let x = words(&x.bytes);
        let tables = [by_top(&x), by_top(&words(&y.bytes))];
        // Uniform words share a top with about n / 2^16 others.
        let crowded = 16 + 8 * x.len() / (1 << 16);
        type Partner = fn(u64) -> u64;
        let ways: [(Test, Partner); 2] =
            [(Test::Difference, |w| w), (Test::Sum, u64::wrapping_neg)];
        for (test, partner) in ways {
            // Small pairs by distance, within the frame and with the other run's.
            let mut counts = vec![[0f64; 2]; x.len().min(WORD_DISTANCE + 1)];
            for (k, &w) in x.iter().enumerate() {
                let top = (partner(w) >> 48) as usize;
                for (side, (starts, positions)) in tables.iter().enumerate() {
                    let places = &positions[starts[top]..starts[top + 1]];
                    if places.len() > crowded {
                        continue;
                    }
                    let from = places.partition_point(|&j| j <= k);
                    for &j in places[from..]
                        .iter()
                        .take_while(|&&j| j - k <= WORD_DISTANCE)
                    {
                        counts[j - k][side] += 1.0;
                    }
                }
            }
            for (distance, &[within, across]) in counts.iter().enumerate() {
                let total = within + across;
                let q = within / total;
                let entropy = |p: f64| if p > 0.0 { p * (2.0 * p).ln() } else { 0.0 };
                if q > 0.5 && total * (entropy(q) + entropy(1.0 - q)) > SHIFT_LIMIT {
                    findings.push(Finding {
                        test,
                        detail: format!(
                            "{within} words of frame {i} pair with the word {distance} on, \
                             against {across} with the other run's"
                        ),
                    });
                }
            }
        }
    }
}

/// Pairs and shifts of `view`'s frames against the same of `view`'s with `other`'s.
fn combinations(view: &[Received], other: &[Received], findings: &mut Vec<Finding>) {
    type Combine = fn(u8, u8) -> u8;
    let ways: [(Test, Combine); 2] = [
        (Test::Difference, u8::wrapping_sub),
        (Test::Sum, u8::wrapping_add),
    ];
    for (test, combine) in ways {
        let mut tests = Tests::new(test, findings);
        let mut add = |item: Item, x: &[u8], y: &[u8], reference: &[u8]| {
            let within = x.iter().zip(y).map(|(&p, &q)| combine(p, q));
            let across = x.iter().zip(reference).map(|(&p, &q)| combine(p, q));
            tests.add(item, within, across);
        };
        for (i, x) in view.iter().enumerate() {
            for lag in LAGS.filter(|&lag| lag < x.bytes.len()) {
                let n = (x.bytes.len() - lag).min(PAIR_BYTES);
                let shifted = &x.bytes[lag..lag + n];
                add(
                    Item::Lag(i, lag),
                    &x.bytes[..n],
                    shifted,
                    &other[i].bytes[lag..],
                );
            }
            let partners = view
                .iter()
                .enumerate()
                .skip(i + 1)
                .filter(|(_, y)| y.bytes.len() == x.bytes.len())
                .take(PARTNERS);
            for (j, y) in partners {
                let n = x.bytes.len().min(PAIR_BYTES);
                add(
                    Item::Pair(i, j),
                    &x.bytes[..n],
                    &y.bytes[..n],
                    &other[j].bytes,
                );
            }
        }
        tests.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::comm::Phase;
    use crate::mpc::fixed::FixedPoint;
    use crate::mpc::prg::Prg;
    use crate::mpc::protocol::{ProtocolKind, Role};
    use crate::mpc::views::record::{Setup, run_recorded};

    /// How the toy opening below masks its two secrets.
    #[derive(Clone, Copy, Debug, PartialEq)]
    enum Masks {
        /// A fresh uniform mask per element and secret: correct.
        Fresh,
        /// One mask for both secrets.
        Reused,
        /// The second secret masked by the first's mask negated.
        Negated,
        /// Each mask word serves two neighbouring elements.
        Paired,
        /// One mask for both secrets, sent in one frame (one opening of two tensors).
        Concatenated,
    }

    const ELEMENTS: usize = 1024;

    /// The server's view of a toy opening: the client sends its two small secrets (normal,
    /// s.d. 3, at 16 fractional bits) masked as `masks` says, one frame each, or both in one.
    fn toy_view(masks: Masks, seed: u64) -> Vec<Received> {
        let fixed = FixedPoint::default();
        let mut rng = Prg::from_seed(Prg::derived_seed(seed, 77));
        let secrets: Vec<Vec<u64>> = (0..2)
            .map(|_| {
                rng.gaussian(ELEMENTS, 3.0)
                    .iter()
                    .map(|&v| fixed.encode(v))
                    .collect()
            })
            .collect();
        let mut fresh = || -> Vec<u64> { (0..ELEMENTS).map(|_| rng.next_u64()).collect() };
        let first = fresh();
        let [first, second] = match masks {
            Masks::Fresh => [first, fresh()],
            Masks::Reused | Masks::Concatenated => [first.clone(), first],
            Masks::Negated => [
                first.clone(),
                first.iter().map(|m| m.wrapping_neg()).collect(),
            ],
            Masks::Paired => {
                [0, 1].map(|odd| (0..ELEMENTS).map(|i| first[i / 2 * 2 + odd]).collect())
            }
        };
        let masked = |secret: &[u64], mask: &[u64]| -> Vec<u64> {
            secret
                .iter()
                .zip(mask)
                .map(|(s, m)| s.wrapping_add(*m))
                .collect()
        };
        let (x, y) = (masked(&secrets[0], &first), masked(&secrets[1], &second));
        let frames = match masks {
            Masks::Concatenated => vec![[x, y].concat()],
            _ => vec![x, y],
        };
        let run = run_recorded(ProtocolKind::TwoPartyDealer, Setup::Exchanged(seed), |p| {
            for frame in &frames {
                match p.role() {
                    Role::Client => p.comm().send(Role::Server.index(), frame, Phase::Online)?,
                    Role::Server => drop(p.comm().recv(
                        Role::Client.index(),
                        frame.len(),
                        Phase::Online,
                    )?),
                    _ => {}
                }
            }
            Ok(())
        })
        .expect("toy run");
        run.views[Role::Server.index()].received.clone()
    }

    /// Each broken masking gives frames that are uniform one by one, so the two runs' histograms
    /// agree, but the differences (reused), sums (negated) or shifts (paired, concatenated)
    /// within a view give it away; fresh masks pass every test.
    #[test]
    fn reused_masks_are_caught_within_a_view() {
        let cases = [
            (Masks::Fresh, None),
            (Masks::Reused, Some(Test::Difference)),
            (Masks::Negated, Some(Test::Sum)),
            (Masks::Paired, Some(Test::Difference)),
            (Masks::Concatenated, Some(Test::Difference)),
        ];
        for (masks, caught_by) in cases {
            let findings = distinguish(&toy_view(masks, 1), &toy_view(masks, 2));
            assert!(
                findings
                    .iter()
                    .all(|f| f.test != Test::Histogram && f.test != Test::Shape),
                "{masks:?}: frames alone should look uniform: {findings:?}"
            );
            match caught_by {
                None => assert!(findings.is_empty(), "{masks:?}: {findings:?}"),
                Some(test) => assert!(
                    findings.iter().any(|f| f.test == test),
                    "{masks:?} not caught by {test:?}: {findings:?}"
                ),
            }
        }
    }

    /// A frame that depends on the secret (here: sent unmasked) is caught between two runs with
    /// different secrets, and two runs of different shapes are told apart by shape alone.
    #[test]
    fn secret_dependent_views_are_caught_between_runs() {
        let frame = |bytes: Vec<u8>| Received {
            from: 0,
            stamp: 1,
            bytes,
        };
        let zeros = vec![frame(vec![0; MIN_BYTES])];
        let mut rng = Prg::from_seed(Prg::derived_seed(5, 5));
        let uniform = vec![frame(
            (0..MIN_BYTES).map(|_| rng.next_u64() as u8).collect(),
        )];
        let found = distinguish(&zeros, &uniform);
        assert!(found.iter().any(|f| f.test == Test::Histogram), "{found:?}");
        let shorter = vec![frame(vec![0; MIN_BYTES - 8])];
        let found = distinguish(&uniform, &shorter);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].test, Test::Shape);
    }
}
