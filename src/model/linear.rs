//! A bias-free linear layer `y = x·Wᵀ` over any number of leading axes.

use anyhow::Result;
use candle_core::Tensor;

#[derive(Debug, Clone)]
pub struct Linear {
    /// `(out_features, in_features)`, the Hugging Face layout.
    pub weight: Tensor,
}

impl Linear {
    pub fn new(weight: Tensor) -> Self {
        Linear { weight }
    }

    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        // Folding the leading axes into one lets gemm see a single large matrix product.
        let dims = x.dims();
        let (lead, in_features) = dims.split_at(dims.len() - 1);
        let rows: usize = lead.iter().product();
        let y = x
            .reshape((rows, in_features[0]))?
            .matmul(&self.weight.t()?)?;
        let mut out_dims = lead.to_vec();
        out_dims.push(self.out_features());
        Ok(y.reshape(out_dims)?)
    }
}
