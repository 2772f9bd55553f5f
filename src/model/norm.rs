//! RMSNorm written with plain tensor ops: candle's fused `rms_norm` has no backward.

use anyhow::Result;
use candle_core::{D, DType, Tensor};

#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub weight: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn new(weight: Tensor, eps: f64) -> Self {
        RmsNorm { weight, eps }
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x32 = x.to_dtype(DType::F32)?;
        let mean_sq = x32.sqr()?.mean_keepdim(D::Minus1)?;
        let inv = (mean_sq + self.eps)?.sqrt()?.recip()?;
        Ok(x32.broadcast_mul(&inv)?.broadcast_mul(&self.weight)?)
    }
}
