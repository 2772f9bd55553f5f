//! What varies between the transformer layers the secure layer ([`super::layer`]) runs, as a
//! closed set of choices: the norm (RMSNorm `x / rms(x) ⊙ γ`, or LayerNorm
//! `(x - μ) / σ ⊙ γ + β`) and where it sits (pre-norm: `x + f(N(x))`, as Llama and GPT-2;
//! post-norm: `N(x + f(x))`, as BERT), the feed-forward block (gated `down(act(gate x) ⊙ up x)`,
//! as SwiGLU, or plain `down(act(up x))`), its activation, positions (rotary on queries and
//! keys, or absolute: added to the embeddings before the first layer, so a layer has none), the
//! attention mask (causal or bidirectional) and the softmax.
//!
//! [`LayerParams`] are one layer's real parameters in the model's terms, whatever the
//! architecture: Llama layers come from the candle model ([`LayerParams::llama`]), the
//! literature's BERT and GPT-2 layers from any source of tensors (e.g. `bench mpc`'s seeded
//! random weights).

use crate::model::attention::AttentionLayout;
use crate::model::linear::Linear;
use crate::model::llama::DecoderLayer;
use crate::model::variants::{Activation, SoftmaxKind};
use anyhow::{Result, ensure};
use candle_core::{DType, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormKind {
    /// `x / sqrt(mean(x²) + eps) ⊙ γ`.
    Rms,
    /// `(x - mean(x)) / sqrt(var(x) + eps) ⊙ γ + β`.
    Layer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// `x + attn(N₁(x))`, then `x + ffn(N₂(x))` (Llama, GPT-2): the norms' gains and biases
    /// fold into the projections that read them.
    Pre,
    /// `N₁(x + attn(x))`, then `N₂(x + ffn(x))` (BERT): the norms' outputs are the residual
    /// stream, so their gains and biases are applied on shares.
    Post,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedForward {
    /// `down(act(gate·x) ⊙ up·x)` (SwiGLU).
    Gated,
    /// `down(act(up·x))` (BERT's and GPT-2's GeLU MLP).
    Plain,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PositionEncoding {
    /// Rotary embeddings of queries and keys, half-split layout, angles `t / base^(2j/d_h)`.
    Rotary { base: f64 },
    /// Added to the embeddings before the first layer: nothing in a layer.
    Absolute,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionMask {
    /// A query at position `i` sees keys `0..=i`.
    Causal,
    /// Every query sees every key of its sequence.
    Bidirectional,
}

/// One layer's architecture.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerArchitecture {
    pub norm: NormKind,
    pub norm_placement: NormPlacement,
    pub eps: f64,
    pub feed_forward: FeedForward,
    pub activation: Activation,
    pub positions: PositionEncoding,
    pub mask: AttentionMask,
    pub softmax: SoftmaxKind,
}

impl LayerArchitecture {
    /// BERT-base's layer: post-LayerNorm (eps 1e-12), GeLU MLP, bidirectional, absolute
    /// positions.
    pub fn bert() -> Self {
        LayerArchitecture {
            norm: NormKind::Layer,
            norm_placement: NormPlacement::Post,
            eps: 1e-12,
            feed_forward: FeedForward::Plain,
            activation: Activation::Gelu,
            positions: PositionEncoding::Absolute,
            mask: AttentionMask::Bidirectional,
            softmax: SoftmaxKind::Exact,
        }
    }

    /// GPT-2's layer: pre-LayerNorm (eps 1e-5), GeLU MLP, causal, absolute positions.
    pub fn gpt2() -> Self {
        LayerArchitecture {
            norm_placement: NormPlacement::Pre,
            eps: 1e-5,
            mask: AttentionMask::Causal,
            ..Self::bert()
        }
    }
}

/// A projection `y = x·Wᵀ + b`: the weight (with its LoRA adapter) and an optional bias.
#[derive(Debug, Clone)]
pub struct Dense {
    pub linear: Linear,
    pub bias: Option<Vec<f64>>,
}

impl Dense {
    pub fn new(linear: Linear, bias: Option<Vec<f64>>) -> Self {
        Dense { linear, bias }
    }

    /// `s·y`: the weight (and a LoRA adapter's `B`) and the bias scaled.
    pub fn scaled(&self, s: f64) -> Result<Dense> {
        let mut linear = self.linear.clone();
        linear.weight = (&linear.weight * s)?;
        if let Some(lora) = &mut linear.lora {
            lora.b = (&lora.b * s)?;
        }
        let bias = self
            .bias
            .as_ref()
            .map(|b| b.iter().map(|v| v * s).collect());
        Ok(Dense { linear, bias })
    }
}

/// A norm's gain `γ` and (LayerNorm) bias `β`.
#[derive(Debug, Clone)]
pub struct NormParams {
    pub gain: Vec<f64>,
    pub bias: Option<Vec<f64>>,
}

/// One layer's real parameters. `gate` is present exactly for a gated feed-forward block.
#[derive(Debug, Clone)]
pub struct LayerParams {
    pub attention_norm: NormParams,
    pub q: Dense,
    pub k: Dense,
    pub v: Dense,
    pub o: Dense,
    pub ffn_norm: NormParams,
    pub gate: Option<Dense>,
    pub up: Dense,
    pub down: Dense,
    pub layout: AttentionLayout,
}

/// A norm gain (or any vector) as reals.
pub fn reals(v: &Tensor) -> Result<Vec<f64>> {
    Ok(v.to_dtype(DType::F64)?.to_vec1()?)
}

impl LayerParams {
    /// A Llama decoder layer of the candle model, and its architecture (`rope_base`).
    pub fn llama(layer: &DecoderLayer, rope_base: f64) -> Result<(Self, LayerArchitecture)> {
        let a = &layer.attention;
        let m = &layer.mlp;
        let norm = |w: &Tensor| -> Result<NormParams> {
            Ok(NormParams {
                gain: reals(w)?,
                bias: None,
            })
        };
        let dense = |l: &Linear| Dense::new(l.clone(), None);
        let params = LayerParams {
            attention_norm: norm(&layer.input_norm.weight)?,
            q: dense(&a.q_proj),
            k: dense(&a.k_proj),
            v: dense(&a.v_proj),
            o: dense(&a.o_proj),
            ffn_norm: norm(&layer.post_attention_norm.weight)?,
            gate: Some(dense(&m.gate_proj)),
            up: dense(&m.up_proj),
            down: dense(&m.down_proj),
            layout: a.layout,
        };
        let arch = LayerArchitecture {
            norm: NormKind::Rms,
            norm_placement: NormPlacement::Pre,
            eps: layer.input_norm.eps,
            feed_forward: FeedForward::Gated,
            activation: m.activation,
            positions: PositionEncoding::Rotary { base: rope_base },
            mask: AttentionMask::Causal,
            softmax: a.softmax,
        };
        Ok((params, arch))
    }

    /// Checks the parameters against `arch`.
    pub fn check(&self, arch: &LayerArchitecture) -> Result<()> {
        ensure!(
            self.gate.is_some() == (arch.feed_forward == FeedForward::Gated),
            "a {:?} feed-forward block {} a gate projection",
            arch.feed_forward,
            if self.gate.is_some() { "has" } else { "lacks" }
        );
        for norm in [&self.attention_norm, &self.ffn_norm] {
            ensure!(
                arch.norm == NormKind::Layer || norm.bias.is_none(),
                "an RMSNorm has no bias"
            );
        }
        if let PositionEncoding::Rotary { .. } = arch.positions {
            ensure!(
                self.layout.head_dim.is_multiple_of(2),
                "rotary embeddings need an even head width, not {}",
                self.layout.head_dim
            );
        }
        Ok(())
    }
}
