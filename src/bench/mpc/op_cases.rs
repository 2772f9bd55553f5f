//! The per-operation cases of `bench mpc`: softmax and sigmoid on attention-sized inputs, rsqrt
//! on RMSNorm mean squares, and a product with the server's secret weights, each against its
//! f64 reference.

use super::case::{CaseSpec, gaussian};
use crate::mpc::approx;
use crate::mpc::ops;
use crate::mpc::protocol::{Protocol, Role};
use crate::mpc::share::Share;
use anyhow::Result;

/// Client input, reset the counters, apply `op`, reveal to the client.
fn unary_spec(
    x: Vec<f64>,
    shape: Vec<usize>,
    op: impl Fn(&mut dyn Protocol, &Share) -> Result<Share> + Sync + 'static,
    reference: impl Fn(f64) -> f64,
) -> CaseSpec {
    let want = x.iter().map(|&v| reference(v)).collect();
    let program = move |p: &mut dyn Protocol| {
        let mine = (p.role() == Role::Client).then_some(&x[..]);
        let s = ops::share_f64(p, Role::Client, mine, &shape)?;
        p.comm().reset_cost();
        let y = op(p, &s)?;
        ops::reveal_f64(p, &y, Some(Role::Client))
    };
    CaseSpec {
        program: Box::new(program),
        want,
        residual: None,
    }
}

/// Causal softmax of each row `i` of `n × n` blocks: keys `0..=i` visible.
fn causal_softmax_f64(x: &[f64], n: usize) -> Vec<f64> {
    x.chunks(n)
        .enumerate()
        .flat_map(|(r, row)| {
            let i = r % n;
            let m = row[..=i].iter().copied().fold(f64::MIN, f64::max);
            let e: Vec<f64> = (0..n)
                .map(|j| if j <= i { (row[j] - m).exp() } else { 0.0 })
                .collect();
            let z: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / z)
        })
        .collect()
}

/// Causal softmax of SmolLM2's 9 heads at 64 tokens, scores of standard deviation 3.
pub fn softmax_9x64x64() -> CaseSpec {
    let scores = gaussian(9 * 64 * 64, 3.0, 1);
    let want = causal_softmax_f64(&scores, 64);
    CaseSpec {
        want,
        ..unary_spec(
            scores,
            vec![9, 64, 64],
            |p, s| approx::softmax(p, s, Some(&approx::causal_mask(s.shape())?)),
            |v| v,
        )
    }
}

pub fn sigmoid_9x64x64() -> CaseSpec {
    unary_spec(
        gaussian(9 * 64 * 64, 4.0, 2),
        vec![9, 64, 64],
        approx::sigmoid,
        approx::sigmoid_f64,
    )
}

/// Mean squares of RMSNorm rows, log-uniform over [1e-3, 1e4], shared with 8 extra fractional
/// bits as the norms keep them.
pub fn rsqrt() -> CaseSpec {
    let ms: Vec<f64> = (0..64)
        .map(|i| 1e-3 * 10f64.powf(7.0 * i as f64 / 63.0))
        .collect();
    let want = ms.iter().map(|v| 1.0 / v.sqrt()).collect();
    let wide: Vec<f64> = ms.iter().map(|v| v * 256.0).collect();
    CaseSpec {
        want,
        ..unary_spec(
            wide,
            vec![64],
            |p, s| {
                let f = p.fixed_point().frac_bits;
                approx::rsqrt(p, s, f + 8, 5e-4, 2e4)
            },
            |v| v,
        )
    }
}

/// The client's `[64, 576]` times the server's secret `[576, 1536]` (masks opened in setup).
pub fn matmul_64x576x1536() -> CaseSpec {
    let (m, k, n) = (64, 576, 1536);
    let x = gaussian(m * k, 1.0, 3);
    let w = gaussian(k * n, 1.0 / (k as f64).sqrt(), 4);
    let mut want = vec![0.0; m * n];
    for i in 0..m {
        for kk in 0..k {
            for j in 0..n {
                want[i * n + j] += x[i * k + kk] * w[kk * n + j];
            }
        }
    }
    let program = move |p: &mut dyn Protocol| {
        let server = p.role() == Role::Server;
        let ws = ops::weight_f64(p, server.then_some(&w[..]), &[k, n])?;
        let mine = (p.role() == Role::Client).then_some(&x[..]);
        let xs = ops::share_f64(p, Role::Client, mine, &[m, k])?;
        p.comm().reset_cost();
        let y = ops::matmul_weight(p, &xs, &ws)?;
        ops::reveal_f64(p, &y, Some(Role::Client))
    };
    CaseSpec {
        program: Box::new(program),
        want,
        residual: None,
    }
}
