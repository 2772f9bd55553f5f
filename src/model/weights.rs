//! Named weight tensors in the Hugging Face naming scheme, whatever file they came from.

use anyhow::{Result, bail};
use candle_core::Tensor;
use std::collections::HashMap;

/// Tensors by Hugging Face name (`model.layers.3.self_attn.q_proj.weight`, ...).
#[derive(Debug, Default, Clone)]
pub struct Weights {
    tensors: HashMap<String, Tensor>,
}

impl Weights {
    pub fn new(tensors: HashMap<String, Tensor>) -> Self {
        Weights { tensors }
    }

    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// The tensor `name`, checked against the shape the architecture expects.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let Some(t) = self.tensors.get(name) else {
            bail!("missing tensor {name}");
        };
        if t.dims() != shape {
            bail!("tensor {name} has shape {:?}, expected {shape:?}", t.dims());
        }
        Ok(t.clone())
    }

    pub fn into_map(self) -> HashMap<String, Tensor> {
        self.tensors
    }
}

pub fn layer_prefix(layer: usize) -> String {
    format!("model.layers.{layer}")
}
