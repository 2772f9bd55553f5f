//! `e^x` for `x <= 0` (softmax's shifted scores) as a piecewise-linear function: `A(x) + S(x) x`
//! with `A`, `S` constant on each piece, so both are public combinations of one round of
//! comparison bits ([`Protocol::less_than_combined`]), and the line is one product.
//!
//! Pieces run down from 0, each as wide as keeps its minimax line within [`EXP_ERROR`] of
//! `e^x` (width `sqrt(16 err / e^b)` below `b`), until `e^x` itself is below that: 24 pieces
//! on `[-8.9, 0]`, 0 below. The comparisons are fuzzy (2^-8): a point within that of a
//! break takes the neighbouring line, off by far less than the error. The top piece extends
//! its line to the fuzzy maximum's small positive excess.

use crate::mpc::ops::add_raw;
use crate::mpc::protocol::{Bilinear, Comparison, Masked, Protocol};
use crate::mpc::share::Share;
use anyhow::Result;

/// Largest error of a piece's line.
const EXP_ERROR: f64 = 5e-4;
/// Fractional bits of the slopes (`|S x| < 8` keeps the product under 2^52). The line's
/// truncation by as many bits leaves room for a product with another truncation's output
/// of up to 32 bits (the shifts must sum to at most 64).
const SLOPE_BITS: u32 = 32;

/// The pieces: breaks `b_0 = 0 > b_1 > ..` as `(lower end, intercept, slope)` per piece, top
/// first; below the last lower end the value is 0.
fn pieces() -> Vec<(f64, f64, f64)> {
    let mut out = vec![];
    let mut top = 0.0f64;
    while top.exp() > EXP_ERROR {
        let low = top - (16.0 * EXP_ERROR / top.exp()).sqrt();
        let slope = (top.exp() - low.exp()) / (top - low);
        // The chord lies above e^x; its largest gap is where e^x has the chord's slope.
        let at = slope.ln();
        let gap = low.exp() + slope * (at - low) - slope;
        let intercept = low.exp() - slope * low - gap / 2.0;
        out.push((low, intercept, slope));
        top = low;
    }
    out
}

/// `e^x` for `x in [-4096, 2^-8]`, ready for products. Error <= 5e-4 plus one output unit.
/// Cost: one fuzzy comparison (29 bits ignoring 8, `cw = 63`) against 24 thresholds, `x` and
/// the slope masked, the line's truncation by 32: 2pc-dealer `26n` bytes, 3 rounds, offline
/// client `8 cw n`, server `(8 cw + 32) n`; 3pc `42n` (the comparison, its 2 combinations
/// reshared, the product reshared, the truncation with its resharing), 5 rounds.
pub(super) fn exp_masked(p: &mut dyn Protocol, x: &Share) -> Result<Masked> {
    let fp = p.fixed_point();
    let f = fp.frac_bits;
    let pieces = pieces();
    let enc = |v: f64, bits: u32| (v * (bits as f64).exp2()).round() as i64 as u64;
    // Piece values top first, then the zero below: weights are differences of neighbours.
    let weights = |bits: u32, pick: fn(&(f64, f64, f64)) -> f64| -> (Vec<u64>, u64) {
        let vals: Vec<u64> = pieces
            .iter()
            .map(|pc| enc(pick(pc), bits))
            .chain(std::iter::once(0))
            .collect();
        (
            vals.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect(),
            vals[0],
        )
    };
    let (slope_w, slope_c) = weights(SLOPE_BITS, |pc| pc.2);
    let (icpt_w, icpt_c) = weights(SLOPE_BITS + f, |pc| pc.1);
    let thresholds: Vec<u64> = pieces.iter().map(|pc| fp.encode(pc.0)).collect();
    let cmp = Comparison::fuzzy(fp, 12, 8);
    let combos = p.less_than_combined(x, &thresholds, cmp, &[slope_w, icpt_w])?;
    let slope = add_raw(p, &combos[0], slope_c)?;
    let intercept = add_raw(p, &combos[1], icpt_c)?;
    let [xm, sm]: [Masked; 2] = p.mask(&[x, &slope])?.try_into().expect("two");
    let line = p.product(&sm, &xm, Bilinear::Mul)?.add(&intercept)?;
    p.truncate_masked(&line, SLOPE_BITS)
}

/// `e^x` for `x in [-4096, 2^-8]`; see [`exp_masked`].
pub fn exp(p: &mut dyn Protocol, x: &Share) -> Result<Share> {
    Ok(exp_masked(p, x)?.share().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pieces' lines are within the stated error of e^x on their own piece.
    #[test]
    fn each_piece_line_is_within_the_error() {
        let pieces = pieces();
        assert_eq!(pieces.len(), 24);
        let mut top = 0.0;
        for &(low, icpt, slope) in &pieces {
            for i in 0..=100 {
                let x = low + (top - low) * i as f64 / 100.0;
                let err = (icpt + slope * x - f64::exp(x)).abs();
                assert!(err <= EXP_ERROR * 1.0001, "piece at {low}: {err} at {x}");
            }
            top = low;
        }
        assert!(top.exp() <= EXP_ERROR);
    }
}
