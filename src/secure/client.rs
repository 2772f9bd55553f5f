//! The client's side before MPC: it embeds its own prompt and runs the public layers `0..k` in
//! plaintext; the resulting hidden state is what it secret-shares. What the other parties learn
//! of its rows is their public shape ([`ExampleShape`]), which the client sends them first.
//! For decoding it keeps the public layers' keys and values in its own plaintext cache
//! ([`PublicDecoder`]).

use super::job::ExampleShape;
use crate::model::Llama;
use crate::model::attention::KvCache;
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

/// The client's plaintext embedding and public layers for one sequence being decoded, with
/// the public layers' key/value cache.
pub struct PublicDecoder<'a> {
    model: &'a Llama,
    caches: Vec<KvCache>,
}

impl<'a> PublicDecoder<'a> {
    pub fn new(model: &'a Llama, public_layers: usize) -> Self {
        PublicDecoder {
            model,
            caches: vec![KvCache::default(); public_layers],
        }
    }

    /// The hidden states `(ids.len(), d)` row-major after the public layers of `ids`, which
    /// continue the sequence seen so far.
    pub fn hidden(&mut self, ids: &[u32]) -> Result<Vec<f64>> {
        ensure!(!ids.is_empty(), "empty prompt");
        let model = self.model;
        let past = self.caches.first().map_or(0, KvCache::len);
        let allowed = model.causal_mask(ids.len(), past)?;
        let mut h = model.embed(&Tensor::new(ids, model.device())?.unsqueeze(0)?)?;
        for (layer, cache) in model.layers.iter().zip(&mut self.caches) {
            h = layer.forward(&h, &model.rope, &allowed, Some(cache))?;
        }
        Ok(h.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?)
    }
}
