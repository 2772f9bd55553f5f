//! What `marill inspect CHECKPOINT` prints: the public configuration and how many parameters the
//! server keeps secret, by kind.

use super::manifest::{CheckpointKind, Manifest};
use super::tensor_name::{PrivateTensor, TensorKind};
use anyhow::Result;
use candle_core::Tensor;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt;

/// Elements of `private.safetensors`, by what they are.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PrivateParameters {
    pub lora_factors: usize,
    pub full_weights: usize,
    pub norms: usize,
    pub head: usize,
}

impl PrivateParameters {
    pub fn count(tensors: &HashMap<String, Tensor>) -> Result<PrivateParameters> {
        let mut counts = PrivateParameters::default();
        for (name, tensor) in tensors {
            let slot = match PrivateTensor::parse(name)?.kind() {
                TensorKind::LoraFactor => &mut counts.lora_factors,
                TensorKind::FullWeight => &mut counts.full_weights,
                TensorKind::Norm => &mut counts.norms,
                TensorKind::Head => &mut counts.head,
            };
            *slot += tensor.elem_count();
        }
        Ok(counts)
    }

    pub fn total(&self) -> usize {
        self.lora_factors + self.full_weights + self.norms + self.head
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointSummary {
    pub manifest: Manifest,
    pub private_parameters: PrivateParameters,
}

impl CheckpointSummary {
    pub fn new(manifest: &Manifest, tensors: &HashMap<String, Tensor>) -> Result<Self> {
        Ok(CheckpointSummary {
            manifest: manifest.clone(),
            private_parameters: PrivateParameters::count(tensors)?,
        })
    }
}

/// The name a value has in manifests and recipes (`"exact"`, `"2quad"`, `"sst2"`).
fn serde_name(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(e) => format!("<{e}>"),
    }
}

impl fmt::Display for CheckpointSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.manifest;
        let c = &m.base.config;
        let (public, private) = (m.split.public_range(), m.split.private_range());
        writeln!(f, "kind: {}", m.kind.name())?;
        writeln!(f, "base: {} (sha256 {})", m.base.source, m.base.sha256)?;
        writeln!(
            f,
            "architecture: {} layers, hidden {}, {} heads / {} kv heads, ffn {}, vocab {}",
            c.num_hidden_layers,
            c.hidden_size,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.intermediate_size,
            c.vocab_size
        )?;
        writeln!(
            f,
            "public layers: {}..{} ({}, base weights, run by the client in plaintext)",
            public.start,
            public.end,
            public.len()
        )?;
        writeln!(
            f,
            "private layers: {}..{} ({}, run under MPC)",
            private.start,
            private.end,
            private.len()
        )?;
        match &m.lora {
            Some(lora) => writeln!(
                f,
                "lora: rank {}, alpha {}, targets {}",
                lora.rank,
                lora.alpha,
                lora.targets
                    .iter()
                    .map(|t| t.short_name())
                    .collect::<Vec<_>>()
                    .join(", ")
            )?,
            None if m.kind == CheckpointKind::Teacher => writeln!(f, "lora: none (merged)")?,
            None => writeln!(f, "lora: none")?,
        }
        writeln!(
            f,
            "head merge: factor {} ({} softmax heads per private layer instead of {})",
            m.head_merge.factor,
            c.num_attention_heads / m.head_merge.factor.max(1),
            c.num_attention_heads
        )?;
        writeln!(
            f,
            "approximations: activation {}, softmax {}",
            serde_name(&m.approximations.activation),
            serde_name(&m.approximations.softmax)
        )?;
        writeln!(
            f,
            "task: {}, {} prompts, max_len {}",
            m.task.name,
            serde_name(&m.task.format),
            m.task.max_len
        )?;
        let p = &self.private_parameters;
        writeln!(
            f,
            "private parameters: {} (lora factors {}, full weights {}, norms {}, head {})",
            p.total(),
            p.lora_factors,
            p.full_weights,
            p.norms,
            p.head
        )?;
        writeln!(f, "recipe sha256: {}", m.training.recipe_sha256)?;
        write!(f, "metrics: {}", m.training.metrics)
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{lora_tensors, random, student};
    use super::*;

    #[test]
    fn counts_private_parameters_by_kind() -> Result<()> {
        let manifest = student();
        let mut tensors = lora_tensors(&manifest);
        tensors.insert("model.norm.weight".into(), random(48));
        tensors.insert("lm_head.weight".into(), random((320, 48)));
        tensors.insert(
            "model.layers.3.mlp.down_proj.weight".into(),
            random((48, 96)),
        );
        let summary = CheckpointSummary::new(&manifest, &tensors)?;
        // Two private layers × (q: 4·48 + 48·4, v: 4·48 + 16·4).
        let lora = 2 * ((4 * 48 + 48 * 4) + (4 * 48 + 16 * 4));
        assert_eq!(
            summary.private_parameters,
            PrivateParameters {
                lora_factors: lora,
                full_weights: 48 * 96,
                norms: 48,
                head: 320 * 48,
            }
        );
        let text = summary.to_string();
        for line in [
            "kind: student",
            "base: checkpoints/base/tiny.gguf (sha256 b179c952",
            "public layers: 0..2 (2,",
            "private layers: 2..4 (2,",
            "lora: rank 4, alpha 8, targets q, v",
            "head merge: factor 3 (2 softmax heads per private layer instead of 6)",
            "approximations: activation exact, softmax exact",
            "task: sst2, plain prompts, max_len 64",
            &format!("private parameters: {}", lora + 48 * 96 + 48 + 320 * 48),
        ] {
            assert!(text.contains(line), "`{line}` missing from:\n{text}");
        }
        Ok(())
    }
}
