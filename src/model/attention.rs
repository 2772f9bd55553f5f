//! Grouped-query self-attention with a per-layer head layout.

use super::linear::Linear;
use super::rope::RotaryEmbedding;
use super::variants::SoftmaxKind;
use anyhow::{Result, ensure};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// How one layer's attention is cut into heads. Query head `i` reads key/value head
/// `i / (num_heads / num_kv_heads)`, as in Hugging Face's `repeat_kv`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AttentionLayout {
    pub num_heads: usize,
    pub num_kv_heads: usize,
    /// Width of one (possibly merged) head; a multiple of the RoPE dimension.
    pub head_dim: usize,
    /// Multiplies `q·kᵀ`; `1/√head_dim` for an unmerged head.
    pub score_scale: f64,
}

impl AttentionLayout {
    pub fn standard(num_heads: usize, num_kv_heads: usize, head_dim: usize) -> Self {
        AttentionLayout {
            num_heads,
            num_kv_heads,
            head_dim,
            score_scale: 1.0 / (head_dim as f64).sqrt(),
        }
    }

    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }
}

#[derive(Debug, Clone)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
    pub layout: AttentionLayout,
    pub softmax: SoftmaxKind,
}

impl Attention {
    pub fn check_shapes(&self) -> Result<()> {
        let l = &self.layout;
        ensure!(
            l.num_kv_heads > 0 && l.num_heads.is_multiple_of(l.num_kv_heads),
            "{} query heads cannot share {} key/value heads",
            l.num_heads,
            l.num_kv_heads
        );
        ensure!(
            self.q_proj.out_features() == l.num_heads * l.head_dim
                && self.k_proj.out_features() == l.num_kv_heads * l.head_dim
                && self.v_proj.out_features() == l.num_kv_heads * l.head_dim,
            "attention projections do not match the layout {l:?}"
        );
        Ok(())
    }

    /// `x`: `(batch, seq, hidden)`; `allowed`: `(batch or 1, 1, seq, keys)`, 1 where a query may
    /// attend to a key. With a `cache`, `x` continues the cached sequence: its keys and values
    /// are appended and its positions start where the cache ends (`keys` = cached + `seq`).
    pub fn forward(
        &self,
        x: &Tensor,
        rope: &RotaryEmbedding,
        allowed: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let l = self.layout;
        let heads = |proj: &Linear, n: usize| -> Result<Tensor> {
            Ok(proj
                .forward(x)?
                .reshape((b, t, n, l.head_dim))?
                .transpose(1, 2)?
                .contiguous()?)
        };
        let offset = cache.as_ref().map_or(0, |c| c.len());
        let q = rope.apply(&heads(&self.q_proj, l.num_heads)?, offset)?;
        let mut k = rope.apply(&heads(&self.k_proj, l.num_kv_heads)?, offset)?;
        let mut v = heads(&self.v_proj, l.num_kv_heads)?;
        if let Some(cache) = cache {
            (k, v) = cache.append(k, v)?;
        }
        let keys = k.dims()[2];
        // The query heads of one group are stacked along the sequence axis, so each key/value head
        // is multiplied once instead of being copied `group_size` times.
        let g = l.group_size();
        let q = q.reshape((b, l.num_kv_heads, g * t, l.head_dim))?;
        let scores = (q.matmul(&k.t()?)? * l.score_scale)?;
        let weights = self
            .softmax
            .apply(&scores.reshape((b, l.num_heads, t, keys))?, allowed)?;
        let out = weights
            .reshape((b, l.num_kv_heads, g * t, keys))?
            .matmul(&v)?
            .reshape((b, l.num_heads, t, l.head_dim))?
            .transpose(1, 2)?
            .reshape((b, t, l.num_heads * l.head_dim))?;
        self.o_proj.forward(&out)
    }
}

/// The keys and values of the tokens seen so far, for incremental decoding.
#[derive(Debug, Clone, Default)]
pub struct KvCache {
    kv: Option<(Tensor, Tensor)>,
}

impl KvCache {
    /// How many positions are cached.
    pub fn len(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dims()[2])
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `k`, `v` `(batch, kv_heads, new, head_dim)`; returns all cached keys and values.
    fn append(&mut self, k: Tensor, v: Tensor) -> Result<(Tensor, Tensor)> {
        let kv = match self.kv.take() {
            None => (k, v),
            Some((pk, pv)) => (Tensor::cat(&[&pk, &k], 2)?, Tensor::cat(&[&pv, &v], 2)?),
        };
        self.kv = Some(kv.clone());
        Ok(kv)
    }
}
