//! One private transformer layer on shares, the architecture's choices
//! ([`LayerArchitecture`]) made where they differ. Pre-norm (Llama, GPT-2):
//! `x₁ = x + attn(N₁(x))`, `y = x₁ + ffn(N₂(x₁))`, the norms' gains and biases folded into the
//! projections that follow them; post-norm (BERT): `x₁ = N₁(x + attn(x))`, `y = N₂(x₁ + ffn(x₁))`,
//! gains and biases applied on shares. Attention: fused q|k|v (biases the server's input,
//! added locally), rotary embeddings per original head (public cos / sin) or none, grouped-query
//! attention with merged heads and a causal or bidirectional softmax (exact or 2Quad), o. The
//! feed-forward block: gated (SwiGLU: `act(gate) ⊙ up`) or plain (`act(up)`), the activation
//! SiLU / GeLU (PUMA-style) or Quad, down. A Llama layer follows `DecoderLayer::forward`
//! exactly. For decoding, a prompt's keys and values stay in a shared cache and each step runs
//! one new position against them (`super::kv_cache`).

use super::architecture::{
    FeedForward, LayerArchitecture, LayerParams, NormKind, NormParams, NormPlacement,
    PositionEncoding,
};
use super::kv_cache::LayerKv;
use super::kv_sharing::KvSharing;
use super::packing::{Packing, Queries};
use super::projection::{ProjectionWeights, Secrecy, SharedProjection};
use crate::model::attention::AttentionLayout;
use crate::model::llama::DecoderLayer;
use crate::model::variants::{Activation, SoftmaxKind};
use crate::mpc::cost::CostClass;
use crate::mpc::protocol::{Bilinear, Masked, Protocol};
use crate::mpc::ring::RingTensor;
use crate::mpc::share::Share;
use crate::mpc::{approx, ops};
use anyhow::Result;

/// What the protocol needs of one private layer.
pub struct LayerWeights {
    qkv: ProjectionWeights,
    o: ProjectionWeights,
    /// gate | up, or up alone.
    ffn_in: ProjectionWeights,
    down: ProjectionWeights,
    layout: AttentionLayout,
    arch: LayerArchitecture,
    /// Post-norm: the two norms' gains and biases, applied on shares.
    post_norms: Option<[NormParams; 2]>,
}

impl LayerWeights {
    /// A Llama decoder layer of the candle model.
    pub fn llama(layer: &DecoderLayer, rope_base: f64, secrecy: Secrecy) -> Result<Self> {
        let (params, arch) = LayerParams::llama(layer, rope_base)?;
        Self::new(&params, arch, secrecy)
    }

    /// A layer of architecture `arch` with parameters `params`, the projections' weights (and
    /// every bias) held as `secrecy` says.
    pub fn new(params: &LayerParams, arch: LayerArchitecture, secrecy: Secrecy) -> Result<Self> {
        params.check(&arch)?;
        let d = params.o.linear.out_features();
        let ffn = params.down.linear.in_features();
        let ones = |n: usize| vec![1.0; n];
        // Pre-norm: each norm's affine part folds into the projections reading it.
        let fold = |n: &NormParams| -> (Vec<f64>, Option<Vec<f64>>) {
            match arch.norm_placement {
                NormPlacement::Pre => (n.gain.clone(), n.bias.clone()),
                NormPlacement::Post => (ones(d), None),
            }
        };
        // Without rotary tables to carry it, the score scale folds into the queries' weights.
        let q = match arch.positions {
            PositionEncoding::Rotary { .. } => params.q.clone(),
            PositionEncoding::Absolute => params.q.scaled(params.layout.score_scale)?,
        };
        let (g1, b1) = fold(&params.attention_norm);
        let (g2, b2) = fold(&params.ffn_norm);
        let ffn_in: Vec<_> = params.gate.iter().chain([&params.up]).collect();
        Ok(LayerWeights {
            qkv: ProjectionWeights::fused(
                &[&q, &params.k, &params.v],
                &g1,
                b1.as_deref(),
                secrecy,
            )?,
            o: ProjectionWeights::fused(&[&params.o], &ones(d), None, secrecy)?,
            ffn_in: ProjectionWeights::fused(&ffn_in, &g2, b2.as_deref(), secrecy)?,
            down: ProjectionWeights::fused(&[&params.down], &ones(ffn), None, secrecy)?,
            layout: params.layout,
            arch,
            post_norms: (arch.norm_placement == NormPlacement::Post)
                .then(|| [params.attention_norm.clone(), params.ffn_norm.clone()]),
        })
    }

    pub fn share(&self, p: &mut dyn Protocol) -> Result<SharedLayer> {
        Ok(SharedLayer {
            qkv: self.qkv.share(p)?,
            o: self.o.share(p)?,
            ffn_in: self.ffn_in.share(p)?,
            down: self.down.share(p)?,
        })
    }
}

pub struct SharedLayer {
    qkv: SharedProjection,
    o: SharedProjection,
    ffn_in: SharedProjection,
    down: SharedProjection,
}

/// Public RoPE tables `[1, N, head_dim]` for the packed rows' positions (half-split layout), as
/// `RotaryEmbedding` builds them.
struct RopeTables {
    cos: RingTensor,
    sin: RingTensor,
    /// `cos`, `sin` times the layer's score scale: queries absorb it for free.
    q_cos: RingTensor,
    q_sin: RingTensor,
}

impl RopeTables {
    fn new(
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

    pub fn architecture(&self) -> &LayerArchitecture {
        &self.arch
    }

    /// The layer on a shared residual stream `x` `[N, d]` of sequences packed as `packing`
    /// says: `[N, d]` out, or `[B, d]` (each sequence's last position) under [`Queries::Last`].
    /// Under [`Queries::Next`] `x` is `[B, d]`, each sequence's new position, whose keys and
    /// values join the earlier positions' in `cache`; with a `cache` a prompt's keys and values
    /// are kept there for the steps that follow.
    pub fn forward(
        &self,
        p: &mut dyn Protocol,
        w: &SharedLayer,
        x: &Share,
        packing: &Packing,
        queries: Queries,
        cache: Option<&mut LayerKv>,
    ) -> Result<Share> {
        let [n1, n2] = match &self.post_norms {
            Some([a, b]) => [Some(a), Some(b)],
            None => [None, None],
        };
        let h = match self.arch.norm_placement {
            NormPlacement::Pre => self.norm(p, x, None)?,
            NormPlacement::Post => x.clone(),
        };
        let attn = self.attention(p, w, &h, packing, queries, cache)?;
        let x = match queries {
            Queries::All | Queries::Next => x.clone(),
            Queries::Last => packing.last(x, 0)?,
        };
        let x1 = self.post_norm(p, x.add(&attn)?, n1)?;
        let h2 = match self.arch.norm_placement {
            NormPlacement::Pre => self.norm(p, &x1, None)?,
            NormPlacement::Post => x1.clone(),
        };
        let ffn = self.feed_forward(p, w, &h2)?;
        self.post_norm(p, x1.add(&ffn)?, n2)
    }

    /// The layer's norm of `x`, with `affine`'s gain and bias (or those folded elsewhere).
    fn norm(&self, p: &mut dyn Protocol, x: &Share, affine: Option<&NormParams>) -> Result<Share> {
        let gamma = affine.map(|n| n.gain.as_slice());
        let beta = affine.and_then(|n| n.bias.as_deref());
        let eps = self.arch.eps;
        ops::labelled(p, CostClass::Norm, |p| match self.arch.norm {
            NormKind::Rms => approx::rms_norm(p, x, gamma, eps),
            NormKind::Layer => approx::layer_norm(p, x, gamma, beta, eps),
        })
    }

    /// `x` normalised with `affine` under post-norm (`affine` given), else as it is.
    fn post_norm(
        &self,
        p: &mut dyn Protocol,
        x: Share,
        affine: Option<&NormParams>,
    ) -> Result<Share> {
        match affine {
            Some(affine) => self.norm(p, &x, Some(affine)),
            None => Ok(x),
        }
    }

    /// Self-attention of the normalised `h` `[N, d]`, through `o`, truncated to `f` bits.
    fn attention(
        &self,
        p: &mut dyn Protocol,
        w: &SharedLayer,
        h: &Share,
        packing: &Packing,
        queries: Queries,
        cache: Option<&mut LayerKv>,
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
        // Packed rows [N, n·hd] to padded heads [B·n, T, hd], for attention.
        let padded = |x: &Share| heads(&packing.pad(x)?, batch, 0, x.shape()[1] / hd, hd);
        let (q, k, v) = ops::labelled(p, CostClass::Matmul, |p| {
            let qkv = w.qkv.apply(p, h)?; // [N, width] at scale 2f
            let columns = |start: usize, n: usize| heads(&qkv, 1, start, n, hd);
            let last = |q: Share| match queries {
                Queries::All | Queries::Next => Ok(q),
                Queries::Last => packing.last(&q, 1),
            };
            // Both on the packed rows: no work on padding, nor on queries nobody reads.
            let (q, k, v, shift) = match self.arch.positions {
                // RoPE rides on the projection's truncation (3f -> f); v is lifted to 3f to
                // join it.
                PositionEncoding::Rotary { base } => {
                    let positions = packing.row_positions(queries);
                    let t = RopeTables::new(p, &positions, hd, base, l.score_scale)?;
                    let q = last(ops::rotary(&columns(0, nq)?, &t.q_cos, &t.q_sin)?)?;
                    let k = ops::rotary(&columns(nq * hd, nkv)?, &t.cos, &t.sin)?;
                    let v = columns((nq + nkv) * hd, nkv)?.scale(1 << f);
                    (q, k, v, 2 * f)
                }
                // The score scale is in the queries' weights.
                PositionEncoding::Absolute => {
                    let q = last(columns(0, nq)?)?;
                    let k = columns(nq * hd, nkv)?;
                    let v = columns((nq + nkv) * hd, nkv)?;
                    (q, k, v, f)
                }
            };
            let joined = Share::concat_flat(&[q.clone(), k.clone(), v.clone()])?;
            let parts = p.truncate(&joined, shift)?.split_flat(&[q, k, v])?;
            let [q, k, v]: [Share; 3] = parts.try_into().expect("three parts");
            let q = match queries {
                Queries::All => padded(&rows(&q)?)?,
                Queries::Last | Queries::Next => heads(&rows(&q)?, batch, 0, nq, hd)?,
            };
            Ok((q, rows(&k)?, rows(&v)?))
        })?;
        let sharing = KvSharing::new(l)?;
        // One round masks the queries, keys and values; the cache keeps keys and values
        // masked, so each position's are opened once, not again at every decoding step.
        let q = sharing.queries(&q, batch)?;
        let masked = ops::labelled(p, CostClass::Matmul, |p| p.mask(&[&q, &k, &v]))?;
        let [q, k, v]: [Masked; 3] = masked.try_into().expect("three masked");
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v, packing, queries)?,
            None => (k, v),
        };
        let keys = |x: &Masked| x.relayout(|s| sharing.keys(&padded(s)?, batch));
        let (k, v) = (keys(&k)?, keys(&v)?);
        let scores = ops::labelled(p, CostClass::Matmul, |p| {
            let kt = k.relayout(Share::transpose)?;
            Ok(p.product_truncate(&[(&q, &kt)], Bilinear::MatMul, f)?
                .remove(0))
        })?;
        let scores = sharing.per_head(&scores)?;
        let visible = packing.attention_mask(l.softmax_heads(), queries, self.arch.mask);
        let probs = ops::labelled(p, CostClass::Softmax, |p| match self.arch.softmax {
            SoftmaxKind::Exact => approx::softmax(p, &scores, Some(&visible)),
            SoftmaxKind::TwoQuad => approx::softmax_2quad(p, &scores, Some(&visible)),
        })?;
        ops::labelled(p, CostClass::Matmul, |p| {
            let probs = p.mask(&[&sharing.per_unit(&probs)?])?.remove(0);
            let out = p
                .product_truncate(&[(&probs, &v)], Bilinear::MatMul, f)?
                .remove(0);
            let out = sharing.output(&out, batch)?; // [B Tq, heads hd]
            let out = match queries {
                Queries::All => packing.unpad(&out)?,
                Queries::Last | Queries::Next => out,
            };
            let o = w.o.apply(p, &out)?;
            p.truncate(&o, f)
        })
    }

    /// The feed-forward block of the normalised `h`, truncated to `f` bits.
    fn feed_forward(&self, p: &mut dyn Protocol, w: &SharedLayer, h: &Share) -> Result<Share> {
        let f = p.fixed_point().frac_bits;
        let hidden = ops::labelled(p, CostClass::Matmul, |p| w.ffn_in.apply(p, h))?; // scale 2f
        let activation = self.arch.activation;
        let act = ops::labelled(p, CostClass::Activation, |p| match self.arch.feed_forward {
            FeedForward::Gated => {
                let ffn = self.ffn_in.out_features() / 2;
                let (gate, up) = (hidden.narrow(1, 0, ffn)?, hidden.narrow(1, ffn, ffn)?);
                let act = activate(p, activation, &gate)?;
                // act (f) x up (2f) -> 3f, truncated to f in the product's round.
                p.bilinear_truncate(&act, &up, Bilinear::Mul, 2 * f)
            }
            FeedForward::Plain => activate(p, activation, &hidden),
        })?;
        ops::labelled(p, CostClass::Matmul, |p| {
            let d = w.down.apply(p, &act)?;
            p.truncate(&d, f)
        })
    }
}

/// `activation` of `x`, an untruncated product at `2f` bits, at `f` bits.
fn activate(p: &mut dyn Protocol, activation: Activation, x: &Share) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    match activation {
        // The PUMA form is what approx::silu evaluates; exact SiLU gets it too.
        Activation::Silu | Activation::Puma => approx::silu_wide(p, x, f),
        Activation::Gelu => approx::gelu_wide(p, x, f),
        Activation::Quad => {
            let g = p.truncate(x, f)?;
            approx::quad(p, &g)
        }
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
