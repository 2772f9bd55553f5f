//! Pins for `approx`: exp, reciprocal, rsqrt, softmax and 2Quad, Quad, polynomials, SiLU /
//! GeLU / sigmoid, RMSNorm and LayerNorm. The formulas are `pub(super)` for the table of
//! `docs/costs.md`.

use super::ops_pins::tournament;
use super::{Cmp, Model, numel, pin, rows};
use crate::mpc::approx;
use crate::mpc::fixed::FixedPoint;
use crate::mpc::protocol::Comparison;

const F: u32 = 16;

fn fuzzy(resolution_bits: u32) -> Comparison {
    Comparison::fuzzy(FixedPoint::default(), 12, resolution_bits)
}

/// `exp`: one fuzzy comparison against the 24 breaks (3pc reshares its 2 combinations),
/// `x` and the slope masked, the line `A + S x` truncated by 32.
pub(super) fn exp(m: &mut Model, n: u64) {
    m.less_than(n, Cmp::of(fuzzy(8)), 2);
    m.mask(2 * n);
    m.product(n, 0);
    m.truncate(n, 32);
}

/// The inverse's parameters: `(steps, newton's c, halving, result's extra bits)`.
fn inverse_params(reciprocal: bool, hi: f64) -> (f64, f64, u32, u32) {
    let e = if reciprocal {
        hi.log2()
    } else {
        hi.log2() / 2.0
    };
    let extra = (e.ceil().max(0.0) as u32).min(20);
    if reciprocal {
        (32.0, 2.0, 0, extra)
    } else {
        (16.0, 3.0, 1, extra)
    }
}

/// `U`, the bits `u` keeps: `min(30, 61 - ceil(log2 c) - ceil(log2 max g) - result bits)`.
fn u_bits(reciprocal: bool, lo: f64, hi: f64) -> u32 {
    let (steps, c, _, extra) = inverse_params(reciprocal, hi);
    let deficit = if reciprocal {
        (2f64.powf(1.0 / (2.0 * steps)) - 1.0).powi(2)
    } else {
        let q = 2f64.powf(1.0 / (4.0 * steps)) - 1.0;
        1.5 * q * q + 0.5 * q * q * q
    };
    let g_max = if reciprocal {
        1.0 / lo
    } else {
        1.0 / lo.sqrt()
    } / (1.0 - deficit / 2.0);
    (61 - c.log2().ceil() as i64 - g_max.log2().ceil() as i64 - (F + extra) as i64).clamp(16, 30)
        as u32
}

/// `inverse_masked` of a plain input of `n` elements at `x_frac` bits, narrowed by `narrow`:
/// the grid's comparison (its thresholds cost no bytes: 3pc reshares 2 combinations), `x` and the 2 combinations masked,
/// `u = x h(g)`, its truncation by `60 - U`, `g u` and the result's truncation by
/// `U + halving + narrow`. Returns the result's fractional bits.
fn inverse_plain(
    m: &mut Model,
    n: u64,
    reciprocal: bool,
    x_frac: u32,
    lo: f64,
    hi: f64,
    narrow: u32,
) -> u32 {
    let (_, _, halving, extra) = inverse_params(reciprocal, hi);
    let int_bits = (hi.log2().ceil() as i32 + 1).max(1) as u32;
    let cmp = Comparison {
        bits: x_frac + int_bits + 1,
        ignored_low_bits: 0,
    };
    m.less_than(n, Cmp::of(cmp), 2);
    m.mask(3 * n);
    m.product(n, 0);
    let u = u_bits(reciprocal, lo, hi);
    m.truncate(n, 60 - u);
    m.product(n, 1);
    m.truncate(n, u + halving + narrow);
    F + extra - narrow
}

/// `reciprocal` at `f` bits.
pub(super) fn reciprocal(m: &mut Model, n: u64, lo: f64, hi: f64) {
    let extra = inverse_params(true, hi).3;
    inverse_plain(m, n, true, F, lo, hi, extra);
}

/// `rsqrt` at `f` bits.
pub(super) fn rsqrt(m: &mut Model, n: u64, x_frac: u32, lo: f64, hi: f64) {
    let extra = inverse_params(false, hi).3;
    inverse_plain(m, n, false, x_frac, lo, hi, extra);
}

/// `softmax` on rows of `len`: fuzzy max, exp (its truncation masks it), the row sums'
/// reciprocal on `[0.5, len + 1]`, the product of the two truncations' outputs.
pub(crate) fn softmax(m: &mut Model, shape: &[usize]) {
    let (rows, len) = rows(shape);
    let n = numel(shape);
    tournament(m, shape, Cmp::of(fuzzy(8)), 1);
    exp(m, n);
    let wide = inverse_plain(m, rows, true, F, 0.5, len as f64 + 1.0, 0);
    m.product_truncate_of(n, wide, 2);
}

/// `softmax_2quad`: a square, the row sums' reciprocal on `[1e-3, 1e4 len]`, the squares
/// masked, the product.
pub(super) fn softmax_2quad(m: &mut Model, shape: &[usize]) {
    let (rows, len) = rows(shape);
    let n = numel(shape);
    m.mask(n);
    m.product_truncate(n, F);
    let wide = inverse_plain(m, rows, true, F, 1e-3, 1e4 * len as f64, 0);
    m.mask(n);
    m.product_truncate_of(n, wide, 1);
}

/// `quad`: an untruncated square and one truncation by `f + 3`.
pub(super) fn quad(m: &mut Model, n: u64) {
    m.mask(n);
    m.product(n, 0);
    m.truncate(n, F + 3);
}

/// `polynomial` of degree 6: three levels, each masking one new power and truncating the new
/// powers' products (1, 2, 2 of them), then the weighted sum's truncation by `f + 16`.
pub(super) fn polynomial_degree_6(m: &mut Model, n: u64) {
    for powers in [1, 2, 2] {
        m.mask(n);
        m.product_truncate(powers * n, F);
    }
    m.truncate(n, F + 16);
}

/// `relu_plus_even` (SiLU, GeLU) of degree 5, input at `f + extra` bits: three thresholds
/// (with the input's truncation when `extra > 0`; 3pc reshares the 2 selectors), the sign and
/// range selector masked as bits (and `x`) in one round, `[x < 0] x`, the polynomial in
/// `|x| - cutoff/2` at 9 bits (fused powers, one truncation of the sum by `62 - f`), the
/// selecting product.
pub(crate) fn relu_plus_even(m: &mut Model, n: u64, extra: u32, resolution_bits: u32) {
    let base = fuzzy(resolution_bits);
    let cmp = Comparison {
        bits: base.bits + extra,
        ignored_low_bits: base.ignored_low_bits + extra,
    };
    // 2pc-dealer: x as a truncation's output takes its product material in parts.
    let x_truncated = if extra == 0 {
        m.less_than(n, Cmp::of(cmp), 2);
        m.mask_with_bits(n, 2 * n);
        false
    } else {
        m.truncate_less_than(n, extra, Cmp::of(cmp), 2);
        m.mask_with_bits(0, 2 * n);
        true
    };
    m.product_bit(n, x_truncated);
    m.truncate_polynomial(n, F - 9, 5, 62 - F);
    m.product_bit(n, true);
}

/// `sigmoid`: three thresholds, `[x < 0] x`, the degree-6 polynomial, the range selection and
/// the sign's flip (two products, their fresh factors masked).
pub(super) fn sigmoid(m: &mut Model, n: u64) {
    m.less_than(n, Cmp::of(fuzzy(6)), 3);
    m.mask(2 * n);
    m.product(n, 0);
    polynomial_degree_6(m, n);
    m.mask(2 * n);
    m.product(n, 0);
    m.mask(n);
    m.product(n, 0);
}

/// The norms after their squares: per row the sum's truncation to 17 bits fused with the
/// grid's comparison over `[1e-4, 2^20]` (64 bits for `d <= 1024`; 3pc reshares the sum and
/// 3 combinations), 2 combinations masked, `u = t h + eps g^2` and its truncation by
/// `60 - U`, `g u` and the root's truncation by `U + 1`; then the product with the (already
/// masked) input, and `gamma`'s truncation.
fn normalise(m: &mut Model, shape: &[usize], gamma: bool) {
    let (rows, d) = rows(shape);
    let n = numel(shape);
    let cmp = Comparison {
        bits: 2 * F + 21 + (d as f64).log2().ceil() as u32 + 1,
        ignored_low_bits: 0,
    };
    m.truncate_less_than(rows, 2 * F - 17, Cmp::of(cmp), 3);
    m.mask(2 * rows);
    m.product(rows, 1);
    let (lo, hi) = (1e-4, 2f64.powi(20));
    let u = u_bits(false, lo, hi);
    m.truncate(rows, 60 - u);
    m.product(rows, 1);
    m.truncate(rows, u + 1);
    m.product_truncate_of(n, F + 10, 1);
    if gamma {
        m.truncate(n, F);
    }
}

/// `rms_norm`: `x` masked once for its square and the final product, the row sums of squares
/// as one batched product (a word a row), then [`normalise`].
pub(crate) fn rms_norm(m: &mut Model, shape: &[usize], gamma: bool) {
    let (rows, _) = rows(shape);
    m.mask(numel(shape));
    m.product(rows, 0);
    normalise(m, shape, gamma);
}

/// `layer_norm` on rows of `d`: the mean's `1/d` scale (a truncation by `20 + floor(log2 d)`),
/// then as `rms_norm` on the centred input.
pub(crate) fn layer_norm(m: &mut Model, shape: &[usize], gamma: bool) {
    let (rows, d) = rows(shape);
    m.truncate(rows, 20 + d.ilog2());
    rms_norm(m, shape, gamma);
}

const SHAPES: [&[usize]; 2] = [&[2, 4], &[3, 7]];
/// Row lengths whose reciprocal ranges `[0.5, len + 1]` are not a whole number of grid steps
/// (there the closed form of the grid's size rounds either way).
const SOFTMAX_SHAPES: [&[usize]; 2] = [&[2, 4], &[3, 6]];
const NORM_SHAPES: [&[usize]; 2] = [&[2, 4], &[3, 6]];

#[test]
fn exp_reciprocal_rsqrt() {
    pin(
        "exp",
        &SHAPES,
        |p, x| approx::exp(p, &x.neg()).map(drop),
        |m, s| exp(m, numel(s)),
    );
    pin(
        "reciprocal",
        &SHAPES,
        |p, x| approx::reciprocal(p, x, 0.5, 17.0).map(drop),
        |m, s| reciprocal(m, numel(s), 0.5, 17.0),
    );
    pin(
        "rsqrt",
        &SHAPES,
        |p, x| approx::rsqrt(p, x, F, 1e-3, 1e3).map(drop),
        |m, s| rsqrt(m, numel(s), F, 1e-3, 1e3),
    );
}

#[test]
fn softmaxes() {
    pin(
        "softmax",
        &SOFTMAX_SHAPES,
        |p, x| approx::softmax(p, x, None).map(drop),
        softmax,
    );
    // A mask changes nothing of the cost.
    pin(
        "causal softmax",
        &[&[1, 4, 4], &[2, 6, 6]],
        |p, x| approx::softmax(p, x, Some(&approx::causal_mask(x.shape())?)).map(drop),
        softmax,
    );
    pin(
        "softmax_2quad",
        &SOFTMAX_SHAPES,
        |p, x| approx::softmax_2quad(p, x, None).map(drop),
        softmax_2quad,
    );
}

#[test]
fn activations() {
    pin(
        "quad",
        &SHAPES,
        |p, x| approx::quad(p, x).map(drop),
        |m, s| quad(m, numel(s)),
    );
    pin(
        "silu",
        &SHAPES,
        |p, x| approx::silu(p, x).map(drop),
        |m, s| relu_plus_even(m, numel(s), 0, 3),
    );
    pin(
        "gelu",
        &SHAPES,
        |p, x| approx::gelu(p, x).map(drop),
        |m, s| relu_plus_even(m, numel(s), 0, 6),
    );
    pin(
        "silu_wide",
        &SHAPES,
        |p, x| approx::silu_wide(p, &x.scale(1 << F), F).map(drop),
        |m, s| relu_plus_even(m, numel(s), F, 3),
    );
    pin(
        "gelu_wide",
        &SHAPES,
        |p, x| approx::gelu_wide(p, &x.scale(1 << 8), 8).map(drop),
        |m, s| relu_plus_even(m, numel(s), 8, 6),
    );
    pin(
        "polynomial of degree 6",
        &SHAPES,
        |p, x| approx::polynomial(p, x, &[0.5, -0.25, 0.125, 0.0, 0.01, 0.0, 0.001]).map(drop),
        |m, s| polynomial_degree_6(m, numel(s)),
    );
    pin(
        "sigmoid",
        &SHAPES,
        |p, x| approx::sigmoid(p, x).map(drop),
        |m, s| sigmoid(m, numel(s)),
    );
}

#[test]
fn norms() {
    for gamma in [false, true] {
        pin(
            &format!("rms_norm, gamma {gamma}"),
            &NORM_SHAPES,
            |p, x| {
                let g = vec![1.5; x.shape()[1]];
                approx::rms_norm(p, x, gamma.then_some(&g[..]), 1e-5).map(drop)
            },
            |m, s| rms_norm(m, s, gamma),
        );
    }
    pin(
        "layer_norm",
        &NORM_SHAPES,
        |p, x| {
            let b = vec![0.5; x.shape()[1]];
            approx::layer_norm(p, x, None, Some(&b), 1e-5).map(drop)
        },
        |m, s| layer_norm(m, s, false),
    );
}
