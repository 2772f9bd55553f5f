//! The tensors a split checkpoint may hold, by their Hugging Face names, and the rule that only
//! private layers (and the final norm / head) carry private data.

use super::manifest::Manifest;
use crate::model::lora_target::LoraTarget;
use anyhow::{Result, bail, ensure};
use candle_core::{DType, Tensor};
use std::collections::HashMap;

/// `A` maps the input down to the rank, `B` maps it back up: `ΔW = (α/r)·Bᵀ·Aᵀ` in `x·W` form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoraFactor {
    /// Shape `(rank, in)`.
    A,
    /// Shape `(out, rank)`.
    B,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LayerNorm {
    Input,
    PostAttention,
}

impl LayerNorm {
    fn module(self) -> &'static str {
        match self {
            LayerNorm::Input => "input_layernorm",
            LayerNorm::PostAttention => "post_attention_layernorm",
        }
    }
}

/// One tensor of `private.safetensors`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrivateTensor {
    /// `model.layers.{i}.self_attn.q_proj.lora_A.weight`
    Lora {
        layer: usize,
        target: LoraTarget,
        factor: LoraFactor,
    },
    /// `model.layers.{i}.self_attn.q_proj.weight`, a whole tuned projection.
    Projection { layer: usize, target: LoraTarget },
    /// `model.layers.{i}.input_layernorm.weight`
    Norm { layer: usize, norm: LayerNorm },
    /// `model.norm.weight`
    FinalNorm,
    /// `lm_head.weight`
    Head,
}

/// What the private parameters are, for the summary's breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TensorKind {
    LoraFactor,
    FullWeight,
    Norm,
    Head,
}

const LAYER_PREFIX: &str = "model.layers.";
const FINAL_NORM: &str = "model.norm.weight";
const HEAD: &str = "lm_head.weight";

impl PrivateTensor {
    /// The Hugging Face name.
    pub fn name(&self) -> String {
        match *self {
            PrivateTensor::Lora {
                layer,
                target,
                factor,
            } => {
                // One naming for the trainer's variables and the checkpoint: the model's.
                let (a, b) = crate::model::marill::lora_names(layer, target);
                match factor {
                    LoraFactor::A => a,
                    LoraFactor::B => b,
                }
            }
            PrivateTensor::Projection { layer, target } => {
                format!("{LAYER_PREFIX}{layer}.{}.weight", target.module())
            }
            PrivateTensor::Norm { layer, norm } => {
                format!("{LAYER_PREFIX}{layer}.{}.weight", norm.module())
            }
            PrivateTensor::FinalNorm => FINAL_NORM.to_string(),
            PrivateTensor::Head => HEAD.to_string(),
        }
    }

    /// Recognises a name this format allows; the error says why another one is not.
    pub fn parse(name: &str) -> Result<PrivateTensor> {
        match name {
            FINAL_NORM => return Ok(PrivateTensor::FinalNorm),
            HEAD => return Ok(PrivateTensor::Head),
            "model.embed_tokens.weight" => {
                bail!("`{name}`: the embedding is public (the client embeds its own prompt)")
            }
            _ => {}
        }
        let unknown = || anyhow::anyhow!("`{name}` is not a tensor a split checkpoint holds");
        let rest = name.strip_prefix(LAYER_PREFIX).ok_or_else(unknown)?;
        let (index, module) = rest.split_once('.').ok_or_else(unknown)?;
        let layer: usize = index.parse().map_err(|_| unknown())?;
        let module = module.strip_suffix(".weight").ok_or_else(unknown)?;
        for norm in [LayerNorm::Input, LayerNorm::PostAttention] {
            if module == norm.module() {
                return Ok(PrivateTensor::Norm { layer, norm });
            }
        }
        for target in LoraTarget::ALL {
            let Some(suffix) = module.strip_prefix(target.module()) else {
                continue;
            };
            return match suffix {
                "" => Ok(PrivateTensor::Projection { layer, target }),
                ".lora_A" => Ok(PrivateTensor::Lora {
                    layer,
                    target,
                    factor: LoraFactor::A,
                }),
                ".lora_B" => Ok(PrivateTensor::Lora {
                    layer,
                    target,
                    factor: LoraFactor::B,
                }),
                _ => Err(unknown()),
            };
        }
        Err(unknown())
    }

    pub fn layer(&self) -> Option<usize> {
        match *self {
            PrivateTensor::Lora { layer, .. }
            | PrivateTensor::Projection { layer, .. }
            | PrivateTensor::Norm { layer, .. } => Some(layer),
            PrivateTensor::FinalNorm | PrivateTensor::Head => None,
        }
    }

    pub fn kind(&self) -> TensorKind {
        match self {
            PrivateTensor::Lora { .. } => TensorKind::LoraFactor,
            PrivateTensor::Projection { .. } => TensorKind::FullWeight,
            PrivateTensor::Norm { .. } | PrivateTensor::FinalNorm => TensorKind::Norm,
            PrivateTensor::Head => TensorKind::Head,
        }
    }

    /// The shape this tensor must have under `manifest`, or why it may not appear at all.
    fn expected_shape(&self, manifest: &Manifest) -> Result<Vec<usize>> {
        let config = &manifest.base.config;
        if let Some(layer) = self.layer() {
            let split = &manifest.split;
            ensure!(
                layer < split.num_layers,
                "the model has no layer {layer} (it has {})",
                split.num_layers
            );
            ensure!(
                split.is_private(layer),
                "layer {layer} is public (layers 0..{} carry no private data)",
                split.public_layers
            );
        }
        Ok(match *self {
            PrivateTensor::Lora { target, factor, .. } => {
                let Some(lora) = &manifest.lora else {
                    bail!("a LoRA factor, but the manifest has no LoRA");
                };
                ensure!(
                    lora.targets.contains(&target),
                    "LoRA target `{}` is not among the manifest's targets",
                    target.short_name()
                );
                let (fan_in, fan_out) = target.dims(config);
                match factor {
                    LoraFactor::A => vec![lora.rank, fan_in],
                    LoraFactor::B => vec![fan_out, lora.rank],
                }
            }
            PrivateTensor::Projection { target, .. } => {
                let (fan_in, fan_out) = target.dims(config);
                vec![fan_out, fan_in]
            }
            PrivateTensor::Norm { .. } | PrivateTensor::FinalNorm => vec![config.hidden_size],
            PrivateTensor::Head => vec![config.vocab_size, config.hidden_size],
        })
    }
}

/// Every tensor is allowed by `manifest` (name, layer, shape, f32), and LoRA factors come in
/// pairs.
pub fn check_tensors(manifest: &Manifest, tensors: &HashMap<String, Tensor>) -> Result<()> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        let tensor = PrivateTensor::parse(name)?;
        let shape = tensor
            .expected_shape(manifest)
            .map_err(|e| anyhow::anyhow!("`{name}`: {e}"))?;
        ensure!(
            tensors[name].dims() == shape.as_slice(),
            "`{name}` has shape {:?}, expected {shape:?}",
            tensors[name].dims()
        );
        // The model and the MPC encoding read f32; another dtype would fail deep in a forward.
        ensure!(
            tensors[name].dtype() == DType::F32,
            "`{name}` is {}, expected f32",
            tensors[name].dtype().as_str()
        );
        if let PrivateTensor::Lora {
            layer,
            target,
            factor,
        } = tensor
        {
            let partner = PrivateTensor::Lora {
                layer,
                target,
                factor: match factor {
                    LoraFactor::A => LoraFactor::B,
                    LoraFactor::B => LoraFactor::A,
                },
            };
            ensure!(
                tensors.contains_key(&partner.name()),
                "`{name}` has no partner `{}`",
                partner.name()
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_parse() -> Result<()> {
        let mut all = vec![PrivateTensor::FinalNorm, PrivateTensor::Head];
        for target in LoraTarget::ALL {
            all.push(PrivateTensor::Projection { layer: 12, target });
            for factor in [LoraFactor::A, LoraFactor::B] {
                all.push(PrivateTensor::Lora {
                    layer: 3,
                    target,
                    factor,
                });
            }
        }
        for norm in [LayerNorm::Input, LayerNorm::PostAttention] {
            all.push(PrivateTensor::Norm { layer: 29, norm });
        }
        for tensor in all {
            assert_eq!(PrivateTensor::parse(&tensor.name())?, tensor);
        }
        assert_eq!(
            PrivateTensor::Lora {
                layer: 15,
                target: LoraTarget::Q,
                factor: LoraFactor::A
            }
            .name(),
            "model.layers.15.self_attn.q_proj.lora_A.weight"
        );
        Ok(())
    }

    #[test]
    fn foreign_names_are_rejected() {
        for name in [
            "model.embed_tokens.weight",
            "model.layers.x.self_attn.q_proj.weight",
            "model.layers.3.self_attn.q_proj.lora_C.weight",
            "model.layers.3.self_attn.qkv_proj.weight",
            "model.layers.3.self_attn.q_proj.bias",
            "transformer.h.0.attn.weight",
        ] {
            assert!(PrivateTensor::parse(name).is_err(), "{name}");
        }
    }
}
