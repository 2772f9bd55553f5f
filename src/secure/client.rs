//! The client's side before MPC: it embeds its own prompt and runs the public layers `0..k` in
//! plaintext; the resulting hidden state is what it secret-shares. What the other parties learn
//! of its rows is their public shape ([`ExampleShape`]), which the client sends them first.

use crate::model::Llama;
use anyhow::{Context, Result, ensure};
use candle_core::{DType, Tensor};

/// What every party may know of one example: its prompt length and the token ids of its
/// choices (the task's label words or choice letters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleShape {
    pub tokens: usize,
    pub choices: Vec<u32>,
}

impl ExampleShape {
    /// `[n, (tokens, c, choice ids…) per example]`: the client's first message to its peers.
    pub fn encode(shapes: &[ExampleShape]) -> Vec<u64> {
        let mut words = vec![shapes.len() as u64];
        for s in shapes {
            words.push(s.tokens as u64);
            words.push(s.choices.len() as u64);
            words.extend(s.choices.iter().map(|&c| u64::from(c)));
        }
        words
    }

    pub fn decode(words: &[u64]) -> Result<Vec<ExampleShape>> {
        let mut it = words.iter().copied();
        let mut next = |what: &str| {
            it.next()
                .with_context(|| format!("shape message ends before {what}"))
        };
        let n = next("the example count")? as usize;
        (0..n)
            .map(|_| {
                let tokens = next("a length")? as usize;
                let c = next("a choice count")? as usize;
                let choices = (0..c)
                    .map(|_| Ok(u32::try_from(next("a choice id")?)?))
                    .collect::<Result<Vec<u32>>>()?;
                ensure!(
                    tokens > 0 && !choices.is_empty(),
                    "an empty example in the shape message"
                );
                Ok(ExampleShape { tokens, choices })
            })
            .collect()
    }
}

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
