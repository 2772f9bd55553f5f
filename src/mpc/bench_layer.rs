//! The benchmark's synthetic SmolLM2-shaped Llama decoder layer, composed from the generic
//! operations, and its f64 reference. Random weights; nothing here loads a model.
//!
//! Shape: d = 576, 9 query heads and 3 KV heads of width 64 (grouped-query attention: query
//! head h reads KV head h / 3), SwiGLU FFN of width 1536, RoPE (half-split layout, base 1e5)
//! with public cos / sin, RMSNorm (its gain folded into the following projections, which is
//! exact), causal softmax.

use super::approx;
use super::ops;
use super::prg::Prg;
use super::protocol::{Bilinear, Protocol, Role, SecretWeight};
use super::share::Share;
use anyhow::Result;

#[derive(Clone, Copy, Debug)]
pub struct LayerShape {
    pub tokens: usize,
    pub d: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub rope_base: f64,
}

impl LayerShape {
    pub fn smollm2(tokens: usize) -> Self {
        Self {
            tokens,
            d: 576,
            heads: 9,
            kv_heads: 3,
            head_dim: 64,
            ffn: 1536,
            rope_base: 1e5,
        }
    }

    fn qkv_width(&self) -> usize {
        (self.heads + 2 * self.kv_heads) * self.head_dim
    }
}

/// Weights in row-major `[in, out]` layout; q, k, v and gate, up are fused column-wise.
pub struct LayerWeights {
    pub qkv: Vec<f64>,
    pub o: Vec<f64>,
    pub gate_up: Vec<f64>,
    pub down: Vec<f64>,
}

/// Random weights at the scale of a trained model: unit-variance projections, slightly sharper
/// queries / keys so attention is not uniform.
pub fn random_weights(s: &LayerShape, seed: u64) -> LayerWeights {
    let mut rng = Prg::from_seed(Prg::derived_seed(seed, 77));
    let mut gauss = |n: usize, sd: f64| rng.gaussian(n, sd);
    let sd_in = 1.0 / (s.d as f64).sqrt();
    let q_cols = s.heads * s.head_dim;
    let kv_cols = s.kv_heads * s.head_dim;
    let q = gauss(s.d * q_cols, 2.0 * sd_in);
    let k = gauss(s.d * kv_cols, 2.0 * sd_in);
    let v = gauss(s.d * kv_cols, sd_in);
    let qkv = (0..s.d)
        .flat_map(|r| {
            q[r * q_cols..(r + 1) * q_cols]
                .iter()
                .chain(&k[r * kv_cols..(r + 1) * kv_cols])
                .chain(&v[r * kv_cols..(r + 1) * kv_cols])
                .copied()
                .collect::<Vec<_>>()
        })
        .collect();
    LayerWeights {
        qkv,
        o: gauss(q_cols * s.d, 1.0 / (q_cols as f64).sqrt()),
        gate_up: gauss(s.d * 2 * s.ffn, sd_in),
        down: gauss(s.ffn * s.d, 1.0 / (s.ffn as f64).sqrt()),
    }
}

/// A residual-stream input: unit normal with two outlier channels in the hundreds (as real
/// Llama activations have).
pub fn random_input(s: &LayerShape, seed: u64) -> Vec<f64> {
    let mut rng = Prg::from_seed(Prg::derived_seed(seed, 78));
    rng.gaussian(s.tokens * s.d, 1.0)
        .into_iter()
        .enumerate()
        .map(|(i, z)| match i % s.d {
            7 => 120.0 + z,
            300 => -80.0 + z,
            _ => z,
        })
        .collect()
}

/// `cos` and `sin` tables `[tokens, head_dim]` (half-split layout: column j and j + hd/2 share
/// a frequency).
pub fn rope_tables(s: &LayerShape) -> (Vec<f64>, Vec<f64>) {
    let half = s.head_dim / 2;
    let angle = |t: usize, j: usize| {
        t as f64
            * s.rope_base
                .powf(-2.0 * (j % half) as f64 / s.head_dim as f64)
    };
    let table = |f: fn(f64) -> f64| -> Vec<f64> {
        (0..s.tokens)
            .flat_map(|t| (0..s.head_dim).map(move |j| f(angle(t, j))))
            .collect()
    };
    (table(f64::cos), table(f64::sin))
}

/// The server's weights in shared form (masks opened once).
pub struct SharedLayer {
    qkv: SecretWeight,
    o: SecretWeight,
    gate_up: SecretWeight,
    down: SecretWeight,
}

pub fn share_weights(
    p: &mut dyn Protocol,
    s: &LayerShape,
    w: Option<&LayerWeights>,
) -> Result<SharedLayer> {
    let q = s.qkv_width();
    Ok(SharedLayer {
        qkv: ops::weight_f64(p, w.map(|w| &w.qkv[..]), &[s.d, q])?,
        o: ops::weight_f64(p, w.map(|w| &w.o[..]), &[s.heads * s.head_dim, s.d])?,
        gate_up: ops::weight_f64(p, w.map(|w| &w.gate_up[..]), &[s.d, 2 * s.ffn])?,
        down: ops::weight_f64(p, w.map(|w| &w.down[..]), &[s.ffn, s.d])?,
    })
}

/// `[T, h * hd]` columns `start..` as heads `[h, T, hd]`.
fn heads(x: &Share, start: usize, h: usize, hd: usize) -> Result<Share> {
    let t = x.shape()[0];
    x.narrow(1, start, h * hd)?
        .reshape(&[t, h, hd])?
        .permute(&[1, 0, 2])
}

/// One decoder layer on a shared `[T, d]` residual stream. Truncations are fused where the
/// scales allow: RoPE rides on the QKV truncation, the 1/sqrt(hd) score scale on the score
/// truncation.
pub fn layer(p: &mut dyn Protocol, s: &LayerShape, x: &Share, w: &SharedLayer) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    let (t, hd, g) = (s.tokens, s.head_dim, s.heads / s.kv_heads);
    let (cos, sin) = rope_tables(s);
    let cos = ops::encode(p, &cos, &[1, t, hd])?;
    let sin = ops::encode(p, &sin, &[1, t, hd])?;

    let h = ops::labelled(p, "norm", |p| approx::rms_norm(p, x, None, 1e-5))?;
    let (q, k, v) = ops::labelled(p, "matmul", |p| {
        let qkv = p.matmul_weight(&h, &w.qkv)?; // scale 2f
        let q = ops::rotary(&heads(&qkv, 0, s.heads, hd)?, &cos, &sin)?; // 3f
        let k = ops::rotary(&heads(&qkv, s.heads * hd, s.kv_heads, hd)?, &cos, &sin)?;
        let v = heads(&qkv, (s.heads + s.kv_heads) * hd, s.kv_heads, hd)?.scale(1 << f);
        let all = Share::concat(
            &[
                &q.reshape(&[q.len()])?,
                &k.reshape(&[k.len()])?,
                &v.reshape(&[v.len()])?,
            ],
            0,
        )?;
        let all = p.truncate(&all, 2 * f)?;
        let (nq, nk) = (q.len(), k.len());
        Ok((
            all.narrow(0, 0, nq)?.reshape(q.shape())?,
            all.narrow(0, nq, nk)?.reshape(k.shape())?,
            all.narrow(0, nq + nk, nk)?.reshape(k.shape())?,
        ))
    })?;
    // Query heads sharing a KV head are stacked along rows: [kv, g T, hd].
    let qg = q.reshape(&[s.kv_heads, g * t, hd])?;
    let scores = ops::labelled(p, "matmul", |p| {
        let scale_bits = ((hd as f64).log2() / 2.0).round() as u32;
        p.bilinear_truncate(&qg, &k.transpose()?, Bilinear::MatMul, f + scale_bits)
    })?;
    let probs = ops::labelled(p, "softmax", |p| {
        let scores = scores.reshape(&[s.heads, t, t])?;
        approx::softmax(p, &scores, Some(&approx::causal_mask(scores.shape())))
    })?;
    let attn = ops::labelled(p, "matmul", |p| {
        let pg = probs.reshape(&[s.kv_heads, g * t, t])?;
        let o = ops::matmul(p, &pg, &v)?; // [kv, g T, hd]
        let o = o
            .reshape(&[s.heads, t, hd])?
            .permute(&[1, 0, 2])?
            .reshape(&[t, s.heads * hd])?;
        ops::matmul_weight(p, &o, &w.o)
    })?;
    let x1 = x.add(&attn)?;
    let h2 = ops::labelled(p, "norm", |p| approx::rms_norm(p, &x1, None, 1e-5))?;
    // gate and up stay untruncated: gate's truncation rides on SiLU's comparison, up's on the
    // product with the activation.
    let gu = ops::labelled(p, "matmul", |p| p.matmul_weight(&h2, &w.gate_up))?;
    let (gate, up) = (gu.narrow(1, 0, s.ffn)?, gu.narrow(1, s.ffn, s.ffn)?);
    let act = ops::labelled(p, "activation", |p| approx::silu_wide(p, &gate, f))?;
    let down = ops::labelled(p, "matmul", |p| {
        let m = p.bilinear_truncate(&act, &up, Bilinear::Mul, 2 * f)?;
        ops::matmul_weight(p, &m, &w.down)
    })?;
    x1.add(&down)
}

fn matmul_f64(a: &[f64], b: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for kk in 0..k {
            let av = a[i * k + kk];
            for j in 0..n {
                c[i * n + j] += av * b[kk * n + j];
            }
        }
    }
    c
}

fn rms_norm_f64(x: &[f64], d: usize) -> Vec<f64> {
    x.chunks(d)
        .flat_map(|r| {
            let inv = 1.0 / (r.iter().map(|v| v * v).sum::<f64>() / d as f64 + 1e-5).sqrt();
            r.iter().map(move |v| v * inv).collect::<Vec<_>>()
        })
        .collect()
}

/// The same layer in f64 with exact functions.
pub fn layer_f64(s: &LayerShape, x: &[f64], w: &LayerWeights) -> Vec<f64> {
    let (t, hd, d) = (s.tokens, s.head_dim, s.d);
    let qw = s.qkv_width();
    let (cos, sin) = rope_tables(s);
    let h = rms_norm_f64(x, d);
    let qkv = matmul_f64(&h, &w.qkv, t, d, qw);
    let col = |tok: usize, c: usize| qkv[tok * qw + c];
    let roped = |head_start: usize, tok: usize, j: usize| {
        let half = hd / 2;
        let rot = if j < half {
            -col(tok, head_start + j + half)
        } else {
            col(tok, head_start + j - half)
        };
        col(tok, head_start + j) * cos[tok * hd + j] + rot * sin[tok * hd + j]
    };
    let mut attn = vec![0.0; t * s.heads * hd];
    for head in 0..s.heads {
        let kv = head / (s.heads / s.kv_heads);
        let (qs, ks, vs) = (
            head * hd,
            (s.heads + kv) * hd,
            (s.heads + s.kv_heads + kv) * hd,
        );
        for i in 0..t {
            let scores: Vec<f64> = (0..=i)
                .map(|j| {
                    (0..hd)
                        .map(|c| roped(qs, i, c) * roped(ks, j, c))
                        .sum::<f64>()
                        / (hd as f64).sqrt()
                })
                .collect();
            let m = scores.iter().copied().fold(f64::MIN, f64::max);
            let e: Vec<f64> = scores.iter().map(|v| (v - m).exp()).collect();
            let z: f64 = e.iter().sum();
            for c in 0..hd {
                attn[i * s.heads * hd + head * hd + c] =
                    (0..=i).map(|j| e[j] / z * col(j, vs + c)).sum::<f64>();
            }
        }
    }
    let o = matmul_f64(&attn, &w.o, t, s.heads * hd, d);
    let x1: Vec<f64> = x.iter().zip(&o).map(|(a, b)| a + b).collect();
    let h2 = rms_norm_f64(&x1, d);
    let gu = matmul_f64(&h2, &w.gate_up, t, d, 2 * s.ffn);
    let m: Vec<f64> = (0..t * s.ffn)
        .map(|i| {
            let (r, c) = (i / s.ffn, i % s.ffn);
            approx::silu_f64(gu[r * 2 * s.ffn + c]) * gu[r * 2 * s.ffn + s.ffn + c]
        })
        .collect();
    let down = matmul_f64(&m, &w.down, t, s.ffn, d);
    x1.iter().zip(&down).map(|(a, b)| a + b).collect()
}

/// Share the weights from the server (masks opened once) and the input from the client.
pub fn setup_layer(
    p: &mut dyn Protocol,
    s: &LayerShape,
    x: &[f64],
    w: &LayerWeights,
) -> Result<(SharedLayer, Share)> {
    let server = p.role() == Role::Server;
    let client = p.role() == Role::Client;
    let shared = share_weights(p, s, server.then_some(w))?;
    let xs = ops::share_f64(p, Role::Client, client.then_some(x), &[s.tokens, s.d])?;
    Ok((shared, xs))
}
