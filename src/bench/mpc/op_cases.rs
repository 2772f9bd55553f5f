//! The per-operation cases of `bench mpc`, each against its f64 reference and its cost spread
//! per element (per score for softmax, per output for a product): softmax and sigmoid on
//! attention-sized inputs, GeLU on BERT's FFN and SiLU on SmolLM2's, LayerNorm and RMSNorm on
//! their layers' rows, rsqrt on RMSNorm mean squares, a truncation, a comparison, and a
//! product with the server's secret weights.

use super::case::{CaseSpec, Per, Unit, gaussian};
use crate::mpc::approx;
use crate::mpc::ops;
use crate::mpc::protocol::{Comparison, Protocol, Role};
use crate::mpc::share::Share;
use anyhow::Result;

/// Client input, reset the counters, apply `op`, reveal to the client; costs per input
/// element.
fn unary_spec(
    x: Vec<f64>,
    shape: Vec<usize>,
    op: impl Fn(&mut dyn Protocol, &Share) -> Result<Share> + Sync + 'static,
    reference: impl Fn(f64) -> f64,
) -> CaseSpec {
    let want = x.iter().map(|&v| reference(v)).collect();
    let per = Some(Per {
        unit: Unit::Element,
        count: x.len(),
    });
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
        per,
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
    let per = Some(Per {
        unit: Unit::Score,
        count: scores.len(),
    });
    CaseSpec {
        want,
        per,
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
        per: Some(Per {
            unit: Unit::Output,
            count: m * n,
        }),
    }
}

/// GeLU on BERT-base's FFN at 128 tokens, inputs of standard deviation 2.
pub fn gelu_128x3072() -> CaseSpec {
    unary_spec(
        gaussian(128 * 3072, 2.0, 5),
        vec![128, 3072],
        approx::gelu,
        approx::gelu_f64,
    )
}

/// SiLU on SmolLM2's FFN at 64 tokens, inputs of standard deviation 2.
pub fn silu_64x1536() -> CaseSpec {
    unary_spec(
        gaussian(64 * 1536, 2.0, 6),
        vec![64, 1536],
        approx::silu,
        approx::silu_f64,
    )
}

/// `rows × d` of `rows` normal rows of standard deviation 3 around means in `[-2, 2]`.
fn norm_rows(rows: usize, d: usize, tag: u64) -> Vec<f64> {
    gaussian(rows * d, 3.0, tag)
        .into_iter()
        .enumerate()
        .map(|(i, v)| v + 4.0 * (i / d) as f64 / rows as f64 - 2.0)
        .collect()
}

/// A norm case: `op` on `rows × d`, against [`approx::normalised_f64`].
fn norm_spec(
    rows: usize,
    d: usize,
    tag: u64,
    centre: bool,
    op: impl Fn(&mut dyn Protocol, &Share) -> Result<Share> + Sync + 'static,
) -> CaseSpec {
    let x = norm_rows(rows, d, tag);
    let want = approx::normalised_f64(&x, d, centre, 1e-5);
    CaseSpec {
        want,
        ..unary_spec(x, vec![rows, d], op, |v| v)
    }
}

/// LayerNorm on BERT-base's rows at 128 tokens (no gain or bias: they fold into what follows).
pub fn layer_norm_128x768() -> CaseSpec {
    norm_spec(128, 768, 7, true, |p, x| {
        approx::layer_norm(p, x, None, None, 1e-5)
    })
}

/// RMSNorm on SmolLM2's rows at 64 tokens.
pub fn rms_norm_64x576() -> CaseSpec {
    norm_spec(64, 576, 8, false, |p, x| approx::rms_norm(p, x, None, 1e-5))
}

/// A product's truncation: `x` at `2f` fractional bits back to `f`.
pub fn truncate_64x576() -> CaseSpec {
    unary_spec(
        gaussian(64 * 576, 4.0, 9),
        vec![64, 576],
        |p, x| {
            let f = p.fixed_point().frac_bits;
            p.truncate(&x.scale(1 << f), f)
        },
        |v| v,
    )
}

/// `[x < 0]`, the engine's default (exact) comparison, revealed as 0 or 1.
pub fn less_than_64x576() -> CaseSpec {
    unary_spec(
        gaussian(64 * 576, 4.0, 10),
        vec![64, 576],
        |p, x| {
            let fp = p.fixed_point();
            let bit = ops::less_than_zero(p, x, Comparison::default_for(fp))?;
            Ok(bit.scale(1 << fp.frac_bits))
        },
        |v| f64::from(u8::from(v < 0.0)),
    )
}
