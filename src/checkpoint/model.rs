//! A split checkpoint as a runnable model: the public base model, verified against the
//! manifest, with the private tensors and the MARILL architecture applied.

use super::io::{read_checkpoint, read_manifest, verify_base};
use super::manifest::{BaseModel, Manifest};
use super::tensor_name::{LayerNorm, PrivateTensor};
use crate::model::marill::{MarillArch, load_lora, lora_names, projection_mut};
use crate::model::{LoadedModel, ModelSource, load};
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::HashMap;
use std::path::Path;

/// Whether `path` is a split checkpoint directory.
pub fn is_checkpoint(path: &Path) -> bool {
    path.join(super::io::MANIFEST_FILE).is_file()
}

/// A split checkpoint loaded: the model with its private tensors in place.
pub struct Checkpoint {
    pub loaded: LoadedModel,
    pub manifest: Manifest,
    /// What `private.safetensors` held.
    pub private: Vec<PrivateTensor>,
}

/// The verified base model in the checkpoint's architecture, without its private tensors.
fn base_in_architecture(dir: &Path, manifest: &Manifest, device: &Device) -> Result<LoadedModel> {
    let source = ModelSource::parse(&manifest.base.source)
        .with_context(|| format!("{}: base model", dir.display()))?;
    let mut loaded = load(&source, device)?;
    verify_base(manifest, &BaseModel::weights_sha256(&loaded.weight_files)?)
        .with_context(|| format!("{}", dir.display()))?;
    MarillArch {
        public_layers: manifest.split.public_layers,
        head_merge: manifest.head_merge.factor,
        activation: manifest.approximations.activation,
        softmax: manifest.approximations.softmax,
    }
    .apply(&mut loaded.model)?;
    Ok(loaded)
}

/// The checkpoint as a party without the server's secrets sees it: the manifest and the base
/// model, with zero LoRA factors of the manifest's shapes (`private.safetensors` is not read).
/// Right in every shape, so it builds the same secure computation; its private values are
/// placeholders that never enter the protocol.
pub fn load_checkpoint_public(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let manifest = read_manifest(dir)?;
    let mut loaded = base_in_architecture(dir, &manifest, device)?;
    if let Some(lora) = &manifest.lora {
        let config = loaded.model.config.clone();
        let mut zeros = HashMap::new();
        for layer in manifest.split.private_range() {
            for &target in &lora.targets {
                let (inp, out) = target.dims(&config);
                let (a, b) = lora_names(layer, target);
                zeros.insert(a, Tensor::zeros((lora.rank, inp), DType::F32, device)?);
                zeros.insert(b, Tensor::zeros((out, lora.rank), DType::F32, device)?);
            }
        }
        let range = manifest.split.private_range();
        load_lora(&mut loaded.model, range, &lora.targets, lora.alpha, &zeros)?;
    }
    Ok(Checkpoint {
        loaded,
        manifest,
        private: Vec::new(),
    })
}

pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let (manifest, tensors) = read_checkpoint(dir)?;
    let mut private = Vec::with_capacity(tensors.len());
    let mut loaded = base_in_architecture(dir, &manifest, device)?;
    let model = &mut loaded.model;
    for (name, tensor) in &tensors {
        let tensor = tensor.to_device(device)?;
        let kind = PrivateTensor::parse(name)?;
        private.push(kind);
        match kind {
            PrivateTensor::Lora { .. } => {} // attached below, by pairs
            PrivateTensor::Projection { layer, target } => {
                projection_mut(model, layer, target).weight = tensor;
            }
            PrivateTensor::Norm { layer, norm } => {
                let l = &mut model.layers[layer];
                let n = match norm {
                    LayerNorm::Input => &mut l.input_norm,
                    LayerNorm::PostAttention => &mut l.post_attention_norm,
                };
                n.weight = tensor;
            }
            PrivateTensor::FinalNorm => model.norm.weight = tensor,
            PrivateTensor::Head => model.lm_head.weight = tensor,
        }
    }
    if let Some(lora) = &manifest.lora {
        let range = manifest.split.private_range();
        load_lora(model, range, &lora.targets, lora.alpha, &tensors)?;
    }
    Ok(Checkpoint {
        loaded,
        manifest,
        private,
    })
}
