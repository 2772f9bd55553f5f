//! Hub ids (`org/name`) resolved offline-first from the local Hugging Face cache (`HF_HOME`).
//! hf-hub is built without its HTTP client, so nothing is downloaded at run time: a model must
//! be in the cache already (e.g. put there by `huggingface-cli download`).

use anyhow::{Result, bail};
use std::path::PathBuf;

/// The cached snapshot directory of model `id`.
pub fn cached_model_dir(id: &str) -> Result<PathBuf> {
    let cache = hf_hub::Cache::from_env();
    let repo = cache.model(id.to_string());
    match repo.get("config.json") {
        Some(config) => Ok(config
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| cache.path().clone())),
        None => bail!(
            "model `{id}` is not in the Hugging Face cache at {} and marill does not download from the hub; \
             fetch it there first or pass a local path",
            cache.path().display()
        ),
    }
}
