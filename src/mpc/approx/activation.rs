//! Activations: SiLU / GeLU as `relu(x) + g(|x|)` (PUMA-style, one comparison round and a
//! fused polynomial), sigmoid, MPCFormer's Quad; and their f64 references.

use super::{fit_polynomial, polynomial};
use crate::mpc::ops::{self, add_const};
use crate::mpc::protocol::{Bilinear, Comparison, Masked, Protocol};
use crate::mpc::share::Share;
use anyhow::{Result, ensure};

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

/// Fractional bits of the centred input of [`relu_plus_even`]'s polynomial: the powers up to
/// degree 5 of a value below 4 (2^(2 + 9) raw) stay under 2^55, untruncated.
const EVEN_POLY_INPUT_BITS: u32 = 9;
/// Scale of the polynomial's accumulator before its one truncation.
/// Scale of the polynomial's accumulator before its one truncation (`|g| < 0.45` keeps it
/// under the truncation's 2^61).
const EVEN_POLY_ACC_BITS: u32 = 62;

/// A function written as `relu(x) + g(|x|)` with `g(t) -> 0` beyond `cutoff`
/// (SiLU: `g(t) = silu(-t)`, GeLU: `g(t) = gelu(-t)`), PUMA-style: one comparison round for
/// `x < -cutoff, x < 0, x < cutoff`, one product `[x<0] x` giving ReLU and `|x|`, a
/// degree-`degree` polynomial for `g` on `[0, cutoff]`, and one product selecting it.
/// The polynomial runs in `s = |x| - cutoff/2` at 9 fractional bits: one truncation yields
/// every power of `s` at once, the coefficients at 62 bits sum them, and one more truncation
/// brings the result to `f` bits (`truncate_polynomial`): 2 rounds for the polynomial, not 6.
/// Outside the cut-off the powers overflow, harmlessly: the selecting product is exactly 0.
/// `x` comes at `f + extra_bits` fractional bits; with `extra_bits > 0` (an untruncated
/// product) its truncation shares the comparison's opening.
fn relu_plus_even(
    p: &mut dyn Protocol,
    x: &Share,
    extra_bits: u32,
    g: impl Fn(f64) -> f64,
    cutoff: f64,
    degree: usize,
    resolution_bits: u32,
) -> Result<Share> {
    let fp = p.fixed_point();
    let f = fp.frac_bits;
    ensure!(
        f > EVEN_POLY_INPUT_BITS,
        "this approximation needs more than {EVEN_POLY_INPUT_BITS} fractional bits"
    );
    // A wrong sign near 0 is harmless: x + g(x) = f(x) for the even g as well; a wrong side
    // within 2^-resolution_bits of the cut-off costs g there, or the fit's extrapolation.
    // Fewer bits compared are fewer DCF levels.
    let base = Comparison::fuzzy(fp, 12, resolution_bits);
    let cmp = Comparison {
        bits: base.bits + extra_bits,
        ignored_low_bits: base.ignored_low_bits + extra_bits,
    };
    let raw: Vec<u64> = [-cutoff, 0.0, cutoff]
        .iter()
        .map(|&t| fp.encode(t) << extra_bits)
        .collect();
    // x ready for products: its truncation's opening, when there is one, serves as its mask.
    // The selector of the polynomial's range is masked in the same round as the sign.
    // The sign and the range selector are bits: masked as such, a bit each.
    // Of the three bits only the sign and the range `[x < c] - [x < -c]` are used: 3pc
    // reshares those two.
    let selectors = [vec![0, 1, 0], vec![u64::MAX, 0, 1]];
    let (x, negative, inside) = if extra_bits == 0 {
        let sel = p.less_than_combined(x, &raw, cmp, &selectors)?;
        let (mut x, sel) = p.mask_with_bits(&[x], &[&sel[0], &sel[1]])?;
        let [negative, inside]: [Masked; 2] = sel.try_into().expect("two masked");
        (x.remove(0), negative, inside)
    } else {
        let (x, sel) = p.truncate_less_than_combined(x, extra_bits, &raw, cmp, &selectors)?;
        let (_, sel) = p.mask_with_bits(&[], &[&sel[0], &sel[1]])?;
        let [negative, inside]: [Masked; 2] = sel.try_into().expect("two masked");
        (x, negative, inside)
    };
    let neg_x = p.product(&negative, &x, Bilinear::Mul)?;
    let relu = x.share().sub(&neg_x)?;
    let half = cutoff / 2.0;
    let centred = add_const(p, &relu.sub(&neg_x)?, -half)?;
    let coef: Vec<u64> = fit_polynomial(|s| g(s + half), -half, half, degree)
        .iter()
        .enumerate()
        .map(|(k, &c)| {
            let shift = EVEN_POLY_ACC_BITS - k as u32 * EVEN_POLY_INPUT_BITS;
            (c * (shift as f64).exp2()).round() as i64 as u64
        })
        .collect();
    let poly = p.truncate_polynomial(
        &centred,
        f - EVEN_POLY_INPUT_BITS,
        &coef,
        EVEN_POLY_ACC_BITS - f,
    )?;
    let corr = p.product(&inside, &poly, Bilinear::Mul)?;
    relu.add(&corr)
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

/// Beyond this `|x|`, [`silu`] drops SiLU's tail `silu(-|x|)` (at most 4.1e-3).
pub const SILU_CUTOFF: f64 = 7.5;

/// SiLU `x sigmoid(x)` as `relu(x) + silu(-|x|)` with a degree-5 fit on `[0, 7.5]`.
/// Max error 5e-3 (cut-off 4.1e-3, fit, 2^-9 input steps).
/// Cost (29-bit comparison ignoring 13 bits, `cw = 48`): 2pc-dealer `26.25n` bytes (4 opened
/// by the comparison, `8n` masking `x`, a bit each for the sign and the range, 8 and 6 for the
/// polynomial's two truncations), 4 rounds, offline client `8 cw n`, server `(8 cw + 168) n`;
/// 3pc `58n` (the sign and the range reshared), helper `16n`, 7 rounds.
pub fn silu(p: &mut dyn Protocol, x: &Share) -> Result<Share> {
    silu_wide(p, x, 0)
}

/// [`silu`] of `x` given at `f + extra_bits` fractional bits (e.g. an untruncated product);
/// the truncation rides on the comparison's opening, saving its round.
/// Cost for `extra_bits >= 16` (the layer's): 2pc-dealer `20.25n` bytes (the opening drops 2
/// bytes and `x` needs no masking: 324 bits per element, both parties), 4 rounds, offline
/// server `(8 cw + 200) n`; 3pc `68n`, helper `16n`, 7 rounds.
pub fn silu_wide(p: &mut dyn Protocol, x: &Share, extra_bits: u32) -> Result<Share> {
    relu_plus_even(p, x, extra_bits, |t| silu_f64(-t), SILU_CUTOFF, 5, 3)
}

/// GeLU (erf form) as `relu(x) + gelu(-|x|)` with a degree-5 fit on `[0, 4]`.
/// Max error 4e-3. Cost: as [`silu`], with a 29-bit comparison ignoring 10 bits (`cw = 57`).
pub fn gelu(p: &mut dyn Protocol, x: &Share) -> Result<Share> {
    gelu_wide(p, x, 0)
}

/// [`gelu`] of `x` given at `f + extra_bits` fractional bits; see [`silu_wide`].
pub fn gelu_wide(p: &mut dyn Protocol, x: &Share, extra_bits: u32) -> Result<Share> {
    relu_plus_even(p, x, extra_bits, |t| gelu_f64(-t), 4.0, 5, 6)
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
