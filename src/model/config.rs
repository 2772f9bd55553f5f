//! Architecture of a Llama-family decoder, read from GGUF metadata or a Hugging Face `config.json`.

use super::hf_rope::HfRope;
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// The architecture hyper-parameters shared by every loader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub vocab_size: usize,
    pub rope_theta: f64,
    pub rms_norm_eps: f64,
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
}

impl LlamaConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Rejects shapes the decoder cannot run, so a bad `config.json` fails at load time.
    pub fn validate(&self) -> Result<()> {
        let c = self;
        if c.hidden_size == 0 || c.num_attention_heads == 0 || c.num_hidden_layers == 0 {
            bail!("hidden_size, num_attention_heads and num_hidden_layers must be positive");
        }
        if !c.hidden_size.is_multiple_of(c.num_attention_heads) {
            bail!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                c.hidden_size,
                c.num_attention_heads
            );
        }
        if c.num_key_value_heads == 0
            || !c.num_attention_heads.is_multiple_of(c.num_key_value_heads)
        {
            bail!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                c.num_attention_heads,
                c.num_key_value_heads
            );
        }
        if !c.head_dim().is_multiple_of(2) {
            bail!("head dimension {} must be even for RoPE", c.head_dim());
        }
        Ok(())
    }

    /// Parses a Hugging Face `config.json` (Llama architecture), as transformers 4 or 5 writes it.
    pub fn from_hf_json(text: &str) -> Result<Self> {
        #[derive(Deserialize)]
        struct HfConfig {
            hidden_size: usize,
            intermediate_size: usize,
            num_hidden_layers: usize,
            num_attention_heads: usize,
            num_key_value_heads: Option<usize>,
            vocab_size: usize,
            #[serde(flatten)]
            rope: HfRope,
            #[serde(default = "default_eps")]
            rms_norm_eps: f64,
            #[serde(default)]
            tie_word_embeddings: bool,
            #[serde(default = "default_max_pos")]
            max_position_embeddings: usize,
        }
        fn default_eps() -> f64 {
            1e-6
        }
        fn default_max_pos() -> usize {
            2048
        }
        let hf: HfConfig = serde_json::from_str(text).context("not a Llama config.json")?;
        let config = LlamaConfig {
            hidden_size: hf.hidden_size,
            intermediate_size: hf.intermediate_size,
            num_hidden_layers: hf.num_hidden_layers,
            num_attention_heads: hf.num_attention_heads,
            num_key_value_heads: hf.num_key_value_heads.unwrap_or(hf.num_attention_heads),
            vocab_size: hf.vocab_size,
            rope_theta: hf.rope.theta()?,
            rms_norm_eps: hf.rms_norm_eps,
            tie_word_embeddings: hf.tie_word_embeddings,
            max_position_embeddings: hf.max_position_embeddings,
        };
        config.validate()?;
        Ok(config)
    }

    /// The `config.json` a Hugging Face loader would read back (architecture `LlamaForCausalLM`).
    pub fn to_hf_json(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("config serialises");
        v["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
        v["model_type"] = serde_json::json!("llama");
        v["hidden_act"] = serde_json::json!("silu");
        v
    }

    /// SmolLM2-135M's shape scaled down, for fast tests.
    pub fn tiny() -> Self {
        LlamaConfig {
            hidden_size: 48,
            intermediate_size: 96,
            num_hidden_layers: 4,
            num_attention_heads: 6,
            num_key_value_heads: 2,
            vocab_size: 320,
            rope_theta: 10_000.0,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: true,
            max_position_embeddings: 1024,
        }
    }
}
