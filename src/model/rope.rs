//! Rotary position embeddings in the half-split (Hugging Face) layout, built from differentiable
//! ops: candle's fused `rope` kernels have no backward.

use anyhow::{Result, ensure};
use candle_core::{D, Device, Tensor};

/// Cos / sin tables for positions `0..max_positions`, one rotation per `rope_dim`-wide chunk.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding {
    cos: Tensor,
    sin: Tensor,
    rope_dim: usize,
}

impl RotaryEmbedding {
    pub fn new(rope_dim: usize, base: f64, max_positions: usize, device: &Device) -> Result<Self> {
        ensure!(
            rope_dim.is_multiple_of(2),
            "RoPE dimension {rope_dim} must be even"
        );
        let half = rope_dim / 2;
        let mut angles = Vec::with_capacity(max_positions * rope_dim);
        for pos in 0..max_positions {
            let row: Vec<f32> = (0..half)
                .map(|i| (pos as f64 / base.powf(2.0 * i as f64 / rope_dim as f64)) as f32)
                .collect();
            // Both halves rotate by the same angles.
            angles.extend_from_slice(&row);
            angles.extend_from_slice(&row);
        }
        let angles = Tensor::from_vec(angles, (max_positions, rope_dim), device)?;
        Ok(RotaryEmbedding {
            cos: angles.cos()?,
            sin: angles.sin()?,
            rope_dim,
        })
    }

    pub fn rope_dim(&self) -> usize {
        self.rope_dim
    }

    /// Rotates `x` of shape `(batch, heads, seq, head_dim)` holding positions `offset..offset+seq`;
    /// `head_dim` is a multiple of `rope_dim` (a merged head rotates each of its original heads on
    /// its own).
    pub fn apply(&self, x: &Tensor, offset: usize) -> Result<Tensor> {
        let (b, h, t, head_dim) = x.dims4()?;
        ensure!(
            head_dim % self.rope_dim == 0,
            "head width {head_dim} is not a multiple of the RoPE dimension {}",
            self.rope_dim
        );
        ensure!(
            offset + t <= self.cos.dims()[0],
            "sequence of {} tokens exceeds the {} positions of the RoPE table",
            offset + t,
            self.cos.dims()[0]
        );
        let chunks = head_dim / self.rope_dim;
        let x = x.reshape((b, h, t, chunks, self.rope_dim))?;
        let cos = self.cos.narrow(0, offset, t)?.unsqueeze(1)?;
        let sin = self.sin.narrow(0, offset, t)?.unsqueeze(1)?;
        let half = self.rope_dim / 2;
        let x1 = x.narrow(D::Minus1, 0, half)?;
        let x2 = x.narrow(D::Minus1, half, half)?;
        let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
        let y = (x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?)?;
        Ok(y.reshape((b, h, t, head_dim))?)
    }
}
