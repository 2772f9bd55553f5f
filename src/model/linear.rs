//! A bias-free linear layer `y = x·Wᵀ` over any number of leading axes, with an optional
//! unmerged LoRA adapter.

use super::frozen_matmul::FrozenMatmul;
use super::lora::LoraAdapter;
use anyhow::Result;
use candle_core::Tensor;

#[derive(Debug, Clone)]
pub struct Linear {
    /// `(out_features, in_features)`, the Hugging Face layout.
    pub weight: Tensor,
    pub lora: Option<LoraAdapter>,
}

impl Linear {
    pub fn new(weight: Tensor) -> Self {
        Linear { weight, lora: None }
    }

    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Folding the leading axes into one lets gemm see a single large matrix product.
        let dims = x.dims();
        let (lead, in_features) = dims.split_at(dims.len() - 1);
        let rows: usize = lead.iter().product();
        let x2 = x.reshape((rows, in_features[0]))?;
        let mut y = if x2.track_op() && !self.weight.is_variable() {
            x2.contiguous()?
                .apply_op1(FrozenMatmul::new(self.weight.clone()))?
        } else {
            x2.matmul(&self.weight.t()?)?
        };
        if let Some(lora) = &self.lora {
            y = (y + lora.forward(&x2)?)?;
        }
        let mut out_dims = lead.to_vec();
        out_dims.push(self.out_features());
        Ok(y.reshape(out_dims)?)
    }
}
