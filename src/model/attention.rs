//! Grouped-query self-attention with a per-layer head layout.

use super::linear::Linear;
use super::rope::RotaryEmbedding;
use super::variants::SoftmaxKind;
use anyhow::{Result, ensure};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// How one layer's attention is cut into heads.
///
/// Query head `h` reads key/value head `h / (num_heads / num_kv_heads)`, as in Hugging Face's
/// `repeat_kv`. With `merge = m > 1` (MARILL's head merging), query heads `j·m .. (j+1)·m` form
/// one merged head `j` of width `m·head_dim`: its query is their concatenation, its key and value
/// the concatenation of the key/value heads they read, so one softmax serves `m` heads.
/// No parameter changes; the merged score is the *mean* of the `m` heads' scores
/// (`score_scale = 1/(m·√head_dim)`), which keeps scores on the scale the weights were trained
/// for, and `merge = 1` is exactly the standard layer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AttentionLayout {
    /// Query heads before merging.
    pub num_heads: usize,
    pub num_kv_heads: usize,
    /// Width of one original head (the RoPE dimension).
    pub head_dim: usize,
    /// Query heads per merged head.
    pub merge: usize,
    /// Multiplies `q·kᵀ`.
    pub score_scale: f64,
}

impl AttentionLayout {
    pub fn standard(num_heads: usize, num_kv_heads: usize, head_dim: usize) -> Self {
        Self::merged(num_heads, num_kv_heads, head_dim, 1)
    }

    pub fn merged(num_heads: usize, num_kv_heads: usize, head_dim: usize, merge: usize) -> Self {
        AttentionLayout {
            num_heads,
            num_kv_heads,
            head_dim,
            merge,
            score_scale: 1.0 / (merge as f64 * (head_dim as f64).sqrt()),
        }
    }

    pub fn group_size(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }

    /// How many softmaxes the layer computes per query position.
    pub fn softmax_heads(&self) -> usize {
        self.num_heads / self.merge
    }

    /// The original query heads of each merged head.
    pub fn groups(&self) -> Vec<Vec<usize>> {
        (0..self.softmax_heads())
            .map(|j| (j * self.merge..(j + 1) * self.merge).collect())
            .collect()
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
            l.merge > 0 && l.num_heads.is_multiple_of(l.merge),
            "{} query heads cannot be merged in groups of {}",
            l.num_heads,
            l.merge
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
        let g = l.group_size();
        if g > 1 {
            let kv_of_head: Vec<u32> = (0..l.num_heads).map(|h| (h / g) as u32).collect();
            let kv_of_head = Tensor::from_vec(kv_of_head, l.num_heads, x.device())?;
            k = k.index_select(&kv_of_head, 1)?;
            v = v.index_select(&kv_of_head, 1)?;
        }
        // (b, heads, seq, d) -> (b, merged heads, seq, m·d): sub-heads side by side.
        let (m, merged) = (l.merge, l.softmax_heads());
        let merge = |t: &Tensor, len: usize| -> Result<Tensor> {
            Ok(t.reshape((b, merged, m, len, l.head_dim))?
                .transpose(2, 3)?
                .reshape((b, merged, len, m * l.head_dim))?)
        };
        let (q, k, v) = (merge(&q, t)?, merge(&k, keys)?, merge(&v, keys)?);
        let scores = (q.matmul(&k.t()?)? * l.score_scale)?;
        let weights = self.softmax.apply(&scores, allowed)?;
        let out = weights
            .matmul(&v)?
            .reshape((b, merged, t, m, l.head_dim))?
            .transpose(2, 3)?
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
