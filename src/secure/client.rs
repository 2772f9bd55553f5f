//! The client's side before MPC: it embeds its own prompt and runs the public layers `0..k` in
//! plaintext; the resulting hidden state is what it secret-shares.

use super::layer::gain;
use super::projection::Matrix;
use crate::model::Llama;
use anyhow::{Result, ensure};
use candle_core::{DType, Tensor};

/// One example as the secure forward takes it.
pub struct SecureInput {
    /// The client's hidden state after the public layers, `(tokens, d)` row-major. Only the
    /// client's party reads it.
    pub hidden: Vec<f64>,
    pub tokens: usize,
    /// The head rows of the choice tokens, `(d, C)`, final norm gain folded in (public).
    pub head: Matrix,
}

impl SecureInput {
    pub fn new(model: &Llama, ids: &[u32], choices: &[u32], public_layers: usize) -> Result<Self> {
        ensure!(!ids.is_empty(), "empty prompt");
        let device = model.device();
        let x = model.embed(&Tensor::new(ids, device)?.unsqueeze(0)?)?;
        let allowed = model.attention_mask(ids.len(), None)?;
        let (h, _) = model.forward_layers(&x, 0..public_layers, &allowed, false)?;
        let hidden = h.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let rows = model
            .lm_head
            .weight
            .index_select(&Tensor::new(choices, device)?, 0)?;
        Ok(SecureInput {
            hidden,
            tokens: ids.len(),
            head: Matrix::transposed(&rows, &gain(&model.norm.weight)?)?,
        })
    }
}
