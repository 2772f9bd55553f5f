//! `marill inspect`: what a split checkpoint keeps public and private, or a model's
//! architecture, parameter count and weight files' sha256.

use crate::checkpoint::{CheckpointSummary, is_checkpoint, read_checkpoint};
use crate::fetch::resolve_model;
use crate::model::load;
use crate::model::source::sha256_file;
use anyhow::Result;
use candle_core::Device;
use std::fmt::Write;
use std::path::Path;

/// The description `marill inspect PATH` prints.
pub fn inspect(path: &str, device: &Device) -> Result<String> {
    if is_checkpoint(Path::new(path)) {
        let (manifest, tensors) = read_checkpoint(Path::new(path))?;
        return Ok(CheckpointSummary::new(&manifest, &tensors)?.to_string());
    }
    let source = resolve_model(path)?;
    let loaded = load(&source, device)?;
    let c = &loaded.model.config;
    let mut out = format!("model: {}\n", source.describe());
    writeln!(
        out,
        "architecture: llama, {} layers, hidden {}, {} heads / {} kv heads (head dim {}), ffn {}, vocab {}, rope base {}, tied embeddings: {}",
        c.num_hidden_layers,
        c.hidden_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim(),
        c.intermediate_size,
        c.vocab_size,
        c.rope_theta,
        c.tie_word_embeddings
    )?;
    write!(out, "parameters: {}", loaded.model.parameter_count())?;
    for file in &loaded.weight_files {
        write!(out, "\nsha256 {}  {}", sha256_file(file)?, file.display())?;
    }
    Ok(out)
}
