//! The SwiGLU feed-forward block: `down(act(gate(x)) ⊙ up(x))`.

use super::linear::Linear;
use super::variants::Activation;
use anyhow::Result;
use candle_core::Tensor;

#[derive(Debug, Clone)]
pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
    pub activation: Activation,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let gate = self.activation.apply(&self.gate_proj.forward(x)?)?;
        self.down_proj.forward(&(gate * self.up_proj.forward(x)?)?)
    }
}
