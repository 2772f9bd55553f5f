//! Pins for `approx`: exp, reciprocal, rsqrt, softmax and 2Quad, Quad, polynomials, SiLU /
//! GeLU / sigmoid, RMSNorm and LayerNorm. The formulas are `pub(super)` for the table of
//! `docs/costs.md`.

use super::ops_pins::tournament;
use super::{Cmp, Model, numel, pin, rows};
use crate::mpc::approx;
use crate::mpc::fixed::FixedPoint;
use crate::mpc::protocol::Comparison;

const F: u32 = 16;
/// exp's and the norms' extra fractional bits.
const WIDE: u32 = F + 8;

fn fuzzy(resolution_bits: u32) -> Comparison {
    Comparison::fuzzy(FixedPoint::default(), 12, resolution_bits)
}

/// `exp`: the square of `1 + x/256` (mask, product), 7 fused truncate-and-squares, one last
/// truncation.
pub(super) fn exp(m: &mut Model, n: u64) {
    m.mask(n);
    m.product(n, 0);
    for _ in 0..7 {
        m.truncate_powers(n, WIDE, 2, 1);
    }
    m.truncate(n, WIDE + 8);
}

/// The grid guess on `[lo, hi]`: one exact comparison of `x_frac + ceil(log2 hi) + 2` bits
/// against `ceil(4 log2(hi / lo)) - 1` thresholds.
fn grid_guess(m: &mut Model, n: u64, x_frac: u32, lo: f64, hi: f64) {
    let thresholds = (4.0 * (hi / lo).log2()).ceil() as u64 - 1;
    let int_bits = (hi.log2().ceil() as i32 + 1).max(1) as u32;
    let cmp = Comparison {
        bits: x_frac + int_bits + 1,
        ignored_low_bits: 0,
    };
    m.less_than(n, Cmp::of(cmp), thresholds);
}

/// A product of two fresh shares truncated by `d`: both masked, then the product.
fn mul_truncate(m: &mut Model, n: u64, d: u32) {
    m.mask(2 * n);
    m.product_truncate(n, d);
}

/// `reciprocal_wide`: the grid guess, two Newton steps of two products; returns the result's
/// fractional bits `f + min(ceil(log2 hi), 20)`.
pub(super) fn reciprocal_wide(m: &mut Model, n: u64, lo: f64, hi: f64) -> u32 {
    let wide = F + (hi.log2().ceil().max(0.0) as u32).min(20);
    grid_guess(m, n, F, lo, hi);
    for _ in 0..2 {
        mul_truncate(m, n, wide);
        mul_truncate(m, n, F);
    }
    wide
}

/// `reciprocal`: `reciprocal_wide`, then its truncation to `f` bits.
pub(super) fn reciprocal(m: &mut Model, n: u64, lo: f64, hi: f64) {
    let wide = reciprocal_wide(m, n, lo, hi);
    m.truncate(n, wide - F);
}

/// `rsqrt_wide`: the grid guess, two Newton steps of three products; returns the result's
/// fractional bits `f + min(ceil(log2 hi / 2), 20)`.
pub(super) fn rsqrt_wide(m: &mut Model, n: u64, x_frac: u32, lo: f64, hi: f64) -> u32 {
    let wide = F + ((hi.log2() / 2.0).ceil().max(0.0) as u32).min(20);
    grid_guess(m, n, x_frac, lo, hi);
    for _ in 0..2 {
        mul_truncate(m, n, x_frac + wide - F);
        mul_truncate(m, n, wide);
        mul_truncate(m, n, F + 1);
    }
    wide
}

/// `rsqrt`: `rsqrt_wide`, then its truncation to `f` bits.
pub(super) fn rsqrt(m: &mut Model, n: u64, x_frac: u32, lo: f64, hi: f64) {
    let wide = rsqrt_wide(m, n, x_frac, lo, hi);
    m.truncate(n, wide - F);
}

/// `softmax` on rows of `len`: fuzzy max, exp, the row sums' reciprocal on `[0.5, len + 1]`,
/// and the product with both factors masked.
pub(super) fn softmax(m: &mut Model, shape: &[usize]) {
    let (rows, len) = rows(shape);
    let n = numel(shape);
    tournament(m, shape, Cmp::of(fuzzy(8)), 1);
    exp(m, n);
    let wide = reciprocal_wide(m, rows, 0.5, len as f64 + 1.0);
    m.mask(n + rows);
    m.product_truncate(n, wide);
}

/// `softmax_2quad`: a square, the row sums' reciprocal on `[1e-3, 1e4 len]`, the product.
pub(super) fn softmax_2quad(m: &mut Model, shape: &[usize]) {
    let (rows, len) = rows(shape);
    let n = numel(shape);
    m.mask(n);
    m.product_truncate(n, F);
    let wide = reciprocal_wide(m, rows, 1e-3, 1e4 * len as f64);
    m.mask(n + rows);
    m.product_truncate(n, wide);
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
/// (with the input's truncation when `extra > 0`), the sign, range selector (and `x`) masked
/// in one round, `[x < 0] x`, the polynomial in `|x| - cutoff/2` at 9 bits (fused powers,
/// one truncation of the sum by `62 - f`), the selecting product.
pub(super) fn relu_plus_even(m: &mut Model, n: u64, extra: u32, resolution_bits: u32) {
    let base = fuzzy(resolution_bits);
    let cmp = Comparison {
        bits: base.bits + extra,
        ignored_low_bits: base.ignored_low_bits + extra,
    };
    // 2pc-dealer: x as a truncation's output takes its product material in two parts.
    let x_truncated = if extra == 0 {
        m.less_than(n, Cmp::of(cmp), 3);
        m.mask(3 * n);
        0
    } else {
        m.truncate_less_than(n, extra, Cmp::of(cmp), 3);
        m.mask(2 * n);
        1
    };
    m.product(n, x_truncated);
    m.truncate_polynomial(n, F - 9, 5, 62 - F);
    m.product(n, 1);
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

/// The norms after their squares: the mean square's two truncations (by `2f - (f + 8)` and the
/// `1/d` scale's 16 or more bits), `rsqrt_wide` over `[1e-4, 2^20]` at `f + 8` bits, its
/// result masked, the product with the (already masked) input, and `gamma`'s truncation.
fn normalise(m: &mut Model, shape: &[usize], gamma: bool) {
    let (rows, _) = rows(shape);
    let n = numel(shape);
    m.truncate(rows, 2 * F - WIDE);
    m.truncate(rows, 16);
    let wide = rsqrt_wide(m, rows, WIDE, 1e-4, 2f64.powi(20));
    m.mask(rows);
    m.product_truncate(n, wide);
    if gamma {
        m.truncate(n, F);
    }
}

/// `rms_norm`: `x` masked once for its square and the final product, then [`normalise`].
pub(super) fn rms_norm(m: &mut Model, shape: &[usize], gamma: bool) {
    let n = numel(shape);
    m.mask(n);
    m.product(n, 0);
    normalise(m, shape, gamma);
}

/// `layer_norm` on rows of `d`: the mean's `1/d` scale (a truncation by `20 + floor(log2 d)`),
/// then as `rms_norm` on the centred input.
pub(super) fn layer_norm(m: &mut Model, shape: &[usize], gamma: bool) {
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
        |p, x| approx::softmax(p, x, Some(&approx::causal_mask(x.shape()))).map(drop),
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
