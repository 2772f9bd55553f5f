//! Piecewise-linear functions on shares, for activations that are 0 far left and `x` far right
//! (SiLU, GeLU): `f(x) = A(x) + S(x) x` with `A`, `S` constant on each piece.
//!
//! One round of comparison bits `[x < b_j]` against the ascending breaks fixes the piece, and
//! `A`, `S` are public combinations of those bits. The line is then one product, formed two
//! ways by what each protocol's bytes favour: in 2pc-dealer every bit is masked as a bit
//! (1/8 byte, [`Protocol::mask_with_bits`]) and `S x = S_top x + sum_j dS_j (b_j x)` is a sum of
//! local products (`K` products of dealer material, offline); in 3pc, where bits would be
//! reshared a word each, `S` itself is formed and reshared ([`Protocol::less_than_combined`])
//! and multiplied once. The line's truncation leaves the result masked for the next product.
//!
//! Pieces are fitted greedily left to right, each as wide as keeps its minimax line (the chord
//! shifted half-way into the gap) within the error asked. Comparisons are fuzzy at
//! `2^-resolution`: a point that close to a break takes the neighbouring line, off by the slopes'
//! difference times that distance.

use crate::mpc::ops::add_raw;
use crate::mpc::protocol::{Bilinear, Comparison, Masked, Protocol, ProtocolKind};
use crate::mpc::share::Share;
use anyhow::Result;

/// Fractional bits of the slopes: `|x| < 2^12` at `f` bits times `S <= 1.2` stays under 2^59.
const SLOPE_BITS: u32 = 30;

/// The pieces of a piecewise-linear fit: ascending breaks, and `(intercept, slope)` for the
/// piece below each break and one above the last.
pub(super) struct Lines {
    breaks: Vec<f64>,
    pieces: Vec<(f64, f64)>,
    resolution_bits: u32,
}

/// The minimax line of `f` on `[a, b]` from its chord, and its error.
fn line(f: &impl Fn(f64) -> f64, a: f64, b: f64) -> ((f64, f64), f64) {
    let slope = (f(b) - f(a)) / (b - a);
    let gaps = (0..=200).map(|i| {
        let x = a + (b - a) * i as f64 / 200.0;
        f(x) - (f(a) + slope * (x - a))
    });
    let (lo, hi) = gaps.fold((f64::MAX, f64::MIN), |(lo, hi), g| (lo.min(g), hi.max(g)));
    let intercept = f(a) - slope * a + (lo + hi) / 2.0;
    ((intercept, slope), (hi - lo) / 2.0)
}

impl Lines {
    /// Fit `f` on `[-cutoff, cutoff]` within `err`, 0 below and `x` above.
    pub(super) fn fit(f: impl Fn(f64) -> f64, cutoff: f64, err: f64, resolution_bits: u32) -> Self {
        let mut breaks = vec![-cutoff];
        let mut pieces = vec![(0.0, 0.0)];
        let mut a = -cutoff;
        while a < cutoff {
            let (mut lo, mut hi) = (0.0, cutoff - a);
            if line(&f, a, cutoff).1 > err {
                for _ in 0..40 {
                    let mid = (lo + hi) / 2.0;
                    if line(&f, a, a + mid).1 <= err {
                        lo = mid;
                    } else {
                        hi = mid;
                    }
                }
                hi = lo;
            }
            let b = a + hi;
            pieces.push(line(&f, a, b).0);
            breaks.push(b);
            a = b;
        }
        pieces.push((0.0, 1.0));
        Self {
            breaks,
            pieces,
            resolution_bits,
        }
    }

    /// Comparison bits (thresholds) the fit needs.
    #[cfg(test)]
    pub(super) fn thresholds(&self) -> usize {
        self.breaks.len()
    }

    /// The fit in f64, as the engine evaluates it (the tests' reference for its error).
    #[cfg(test)]
    pub(super) fn eval(&self, x: f64) -> f64 {
        let k = self.breaks.iter().filter(|&&b| x >= b).count();
        let (a, s) = self.pieces[k];
        a + s * x
    }

    /// Weights of one coefficient on the bits at `bits` fractional bits, and the constant
    /// (the top piece's): piece values rounded once, weights their exact differences.
    fn weights(&self, pick: fn(&(f64, f64)) -> f64, bits: u32) -> (Vec<u64>, u64) {
        let enc: Vec<u64> = self
            .pieces
            .iter()
            .map(|pc| (pick(pc) * (bits as f64).exp2()).round() as i64 as u64)
            .collect();
        let weights = enc.windows(2).map(|w| w[0].wrapping_sub(w[1])).collect();
        (weights, *enc.last().expect("a piece"))
    }

    /// The fit of `x` given at `f + extra_bits` fractional bits (its truncation rides on the
    /// comparison's opening), at `f` bits and masked, and `with` masked in the same round.
    /// Cost: the comparison (fuzzy, 12 integer bits, `2^-resolution`; its opening drops
    /// `min(extra, 16) / 8` bytes), then 2pc-dealer the `K` bits (and `x` when `extra = 0`,
    /// and `with`) masked, `K` products with `x` (offline 4 words each, 2 for a plain `x`), the
    /// line's truncation by 30; 3pc the truncation and 2 combinations reshared, one product,
    /// the line's truncation.
    pub(super) fn apply(
        &self,
        p: &mut dyn Protocol,
        x: &Share,
        extra_bits: u32,
        with: Option<&Share>,
    ) -> Result<(Masked, Option<Masked>)> {
        let fp = p.fixed_point();
        let f = fp.frac_bits;
        let base = Comparison::fuzzy(fp, 12, self.resolution_bits);
        let cmp = Comparison {
            bits: base.bits + extra_bits,
            ignored_low_bits: base.ignored_low_bits + extra_bits,
        };
        let raw: Vec<u64> = self
            .breaks
            .iter()
            .map(|&b| fp.encode(b) << extra_bits)
            .collect();
        let (slope_w, slope_c) = self.weights(|pc| pc.1, SLOPE_BITS);
        let (icpt_w, icpt_c) = self.weights(|pc| pc.0, SLOPE_BITS + f);
        let with: Vec<&Share> = with.into_iter().collect();
        let (line, with) = match p.kind() {
            ProtocolKind::TwoPartyDealer => {
                let (x, bits, mut values) = if extra_bits == 0 {
                    let bits = p.less_than(x, &raw, cmp)?;
                    let values: Vec<&Share> = std::iter::once(x).chain(with).collect();
                    let (mut v, b) = p.mask_with_bits(&values, &bits.iter().collect::<Vec<_>>())?;
                    let x = v.remove(0);
                    (x, b, v)
                } else {
                    let (x, bits) = p.truncate_less_than(x, extra_bits, &raw, cmp)?;
                    let (v, b) = p.mask_with_bits(&with, &bits.iter().collect::<Vec<_>>())?;
                    (x, b, v)
                };
                let mut sx = x.share().scale(slope_c);
                let mut icpt = add_raw(p, &x.share().scale(0), icpt_c)?;
                for ((b, &ds), &da) in bits.iter().zip(&slope_w).zip(&icpt_w) {
                    sx = sx.add(&p.product(b, &x, Bilinear::Mul)?.scale(ds))?;
                    icpt = icpt.add(&b.share().scale(da))?;
                }
                (sx.add(&icpt)?, values.pop())
            }
            ProtocolKind::ThreeParty => {
                let weights = [slope_w, icpt_w];
                let (x, combos) = if extra_bits == 0 {
                    let combos = p.less_than_combined(x, &raw, cmp, &weights)?;
                    (p.mask(&[x])?.remove(0), combos)
                } else {
                    p.truncate_less_than_combined(x, extra_bits, &raw, cmp, &weights)?
                };
                let slope = add_raw(p, &combos[0], slope_c)?;
                let icpt = add_raw(p, &combos[1], icpt_c)?;
                let masked: Vec<&Share> = std::iter::once(&slope).chain(with).collect();
                let mut m = p.mask(&masked)?;
                let with = if m.len() == 2 { m.pop() } else { None };
                let sx = p.product(&m[0], &x, Bilinear::Mul)?;
                (sx.add(&icpt)?, with)
            }
        };
        Ok((p.truncate_masked(&line, SLOPE_BITS)?, with))
    }
}
