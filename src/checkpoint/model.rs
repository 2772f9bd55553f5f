//! A split checkpoint as a runnable model: the public base model, verified against the
//! manifest, with the private tensors and the MARILL architecture applied.

use super::io::{read_checkpoint, verify_base};
use super::manifest::{BaseModel, Manifest};
use super::tensor_name::{LayerNorm, PrivateTensor};
use crate::model::marill::{MarillArch, load_lora, projection_mut};
use crate::model::{LoadedModel, ModelSource, load};
use anyhow::{Context, Result};
use candle_core::Device;
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

pub fn load_checkpoint(dir: &Path, device: &Device) -> Result<Checkpoint> {
    let (manifest, tensors) = read_checkpoint(dir)?;
    let mut private = Vec::with_capacity(tensors.len());
    let source = ModelSource::parse(&manifest.base.source)
        .with_context(|| format!("{}: base model", dir.display()))?;
    let mut loaded = load(&source, device)?;
    verify_base(&manifest, &BaseModel::weights_sha256(&loaded.weight_files)?)
        .with_context(|| format!("{}", dir.display()))?;
    let model = &mut loaded.model;
    MarillArch {
        public_layers: manifest.split.public_layers,
        head_merge: manifest.head_merge.factor,
        activation: manifest.approximations.activation,
        softmax: manifest.approximations.softmax,
    }
    .apply(model)?;
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
