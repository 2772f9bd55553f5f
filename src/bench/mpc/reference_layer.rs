//! The plaintext f64 reference of one layer of any [`LayerArchitecture`] from its
//! [`LayerParams`], on one sequence: what `bench mpc` scores the secure layer against where no
//! candle model of the architecture exists (BERT, GPT-2). Written from the architectures'
//! definitions, not from the secure layer: nothing is folded (norms apply their own gain and
//! bias, scores their own scale), every product in f64. A test holds it to candle's Llama
//! layer.

use crate::model::linear::Linear;
use crate::model::variants::{Activation, PUMA_SILU_CUTOFF, SoftmaxKind};
use crate::mpc::approx::{gelu_f64, normalised_f64, silu_f64};
use crate::secure::architecture::{
    AttentionMask, Dense, FeedForward, LayerArchitecture, LayerParams, NormKind, NormParams,
    NormPlacement, PositionEncoding,
};
use anyhow::{Context, Result, ensure};
use candle_core::{DType, Tensor};

/// A row-major `[rows, cols]` matrix of reals.
struct Rows {
    cols: usize,
    data: Vec<f64>,
}

impl Rows {
    fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    fn rows(&self) -> usize {
        self.data.len() / self.cols
    }

    fn map_rows(&self, f: impl Fn(&[f64]) -> Vec<f64>) -> Rows {
        let data: Vec<f64> = (0..self.rows()).flat_map(|i| f(self.row(i))).collect();
        let cols = data.len() / self.rows();
        Rows { cols, data }
    }

    fn add(&self, other: &Rows) -> Rows {
        let data = self
            .data
            .iter()
            .zip(&other.data)
            .map(|(a, b)| a + b)
            .collect();
        Rows {
            cols: self.cols,
            data,
        }
    }
}

/// `W` `(out, in)` of `l` as reals, its LoRA adapter merged in.
fn weight(l: &Linear) -> Result<Rows> {
    let w: Tensor = match &l.lora {
        Some(lora) => lora.merged_into(&l.weight)?,
        None => l.weight.clone(),
    };
    Ok(Rows {
        cols: l.in_features(),
        data: w.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
    })
}

/// `x·Wᵀ + b`.
fn dense(x: &Rows, d: &Dense) -> Result<Rows> {
    let w = weight(&d.linear)?;
    Ok(x.map_rows(|xi| {
        (0..w.rows())
            .map(|j| {
                let dot: f64 = xi.iter().zip(w.row(j)).map(|(a, b)| a * b).sum();
                dot + d.bias.as_ref().map_or(0.0, |b| b[j])
            })
            .collect()
    }))
}

fn norm(x: &Rows, kind: NormKind, n: &NormParams, eps: f64) -> Rows {
    x.map_rows(|row| {
        normalised_f64(row, row.len(), kind == NormKind::Layer, eps)
            .into_iter()
            .enumerate()
            .map(|(i, v)| v * n.gain[i] + n.bias.as_ref().map_or(0.0, |b| b[i]))
            .collect()
    })
}

fn activate(a: Activation, x: f64) -> f64 {
    match a {
        Activation::Silu => silu_f64(x),
        Activation::Gelu => gelu_f64(x),
        Activation::Quad => 0.125 * x * x + 0.25 * x + 0.5,
        Activation::Puma => {
            let tail = if x.abs() < PUMA_SILU_CUTOFF {
                silu_f64(-x.abs())
            } else {
                0.0
            };
            x.max(0.0) + tail
        }
    }
}

/// Rotary embedding of one head's `v` at position `t`, half-split, angles in f32 as the
/// plaintext model computes them.
fn rotate(v: &[f64], t: usize, base: f64) -> Vec<f64> {
    let (hd, half) = (v.len(), v.len() / 2);
    let angle = |j: usize| (t as f64 / base.powf(2.0 * j as f64 / hd as f64)) as f32 as f64;
    (0..hd)
        .map(|j| {
            let (c, s) = (angle(j % half).cos(), angle(j % half).sin());
            if j < half {
                v[j] * c - v[j + half] * s
            } else {
                v[j] * c + v[j - half] * s
            }
        })
        .collect()
}

fn attention(x: &Rows, p: &LayerParams, arch: &LayerArchitecture) -> Result<Rows> {
    let l = p.layout;
    ensure!(l.merge == 1, "the reference has no merged heads");
    ensure!(
        arch.softmax == SoftmaxKind::Exact,
        "the reference's softmax is the exact one"
    );
    let (q, k, v) = (dense(x, &p.q)?, dense(x, &p.k)?, dense(x, &p.v)?);
    let (tokens, hd) = (x.rows(), l.head_dim);
    let head = |m: &Rows, t: usize, h: usize| -> Vec<f64> {
        let v = &m.row(t)[h * hd..(h + 1) * hd];
        match arch.positions {
            PositionEncoding::Rotary { base } => rotate(v, t, base),
            PositionEncoding::Absolute => v.to_vec(),
        }
    };
    let mut out = vec![0.0; tokens * l.num_heads * hd];
    for h in 0..l.num_heads {
        let kv = h / l.group_size();
        for i in 0..tokens {
            let qi = head(&q, i, h);
            let seen = match arch.mask {
                AttentionMask::Causal => i + 1,
                AttentionMask::Bidirectional => tokens,
            };
            let scores: Vec<f64> = (0..seen)
                .map(|j| {
                    let kj = head(&k, j, kv);
                    qi.iter().zip(&kj).map(|(a, b)| a * b).sum::<f64>() * l.score_scale
                })
                .collect();
            let max = scores.iter().copied().fold(f64::MIN, f64::max);
            let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let z: f64 = e.iter().sum();
            for (j, ej) in e.iter().enumerate() {
                let vj = &v.row(j)[kv * hd..(kv + 1) * hd];
                let o = &mut out[(i * l.num_heads + h) * hd..][..hd];
                o.iter_mut().zip(vj).for_each(|(o, vv)| *o += ej / z * vv);
            }
        }
    }
    let heads = Rows {
        cols: l.num_heads * hd,
        data: out,
    };
    dense(&heads, &p.o)
}

fn feed_forward(x: &Rows, p: &LayerParams, arch: &LayerArchitecture) -> Result<Rows> {
    let up = dense(x, &p.up)?;
    let hidden = match arch.feed_forward {
        FeedForward::Gated => {
            let g = dense(x, p.gate.as_ref().context("a gated block has a gate")?)?;
            let data = g
                .data
                .iter()
                .zip(&up.data)
                .map(|(&g, &u)| activate(arch.activation, g) * u)
                .collect();
            Rows {
                cols: up.cols,
                data,
            }
        }
        FeedForward::Plain => {
            up.map_rows(|r| r.iter().map(|&v| activate(arch.activation, v)).collect())
        }
    };
    dense(&hidden, &p.down)
}

/// The layer on `x` `[tokens, d]` (row-major), one sequence.
pub fn reference_layer(
    params: &LayerParams,
    arch: &LayerArchitecture,
    x: &[f64],
    tokens: usize,
) -> Result<Vec<f64>> {
    params.check(arch)?;
    let x = Rows {
        cols: x.len() / tokens,
        data: x.to_vec(),
    };
    let n1 = |x: &Rows| norm(x, arch.norm, &params.attention_norm, arch.eps);
    let n2 = |x: &Rows| norm(x, arch.norm, &params.ffn_norm, arch.eps);
    let y = match arch.norm_placement {
        NormPlacement::Pre => {
            let x1 = x.add(&attention(&n1(&x), params, arch)?);
            x1.add(&feed_forward(&n2(&x1), params, arch)?)
        }
        NormPlacement::Post => {
            let x1 = n1(&x.add(&attention(&x, params, arch)?));
            n2(&x1.add(&feed_forward(&x1, params, arch)?))
        }
    };
    Ok(y.data)
}
