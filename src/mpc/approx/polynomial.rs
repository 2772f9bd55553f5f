//! Polynomials on shares and their public least-squares fits.

use crate::mpc::ops::{self, add_const};
use crate::mpc::protocol::{Bilinear, Masked, Protocol};
use crate::mpc::share::Share;
use anyhow::{Result, ensure};

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
/// offline `96n`. A polynomial of degree 0 (fewer than 2 coefficients) is refused: it is a
/// constant, with no share to compute it from.
pub fn polynomial(p: &mut dyn Protocol, t: &Share, coef: &[f64]) -> Result<Share> {
    ensure!(
        coef.len() >= 2,
        "a polynomial on shares needs at least 2 coefficients, not {}",
        coef.len()
    );
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
