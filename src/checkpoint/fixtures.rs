//! Tiny checkpoints for the tests: `LlamaConfig::tiny()` (4 layers, 6 heads over 2 KV heads).

use super::io::write_checkpoint;
use super::manifest::{
    Approximations, BaseModel, CheckpointKind, FORMAT_VERSION, HeadMerge, LoraInfo, Manifest,
    Provenance, Split, TaskInfo,
};
use super::tensor_name::{LoraFactor, PrivateTensor};
use crate::data::{PromptFormat, TaskKind};
use crate::model::LlamaConfig;
use crate::model::lora_target::LoraTarget;
use anyhow::Result;
use candle_core::{Device, Tensor};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const BASE_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

/// A student: layers 0..2 public, LoRA rank 4 on q and v of layers 2..4, heads merged by 3.
pub fn student() -> Manifest {
    let config = LlamaConfig::tiny();
    let split = Split {
        public_layers: 2,
        num_layers: config.num_hidden_layers,
    };
    Manifest {
        format_version: FORMAT_VERSION,
        kind: CheckpointKind::Student,
        head_merge: HeadMerge::uniform(3, &config, &split),
        base: BaseModel {
            source: "checkpoints/base/tiny.gguf".into(),
            sha256: BASE_SHA256.into(),
            config,
        },
        split,
        lora: Some(LoraInfo {
            rank: 4,
            alpha: 8.0,
            targets: vec![LoraTarget::Q, LoraTarget::V],
        }),
        approximations: Approximations::default(),
        task: TaskInfo {
            name: TaskKind::Sst2,
            format: PromptFormat::Plain,
            max_len: 64,
            max_new_tokens: None,
        },
        training: Provenance {
            recipe_sha256: "ab".repeat(32),
            metrics: serde_json::json!({"validation_accuracy": 0.9}),
        },
    }
}

/// Random LoRA factors for every private layer and target of `manifest`.
pub fn lora_tensors(manifest: &Manifest) -> HashMap<String, Tensor> {
    let lora = manifest.lora.as_ref().expect("fixture has LoRA");
    let mut tensors = HashMap::new();
    for layer in manifest.split.private_range() {
        for &target in &lora.targets {
            let (fan_in, fan_out) = target.dims(&manifest.base.config);
            for (factor, shape) in [
                (LoraFactor::A, (lora.rank, fan_in)),
                (LoraFactor::B, (fan_out, lora.rank)),
            ] {
                let name = PrivateTensor::Lora {
                    layer,
                    target,
                    factor,
                }
                .name();
                tensors.insert(name, random(shape));
            }
        }
    }
    tensors
}

pub fn random(shape: impl Into<candle_core::Shape>) -> Tensor {
    Tensor::randn(0f32, 1.0, shape, &Device::Cpu).expect("random tensor")
}

/// The fixture student written over a real tiny base model in `dir/base` (so that loaders can
/// open it); returns the checkpoint's directory, `dir/student`.
pub fn student_over_tiny_base(dir: &Path) -> Result<PathBuf> {
    let base = dir.join("base");
    let mut manifest = student();
    crate::model::tiny::write_tiny_model(&base, &manifest.base.config, 1)?;
    manifest.base.source = base.to_string_lossy().into_owned();
    manifest.base.sha256 = BaseModel::weights_sha256(&[base.join("model.safetensors")])?;
    let ckpt = dir.join("student");
    write_checkpoint(&ckpt, &manifest, &lora_tensors(&manifest))?;
    Ok(ckpt)
}

/// Inverts the last `n` bytes of `path`: tensor data, so the file still parses.
pub fn flip_bytes(path: &Path, n: usize) -> Result<()> {
    let mut bytes = std::fs::read(path)?;
    let start = bytes.len() - n;
    bytes[start..].iter_mut().for_each(|b| *b = !*b);
    std::fs::write(path, bytes)?;
    Ok(())
}
