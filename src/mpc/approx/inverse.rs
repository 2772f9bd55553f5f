//! `1 / x` and `1 / sqrt(x)` for positive `x` in a public range: a piecewise-constant guess from
//! one comparison round, then one Newton step taken as two products.
//!
//! The guess `g(x) = g_i` on piece `i` of a geometric grid is linear in the comparison bits,
//! `g = g_last + sum_j [x < tau_j] (g_j - g_{j+1})`, and since exactly one piece holds, so is
//! any function of it: `g^2` or `c g` cost no product ([`Protocol::less_than_combined`] forms
//! them all from one opening). The Newton step `y = g (2 - x g)` (reciprocal) or
//! `y = g (3 - x g^2) / 2` (rsqrt) is then `u = x h(g)` (one product, `u` close to 1) and
//! `g (c - u)`: comparison, masking and two truncations, 4 rounds, where iterating Newton from a
//! coarse guess took one masking and one truncation per product.
//!
//! Error: with `S` grid steps per octave of `x` the guess is within
//! `q = 2^(1/(2S)) - 1` relative (reciprocal; `2^(1/(4S)) - 1` for rsqrt), Newton leaves
//! `-q^2` (`-1.5 q^2 - 0.5 q^3`), always below, and a factor on the final `g` centres it: half
//! of that either way, 6e-5 (reciprocal, `S = 32`) and 9e-5 (rsqrt, `S = 16`), plus the
//! input's quantisation. Finer grids cost only local DCF evaluations (one per threshold).

use crate::mpc::ops::add_raw;
use crate::mpc::protocol::{Bilinear, Comparison, Masked, Protocol};
use crate::mpc::share::Share;
use anyhow::{Result, ensure};

/// Fractional bits of `u = x h(g)` before its truncation (`u < 1.1`: under 2^61).
const PRODUCT_BITS: u32 = 60;
/// Most fractional bits `u` keeps after its truncation.
const U_MAX_BITS: u32 = 30;

/// Which inverse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Inverse {
    Reciprocal,
    Rsqrt,
}

impl Inverse {
    fn of(self, v: f64) -> f64 {
        match self {
            Inverse::Reciprocal => 1.0 / v,
            Inverse::Rsqrt => 1.0 / v.sqrt(),
        }
    }

    /// Grid steps per octave of `x`: the reciprocal's guess varies twice as fast.
    fn steps_per_octave(self) -> f64 {
        match self {
            Inverse::Reciprocal => 32.0,
            Inverse::Rsqrt => 16.0,
        }
    }

    /// `u = x g^k`: the `k`.
    fn u_power(self) -> i32 {
        match self {
            Inverse::Reciprocal => 1,
            Inverse::Rsqrt => 2,
        }
    }

    /// Newton's `y = g (c - u) / 2^halving`: `(c, halving)`.
    fn newton(self) -> (u64, u32) {
        match self {
            Inverse::Reciprocal => (2, 0),
            Inverse::Rsqrt => (3, 1),
        }
    }

    /// The factor on the final `g` that centres Newton's one-sided error.
    fn centring(self) -> f64 {
        let steps = self.steps_per_octave();
        let deficit = match self {
            Inverse::Reciprocal => (2f64.powf(1.0 / (2.0 * steps)) - 1.0).powi(2),
            Inverse::Rsqrt => {
                let q = 2f64.powf(1.0 / (4.0 * steps)) - 1.0;
                1.5 * q * q + 0.5 * q * q * q
            }
        };
        1.0 / (1.0 - deficit / 2.0)
    }

    /// Fractional bits of the result: `f + e`, `e = ceil(log2 hi)` (reciprocal) or
    /// `ceil(log2 hi / 2)` (rsqrt), at most 20, so that small results keep their relative
    /// precision.
    pub(super) fn result_bits(self, f: u32, hi: f64) -> u32 {
        let e = match self {
            Inverse::Reciprocal => hi.log2(),
            Inverse::Rsqrt => hi.log2() / 2.0,
        };
        f + (e.ceil().max(0.0) as u32).min(20)
    }
}

/// The geometric grid over `[lo, hi]`: thresholds `tau_j = lo r^(j+1) < hi`, `r = 2^(1/S)`, and
/// each piece's guess, the target at the piece's geometric mid-point.
struct Grid {
    taus: Vec<f64>,
    guesses: Vec<f64>,
}

impl Grid {
    fn new(inverse: Inverse, lo: f64, hi: f64) -> Result<Self> {
        ensure!(lo > 0.0 && hi > lo, "range [{lo}, {hi}]");
        let ratio = 2f64.powf(1.0 / inverse.steps_per_octave());
        let mut taus = vec![];
        let mut t = lo * ratio;
        while t < hi {
            taus.push(t);
            t *= ratio;
        }
        let guesses = std::iter::once(lo)
            .chain(taus.iter().copied())
            .zip(taus.iter().copied().chain(std::iter::once(hi)))
            .map(|(a, b)| inverse.of((a * b).sqrt()))
            .collect();
        Ok(Self { taus, guesses })
    }

    /// Weights of `h(g)` at `frac` bits on the comparison bits, and the constant (the last
    /// piece's value): each piece's value is rounded once, the weights are exact differences.
    fn weights(&self, h: impl Fn(f64) -> f64, frac: u32) -> (Vec<u64>, u64) {
        let enc: Vec<u64> = self
            .guesses
            .iter()
            .map(|&g| (h(g) * (frac as f64).exp2()).round() as i64 as u64)
            .collect();
        let weights = enc.windows(2).map(|w| w[0].wrapping_sub(w[1])).collect();
        (weights, *enc.last().expect("a piece"))
    }
}

/// Where the inverse's input comes from.
pub(super) enum InverseInput<'a> {
    /// `x` at `x_frac` fractional bits.
    Plain { x: &'a Share, x_frac: u32 },
    /// `x = sum / d + eps`, `sum` a sum of squares at `2f` bits (the norms): the comparison
    /// runs on `sum` against scaled thresholds, fused with its truncation to `SUM_BITS`,
    /// whose opening also masks it; `1/d` and `eps` enter the guesses' combinations.
    MeanSquare { sum: &'a Share, d: usize, eps: f64 },
}

/// Fractional bits of a norm's sum of squares after its truncation: sums down to `1e-4 d`
/// keep `1e-4` relative precision, and with `g^2 / d` at `60 - 17` bits so do the products.
const SUM_BITS: u32 = 17;

/// `inverse(x)` for `x in [lo, hi]` at [`Inverse::result_bits`] less `narrow`, ready for
/// products; returns it and its fractional bits.
/// Cost: one comparison of `bits = x_frac + ceil(log2 hi) + 2` exact bits against
/// `K = ceil(S log2(hi / lo)) - 1` thresholds (3pc reshares its 2 combinations, not `K`
/// bits), `x` and the two combinations masked (`x` not for [`InverseInput::MeanSquare`], whose
/// truncation is fused into the comparison), `u`'s truncation by `60 - U`, the result's by
/// `U + halving` where `U = min(30, 61 - ceil(log2 c) - ceil(log2 max g) - result bits)`:
/// 2pc-dealer 4 rounds, 3pc 8.
pub(super) fn inverse_masked(
    p: &mut dyn Protocol,
    inverse: Inverse,
    input: InverseInput,
    lo: f64,
    hi: f64,
    narrow: u32,
) -> Result<(Masked, u32)> {
    let f = p.fixed_point().frac_bits;
    let grid = Grid::new(inverse, lo, hi)?;
    let y_bits = inverse.result_bits(f, hi);
    let (c, halving) = inverse.newton();
    let g_max = inverse.of(lo) * inverse.centring();
    let u_bits = (61 - (c as f64).log2().ceil() as i64 - g_max.log2().ceil() as i64 - y_bits as i64)
        .clamp(16, U_MAX_BITS as i64) as u32;
    let k = inverse.u_power();
    let kappa = inverse.centring();
    let (y_w, y_c) = grid.weights(|g| kappa * g, y_bits);
    let int_bits = (hi.log2().ceil() as i32 + 1).max(1) as u32;
    // u = x h(g) at PRODUCT_BITS, and the guess ready for its product.
    let (u, y0) = match input {
        InverseInput::Plain { x, x_frac } => {
            let (h_w, h_c) = grid.weights(|g| g.powi(k), PRODUCT_BITS - x_frac);
            let raw: Vec<u64> = grid
                .taus
                .iter()
                .map(|&t| (t * (x_frac as f64).exp2()).round() as u64)
                .collect();
            let cmp = Comparison {
                bits: x_frac + int_bits + 1,
                ignored_low_bits: 0,
            };
            let combos = p.less_than_combined(x, &raw, cmp, &[h_w, y_w])?;
            let h = add_raw(p, &combos[0], h_c)?;
            let y0 = add_raw(p, &combos[1], y_c)?;
            let [x, h, y0]: [Masked; 3] = p.mask(&[x, &h, &y0])?.try_into().expect("three");
            (p.product(&x, &h, Bilinear::Mul)?, y0)
        }
        InverseInput::MeanSquare { sum, d, eps } => {
            let f2 = 2 * f;
            let d = d as f64;
            let (h_w, h_c) = grid.weights(|g| g.powi(k) / d, PRODUCT_BITS - SUM_BITS);
            let (e_w, e_c) = grid.weights(|g| eps * g.powi(k), PRODUCT_BITS);
            let raw: Vec<u64> = grid
                .taus
                .iter()
                .map(|&t| ((t - eps) * d * (f2 as f64).exp2()).round() as i64 as u64)
                .collect();
            let cmp = Comparison {
                bits: f2 + int_bits + d.log2().ceil() as u32 + 1,
                ignored_low_bits: 0,
            };
            let (t, combos) =
                p.truncate_less_than_combined(sum, f2 - SUM_BITS, &raw, cmp, &[h_w, y_w, e_w])?;
            let h = add_raw(p, &combos[0], h_c)?;
            let y0 = add_raw(p, &combos[1], y_c)?;
            let eps_term = add_raw(p, &combos[2], e_c)?;
            let [h, y0]: [Masked; 2] = p.mask(&[&h, &y0])?.try_into().expect("two");
            (p.product(&t, &h, Bilinear::Mul)?.add(&eps_term)?, y0)
        }
    };
    let u = p.truncate_masked(&u, PRODUCT_BITS - u_bits)?;
    // y = g (c - u) / 2^halving = (c 2^U g - g u) / 2^(U + halving).
    let gu = p.product(&y0, &u, Bilinear::Mul)?;
    let z = y0.share().scale(c << u_bits).sub(&gu)?;
    let y = p.truncate_masked(&z, u_bits + halving + narrow)?;
    Ok((y, y_bits - narrow))
}

/// `1 / x` for `x in [lo, hi]`, positive, at `f` fractional bits; see the module doc.
/// Relative error <= 1e-4 plus the input's quantisation.
/// Cost: [`inverse_masked`]'s, its last truncation also by the result's extra bits:
/// 2pc-dealer `(ceil(bits / 8) + 24 + o(60 - U) + o(U + e)) n` bytes, 4 rounds, offline
/// client `8 cw n`, server `(8 cw + 64) n`; 3pc 8 rounds.
pub fn reciprocal(p: &mut dyn Protocol, x: &Share, lo: f64, hi: f64) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    plain(p, Inverse::Reciprocal, x, f, lo, hi)
}

/// `1 / sqrt(x)` for `x in [lo, hi]`, positive, with `x_frac` fractional bits, at `f`
/// fractional bits. Relative error <= 1e-4 plus the input's quantisation.
/// Cost: as [`reciprocal`], with rsqrt's grid and `U`.
pub fn rsqrt(p: &mut dyn Protocol, x: &Share, x_frac: u32, lo: f64, hi: f64) -> Result<Share> {
    plain(p, Inverse::Rsqrt, x, x_frac, lo, hi)
}

/// An inverse of a plain input at `f` bits.
fn plain(
    p: &mut dyn Protocol,
    inverse: Inverse,
    x: &Share,
    x_frac: u32,
    lo: f64,
    hi: f64,
) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    let extra = inverse.result_bits(f, hi) - f;
    let input = InverseInput::Plain { x, x_frac };
    let (y, _) = inverse_masked(p, inverse, input, lo, hi, extra)?;
    Ok(y.share().clone())
}
