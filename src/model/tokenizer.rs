//! Tokenizers: a byte-level BPE rebuilt from GGUF metadata (candle's `TokenizerFromGguf` adds a
//! prefix space for SmolLM2), or a Hugging Face `tokenizer.json`; and the ChatML prompt format.

use anyhow::{Context, Result, anyhow};
use candle_core::quantized::gguf_file::{Content, Value};
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::{AddedToken, Tokenizer};

/// llama.cpp's token type for control tokens (`<|im_start|>`, ...).
const GGUF_CONTROL_TOKEN: i32 = 3;

fn strings(content: &Content, key: &str) -> Result<Vec<String>> {
    content
        .metadata
        .get(key)
        .with_context(|| format!("GGUF metadata has no `{key}`"))?
        .to_vec()?
        .iter()
        .map(|v| Ok(v.to_string()?.clone()))
        .collect()
}

/// Byte-level BPE with SmolLM2's pre-tokenisation: single digits, then GPT-2 byte-level splitting
/// without a prefix space.
pub fn tokenizer_from_gguf(content: &Content) -> Result<Tokenizer> {
    let model = content
        .metadata
        .get("tokenizer.ggml.model")
        .map(|v| v.to_string().cloned())
        .transpose()?
        .unwrap_or_default();
    if model != "gpt2" {
        return Err(anyhow!(
            "tokenizer model `{model}` is not supported (only byte-level BPE, `gpt2`)"
        ));
    }
    let tokens = strings(content, "tokenizer.ggml.tokens")?;
    let merges = strings(content, "tokenizer.ggml.merges")?
        .into_iter()
        .map(|m| {
            m.split_once(' ')
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .ok_or_else(|| anyhow!("malformed BPE merge `{m}`"))
        })
        .collect::<Result<Vec<_>>>()?;
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .build()
        .map_err(|e| anyhow!("cannot build BPE: {e}"))?;
    let mut tokenizer = Tokenizer::new(bpe);
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        Digits::new(true).into(),
        ByteLevel::new(false, true, true).into(),
    ])));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let types: Vec<i32> = match content.metadata.get("tokenizer.ggml.token_type") {
        Some(Value::Array(v)) => v.iter().map(|t| t.to_i32().unwrap_or(1)).collect(),
        _ => Vec::new(),
    };
    let specials: Vec<AddedToken> = tokens
        .iter()
        .zip(&types)
        .filter(|&(_, &ty)| ty == GGUF_CONTROL_TOKEN)
        .map(|(t, _)| AddedToken::from(t.clone(), true))
        .collect();
    tokenizer
        .add_special_tokens(specials)
        .map_err(|e| anyhow!("cannot add special tokens: {e}"))?;
    Ok(tokenizer)
}

pub fn tokenizer_from_file(path: &Path) -> Result<Tokenizer> {
    Tokenizer::from_file(path)
        .map_err(|e| anyhow!("{}: not a valid tokenizer.json ({e})", path.display()))
}

/// Token ids of `text` with special tokens recognised.
pub fn encode(tokenizer: &Tokenizer, text: &str) -> Result<Vec<u32>> {
    Ok(tokenizer
        .encode(text, false)
        .map_err(|e| anyhow!("cannot tokenise: {e}"))?
        .get_ids()
        .to_vec())
}
