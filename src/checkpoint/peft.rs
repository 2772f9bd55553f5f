//! Export of a checkpoint's LoRA as a Hugging Face PEFT adapter directory
//! (`adapter_config.json` + `adapter_model.safetensors`), loadable with
//! `PeftModel.from_pretrained(base, dir)`.

use super::atomic_dir::replace_dir;
use super::io::save_tensors;
use super::manifest::{Approximations, LoraInfo, Manifest};
use super::tensor_name::{PrivateTensor, TensorKind, check_tensors};
use crate::atomic::write_json_atomic;
use anyhow::{Result, anyhow, bail, ensure};
use candle_core::Tensor;
use serde_json::json;
use std::collections::HashMap;
use std::path::Path;

pub const ADAPTER_CONFIG_FILE: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS_FILE: &str = "adapter_model.safetensors";

/// PEFT prefixes the Hugging Face names with the wrapper modules of a `PeftModelForCausalLM`.
const PEFT_PREFIX: &str = "base_model.model.";

/// Writes `dir` atomically as a PEFT LoRA adapter of the checkpoint's private layers.
///
/// Only a plain LoRA checkpoint can be expressed this way: PEFT applies the adapter to the
/// standard architecture, so head merging, approximations or tuned full tensors (which an adapter
/// cannot carry) would silently give a different model; they are refused.
pub fn write_peft_adapter(
    dir: &Path,
    manifest: &Manifest,
    tensors: &HashMap<String, Tensor>,
) -> Result<()> {
    let refuse = |e: anyhow::Error| anyhow!("{}: no PEFT adapter written: {e}", dir.display());
    let lora = exportable_lora(manifest, tensors).map_err(refuse)?;
    let config = json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": manifest.base.source,
        "r": lora.rank,
        "lora_alpha": lora.alpha,
        "lora_dropout": 0.0,
        "target_modules": lora.targets.iter().map(|t| t.peft_name()).collect::<Vec<_>>(),
        "layers_to_transform": manifest.split.private_range().collect::<Vec<_>>(),
        "layers_pattern": "layers",
        "bias": "none",
        "fan_in_fan_out": false,
        "inference_mode": true,
        "modules_to_save": null,
        "init_lora_weights": true,
        "use_rslora": false,
        "use_dora": false,
    });
    let renamed: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(name, tensor)| (format!("{PEFT_PREFIX}{name}"), tensor.clone()))
        .collect();
    replace_dir(dir, ADAPTER_CONFIG_FILE, |staging| {
        save_tensors(&staging.join(ADAPTER_WEIGHTS_FILE), &renamed)?;
        write_json_atomic(&staging.join(ADAPTER_CONFIG_FILE), &config)
    })
}

/// The checkpoint's LoRA, if the checkpoint is nothing but a LoRA on the standard architecture.
fn exportable_lora<'m>(
    manifest: &'m Manifest,
    tensors: &HashMap<String, Tensor>,
) -> Result<&'m LoraInfo> {
    let Some(lora) = &manifest.lora else {
        bail!(
            "the {} checkpoint keeps no LoRA factors (its LoRA was merged or it was fully \
             fine-tuned)",
            manifest.kind.name()
        );
    };
    ensure!(
        manifest.head_merge.factor == 1,
        "the checkpoint merges attention heads (factor {}), which PEFT cannot express",
        manifest.head_merge.factor
    );
    ensure!(
        manifest.approximations == Approximations::default(),
        "the checkpoint uses approximated non-linearities ({:?}), which PEFT cannot express",
        manifest.approximations
    );
    check_tensors(manifest, tensors)?;
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    for name in names {
        if PrivateTensor::parse(name)?.kind() != TensorKind::LoraFactor {
            bail!("`{name}` is not a LoRA factor, and a LoRA adapter carries nothing else");
        }
    }
    Ok(lora)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{lora_tensors, random, student};
    use super::super::manifest::HeadMerge;
    use super::*;

    #[test]
    fn writes_peft_names_and_config() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let adapter = dir.path().join("adapter");
        let manifest = plain_lora_student();
        let tensors = lora_tensors(&manifest);
        write_peft_adapter(&adapter, &manifest, &tensors)?;

        let config: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(adapter.join(ADAPTER_CONFIG_FILE))?)?;
        assert_eq!(config["peft_type"], "LORA");
        assert_eq!(config["task_type"], "CAUSAL_LM");
        assert_eq!(config["r"], 4);
        assert_eq!(config["lora_alpha"], 8.0);
        assert_eq!(
            config["target_modules"],
            serde_json::json!(["q_proj", "v_proj"])
        );
        assert_eq!(config["layers_to_transform"], serde_json::json!([2, 3]));
        assert_eq!(
            config["base_model_name_or_path"],
            "checkpoints/base/tiny.gguf"
        );
        assert_eq!(config["bias"], "none");
        assert_eq!(config["fan_in_fan_out"], false);
        assert_eq!(config["inference_mode"], true);

        let written = candle_core::safetensors::load(
            adapter.join(ADAPTER_WEIGHTS_FILE),
            &candle_core::Device::Cpu,
        )?;
        assert_eq!(written.len(), tensors.len());
        let a = &written["base_model.model.model.layers.2.self_attn.q_proj.lora_A.weight"];
        let b = &written["base_model.model.model.layers.3.self_attn.v_proj.lora_B.weight"];
        assert_eq!((a.dims(), b.dims()), (&[4, 48][..], &[16, 4][..]));
        Ok(())
    }

    /// The fixture student without head merging: a plain LoRA model PEFT can express.
    fn plain_lora_student() -> Manifest {
        let mut manifest = student();
        manifest.head_merge = HeadMerge::uniform(1, &manifest.base.config, &manifest.split);
        manifest
    }

    #[test]
    fn refuses_what_peft_cannot_express() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let adapter = dir.path().join("adapter");
        let error = |manifest: &Manifest, tensors: &HashMap<String, Tensor>| {
            let text = format!(
                "{:#}",
                write_peft_adapter(&adapter, manifest, tensors).unwrap_err()
            );
            assert!(!adapter.exists());
            text
        };
        let merged_heads = student();
        let tensors = lora_tensors(&merged_heads);
        assert!(error(&merged_heads, &tensors).contains("merges attention heads (factor 3)"));

        let mut no_lora = plain_lora_student();
        no_lora.lora = None;
        assert!(error(&no_lora, &HashMap::new()).contains("keeps no LoRA factors"));

        let plain = plain_lora_student();
        let mut with_norm = lora_tensors(&plain);
        with_norm.insert("model.norm.weight".into(), random(48));
        assert!(error(&plain, &with_norm).contains("`model.norm.weight` is not a LoRA factor"));
        Ok(())
    }
}
