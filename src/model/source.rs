//! Where a model comes from, and loading it with its tokenizer.

use super::config::LlamaConfig;
use super::llama::Llama;
use super::weights::Weights;
use super::{gguf, hf_dir, hub, tokenizer};
use anyhow::{Context, Result, bail};
use candle_core::Device;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use tokenizers::Tokenizer;

#[derive(Debug, Clone, PartialEq)]
pub enum ModelSource {
    Gguf(PathBuf),
    HfDir(PathBuf),
    Hub(String),
}

impl ModelSource {
    /// Interprets a `--model` argument: an existing `.gguf` file, an existing directory, or else
    /// a hub id `org/name`.
    pub fn parse(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_file() {
            if path.extension().is_some_and(|e| e == "gguf") {
                return Ok(ModelSource::Gguf(path.to_path_buf()));
            }
            bail!(
                "{spec}: the file exists but is not a model (accepted: a .gguf file, a Hugging Face \
                 model directory with config.json, *.safetensors and tokenizer.json, or a hub id \
                 org/name)"
            );
        }
        if path.is_dir() {
            return Ok(ModelSource::HfDir(path.to_path_buf()));
        }
        let looks_like_hub_id = spec.split('/').count() == 2
            && !spec.starts_with('.')
            && !spec.ends_with(".gguf")
            && !spec.contains('\\');
        if looks_like_hub_id {
            return Ok(ModelSource::Hub(spec.to_string()));
        }
        bail!("{spec}: no such model file or directory (nor a hub id org/name)");
    }

    pub fn describe(&self) -> String {
        match self {
            ModelSource::Gguf(p) | ModelSource::HfDir(p) => p.display().to_string(),
            ModelSource::Hub(id) => id.clone(),
        }
    }
}

/// A model ready to run, with its tokenizer and the files its weights came from.
pub struct LoadedModel {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    pub source: ModelSource,
    pub weight_files: Vec<PathBuf>,
}

/// Architecture, weights and tokenizer of `source`, on `device`.
pub fn load_parts(
    source: &ModelSource,
    device: &Device,
) -> Result<(LlamaConfig, Weights, Tokenizer, Vec<PathBuf>)> {
    match source {
        ModelSource::Gguf(path) => {
            let (content, mut reader) = gguf::read_content(path)?;
            let config =
                gguf::config_from_gguf(&content).with_context(|| format!("{}", path.display()))?;
            let tokenizer = tokenizer::tokenizer_from_gguf(&content)
                .with_context(|| format!("{}", path.display()))?;
            let weights = gguf::load_gguf_weights(path, &content, &mut reader, &config, device)?;
            Ok((config, weights, tokenizer, vec![path.clone()]))
        }
        ModelSource::HfDir(dir) => {
            let config = hf_dir::read_config(dir)?;
            let tokenizer = tokenizer::tokenizer_from_file(&dir.join("tokenizer.json"))?;
            let files = hf_dir::safetensors_files(dir)?;
            let weights = hf_dir::load_weights(&files, device)?;
            Ok((config, weights, tokenizer, files))
        }
        ModelSource::Hub(id) => load_parts(&ModelSource::HfDir(hub::cached_model_dir(id)?), device),
    }
}

pub fn load(source: &ModelSource, device: &Device) -> Result<LoadedModel> {
    let (config, weights, tokenizer, weight_files) = load_parts(source, device)?;
    let model = Llama::from_weights(config, &weights, device)
        .with_context(|| source.describe().to_string())?;
    Ok(LoadedModel {
        model,
        tokenizer,
        source: source.clone(),
        weight_files,
    })
}

/// Hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Hex sha256 of bytes in memory.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Lower-case hex, as sha256 digests are written everywhere in marill.
pub fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
