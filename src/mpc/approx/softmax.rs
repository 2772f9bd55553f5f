//! Softmax along the last axis (exact, via [`exp`](super::exp) and a reciprocal) and MPCFormer's
//! 2Quad, under an optional public attention mask.

use super::exp::exp_masked;
use super::inverse::{Inverse, InverseInput, inverse_masked};
use crate::mpc::ops::{self, add_const};
use crate::mpc::protocol::{Bilinear, Comparison, Masked, Protocol};
use crate::mpc::ring::{RingTensor, numel};
use crate::mpc::share::Share;
use anyhow::{Result, bail, ensure};

/// Row `i` of a `[.., T, T]` score tensor sees columns `<= i`; a shape of rank below 2 has no
/// rows and columns and is an error.
pub fn causal_mask(shape: &[usize]) -> Result<Vec<bool>> {
    let [.., rows, cols] = *shape else {
        bail!("a causal mask needs scores of rank >= 2, not {shape:?}");
    };
    Ok((0..numel(shape))
        .map(|i| (i % cols) <= (i / cols) % rows)
        .collect())
}

/// Masked-out entries take their row's first value (every row must see column 0), so they
/// cannot win the max; their exponentials are zeroed afterwards.
fn fill_masked(x: &Share, visible: &[bool]) -> Result<Share> {
    let axis = x.last_axis()?;
    ensure!(
        visible.len() == x.len(),
        "attention mask of {} entries for scores {:?}",
        visible.len(),
        x.shape()
    );
    let cols = x.shape()[axis];
    ensure!(
        visible.iter().step_by(cols).all(|&v| v),
        "every row of an attention mask must see column 0"
    );
    let first = x.narrow(axis, 0, 1)?.broadcast_to(x.shape())?;
    x.select_public(visible, &first)
}

/// A public 0/1 mask as a ring tensor.
fn mask_tensor(shape: &[usize], mask: &[bool]) -> Result<RingTensor> {
    RingTensor::new(shape, mask.iter().map(|&k| k as u64).collect())
}

/// `1 / sum` for row sums in `[lo, hi]` at `f` bits, ready for products, and its bits.
fn row_reciprocal(p: &mut dyn Protocol, sum: &Share, lo: f64, hi: f64) -> Result<(Masked, u32)> {
    let x_frac = p.fixed_point().frac_bits;
    let input = InverseInput::Plain { x: sum, x_frac };
    inverse_masked(p, Inverse::Reciprocal, input, lo, hi, 0)
}

/// Softmax along the last axis, optionally under a public mask of `x`'s shape (`true`: visible;
/// every row sees column 0, as under a causal mask). Max by tournament with fuzzy comparisons
/// (shift invariance makes the fuzz harmless), the piecewise-linear [`exp`](super::exp) (its
/// truncation masks it for the last product), row sums, their reciprocal over `[0.5, m + 1]`,
/// product. Max error 3e-3 (tested 5e-3 on N(0, 3) scores) for a row range < 2048.
/// Cost per row of `m` (the mask changes nothing), `b = 18 + ceil(log2(m + 1))` the
/// reciprocal's comparison bits: 2pc-dealer `12.125 (m - 1) + 32m + ceil(b / 8) + 36` bytes
/// (the max's comparisons, exp, the final truncation, the row's reciprocal),
/// `2 ceil(log2 m) + 8` rounds; 3pc `3 ceil(log2 m) + 14` rounds. `m = 64`: 713 bits per score,
/// both parties, 20 rounds.
pub fn softmax(p: &mut dyn Protocol, x: &Share, visible: Option<&[bool]>) -> Result<Share> {
    let axis = x.last_axis()?;
    let n = x.shape()[axis];
    let x = match visible {
        Some(v) => fill_masked(x, v)?,
        None => x.clone(),
    };
    let cmp = Comparison::fuzzy(p.fixed_point(), 12, 8);
    let m = ops::max_last(p, &x, cmp)?;
    let shifted = x.sub(&m.broadcast_to(x.shape())?)?;
    let mut e = exp_masked(p, &shifted)?;
    if let Some(v) = visible {
        e = e.mul_public(&mask_tensor(x.shape(), v)?)?;
    }
    let sum = e.share().sum_axis(axis)?;
    let (inv, wide) = row_reciprocal(p, &sum, 0.5, n as f64 + 1.0)?;
    Ok(p.product_truncate(&[(&e, &inv)], Bilinear::Mul, wide)?
        .remove(0))
}

/// MPCFormer's 2Quad: `(x + c)^2 / sum (x + c)^2` with `c = 5`, masked entries 0.
/// Exact up to fixed-point error (2e-3).
/// Cost per row of `m`, `b = 18 + ceil(log2(1e4 m))`: 2pc-dealer `28m + ceil(b / 8) + 36`
/// bytes, 8 rounds; 3pc 11 rounds.
pub fn softmax_2quad(p: &mut dyn Protocol, x: &Share, visible: Option<&[bool]>) -> Result<Share> {
    let axis = x.last_axis()?;
    let n = x.shape()[axis];
    let shifted = add_const(p, x, 5.0)?;
    let mut q = ops::square(p, &shifted)?;
    if let Some(v) = visible {
        q = q.mul_public(&mask_tensor(q.shape(), v)?)?;
    }
    // Bound the row sum away from 0 so the reciprocal's range holds.
    let sum = add_const(p, &q.sum_axis(axis)?, 1e-3)?;
    let (inv, wide) = row_reciprocal(p, &sum, 1e-3, 1e4 * n as f64)?;
    let q = p.mask(&[&q])?.remove(0);
    Ok(p.product_truncate(&[(&q, &inv)], Bilinear::Mul, wide)?
        .remove(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_causal_mask_sees_the_past_and_needs_rows_and_columns() -> Result<()> {
        let mask = causal_mask(&[2, 3, 3])?;
        let row = |b: usize, i: usize| mask[(b * 3 + i) * 3..(b * 3 + i + 1) * 3].to_vec();
        for b in 0..2 {
            assert_eq!(row(b, 0), [true, false, false]);
            assert_eq!(row(b, 2), [true, true, true]);
        }
        for shape in [&[][..], &[4][..]] {
            let err = causal_mask(shape).unwrap_err();
            assert!(err.to_string().contains("rank >= 2"), "{err}");
        }
        Ok(())
    }
}
