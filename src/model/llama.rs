//! The Llama-family decoder: an explicit list of layers, each with its own attention layout and
//! non-linearities, addressable by index so a caller can run any contiguous range of layers.

use super::attention::{Attention, AttentionLayout, KvCache};
use super::config::LlamaConfig;
use super::linear::Linear;
use super::mlp::Mlp;
use super::norm::RmsNorm;
use super::rope::RotaryEmbedding;
use super::variants::{Activation, SoftmaxKind};
use super::weights::{Weights, layer_prefix};
use anyhow::{Result, ensure};
use candle_core::{DType, Device, Tensor};
use std::ops::Range;

#[derive(Debug, Clone)]
pub struct DecoderLayer {
    pub input_norm: RmsNorm,
    pub attention: Attention,
    pub post_attention_norm: RmsNorm,
    pub mlp: Mlp,
}

impl DecoderLayer {
    fn load(w: &Weights, c: &LlamaConfig, layer: usize) -> Result<Self> {
        let p = layer_prefix(layer);
        let (d, hd) = (c.hidden_size, c.head_dim());
        let kv = c.num_key_value_heads * hd;
        let lin = |name: &str, shape: [usize; 2]| -> Result<Linear> {
            Ok(Linear::new(w.get(&format!("{p}.{name}.weight"), &shape)?))
        };
        let norm = |name: &str| -> Result<RmsNorm> {
            Ok(RmsNorm::new(
                w.get(&format!("{p}.{name}.weight"), &[d])?,
                c.rms_norm_eps,
            ))
        };
        Ok(DecoderLayer {
            input_norm: norm("input_layernorm")?,
            attention: Attention {
                q_proj: lin("self_attn.q_proj", [d, d])?,
                k_proj: lin("self_attn.k_proj", [kv, d])?,
                v_proj: lin("self_attn.v_proj", [kv, d])?,
                o_proj: lin("self_attn.o_proj", [d, d])?,
                layout: AttentionLayout::standard(c.num_attention_heads, c.num_key_value_heads, hd),
                softmax: SoftmaxKind::Exact,
            },
            post_attention_norm: norm("post_attention_layernorm")?,
            mlp: Mlp {
                gate_proj: lin("mlp.gate_proj", [c.intermediate_size, d])?,
                up_proj: lin("mlp.up_proj", [c.intermediate_size, d])?,
                down_proj: lin("mlp.down_proj", [d, c.intermediate_size])?,
                activation: Activation::Silu,
            },
        })
    }

    pub fn forward(
        &self,
        x: &Tensor,
        rope: &RotaryEmbedding,
        allowed: &Tensor,
        cache: Option<&mut KvCache>,
    ) -> Result<Tensor> {
        let h =
            (x + self
                .attention
                .forward(&self.input_norm.forward(x)?, rope, allowed, cache)?)?;
        Ok((&h + self.mlp.forward(&self.post_attention_norm.forward(&h)?)?)?)
    }
}

/// What a full forward pass returns.
#[derive(Debug)]
pub struct ForwardOutput {
    /// `(batch, seq, vocab)`.
    pub logits: Tensor,
    /// The output of every layer, when asked for; `hidden_states[i]` follows layer `i`.
    pub hidden_states: Vec<Tensor>,
}

#[derive(Debug, Clone)]
pub struct Llama {
    pub config: LlamaConfig,
    pub embed_tokens: Tensor,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
    pub lm_head: Linear,
    pub rope: RotaryEmbedding,
}

impl Llama {
    /// Builds the model from Hugging Face-named weights; a tied head reuses the embedding.
    pub fn from_weights(config: LlamaConfig, w: &Weights, device: &Device) -> Result<Self> {
        config.validate()?;
        let c = &config;
        let embed_tokens = w.get("model.embed_tokens.weight", &[c.vocab_size, c.hidden_size])?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| DecoderLayer::load(w, c, i))
            .collect::<Result<Vec<_>>>()?;
        let lm_head = if c.tie_word_embeddings && !w.contains("lm_head.weight") {
            embed_tokens.clone()
        } else {
            w.get("lm_head.weight", &[c.vocab_size, c.hidden_size])?
        };
        Ok(Llama {
            norm: RmsNorm::new(
                w.get("model.norm.weight", &[c.hidden_size])?,
                c.rms_norm_eps,
            ),
            lm_head: Linear::new(lm_head),
            rope: RotaryEmbedding::new(
                c.head_dim(),
                c.rope_theta,
                c.max_position_embeddings,
                device,
            )?,
            embed_tokens,
            layers,
            config,
        })
    }

    pub fn device(&self) -> &Device {
        self.embed_tokens.device()
    }

    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Token embeddings of `ids` `(batch, seq)` → `(batch, seq, hidden)`.
    pub fn embed(&self, ids: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let flat = self.embed_tokens.index_select(&ids.flatten_all()?, 0)?;
        Ok(flat.reshape((b, t, self.config.hidden_size))?)
    }

    /// The attention permission mask for a batch: causal, and, given `padding` `(batch, seq)`
    /// with 1 for real tokens, never attending to padding keys. Shape `(batch or 1, 1, seq, seq)`.
    pub fn attention_mask(&self, seq: usize, padding: Option<&Tensor>) -> Result<Tensor> {
        let causal = self.causal_mask(seq, 0)?;
        Ok(match padding {
            None => causal,
            Some(p) => {
                let (b, t) = p.dims2()?;
                ensure!(
                    t == seq,
                    "padding mask covers {t} tokens, the batch has {seq}"
                );
                let keys = p.to_dtype(DType::F32)?.reshape((b, 1, 1, t))?;
                causal.broadcast_mul(&keys)?
            }
        })
    }

    /// The causal mask `(1, 1, new, past + new)` of `new` tokens that follow `past` cached ones.
    pub fn causal_mask(&self, new: usize, past: usize) -> Result<Tensor> {
        let keys = past + new;
        let mask: Vec<f32> = (0..new)
            .flat_map(|q| (0..keys).map(move |k| if k <= past + q { 1.0 } else { 0.0 }))
            .collect();
        Ok(Tensor::from_vec(mask, (1, 1, new, keys), self.device())?)
    }

    /// Runs layers `range` on `hidden`; returns the last output and, if `collect`, every layer's.
    pub fn forward_layers(
        &self,
        hidden: &Tensor,
        range: Range<usize>,
        allowed: &Tensor,
        collect: bool,
    ) -> Result<(Tensor, Vec<Tensor>)> {
        ensure!(
            range.end <= self.layers.len() && range.start <= range.end,
            "layer range {range:?} is outside 0..{}",
            self.layers.len()
        );
        let mut h = hidden.clone();
        let mut states = Vec::new();
        for layer in &self.layers[range] {
            h = layer.forward(&h, &self.rope, allowed, None)?;
            if collect {
                states.push(h.clone());
            }
        }
        Ok((h, states))
    }

    /// Final norm and output head: hidden `(…, hidden)` → logits `(…, vocab)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.lm_head.forward(&self.norm.forward(hidden)?)
    }

    /// Logits of only the vocabulary rows `token_ids`: what classification by label words needs,
    /// at a fraction of the full head's cost.
    pub fn logits_for_tokens(&self, hidden: &Tensor, token_ids: &Tensor) -> Result<Tensor> {
        let rows = Linear::new(self.lm_head.weight.index_select(token_ids, 0)?);
        rows.forward(&self.norm.forward(hidden)?)
    }

    /// Full forward over a right- or left-padded batch of token ids `(batch, seq)`.
    pub fn forward(
        &self,
        ids: &Tensor,
        padding: Option<&Tensor>,
        collect_hidden: bool,
    ) -> Result<ForwardOutput> {
        let (_, t) = ids.dims2()?;
        let allowed = self.attention_mask(t, padding)?;
        let (h, hidden_states) = self.forward_layers(
            &self.embed(ids)?,
            0..self.layers.len(),
            &allowed,
            collect_hidden,
        )?;
        Ok(ForwardOutput {
            logits: self.logits(&h)?,
            hidden_states,
        })
    }

    /// Parameters counted once each (a tied head is the embedding).
    pub fn parameter_count(&self) -> usize {
        let c = &self.config;
        let per_layer: usize = self
            .layers
            .iter()
            .map(|l| {
                let a = &l.attention;
                [&a.q_proj, &a.k_proj, &a.v_proj, &a.o_proj]
                    .into_iter()
                    .chain([&l.mlp.gate_proj, &l.mlp.up_proj, &l.mlp.down_proj])
                    .map(|lin| lin.weight.elem_count())
                    .sum::<usize>()
                    + 2 * c.hidden_size
            })
            .sum();
        let head = if self.lm_head.weight.id() == self.embed_tokens.id() {
            0
        } else {
            self.lm_head.weight.elem_count()
        };
        self.embed_tokens.elem_count() + per_layer + c.hidden_size + head
    }
}
