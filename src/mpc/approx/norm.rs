//! RMSNorm and LayerNorm over the last axis: the row's sum of squares, its inverse square root
//! by [`inverse_masked`] (the mean square's `1/d` and `eps` folded into the guess, the sum's
//! truncation into the comparison's opening), and one product with the input.
//!
//! The sum keeps 17 fractional bits after its truncation and the guesses' combinations 43, so
//! mean squares down to 1e-4 (SmolLM2's tiny ones near 1e-3) and activations with outliers in
//! the hundreds (up to 2^13) stay accurate: relative error <= 2e-4 plus one output unit.

use super::inverse::{Inverse, InverseInput, inverse_masked};
use crate::mpc::ops::{self, scale};
use crate::mpc::protocol::{Bilinear, Masked, Protocol};
use crate::mpc::ring::RingTensor;
use crate::mpc::share::Share;
use anyhow::{Result, ensure};

/// The mean squares a norm accepts.
const MEAN_SQUARE_RANGE: (f64, f64) = (1e-4, 1048576.0);
/// Longest row: its sum of squares at `2f` bits must stay under 2^62 (truncation input).
const MAX_ROW: usize = 1024;

/// The f64 reference of a norm without its affine part, on each row of `d` of `x`:
/// `(x - mean) / sqrt(var + eps)`, centred (LayerNorm) or not (RMSNorm: `mean = 0`, so `var`
/// is the mean square).
pub fn normalised_f64(x: &[f64], d: usize, centre: bool, eps: f64) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|row| {
            let mean = if centre {
                row.iter().sum::<f64>() / d as f64
            } else {
                0.0
            };
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            let inv = 1.0 / (var + eps).sqrt();
            row.iter().map(move |v| (v - mean) * inv)
        })
        .collect()
}

/// RMSNorm over the last axis, `x / sqrt(mean(x^2) + eps) * gamma` (gamma public or none).
/// Cost per row of `d`: 2pc-dealer `14d + 36` bytes (`x` masked once for its square and the
/// final product, `8d`; that product's truncation, `6d`; per row the sum's fused truncation
/// and comparison, 8, the guesses masked, 16, `u`'s and the root's truncations, 6 and 6), 6
/// rounds; 3pc `14d + 94`, helper `16d + 22` (the row sums of squares reshared a word a row),
/// 11 rounds. `gamma` adds a truncation of the output.
pub fn rms_norm(p: &mut dyn Protocol, x: &Share, gamma: Option<&[f64]>, eps: f64) -> Result<Share> {
    let d = x.shape()[x.last_axis()?];
    // One opening of x serves its square and the final product.
    let xm = p.mask(&[x])?.remove(0);
    let sum_sq = row_sum_of_squares(p, &xm)?;
    normalise(p, &xm, &sum_sq, d, gamma, eps)
}

/// Each row's `sum x^2` (untruncated, last axis kept at length 1) as one batched product
/// `[rows, 1, d] x [rows, d, 1]`: 3pc reshares a word a row, not one an element, and the
/// dealer's material is a word a row.
fn row_sum_of_squares(p: &mut dyn Protocol, x: &Masked) -> Result<Share> {
    let shape = x.shape().to_vec();
    let d = *shape.last().expect("rank >= 1");
    let rows = x.share().len() / d.max(1);
    let sum = p.product(
        &x.reshape(&[rows, 1, d])?,
        &x.reshape(&[rows, d, 1])?,
        Bilinear::MatMul,
    )?;
    let mut summed = shape;
    *summed.last_mut().expect("rank >= 1") = 1;
    sum.reshape(&summed)
}

/// LayerNorm over the last axis: `(x - mean) / sqrt(var + eps) * gamma + beta`.
/// Cost: the mean's truncation, then as [`rms_norm`] on the centred input.
pub fn layer_norm(
    p: &mut dyn Protocol,
    x: &Share,
    gamma: Option<&[f64]>,
    beta: Option<&[f64]>,
    eps: f64,
) -> Result<Share> {
    let axis = x.last_axis()?;
    let d = x.shape()[axis];
    let mean = scale(p, &x.sum_axis(axis)?, 1.0 / d as f64, 40.0)?;
    let centred = x.sub(&mean.broadcast_to(x.shape())?)?;
    let cm = p.mask(&[&centred])?.remove(0);
    let sum_sq = row_sum_of_squares(p, &cm)?;
    let out = normalise(p, &cm, &sum_sq, d, gamma, eps)?;
    match beta {
        None => Ok(out),
        Some(b) => {
            let b = last_axis_vector(p, b, x.shape())?.broadcast_to(x.shape())?;
            p.add_public(&out, &b)
        }
    }
}

/// A per-feature vector encoded as `[1, .., 1, d]`, to broadcast over `shape`.
fn last_axis_vector(p: &dyn Protocol, v: &[f64], shape: &[usize]) -> Result<RingTensor> {
    let mut vshape = vec![1; shape.len()];
    *vshape.last_mut().expect("rank >= 1") = v.len();
    ops::encode(p, v, &vshape)
}

/// `x * rsqrt(sum_sq / d + eps) * gamma`, `sum_sq` at `2f` bits.
fn normalise(
    p: &mut dyn Protocol,
    x: &Masked,
    sum_sq: &Share,
    d: usize,
    gamma: Option<&[f64]>,
    eps: f64,
) -> Result<Share> {
    ensure!(
        d <= MAX_ROW,
        "a norm over rows of {d} would overflow its sum of squares (at most {MAX_ROW})"
    );
    let (lo, hi) = MEAN_SQUARE_RANGE;
    let input = InverseInput::MeanSquare {
        sum: sum_sq,
        d,
        eps,
    };
    let (r, r_frac) = inverse_masked(p, Inverse::Rsqrt, input, lo, hi, 0)?;
    let out = p
        .product_truncate(&[(x, &r)], Bilinear::Mul, r_frac)?
        .remove(0);
    match gamma {
        None => Ok(out),
        Some(g) => {
            let g = last_axis_vector(p, g, x.shape())?;
            ops::mul_public(p, &out, &g)
        }
    }
}
