//! `manifest.json`: everything public about a split checkpoint (base model identity, split, LoRA,
//! head-merge groups, approximations, task, provenance), and its consistency checks.

use crate::data::{PromptFormat, TaskKind};
use crate::model::LlamaConfig;
use crate::model::attention::AttentionLayout;
use crate::model::lora_target::LoraTarget;
use crate::model::marill::{check_head_merge, check_lora_rank};
use crate::model::source::{hex, sha256_file};
use crate::model::variants::{Activation, SoftmaxKind};
use anyhow::{Error, Result, anyhow, bail, ensure};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::ops::Range;
use std::path::PathBuf;

/// The manifest layout this marill writes and reads.
/// Version 2 added `private_sha256`, which a version-1 manifest lacks.
pub const FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub kind: CheckpointKind,
    pub base: BaseModel,
    pub split: Split,
    /// `None` when no LoRA factors are kept (a teacher whose LoRA was merged into its weights).
    pub lora: Option<LoraInfo>,
    pub head_merge: HeadMerge,
    pub approximations: Approximations,
    pub task: TaskInfo,
    pub training: Provenance,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckpointKind {
    /// Standard fine-tuning: every layer private.
    Teacher,
    /// The MARILL model: public bottom layers, the rest private.
    Student,
}

impl CheckpointKind {
    pub fn name(self) -> &'static str {
        match self {
            CheckpointKind::Teacher => "teacher",
            CheckpointKind::Student => "student",
        }
    }
}

/// The public model the private tensors apply to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaseModel {
    /// The `--model` string it was loaded from.
    pub source: String,
    /// See [`BaseModel::weights_sha256`].
    pub sha256: String,
    pub config: LlamaConfig,
}

impl BaseModel {
    /// The identity of a base model's weights: the hex sha256 of its weight file, or, for a model
    /// in several files, the sha256 of their hex digests concatenated in sorted path order.
    pub fn weights_sha256(files: &[PathBuf]) -> Result<String> {
        match files {
            [] => bail!("a base model needs at least one weight file"),
            [single] => sha256_file(single),
            several => {
                let mut sorted: Vec<&PathBuf> = several.iter().collect();
                sorted.sort();
                let mut hasher = Sha256::new();
                for file in sorted {
                    hasher.update(sha256_file(file)?.as_bytes());
                }
                Ok(hex(&hasher.finalize()))
            }
        }
    }
}

/// Layers `0..public_layers` are public (the client runs them in plaintext), the rest private.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    pub public_layers: usize,
    pub num_layers: usize,
}

impl Split {
    pub fn public_range(&self) -> Range<usize> {
        0..self.public_layers
    }

    pub fn private_range(&self) -> Range<usize> {
        self.public_layers..self.num_layers
    }

    pub fn is_private(&self, layer: usize) -> bool {
        self.private_range().contains(&layer)
    }
}

/// The unmerged LoRA of the private layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoraInfo {
    pub rank: usize,
    pub alpha: f64,
    pub targets: Vec<LoraTarget>,
}

/// Head merging in the private layers: `groups[j]` lists, for private layer `k + j`, each merged
/// head as the original query head indices it concatenates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadMerge {
    pub factor: usize,
    pub groups: Vec<Vec<Vec<usize>>>,
}

impl HeadMerge {
    /// Every private layer merging runs of `factor` consecutive query heads, as
    /// [`AttentionLayout::merged`] does (`factor = 1`: every head alone).
    pub fn uniform(factor: usize, config: &LlamaConfig, split: &Split) -> HeadMerge {
        let layout = AttentionLayout::merged(
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim(),
            factor,
        );
        HeadMerge {
            factor,
            groups: vec![layout.groups(); split.private_range().len()],
        }
    }
}

/// The non-linearities of the private layers (MPCFormer's replacements or the exact ones).
/// Also the `[student.approximations]` section of a recipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Approximations {
    pub activation: Activation,
    pub softmax: SoftmaxKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskInfo {
    pub name: TaskKind,
    pub format: PromptFormat,
    pub max_len: usize,
    /// Generation tasks: the longest training answer with its end token, in tokens — the
    /// decoding budget `eval` and `generate` default to (what follows an answer can only spoil
    /// its final number). Absent for choice tasks and in checkpoints written before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_new_tokens: Option<usize>,
}

impl TaskInfo {
    /// Whether a model trained for this task can answer `task`: a classification checkpoint
    /// scores a choice's first token, a generation one writes its answer and stops, so neither
    /// serves the other kind of task.
    pub fn check_serves(&self, task: TaskKind) -> Result<()> {
        let kind = |t: TaskKind| {
            if t.is_generation() {
                "generation"
            } else {
                "classification"
            }
        };
        ensure!(
            self.name.is_generation() == task.is_generation(),
            "trained for {} ({}), cannot evaluate {task} ({})",
            self.name,
            kind(self.name),
            kind(task)
        );
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub recipe_sha256: String,
    /// Whatever the trainer measured (losses, validation accuracy), as it reported it.
    pub metrics: serde_json::Value,
}

impl Manifest {
    /// Internal consistency, against the architecture the manifest records: the split fits it, a
    /// teacher keeps every layer private, the head merging is one a recipe can have, the LoRA
    /// rank fits every targeted projection, the task's length fits the positions. Every size a
    /// loader allocates or indexes from the manifest is bounded here; [`Manifest::check_base`]
    /// then ties the recorded architecture to the actual base model.
    pub fn validate(&self) -> Result<()> {
        ensure!(
            self.format_version == FORMAT_VERSION,
            "format_version {} (this marill reads version {FORMAT_VERSION})",
            self.format_version
        );
        let config = &self.base.config;
        config
            .validate()
            .map_err(|e| anyhow!("base.config: {e:#}"))?;
        let split = &self.split;
        ensure!(
            split.num_layers == config.num_hidden_layers,
            "split.num_layers {} differs from the config's {} layers",
            split.num_layers,
            config.num_hidden_layers
        );
        ensure!(
            split.public_layers < split.num_layers,
            "split.public_layers {} leaves no private layer of {}",
            split.public_layers,
            split.num_layers
        );
        ensure!(
            self.kind == CheckpointKind::Student || split.public_layers == 0,
            "a teacher checkpoint keeps every layer private, but split.public_layers is {}",
            split.public_layers
        );
        self.check_head_merge()?;
        if let Some(lora) = &self.lora {
            ensure!(lora.rank >= 1, "lora.rank must be at least 1");
            check_lora_rank("lora.rank", lora.rank, &lora.targets, config).map_err(Error::msg)?;
            ensure!(
                lora.alpha.is_finite() && lora.alpha > 0.0,
                "lora.alpha {} must be a positive number",
                lora.alpha
            );
            ensure!(!lora.targets.is_empty(), "lora.targets is empty");
            if let Some(twice) = LoraTarget::first_repeated(&lora.targets) {
                bail!("lora.targets names \"{}\" twice", twice.short_name());
            }
        }
        let max_len = self.task.max_len;
        ensure!(
            (1..=config.max_position_embeddings).contains(&max_len),
            "task.max_len {max_len} must be in 1..={} (the model's positions)",
            config.max_position_embeddings
        );
        if let Some(new) = self.task.max_new_tokens {
            ensure!(
                self.task.name.is_generation(),
                "task.max_new_tokens is set for {}, a choice task",
                self.task.name
            );
            ensure!(
                (1..config.max_position_embeddings).contains(&new),
                "task.max_new_tokens {new} must be in 1..{} (the model's positions)",
                config.max_position_embeddings
            );
        }
        Ok(())
    }

    /// The base model actually loaded is the architecture the manifest describes (and so what
    /// [`Manifest::validate`] checked every size against). Call before building anything.
    pub fn check_base(&self, base: &LlamaConfig) -> Result<()> {
        ensure!(
            self.split.num_layers == base.num_hidden_layers,
            "split claims {} layers but the base model has {}",
            self.split.num_layers,
            base.num_hidden_layers
        );
        if &self.base.config == base {
            return Ok(());
        }
        // Name the fields that differ, by their manifest names.
        let (recorded, actual) = (
            serde_json::to_value(&self.base.config)?,
            serde_json::to_value(base)?,
        );
        let differences: Vec<String> = match (recorded, actual) {
            (Value::Object(recorded), Value::Object(actual)) => recorded
                .iter()
                .filter(|(field, value)| actual.get(*field) != Some(value))
                .map(|(field, value)| {
                    let theirs = actual.get(field).unwrap_or(&Value::Null);
                    format!("base.config.{field} is {value} but the base model's is {theirs}")
                })
                .collect(),
            _ => Vec::new(),
        };
        ensure!(
            !differences.is_empty(),
            "base.config differs from the base model's architecture"
        );
        bail!("{}", differences.join("; "))
    }

    /// The factor is one the base's heads and KV groups allow, and the groups are the runs of
    /// `factor` consecutive heads that the loader builds ([`AttentionLayout::merged`]): any other
    /// partition would be recorded but not run. Lengths are checked before anything is walked,
    /// so a hostile head count never sizes a loop or an allocation.
    fn check_head_merge(&self) -> Result<()> {
        let merge = &self.head_merge;
        let config = &self.base.config;
        check_head_merge("head_merge.factor", merge.factor, config).map_err(Error::msg)?;
        let private = self.split.private_range();
        ensure!(
            merge.groups.len() == private.len(),
            "head_merge.groups has {} layers, expected one per private layer ({})",
            merge.groups.len(),
            private.len()
        );
        let merged_heads = config.num_attention_heads / merge.factor;
        for (layer, groups) in private.zip(&merge.groups) {
            ensure!(
                groups.len() == merged_heads,
                "head_merge.groups of layer {layer} has {} merged heads, expected {merged_heads}",
                groups.len()
            );
            for (j, group) in groups.iter().enumerate() {
                let first = j * merge.factor;
                ensure!(
                    group.iter().copied().eq(first..first + merge.factor),
                    "head_merge.groups of layer {layer}: merged head {j} is {group:?}, expected \
                     heads {first}..{} (runs of {} consecutive heads)",
                    first + merge.factor,
                    merge.factor
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_serves_only_its_kind_of_task() {
        let trained = |name| TaskInfo {
            name,
            format: PromptFormat::Plain,
            max_len: 64,
            max_new_tokens: None,
        };
        let classifier = trained(TaskKind::Sst2);
        classifier.check_serves(TaskKind::Rte).unwrap();
        let message = classifier
            .check_serves(TaskKind::ArithmeticGen)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            "trained for sst2 (classification), cannot evaluate arithmetic-gen (generation)"
        );
        let generator = trained(TaskKind::ArithmeticGen);
        generator.check_serves(TaskKind::Gsm8k).unwrap();
        assert!(generator.check_serves(TaskKind::Arithmetic).is_err());
    }

    #[test]
    fn a_decoding_budget_belongs_to_a_generation_task_and_fits_the_positions() {
        let mut m = crate::checkpoint::fixtures::student();
        m.task.max_new_tokens = Some(4);
        let message = m.validate().unwrap_err().to_string();
        assert!(message.contains("a choice task"), "{message}");
        m.task.name = TaskKind::ArithmeticGen;
        m.validate().unwrap();
        for bad in [0, m.base.config.max_position_embeddings] {
            m.task.max_new_tokens = Some(bad);
            let message = m.validate().unwrap_err().to_string();
            assert!(message.contains("task.max_new_tokens"), "{message}");
        }
        // Absent (a choice task, or a checkpoint written before the field): not in the JSON.
        m.task.max_new_tokens = None;
        let json = serde_json::to_string(&m).unwrap();
        assert!(!json.contains("max_new_tokens"), "{json}");
    }
}
