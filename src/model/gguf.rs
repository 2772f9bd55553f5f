//! GGUF loader: architecture from the metadata, weights dequantised to f32 and renamed to the
//! Hugging Face scheme. llama.cpp stores Q and K rows in the interleaved RoPE layout; they are
//! permuted back to the half-split layout our RoPE (and every safetensors checkpoint) uses.

use super::config::LlamaConfig;
use super::weights::{Weights, layer_prefix};
use anyhow::{Context, Result, bail};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{Device, Tensor};
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

/// Opens a GGUF file and reads its header (metadata and tensor index, not the tensor data).
pub fn read_content(path: &Path) -> Result<(Content, BufReader<File>)> {
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader)
        .map_err(|e| anyhow::anyhow!("{}: not a valid GGUF file ({e})", path.display()))?;
    Ok((content, reader))
}

fn meta<'a>(content: &'a Content, key: &str) -> Result<&'a Value> {
    content
        .metadata
        .get(key)
        .with_context(|| format!("GGUF metadata has no `{key}`"))
}

fn meta_usize(content: &Content, key: &str) -> Result<usize> {
    let v = meta(content, key)?;
    Ok(match v {
        Value::U32(x) => *x as usize,
        Value::U64(x) => *x as usize,
        Value::I32(x) if *x >= 0 => *x as usize,
        Value::I64(x) if *x >= 0 => *x as usize,
        _ => bail!("GGUF metadata `{key}` is not a count: {v:?}"),
    })
}

pub fn config_from_gguf(content: &Content) -> Result<LlamaConfig> {
    let arch = meta(content, "general.architecture")?.to_string()?.clone();
    if arch != "llama" {
        bail!("architecture `{arch}` is not supported (only llama)");
    }
    let k = |name: &str| format!("llama.{name}");
    let vocab_size = match meta_usize(content, &k("vocab_size")) {
        Ok(n) => n,
        Err(_) => meta(content, "tokenizer.ggml.tokens")?.to_vec()?.len(),
    };
    let config = LlamaConfig {
        hidden_size: meta_usize(content, &k("embedding_length"))?,
        intermediate_size: meta_usize(content, &k("feed_forward_length"))?,
        num_hidden_layers: meta_usize(content, &k("block_count"))?,
        num_attention_heads: meta_usize(content, &k("attention.head_count"))?,
        num_key_value_heads: meta_usize(content, &k("attention.head_count_kv"))?,
        vocab_size,
        rope_theta: meta(content, &k("rope.freq_base"))
            .and_then(|v| Ok(v.to_f32()?))
            .map(f64::from)
            .unwrap_or(10_000.0),
        rms_norm_eps: f64::from(meta(content, &k("attention.layer_norm_rms_epsilon"))?.to_f32()?),
        tie_word_embeddings: !content.tensor_infos.contains_key("output.weight"),
        max_position_embeddings: meta_usize(content, &k("context_length"))?,
    };
    config.validate()?;
    Ok(config)
}

/// Undoes llama.cpp's Q/K row permutation: within each head, rows `(pair i, half j)` go back to
/// `(half j, i)`.
fn unpermute_rope_rows(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let head_dim = rows / heads;
    Ok(w.reshape((heads, head_dim / 2, 2, cols))?
        .transpose(1, 2)?
        .reshape((rows, cols))?)
}

/// GGUF tensor names → Hugging Face names.
fn hf_name(gguf: &str) -> Option<String> {
    let fixed = match gguf {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let part = match part {
        "attn_q.weight" => "self_attn.q_proj.weight",
        "attn_k.weight" => "self_attn.k_proj.weight",
        "attn_v.weight" => "self_attn.v_proj.weight",
        "attn_output.weight" => "self_attn.o_proj.weight",
        "ffn_gate.weight" => "mlp.gate_proj.weight",
        "ffn_up.weight" => "mlp.up_proj.weight",
        "ffn_down.weight" => "mlp.down_proj.weight",
        "attn_norm.weight" => "input_layernorm.weight",
        "ffn_norm.weight" => "post_attention_layernorm.weight",
        _ => return None,
    };
    Some(format!("{}.{part}", layer_prefix(layer)))
}

/// Reads every weight of a GGUF file as f32 in the Hugging Face naming and layout.
pub fn load_gguf_weights(
    path: &Path,
    content: &Content,
    reader: &mut BufReader<File>,
    config: &LlamaConfig,
    device: &Device,
) -> Result<Weights> {
    let mut weights = Weights::default();
    for name in content.tensor_infos.keys() {
        let Some(hf) = hf_name(name) else { continue };
        let q = content
            .tensor(reader, name, device)
            .map_err(|e| anyhow::anyhow!("{}: tensor {name}: {e}", path.display()))?;
        let mut t = q.dequantize(device)?;
        if hf.ends_with("q_proj.weight") {
            t = unpermute_rope_rows(&t, config.num_attention_heads)?;
        } else if hf.ends_with("k_proj.weight") {
            t = unpermute_rope_rows(&t, config.num_key_value_heads)?;
        }
        weights.insert(hf, t);
    }
    Ok(weights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_gguf_names() {
        assert_eq!(
            hf_name("blk.12.attn_output.weight").as_deref(),
            Some("model.layers.12.self_attn.o_proj.weight")
        );
        assert_eq!(
            hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(hf_name("rope_freqs.weight"), None);
    }

    #[test]
    fn unpermute_restores_half_split_rows() -> Result<()> {
        // One head of width 4: HF rows r0 r1 | r2 r3 are stored by llama.cpp as r0 r2 r1 r3.
        let stored = Tensor::new(&[[0f32], [2.0], [1.0], [3.0]], &Device::Cpu)?;
        let hf: Vec<Vec<f32>> = unpermute_rope_rows(&stored, 1)?.to_vec2()?;
        assert_eq!(hf, vec![vec![0.0], vec![1.0], vec![2.0], vec![3.0]]);
        Ok(())
    }
}
