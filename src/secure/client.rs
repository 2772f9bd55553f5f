//! The client's side before MPC: it embeds its own prompt and runs the public layers `0..k` in
//! plaintext; the resulting hidden state is what it secret-shares. What the other parties learn
//! of its rows is their public shape ([`ExampleShape`]), which the client sends them first.

use super::job::ExampleShape;
use crate::model::Llama;
use anyhow::{Result, ensure};
use candle_core::{DType, Tensor};

/// One example as the client holds it.
pub struct SecureInput {
    /// The hidden state after the public layers, `(tokens, d)` row-major.
    pub hidden: Vec<f64>,
    pub shape: ExampleShape,
}

impl SecureInput {
    pub fn new(model: &Llama, ids: &[u32], choices: &[u32], public_layers: usize) -> Result<Self> {
        ensure!(!ids.is_empty(), "empty prompt");
        let x = model.embed(&Tensor::new(ids, model.device())?.unsqueeze(0)?)?;
        let allowed = model.attention_mask(ids.len(), None)?;
        let (h, _) = model.forward_layers(&x, 0..public_layers, &allowed, false)?;
        Ok(SecureInput {
            hidden: h.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?,
            shape: ExampleShape {
                tokens: ids.len(),
                choices: choices.to_vec(),
            },
        })
    }
}
