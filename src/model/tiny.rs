//! A tiny random Llama written as a Hugging Face directory (`config.json`, `model.safetensors`,
//! `tokenizer.json`): what unit and end-to-end tests run on instead of a real model.

use super::Llama;
use super::config::LlamaConfig;
use super::lora_target::LoraTarget;
use super::marill::{LoraSpec, MarillArch, attach_lora, lora_names, projection};
use super::weights::{Weights, layer_prefix};
use anyhow::{Result, anyhow};
use candle_core::{Device, Tensor};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// The special tokens of the ChatML format, appended after the 256 byte tokens.
pub const TINY_SPECIAL_TOKENS: [&str; 3] = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];

/// GPT-2's reversible byte → printable character map, which byte-level BPE vocabularies use.
fn byte_to_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        return b as char;
    }
    let shifted = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + shifted).expect("valid char")
}

/// Answer words that get whole-word tokens after a space, as in a real vocabulary, so that the
/// tasks' choices differ in their first token.
const TINY_WORDS: [&str; 9] = ["positive", "negative", "yes", "no", "A", "B", "C", "D", "E"];

/// A byte-level tokenizer (a token for every byte, merges only for `TINY_WORDS` after a space)
/// plus the ChatML specials.
pub fn tiny_tokenizer() -> Result<Tokenizer> {
    let mut vocab = tokenizers::models::bpe::Vocab::default();
    for b in 0..=255u8 {
        vocab.insert(byte_to_char(b).to_string(), u32::from(b));
    }
    for s in TINY_SPECIAL_TOKENS {
        vocab.insert(s.to_string(), vocab.len() as u32);
    }
    let mut merges = Vec::new();
    for word in TINY_WORDS {
        let mut prefix = byte_to_char(b' ').to_string();
        for c in word.chars() {
            let merged = format!("{prefix}{c}");
            if !vocab.contains_key(&merged) {
                vocab.insert(merged.clone(), vocab.len() as u32);
                merges.push((prefix, c.to_string()));
            }
            prefix = merged;
        }
    }
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| anyhow!("{e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    tokenizer
        .add_special_tokens(TINY_SPECIAL_TOKENS.map(|s| AddedToken::from(s, true)))
        .map_err(|e| anyhow!("{e}"))?;
    Ok(tokenizer)
}

/// Random weights of `config`'s shapes, deterministic in `seed`, scaled like an initialised
/// model (so activations stay in a realistic range).
pub fn tiny_weights(config: &LlamaConfig, seed: u64) -> Result<HashMap<String, Tensor>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut uniform = |shape: &[usize], scale: f32| -> Result<Tensor> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n)
            .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
            .collect();
        Ok(Tensor::from_vec(data, shape, &Device::Cpu)?)
    };
    let (d, f) = (config.hidden_size, config.intermediate_size);
    let kv = config.num_key_value_heads * config.head_dim();
    let w = |fan_in: usize| (3.0 / fan_in as f32).sqrt();
    let mut out = HashMap::new();
    out.insert(
        "model.embed_tokens.weight".into(),
        uniform(&[config.vocab_size, d], 1.0)?,
    );
    out.insert(
        "model.norm.weight".into(),
        Tensor::ones(d, candle_core::DType::F32, &Device::Cpu)?,
    );
    for layer in 0..config.num_hidden_layers {
        let p = layer_prefix(layer);
        for (name, shape, fan_in) in [
            ("self_attn.q_proj", [d, d], d),
            ("self_attn.k_proj", [kv, d], d),
            ("self_attn.v_proj", [kv, d], d),
            ("self_attn.o_proj", [d, d], d),
            ("mlp.gate_proj", [f, d], d),
            ("mlp.up_proj", [f, d], d),
            ("mlp.down_proj", [d, f], f),
        ] {
            out.insert(format!("{p}.{name}.weight"), uniform(&shape, w(fan_in))?);
        }
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            out.insert(format!("{p}.{norm}.weight"), (uniform(&[d], 0.2)? + 1.0)?);
        }
    }
    if !config.tie_word_embeddings {
        out.insert(
            "lm_head.weight".into(),
            uniform(&[config.vocab_size, d], w(d))?,
        );
    }
    Ok(out)
}

/// The tiny Llama of `config` with weights from `seed`, `arch` applied and LoRA adapters
/// (rank 4, alpha 8) on every projection of its private layers, each factor `(rows, cols)`
/// from `factor`: a MARILL student, whose factors are the secret of secure evaluation.
pub fn tiny_student(
    config: &LlamaConfig,
    seed: u64,
    arch: &MarillArch,
    mut factor: impl FnMut(usize, usize) -> Result<Tensor>,
) -> Result<Llama> {
    let weights = Weights::new(tiny_weights(config, seed)?);
    let mut model = Llama::from_weights(config.clone(), &weights, &Device::Cpu)?;
    arch.apply(&mut model)?;
    let spec = LoraSpec {
        rank: 4,
        alpha: 8.0,
        targets: LoraTarget::ALL.to_vec(),
        dropout: 0.0,
    };
    let mut init = HashMap::new();
    for layer in arch.private_layers(&model) {
        for target in LoraTarget::ALL {
            let linear = projection(&model, layer, target);
            let (rows, cols) = (linear.out_features(), linear.in_features());
            let (a, b) = lora_names(layer, target);
            init.insert(a, factor(spec.rank, cols)?);
            init.insert(b, factor(rows, spec.rank)?);
        }
    }
    let private = arch.private_layers(&model);
    attach_lora(
        &mut model,
        private,
        &spec,
        &init,
        &mut ChaCha8Rng::seed_from_u64(seed),
    )?;
    Ok(model)
}

/// Writes a complete Hugging Face model directory for `config` into `dir`.
pub fn write_tiny_model(dir: &Path, config: &LlamaConfig, seed: u64) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = serde_json::to_string_pretty(&config.to_hf_json())?;
    std::fs::write(dir.join("config.json"), json)?;
    candle_core::safetensors::save(&tiny_weights(config, seed)?, dir.join("model.safetensors"))?;
    tiny_tokenizer()?
        .save(dir.join("tokenizer.json"), false)
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
