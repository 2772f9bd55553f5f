//! Writing, reading and verifying a split checkpoint directory.

use super::atomic_dir::replace_dir;
use super::manifest::{FORMAT_VERSION, Manifest};
use super::tensor_name::check_tensors;
use crate::atomic::write_json_atomic;
use anyhow::{Context, Result, anyhow, bail};
use candle_core::{Device, Tensor};
use serde::Deserialize;
use std::collections::HashMap;
use std::path::Path;

pub const MANIFEST_FILE: &str = "manifest.json";
pub const PRIVATE_FILE: &str = "private.safetensors";

/// Writes `dir` atomically: the manifest and tensors are checked first, written into a sibling
/// directory, and only then put in place of any existing checkpoint.
pub fn write_checkpoint(
    dir: &Path,
    manifest: &Manifest,
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    let refuse = |e: anyhow::Error| anyhow!("{}: not written: {e}", dir.display());
    manifest.validate().map_err(refuse)?;
    check_tensors(manifest, tensors).map_err(refuse)?;
    replace_dir(dir, MANIFEST_FILE, |staging| {
        save_tensors(&staging.join(PRIVATE_FILE), tensors)?;
        write_json_atomic(&staging.join(MANIFEST_FILE), manifest)
    })
}

/// Reads and checks a checkpoint; tensors land on the CPU.
pub fn read_checkpoint(dir: &Path) -> Result<(Manifest, HashMap<String, Tensor>)> {
    let manifest = read_manifest(dir)?;
    let path = dir.join(PRIVATE_FILE);
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => anyhow!("{}: missing", path.display()),
        _ => anyhow!("{}: cannot read: {e}", path.display()),
    })?;
    let tensors = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| anyhow!("{}: not a valid safetensors file: {e}", path.display()))?;
    check_tensors(&manifest, &tensors).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok((manifest, tensors))
}

/// Reads and checks `dir/manifest.json` alone (no tensors).
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => {
            anyhow!("{}: missing (not a split checkpoint)", path.display())
        }
        _ => anyhow!("{}: cannot read: {e}", path.display()),
    })?;
    // The version first, so that a manifest from another format says so rather than failing on
    // whichever field changed.
    #[derive(Deserialize)]
    struct Version {
        format_version: u32,
    }
    let invalid = |e: serde_json::Error| anyhow!("{}: invalid manifest: {e}", path.display());
    let version: Version = serde_json::from_str(&text).map_err(invalid)?;
    if version.format_version != FORMAT_VERSION {
        bail!(
            "{}: format_version {}, but this marill reads version {FORMAT_VERSION}",
            path.display(),
            version.format_version
        );
    }
    let manifest: Manifest = serde_json::from_str(&text).map_err(invalid)?;
    manifest
        .validate()
        .map_err(|e| anyhow!("{}: {e}", path.display()))?;
    Ok(manifest)
}

/// Refuses a base model whose weights are not the ones the checkpoint was trained on.
pub fn verify_base(manifest: &Manifest, actual_sha256: &str) -> Result<()> {
    let expected = &manifest.base.sha256;
    if !expected.eq_ignore_ascii_case(actual_sha256) {
        bail!(
            "base model {}: sha256 {actual_sha256} does not match the checkpoint's base sha256 \
             {expected}; the private tensors belong to another base model",
            manifest.base.source
        );
    }
    Ok(())
}

/// Saves tensors as safetensors and flushes the file to disk (the directory rename that follows
/// must not publish a file still in the page cache only).
pub(super) fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    candle_core::safetensors::save(tensors, path)
        .with_context(|| format!("{}: cannot write", path.display()))?;
    std::fs::File::open(path)
        .and_then(|file| file.sync_all())
        .with_context(|| format!("{}: cannot flush", path.display()))
}
