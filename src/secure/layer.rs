//! One private decoder layer on shares, following `DecoderLayer::forward` exactly: RMSNorm,
//! fused q|k|v, RoPE per original head (public cos / sin), grouped-query attention with merged
//! heads and a causal softmax (exact or 2Quad), o, RMSNorm, SwiGLU (SiLU / PUMA or Quad), down.
//! Norm gains are folded into the projections that follow them.

use super::kv_sharing::KvSharing;
use super::packing::{Packing, Queries};
use super::projection::{ProjectionWeights, Secrecy, SharedProjection};
use crate::model::attention::AttentionLayout;
use crate::model::llama::DecoderLayer;
use crate::model::variants::{Activation, SoftmaxKind};
use crate::mpc::cost::CostClass;
use crate::mpc::protocol::{Bilinear, Protocol};
use crate::mpc::ring::RingTensor;
use crate::mpc::share::Share;
use crate::mpc::{approx, ops};
use anyhow::Result;
use candle_core::{DType, Tensor};

/// A norm gain as reals.
pub fn gain(weight: &Tensor) -> Result<Vec<f64>> {
    Ok(weight.to_dtype(DType::F64)?.to_vec1()?)
}

/// What the protocol needs of one private layer.
pub struct LayerWeights {
    qkv: ProjectionWeights,
    o: ProjectionWeights,
    gate_up: ProjectionWeights,
    down: ProjectionWeights,
    layout: AttentionLayout,
    softmax: SoftmaxKind,
    activation: Activation,
    eps: f64,
}

impl LayerWeights {
    pub fn new(layer: &DecoderLayer, secrecy: Secrecy) -> Result<Self> {
        let a = &layer.attention;
        let m = &layer.mlp;
        let input_gain = gain(&layer.input_norm.weight)?;
        let post_gain = gain(&layer.post_attention_norm.weight)?;
        let ones = vec![1.0; a.o_proj.in_features()];
        let ffn_ones = vec![1.0; m.down_proj.in_features()];
        Ok(LayerWeights {
            qkv: ProjectionWeights::fused(
                &[&a.q_proj, &a.k_proj, &a.v_proj],
                &input_gain,
                secrecy,
            )?,
            o: ProjectionWeights::fused(&[&a.o_proj], &ones, secrecy)?,
            gate_up: ProjectionWeights::fused(&[&m.gate_proj, &m.up_proj], &post_gain, secrecy)?,
            down: ProjectionWeights::fused(&[&m.down_proj], &ffn_ones, secrecy)?,
            layout: a.layout,
            softmax: a.softmax,
            activation: m.activation,
            eps: layer.input_norm.eps,
        })
    }

    pub fn share(&self, p: &mut dyn Protocol) -> Result<SharedLayer> {
        Ok(SharedLayer {
            qkv: self.qkv.share(p)?,
            o: self.o.share(p)?,
            gate_up: self.gate_up.share(p)?,
            down: self.down.share(p)?,
        })
    }
}

pub struct SharedLayer {
    qkv: SharedProjection,
    o: SharedProjection,
    gate_up: SharedProjection,
    down: SharedProjection,
}

/// Public RoPE tables `[1, N, head_dim]` for the packed rows' positions (half-split layout), as
/// `RotaryEmbedding` builds them.
pub struct RopeTables {
    cos: RingTensor,
    sin: RingTensor,
    /// `cos`, `sin` times the layer's score scale: queries absorb it for free.
    q_cos: RingTensor,
    q_sin: RingTensor,
}

impl RopeTables {
    pub fn new(
        p: &dyn Protocol,
        positions: &[usize],
        head_dim: usize,
        base: f64,
        score_scale: f64,
    ) -> Result<Self> {
        let half = head_dim / 2;
        let angle = |t: usize, j: usize| {
            // f32 as in the plaintext model.
            (t as f64 / base.powf(2.0 * (j % half) as f64 / head_dim as f64)) as f32 as f64
        };
        let table = |f: fn(f64) -> f64, s: f64| -> Vec<f64> {
            positions
                .iter()
                .flat_map(|&t| (0..head_dim).map(move |j| f(angle(t, j)) * s))
                .collect()
        };
        let shape = [1, positions.len(), head_dim];
        let enc = |v: Vec<f64>| ops::encode(p, &v, &shape);
        Ok(RopeTables {
            cos: enc(table(f64::cos, 1.0))?,
            sin: enc(table(f64::sin, 1.0))?,
            q_cos: enc(table(f64::cos, score_scale))?,
            q_sin: enc(table(f64::sin, score_scale))?,
        })
    }
}

impl LayerWeights {
    pub fn layout(&self) -> AttentionLayout {
        self.layout
    }

    /// The layer on a shared residual stream `x` `[N, d]` of sequences packed as `packing`
    /// says: `[N, d]` out, or `[B, d]` (each sequence's last position) under [`Queries::Last`].
    pub fn forward(
        &self,
        p: &mut dyn Protocol,
        w: &SharedLayer,
        x: &Share,
        packing: &Packing,
        tables: &RopeTables,
        queries: Queries,
    ) -> Result<Share> {
        let f = p.fixed_point().frac_bits;
        let l = self.layout;
        let (hd, nq, nkv) = (l.head_dim, l.num_heads, l.num_kv_heads);
        let batch = packing.sequences();
        // Packed heads [n, R, hd] to rows [R, n·hd].
        let rows = |x: &Share| -> Result<Share> {
            let (n, r) = (x.shape()[0], x.shape()[1]);
            x.permute(&[1, 0, 2])?.reshape(&[r, n * hd])
        };
        // Packed heads [n, N, hd] to padded [B·n, T, hd], for attention.
        let padded = |x: &Share| heads(&packing.pad(&rows(x)?)?, batch, 0, x.shape()[0], hd);
        let h = ops::labelled(p, CostClass::Norm, |p| {
            approx::rms_norm(p, x, None, self.eps)
        })?;
        let (q, k, v) = ops::labelled(p, CostClass::Matmul, |p| {
            let qkv = w.qkv.apply(p, &h)?; // [N, width] at scale 2f
            let columns = |start: usize, n: usize| heads(&qkv, 1, start, n, hd);
            // RoPE rides on the projection's truncation (3f -> f); v is lifted to 3f to join it.
            // Both on the packed rows: no work on padding, nor on queries nobody reads.
            let q = ops::rotary(&columns(0, nq)?, &tables.q_cos, &tables.q_sin)?;
            let q = match queries {
                Queries::All => q,
                Queries::Last => packing.last(&q, 1)?,
            };
            let k = ops::rotary(&columns(nq * hd, nkv)?, &tables.cos, &tables.sin)?;
            let v = columns((nq + nkv) * hd, nkv)?.scale(1 << f);
            let joined = Share::concat_flat(&[q.clone(), k.clone(), v.clone()])?;
            let parts = p.truncate(&joined, 2 * f)?.split_flat(&[q, k, v])?;
            let [q, k, v]: [Share; 3] = parts.try_into().expect("three parts");
            let q = match queries {
                Queries::All => padded(&q)?,
                Queries::Last => heads(&rows(&q)?, batch, 0, nq, hd)?,
            };
            Ok((q, padded(&k)?, padded(&v)?))
        })?;
        let sharing = KvSharing::new(l)?;
        let (q, k, v) = (
            sharing.queries(&q, batch)?,
            sharing.keys(&k, batch)?,
            sharing.keys(&v, batch)?,
        );
        let scores = ops::labelled(p, CostClass::Matmul, |p| {
            p.bilinear_truncate(&q, &k.transpose()?, Bilinear::MatMul, f)
        })?;
        let scores = sharing.per_head(&scores)?;
        let visible = packing.attention_mask(l.softmax_heads(), queries);
        let probs = ops::labelled(p, CostClass::Softmax, |p| match self.softmax {
            SoftmaxKind::Exact => approx::softmax(p, &scores, Some(&visible)),
            SoftmaxKind::TwoQuad => approx::softmax_2quad(p, &scores, Some(&visible)),
        })?;
        let attn = ops::labelled(p, CostClass::Matmul, |p| {
            let out = ops::matmul(p, &sharing.per_unit(&probs)?, &v)?;
            let out = sharing.output(&out, batch)?; // [B Tq, heads hd]
            let out = match queries {
                Queries::All => packing.unpad(&out)?,
                Queries::Last => out,
            };
            let o = w.o.apply(p, &out)?;
            p.truncate(&o, f)
        })?;
        let x = match queries {
            Queries::All => x.clone(),
            Queries::Last => packing.last(x, 0)?,
        };
        let x1 = x.add(&attn)?;
        let h2 = ops::labelled(p, CostClass::Norm, |p| {
            approx::rms_norm(p, &x1, None, self.eps)
        })?;
        let gu = ops::labelled(p, CostClass::Matmul, |p| w.gate_up.apply(p, &h2))?; // scale 2f
        let ffn = self.gate_up.out_features() / 2;
        let (gate, up) = (gu.narrow(1, 0, ffn)?, gu.narrow(1, ffn, ffn)?);
        let gated = ops::labelled(p, CostClass::Activation, |p| {
            let act = match self.activation {
                // The PUMA form is what approx::silu evaluates; exact SiLU gets it too.
                Activation::Silu | Activation::Puma => approx::silu_wide(p, &gate, f)?,
                Activation::Quad => {
                    let g = p.truncate(&gate, f)?;
                    approx::quad(p, &g)?
                }
            };
            // act (f) x up (2f) -> 3f, truncated to f in the product's round.
            p.bilinear_truncate(&act, &up, Bilinear::Mul, 2 * f)
        })?;
        let down = ops::labelled(p, CostClass::Matmul, |p| {
            let d = w.down.apply(p, &gated)?;
            p.truncate(&d, f)
        })?;
        x1.add(&down)
    }
}

/// Columns `start..start + n·hd` of `x` `[B·T, width]` as heads `[B·n, T, hd]`.
fn heads(x: &Share, batch: usize, start: usize, n: usize, hd: usize) -> Result<Share> {
    let t = x.shape()[0] / batch;
    x.narrow(1, start, n * hd)?
        .reshape(&[batch, t, n, hd])?
        .permute(&[0, 2, 1, 3])?
        .reshape(&[batch * n, t, hd])
}

#[cfg(test)]
mod tests {
    use crate::model::variants::PUMA_SILU_CUTOFF;
    use crate::mpc::approx::SILU_CUTOFF;

    /// A PUMA-form student is trained on exactly what the engine evaluates.
    #[test]
    fn the_model_and_the_engine_cut_silu_at_the_same_point() {
        assert_eq!(PUMA_SILU_CUTOFF, SILU_CUTOFF);
    }
}
