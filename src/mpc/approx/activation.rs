//! Activations: SiLU / GeLU as `relu(x) + g(|x|)` (PUMA-style, one comparison round and a
//! fused polynomial), sigmoid, MPCFormer's Quad; and their f64 references.

use super::lines::Lines;
use super::{fit_polynomial, polynomial};
use crate::mpc::ops::{self, add_const};
use crate::mpc::protocol::{Bilinear, Comparison, Protocol};
use crate::mpc::share::Share;
use anyhow::Result;

/// MPCFormer's Quad GeLU replacement `0.125 x^2 + 0.25 x + 0.5`. Exact up to one output unit.
/// Cost: 2pc-dealer `14n` bytes, 2 rounds, offline `24n`; 3pc `22n`, helper `8n`, 3 rounds,
/// offline `16n`.
pub fn quad(p: &mut dyn Protocol, x: &Share) -> Result<Share> {
    let sq = p.square(x)?;
    let f = p.fixed_point().frac_bits;
    // 0.125 x^2 + 0.25 x as (x^2 + 2^(f+1) x) at scale 2f+3, one truncation.
    let t = p.truncate(&sq.add(&x.scale(1u64 << (f + 1)))?, f + 3)?;
    add_const(p, &t, 0.5)
}

pub fn sigmoid_f64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

pub fn silu_f64(x: f64) -> f64 {
    x * sigmoid_f64(x)
}

/// GeLU, erf form (the f64 reference).
pub fn gelu_f64(x: f64) -> f64 {
    0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
}

/// erf from Numerical Recipes' Chebyshev fit of erfc (fractional error < 1.2e-7).
fn erf(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.26551223
            + t * (1.00002368
                + t * (0.37409196
                    + t * (0.09678418
                        + t * (-0.18628806
                            + t * (0.27886807
                                + t * (-1.13520398
                                    + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))))
            .exp();
    if x >= 0.0 { 1.0 - r } else { r - 1.0 }
}

/// Beyond this `|x|`, [`silu`] is 0 (left) or `x` (right): SiLU's tail `silu(-|x|)` is at most
/// 4.1e-3 there (the PUMA form trains on the same cut-off).
pub const SILU_CUTOFF: f64 = 7.5;
/// GeLU's cut-off (its tail is below 1.3e-4).
const GELU_CUTOFF: f64 = 4.0;
/// Largest error of a piece's line inside the cut-off.
const LINE_ERROR: f64 = 2e-3;
/// The comparisons' resolution: a point within `2^-8` of a break may take the next line.
const RESOLUTION_BITS: u32 = 8;

fn silu_lines() -> Lines {
    Lines::fit(silu_f64, SILU_CUTOFF, LINE_ERROR, RESOLUTION_BITS)
}

fn gelu_lines() -> Lines {
    Lines::fit(gelu_f64, GELU_CUTOFF, LINE_ERROR, RESOLUTION_BITS)
}

/// SiLU `x sigmoid(x)` piecewise-linear: 20 lines on `[-7.5, 7.5]` ([`Lines`]), 0 below, `x`
/// above. Max error 4.1e-3 (the cut-off; lines 2e-3).
/// Cost (29-bit comparison ignoring 8 bits, `cw = 63`, `K = 21` thresholds): 2pc-dealer
/// `4 + 8 + K/8 + 6` bytes (the comparison, `x` masked, the bits, the line's truncation), 3
/// rounds, offline client `8 cw n`, server `(8 cw + 24 K + 24) n`; 3pc `42n`, helper `8n`,
/// 5 rounds.
pub fn silu(p: &mut dyn Protocol, x: &Share) -> Result<Share> {
    silu_wide(p, x, 0)
}

/// [`silu`] of `x` given at `f + extra_bits` fractional bits (e.g. an untruncated product);
/// the truncation rides on the comparison's opening, saving its round and the masking of `x`.
/// Cost for `extra_bits >= 16`: 2pc-dealer `6 + K/8 + 6` bytes (234 bits per element, both
/// parties), 3 rounds, offline server `(8 cw + 40 K + 40) n`; 3pc `52n`, 5 rounds.
pub fn silu_wide(p: &mut dyn Protocol, x: &Share, extra_bits: u32) -> Result<Share> {
    Ok(silu_lines()
        .apply(p, x, extra_bits, None)?
        .0
        .share()
        .clone())
}

/// SwiGLU's gated product `silu(gate) up`, both at `f + extra_bits` fractional bits (a
/// projection's untruncated output): `up` is masked in the comparison bits' round and SiLU's
/// truncation masks it, so the product needs no round of its own, only its truncation.
/// Cost: [`silu_wide`]'s, `up` masked (2pc-dealer `8n`), the product's truncation by
/// `f + extra`: 2pc-dealer `6 + K/8 + 6 + 8 + 6` bytes, 4 rounds; 3pc 7 rounds.
pub fn swiglu(p: &mut dyn Protocol, gate: &Share, up: &Share, extra_bits: u32) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    let (act, up) = silu_lines().apply(p, gate, extra_bits, Some(up))?;
    let up = up.expect("masked with the bits");
    Ok(
        p.product_truncate(&[(&act, &up)], Bilinear::Mul, f + extra_bits)?
            .remove(0),
    )
}

/// GeLU (erf form) piecewise-linear: 17 lines on `[-4, 4]`, 0 below, `x` above. Max error
/// 2e-3. Cost: as [`silu`], with `K = 18`.
pub fn gelu(p: &mut dyn Protocol, x: &Share) -> Result<Share> {
    gelu_wide(p, x, 0)
}

/// [`gelu`] of `x` given at `f + extra_bits` fractional bits; see [`silu_wide`].
pub fn gelu_wide(p: &mut dyn Protocol, x: &Share, extra_bits: u32) -> Result<Share> {
    Ok(gelu_lines()
        .apply(p, x, extra_bits, None)?
        .0
        .share()
        .clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fits the engine evaluates are within their stated error, cut-offs included.
    #[test]
    fn fitted_lines_are_within_their_error() {
        for (name, lines, f, k, tol) in [
            ("silu", silu_lines(), silu_f64 as fn(f64) -> f64, 21, 4.2e-3),
            ("gelu", gelu_lines(), gelu_f64, 18, 2.01e-3),
        ] {
            assert_eq!(lines.thresholds(), k, "{name}");
            let worst = (0..=4000)
                .map(|i| -10.0 + i as f64 * 0.005)
                .map(|x| (lines.eval(x) - f(x)).abs())
                .fold(0.0, f64::max);
            assert!(worst <= tol, "{name}: {worst}");
        }
    }
}

/// Sigmoid as `1 - s(|x|)` for `x >= 0` and `s(|x|)` below, `s(t) = sigmoid(-t)` fitted on
/// `[0, 8]` (degree 6): the same structure as [`silu`] plus one product.
/// Max error 5e-3.
/// Cost: 2pc-dealer `104n` bytes, 11 rounds, offline client `456n`, server `624n`; 3pc `136n`,
/// helper `104n`, 12 rounds.
pub fn sigmoid(p: &mut dyn Protocol, x: &Share) -> Result<Share> {
    let fp = p.fixed_point();
    // A wrong sign near 0 is harmless: 1 - s(x) = sigmoid(x) on both sides.
    let cmp = Comparison::fuzzy(fp, 12, 6);
    let bits = ops::less_than(p, x, &[-8.0, 0.0, 8.0], cmp)?;
    let m = p.mask(&[&bits[1], x])?;
    let neg_x = p.product(&m[0], &m[1], Bilinear::Mul)?;
    let abs = x.sub(&neg_x.scale(2))?;
    let coef = fit_polynomial(|t| sigmoid_f64(-t), 0.0, 8.0, 6);
    let s = polynomial(p, &abs, &coef)?;
    let inside = bits[2].sub(&bits[0])?;
    // tail = s inside the cut-off, 0 outside; result = (1 - tail) or tail by the sign.
    let tail = p.bilinear(&inside, &s, Bilinear::Mul)?;
    let one_minus = add_const(p, &tail.neg(), 1.0)?;
    let flip = one_minus.sub(&tail)?;
    let flip = p.mask(&[&flip])?.remove(0);
    let sel = p.product(&m[0], &flip, Bilinear::Mul)?;
    one_minus.sub(&sel)
}
