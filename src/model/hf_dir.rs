//! A Hugging Face model directory: `config.json`, `*.safetensors` (one file or shards) and
//! `tokenizer.json`.

use super::config::LlamaConfig;
use super::weights::Weights;
use anyhow::{Context, Result, bail};
use candle_core::{DType, Device};
use std::path::{Path, PathBuf};

pub fn read_config(dir: &Path) -> Result<LlamaConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    LlamaConfig::from_hf_json(&text).with_context(|| format!("{}", path.display()))
}

/// The weight files of a model directory, sorted so shards load in order.
pub fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot list", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        bail!("{}: no *.safetensors weight file", dir.display());
    }
    Ok(files)
}

/// Loads every tensor of the directory's safetensors files as f32.
pub fn load_weights(files: &[PathBuf], device: &Device) -> Result<Weights> {
    let mut weights = Weights::default();
    for file in files {
        let tensors = candle_core::safetensors::load(file, device).map_err(|e| {
            anyhow::anyhow!("{}: not a valid safetensors file ({e})", file.display())
        })?;
        for (name, t) in tensors {
            weights.insert(name, t.to_dtype(DType::F32)?);
        }
    }
    Ok(weights)
}
