//! Approximations of non-linear functions on shares: exp, reciprocal, rsqrt, softmax,
//! sigmoid / SiLU / GeLU (piecewise, PUMA-style), RMSNorm, LayerNorm, and MPCFormer's Quad and
//! 2Quad. Error bounds are the tested ones at 16 fractional bits. "Cost:" lines are as in
//! [`ops`] (bytes each computing party sends for `n` elements, critical-path rounds, offline
//! bytes the server / client receive; `o(d)`, `cw`), pinned by `mpc::tests::costs`.

use super::ops::{self, add_const, add_raw, scale};
use super::protocol::{Bilinear, Comparison, Masked, Protocol};
use super::ring::{RingTensor, numel};
use super::share::Share;
use anyhow::{Result, ensure};

/// Extra fractional bits exp carries internally.
const EXP_EXTRA_BITS: u32 = 8;

/// `e^x` for `x in [-256, 2]` as `(1 + x/256)^256`: `1 + x/256` is exact at `f + 8` fractional
/// bits, then 8 squarings, each fused with the previous truncation.
/// Error: `|e^x - result| <= e^x x^2 / 512 + 2^-15` (1.1e-3 for `x <= 0`, the softmax case;
/// 4e-3 at `x = 1`). Below -256 the result is meaningless.
/// Cost: 2pc-dealer `56n` bytes (a masking, 7 fused truncate-and-squares and a truncation of
/// 6 bytes each), 9 rounds, offline `248n`; 3pc `120n` (each truncation reshared), helper `8n`,
/// 10 rounds, offline `240n`.
pub fn exp(p: &mut dyn Protocol, x: &Share) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    let wide = f + EXP_EXTRA_BITS;
    // (1 + x/256) at scale f+8 is 2^(f+8) + x_raw.
    let y = add_raw(p, x, 1u64 << wide)?;
    let mut sq = p.square(&y)?;
    for _ in 1..8 {
        sq = p.truncate_square(&sq, wide)?;
    }
    p.truncate(&sq, wide + EXP_EXTRA_BITS)
}

/// Grid points per octave of [`grid_guess`]. Finer grids cost only local DCF evaluations and
/// can save a Newton step (16 points and one step: 16 fewer rounds per layer, but twice the
/// layer's local time on this 2-core machine); 4 points and two steps is the measured balance.
const GRID_STEPS_PER_OCTAVE: f64 = 4.0;

/// Newton steps after the grid guess (each squares the relative error).
const NEWTON_STEPS: usize = 2;

/// Initial guess `g(x)` for positive `x in [lo, hi]`: piecewise constant on a geometric grid
/// of ratio `2^(1/4)`, each piece the value of `target` at the geometric mid-point. One
/// comparison round (all thresholds share one opening and one DCF key per element); the
/// result is linear in the comparison bits. `x_frac` are `x`'s fractional bits, `out_frac`
/// the result's.
/// Cost: [`ops::less_than`] of `bits = x_frac + max(ceil(log2 hi) + 1, 1) + 1` exact bits
/// against `K = ceil(4 log2(hi / lo)) - 1` thresholds (3pc reshares all `K`).
fn grid_guess(
    p: &mut dyn Protocol,
    x: &Share,
    x_frac: u32,
    out_frac: u32,
    lo: f64,
    hi: f64,
    target: impl Fn(f64) -> f64,
) -> Result<Share> {
    ensure!(lo > 0.0 && hi > lo, "range [{lo}, {hi}]");
    let ratio = 2f64.powf(1.0 / GRID_STEPS_PER_OCTAVE);
    let mut taus = vec![];
    let mut t = lo * ratio;
    while t < hi {
        taus.push(t);
        t *= ratio;
    }
    let mids: Vec<f64> = std::iter::once(lo)
        .chain(taus.iter().copied())
        .zip(taus.iter().copied().chain(std::iter::once(hi)))
        .map(|(a, b)| target((a * b).sqrt()))
        .collect();
    let int_bits = (hi.log2().ceil() as i32 + 1).max(1) as u32;
    let cmp = Comparison {
        bits: x_frac + int_bits + 1,
        ignored_low_bits: 0,
    };
    let raw: Vec<u64> = taus
        .iter()
        .map(|&t| (t * (x_frac as f64).exp2()).round() as u64)
        .collect();
    let bits = p.less_than(x, &raw, cmp)?;
    let enc = |v: f64| (v * (out_frac as f64).exp2()).round() as i64 as u64;
    // g = g_last + sum_j [x < tau_j] (g_j - g_{j+1}).
    let mut g = add_raw(
        p,
        &ops::zeros_like(x),
        enc(*mids.last().expect("non-empty")),
    )?;
    for (j, b) in bits.iter().enumerate() {
        g = g.add(&b.scale(enc(mids[j] - mids[j + 1])))?;
    }
    Ok(g)
}

/// `1 / x` for `x in [lo, hi]`, positive, at `f + e` fractional bits with
/// `e = ceil(log2 hi)` so that small results keep their relative precision; returns the
/// result and its fractional bits. Grid guess (relative error <= 9%) and two Newton steps
/// `y (2 - x y)`. Relative error <= 1e-4 (plus input quantisation).
/// Cost: the grid guess and 4 products of fresh factors: 2pc-dealer
/// `(ceil(bits / 8) + 88) n` bytes, 9 rounds, offline client `8 cw n`, server
/// `(8 cw + 104) n`; 3pc `(ceil(bits / 8) + 8K + 56) n`, helper `64n`, 10 rounds, offline
/// server `(8 cw + 72) n`.
pub fn reciprocal_wide(p: &mut dyn Protocol, x: &Share, lo: f64, hi: f64) -> Result<(Share, u32)> {
    let f = p.fixed_point().frac_bits;
    let wide = f + (hi.log2().ceil().max(0.0) as u32).min(20);
    let mut y = grid_guess(p, x, f, wide, lo, hi, |v| 1.0 / v)?;
    for _ in 0..NEWTON_STEPS {
        let xy = p.bilinear_truncate(x, &y, Bilinear::Mul, wide)?;
        let two_minus = add_const(p, &xy.neg(), 2.0)?;
        y = p.bilinear_truncate(&y, &two_minus, Bilinear::Mul, f)?;
    }
    Ok((y, wide))
}

/// `1 / x` at the default precision; see [`reciprocal_wide`].
/// Cost: [`reciprocal_wide`]'s and a truncation by `e`: 2pc-dealer `+o(e) n` bytes, 10 rounds;
/// 3pc `+(o(e) + 8) n`, 11 rounds; offline `+16n`.
pub fn reciprocal(p: &mut dyn Protocol, x: &Share, lo: f64, hi: f64) -> Result<Share> {
    let (y, wide) = reciprocal_wide(p, x, lo, hi)?;
    narrow_to_default(p, y, wide)
}

/// `1 / sqrt(x)` for `x in [lo, hi]`, positive, with `x_frac` fractional bits (norms pass
/// extra bits so that mean squares as small as 1e-3 keep their precision); the result comes at
/// `f + e` fractional bits, `e = ceil(log2 hi / 2)`, so that it keeps its relative precision
/// when `x` is large (outliers), and is returned with them. Grid guess (relative error <= 4.5%,
/// so no convergence problem at small inputs, unlike an exp-based guess) and two Newton steps
/// `y (3 - (x y) y) / 2`, with `x y` formed first so no intermediate underflows.
/// Needs `sqrt(hi) 2^(x_frac + f + e) < 2^61`. Relative error <= 1e-4.
/// Cost: the grid guess and 6 products of fresh factors: 2pc-dealer
/// `(ceil(bits / 8) + 132) n` bytes, 13 rounds, offline client `8 cw n`, server
/// `(8 cw + 152) n`; 3pc `(ceil(bits / 8) + 8K + 84) n`, helper `96n`, 14 rounds, offline
/// server `(8 cw + 104) n`. The norms' (`x_frac = f + 8` on `[1e-4, 2^20]`: 46 bits, `K = 133`):
/// 2pc-dealer `138n`, 3pc `1154n`.
pub fn rsqrt_wide(
    p: &mut dyn Protocol,
    x: &Share,
    x_frac: u32,
    lo: f64,
    hi: f64,
) -> Result<(Share, u32)> {
    let f = p.fixed_point().frac_bits;
    let wide = f + ((hi.log2() / 2.0).ceil().max(0.0) as u32).min(20);
    let mut y = grid_guess(p, x, x_frac, wide, lo, hi, |v| 1.0 / v.sqrt())?;
    for _ in 0..NEWTON_STEPS {
        let xy = p.bilinear_truncate(x, &y, Bilinear::Mul, x_frac + wide - f)?;
        let xyy = p.bilinear_truncate(&xy, &y, Bilinear::Mul, wide)?;
        let h = add_const(p, &xyy.neg(), 3.0)?;
        // y h / 2: the halving rides on the truncation.
        y = p.bilinear_truncate(&y, &h, Bilinear::Mul, f + 1)?;
    }
    Ok((y, wide))
}

/// `1 / sqrt(x)` at `f` fractional bits; see [`rsqrt_wide`].
/// Cost: [`rsqrt_wide`]'s and a truncation by `e`: 2pc-dealer `+o(e) n` bytes, 14 rounds;
/// 3pc `+(o(e) + 8) n`, 15 rounds; offline `+16n`.
pub fn rsqrt(p: &mut dyn Protocol, x: &Share, x_frac: u32, lo: f64, hi: f64) -> Result<Share> {
    let (y, wide) = rsqrt_wide(p, x, x_frac, lo, hi)?;
    narrow_to_default(p, y, wide)
}

/// Truncate a result at `frac` fractional bits down to the default `f`.
fn narrow_to_default(p: &mut dyn Protocol, y: Share, frac: u32) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    if frac == f {
        return Ok(y);
    }
    p.truncate(&y, frac - f)
}

/// Row `i` of a `[.., T, T]` score tensor sees columns `<= i`.
pub fn causal_mask(shape: &[usize]) -> Vec<bool> {
    let r = shape.len();
    let (rows, cols) = (shape[r - 2], shape[r - 1]);
    (0..numel(shape))
        .map(|i| (i % cols) <= (i / cols) % rows)
        .collect()
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

/// Multiply by a public 0/1 mask (local, exact).
fn apply_mask(x: &Share, mask: &[bool]) -> Result<Share> {
    let m = RingTensor::new(x.shape(), mask.iter().map(|&k| k as u64).collect())?;
    x.mul_public(&m)
}

/// Softmax along the last axis, optionally under a public mask of `x`'s shape (`true`: visible;
/// every row sees column 0, as under a causal mask). Max by tournament with fuzzy comparisons
/// (shift invariance makes the fuzz harmless), [`exp`], row sums, [`reciprocal_wide`] over
/// `[0.5, m + 1]`, product. Max error 6e-3 (tested 5e-3 on N(0, 3) scores) for a row range
/// < 256.
/// Cost per row of `m` (the mask changes nothing), `b = 18 + ceil(log2(m + 1))` the
/// reciprocal's comparison bits: 2pc-dealer `20(m - 1) + 70m + ceil(b / 8) + 96` bytes,
/// `2 ceil(log2 m) + 20` rounds; 3pc `20(m - 1) + 134m + ceil(b / 8) + 8K + 56`, helper
/// `8(m - 1) + 24m + 64`, `3 ceil(log2 m) + 21` rounds. `m = 64`: 730 bits per score and
/// party (2pc-dealer), 32 rounds.
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
    let mut e = exp(p, &shifted)?;
    if let Some(v) = visible {
        e = apply_mask(&e, v)?;
    }
    let sum = e.sum_axis(axis)?;
    let (inv, wide) = reciprocal_wide(p, &sum, 0.5, n as f64 + 1.0)?;
    p.bilinear_truncate(&e, &inv, Bilinear::Mul, wide)
}

/// MPCFormer's 2Quad: `(x + c)^2 / sum (x + c)^2` with `c = 5`, masked entries 0.
/// Exact up to fixed-point error (2e-3).
/// Cost per row of `m`, `b = 18 + ceil(log2(1e4 m))`: 2pc-dealer `28m + ceil(b / 8) + 96`
/// bytes, 13 rounds; 3pc `28m + ceil(b / 8) + 8K + 56`, helper `32m + 64`, 13 rounds.
pub fn softmax_2quad(p: &mut dyn Protocol, x: &Share, visible: Option<&[bool]>) -> Result<Share> {
    let axis = x.last_axis()?;
    let n = x.shape()[axis];
    let shifted = add_const(p, x, 5.0)?;
    let mut q = ops::square(p, &shifted)?;
    if let Some(v) = visible {
        q = apply_mask(&q, v)?;
    }
    // Bound the row sum away from 0 so the reciprocal's range holds.
    let sum = add_const(p, &q.sum_axis(axis)?, 1e-3)?;
    let (inv, wide) = reciprocal_wide(p, &sum, 1e-3, 1e4 * n as f64)?;
    p.bilinear_truncate(&q, &inv, Bilinear::Mul, wide)
}

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

/// Least-squares polynomial fit of `f` on `[lo, hi]` (Chebyshev nodes), monomial coefficients
/// in `t`, lowest degree first. Public, computed in f64.
pub fn fit_polynomial(f: impl Fn(f64) -> f64, lo: f64, hi: f64, degree: usize) -> Vec<f64> {
    let m = 200;
    let n = degree + 1;
    // Fit in u = (t - lo) / (hi - lo) in [0, 1] for conditioning, then expand.
    let nodes: Vec<f64> = (0..m)
        .map(|i| 0.5 - 0.5 * (std::f64::consts::PI * (i as f64 + 0.5) / m as f64).cos())
        .collect();
    let mut ata = vec![vec![0.0; n + 1]; n];
    for &u in &nodes {
        let y = f(lo + u * (hi - lo));
        let pw: Vec<f64> = (0..n).map(|k| u.powi(k as i32)).collect();
        for r in 0..n {
            for c in 0..n {
                ata[r][c] += pw[r] * pw[c];
            }
            ata[r][n] += pw[r] * y;
        }
    }
    let a = solve(ata);
    // Expand sum a_k ((t - lo)/w)^k into powers of t.
    let w = hi - lo;
    let mut coef = vec![0.0; n];
    for (k, &ak) in a.iter().enumerate() {
        for (j, c) in coef.iter_mut().enumerate().take(k + 1) {
            let binom = (0..j).fold(1.0, |acc, i| acc * (k - i) as f64 / (i + 1) as f64);
            *c += ak * binom * (-lo).powi((k - j) as i32) / w.powi(k as i32);
        }
    }
    coef
}

/// Gaussian elimination with partial pivoting on an augmented matrix.
fn solve(mut m: Vec<Vec<f64>>) -> Vec<f64> {
    let n = m.len();
    for c in 0..n {
        let piv = (c..n)
            .max_by(|&a, &b| m[a][c].abs().total_cmp(&m[b][c].abs()))
            .expect("rows");
        m.swap(c, piv);
        let pivot_row = m[c].clone();
        for row in m.iter_mut().skip(c + 1) {
            let k = row[c] / pivot_row[c];
            for (v, p) in row.iter_mut().zip(&pivot_row).skip(c) {
                *v -= k * p;
            }
        }
    }
    let mut x = vec![0.0; n];
    for r in (0..n).rev() {
        let s: f64 = (r + 1..n).map(|j| m[r][j] * x[j]).sum();
        x[r] = (m[r][n] - s) / m[r][r];
    }
    x
}

/// Fractional bits at which polynomial terms are summed before one final truncation.
const POLY_EXTRA_BITS: u32 = 16;

/// `sum c_k t^k` on shares. Powers come from products of lower powers, one level per round
/// pair; each power is masked (opened) once and reused in every product it enters.
/// Cost of degree 6: three levels each masking one new power and truncating its new powers'
/// products (1, 2, 2), then the weighted sum's truncation: 2pc-dealer `60n` bytes, 7 rounds,
/// offline `136n`; 3pc `84n` (products fused into their truncations), helper `80n`, 7 rounds,
/// offline `96n`.
pub fn polynomial(p: &mut dyn Protocol, t: &Share, coef: &[f64]) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    let d = coef.len() - 1;
    let mut pow: Vec<Option<Share>> = vec![None; d + 1];
    let mut masked: Vec<Option<Masked>> = vec![None; d + 1];
    pow[1] = Some(t.clone());
    let mut have = 1;
    while have < d {
        let next: Vec<usize> = (have + 1..=(2 * have).min(d)).collect();
        let factors: Vec<(usize, usize)> = next.iter().map(|&k| (k / 2, k - k / 2)).collect();
        let mut need: Vec<usize> = factors.iter().flat_map(|&(a, b)| [a, b]).collect();
        need.sort_unstable();
        need.dedup();
        need.retain(|&j| masked[j].is_none());
        let shares: Vec<&Share> = need
            .iter()
            .map(|&j| pow[j].as_ref().expect("lower power"))
            .collect();
        for (j, m) in need.iter().zip(p.mask(&shares)?) {
            masked[*j] = Some(m);
        }
        let pairs: Vec<(&Masked, &Masked)> = factors
            .iter()
            .map(|&(a, b)| {
                (
                    masked[a].as_ref().expect("masked"),
                    masked[b].as_ref().expect("masked"),
                )
            })
            .collect();
        let powers = p.product_truncate(&pairs, Bilinear::Mul, f)?;
        for (&k, power) in next.iter().zip(powers) {
            pow[k] = Some(power);
        }
        have = *next.last().expect("non-empty");
    }
    let scale_bits = f + POLY_EXTRA_BITS;
    let mut acc = ops::zeros_like(t);
    for (k, &c) in coef.iter().enumerate().skip(1) {
        let enc = (c * (scale_bits as f64).exp2()).round() as i64 as u64;
        acc = acc.add(&pow[k].as_ref().expect("computed").scale(enc))?;
    }
    let acc = p.truncate(&acc, scale_bits)?;
    add_const(p, &acc, coef[0])
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
    let (x, negative, inside) = if extra_bits == 0 {
        let bits = p.less_than(x, &raw, cmp)?;
        let inside = bits[2].sub(&bits[0])?;
        let [x, negative, inside]: [Masked; 3] = p
            .mask(&[x, &bits[1], &inside])?
            .try_into()
            .expect("three masked");
        (x, negative, inside)
    } else {
        let (x, bits) = p.truncate_less_than(x, extra_bits, &raw, cmp)?;
        let inside = bits[2].sub(&bits[0])?;
        let [negative, inside]: [Masked; 2] = p
            .mask(&[&bits[1], &inside])?
            .try_into()
            .expect("two masked");
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
/// Cost (29-bit comparison ignoring 13 bits, `cw = 48`): 2pc-dealer `42n` bytes (4 opened by
/// the comparison, `24n` masking `x`, the sign and the range, 8 and 6 for the polynomial's two
/// truncations), 4 rounds, offline client `8 cw n`, server `(8 cw + 128) n`; 3pc `66n` (three
/// bits reshared), helper `16n`, 7 rounds, offline server `(8 cw + 104) n`.
pub fn silu(p: &mut dyn Protocol, x: &Share) -> Result<Share> {
    silu_wide(p, x, 0)
}

/// [`silu`] of `x` given at `f + extra_bits` fractional bits (e.g. an untruncated product);
/// the truncation rides on the comparison's opening, saving its round.
/// Cost for `extra_bits >= 16` (the layer's): 2pc-dealer `36n` bytes (the opening drops 2
/// bytes), 4 rounds, offline server `(8 cw + 152) n`; 3pc `76n`, helper `16n`, 7 rounds.
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

/// RMSNorm over the last axis, `x / sqrt(mean(x^2) + eps) * gamma` (gamma public or none).
/// The mean square is kept at `f + 8` fractional bits, so inputs with mean square down to
/// 1e-3 (and activations with outliers in the hundreds, up to 2^13) stay accurate.
/// Relative error <= 2e-4 plus one output unit.
/// Cost per row of `d`: 2pc-dealer `14d + 159` bytes (`x` masked once for its square and the
/// final product, `8d`; that product's truncation, `6d`; per row the mean square's two
/// truncations, [`rsqrt_wide`]'s `138` and the masking of its result), 18 rounds, offline
/// client `1104`, server `32d + 1288`; 3pc `22d + 1183`, helper `24d + 96`, 19 rounds.
/// `gamma` adds a truncation of the output.
pub fn rms_norm(p: &mut dyn Protocol, x: &Share, gamma: Option<&[f64]>, eps: f64) -> Result<Share> {
    let axis = x.last_axis()?;
    let d = x.shape()[axis];
    // One opening of x serves its square and the final product.
    let xm = p.mask(&[x])?.remove(0);
    let sq = p.product(&xm, &xm, Bilinear::Mul)?;
    let ms = mean_square(p, &sq.sum_axis(axis)?, d, eps)?;
    normalise(p, &xm, &ms, gamma)
}

/// LayerNorm over the last axis: `(x - mean) / sqrt(var + eps) * gamma + beta`.
/// Cost: the mean's truncation, then as [`rms_norm`]: 2pc-dealer `14d + 165` bytes a row,
/// 19 rounds; 3pc `22d + 1197`, helper `24d + 96`, 21 rounds.
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
    let sq = p.product(&cm, &cm, Bilinear::Mul)?;
    let var = mean_square(p, &sq.sum_axis(axis)?, d, eps)?;
    let out = normalise(p, &cm, &var, gamma)?;
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

/// `sum / d + eps` at `f + 8` fractional bits from a sum of squares at `2f`.
fn mean_square(p: &mut dyn Protocol, sum_sq: &Share, d: usize, eps: f64) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    let wide = f + EXP_EXTRA_BITS;
    let s = p.truncate(sum_sq, 2 * f - wide)?;
    // Sums of squares up to 2^20 (the rsqrt range) times d.
    let bound = wide as f64 + 20.0 + (d as f64).log2();
    let ms = scale(p, &s, 1.0 / d as f64, bound)?;
    add_raw(p, &ms, (eps * (wide as f64).exp2()).round().max(1.0) as u64)
}

/// `x * rsqrt(ms) * gamma`.
fn normalise(p: &mut dyn Protocol, x: &Masked, ms: &Share, gamma: Option<&[f64]>) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    let (r, r_frac) = rsqrt_wide(p, ms, f + EXP_EXTRA_BITS, 1e-4, 2f64.powi(20))?;
    let rm = p.mask(&[&r])?.remove(0);
    let out = p
        .product_truncate(&[(x, &rm)], Bilinear::Mul, r_frac)?
        .remove(0);
    match gamma {
        None => Ok(out),
        Some(g) => {
            let g = last_axis_vector(p, g, x.shape())?;
            ops::mul_public(p, &out, &g)
        }
    }
}
