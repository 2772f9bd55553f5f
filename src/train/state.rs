//! A stage's resumable training state: variables, optimizer moments, the best variables so far
//! and counters, written atomically so a killed run resumes from its last save; and the recipe
//! the stage started under (canonical TOML), so that a changed recipe cannot be resumed.

use crate::atomic::{write_atomic, write_json_atomic};
use crate::recipe::{Recipe, RecipeSection};
use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Progress {
    /// Optimizer steps completed.
    pub step: usize,
    pub best_val_accuracy: Option<f64>,
    pub best_step: usize,
    pub done: bool,
}

pub struct StatePaths {
    pub tensors: PathBuf,
    pub progress: PathBuf,
    pub recipe: PathBuf,
}

impl StatePaths {
    pub fn new(run_dir: &Path, stage: &str) -> Self {
        let dir = run_dir.join("state");
        StatePaths {
            tensors: dir.join(format!("{stage}.safetensors")),
            progress: dir.join(format!("{stage}.json")),
            recipe: dir.join(format!("{stage}.recipe.toml")),
        }
    }

    /// Records the recipe a stage starts under (its state is about to be written afresh).
    pub fn record_recipe(&self, recipe: &Recipe) -> Result<()> {
        write_atomic(&self.recipe, recipe.canonical_toml()?.as_bytes())
    }

    /// Refuses to resume under a recipe whose `sections` (those the stage depends on) differ
    /// from the recorded one. A state saved before recipes were recorded cannot be checked; it
    /// is taken as it is and the recipe recorded now.
    pub fn check_recipe(&self, recipe: &Recipe, sections: &[RecipeSection]) -> Result<()> {
        if !self.recipe.is_file() {
            return self.record_recipe(recipe);
        }
        let text = std::fs::read_to_string(&self.recipe)
            .with_context(|| format!("{}: cannot read", self.recipe.display()))?;
        let recorded = Recipe::parse(&text, &self.recipe)?;
        let changed: Vec<String> = recorded
            .differing_sections(recipe)
            .into_iter()
            .filter(|s| sections.contains(s))
            .map(|s| format!("[{}]", s.name()))
            .collect();
        if !changed.is_empty() {
            bail!(
                "{}: cannot resume: {} changed since this stage's state was saved (its recipe is \
                 {}); restore it, or train without --resume to start over",
                recipe.path().display(),
                changed.join(", "),
                self.recipe.display()
            );
        }
        Ok(())
    }

    pub fn exists(&self) -> bool {
        self.progress.is_file() && self.tensors.is_file()
    }

    /// Tensors first, then the progress that refers to them. Both are replaced atomically; the
    /// tensors carry their step, so a crash between the two renames is detected on load.
    pub fn save(&self, progress: &Progress, tensors: &HashMap<String, Tensor>) -> Result<()> {
        let tmp = self.tensors.with_extension("safetensors.partial");
        if let Some(dir) = tmp.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut tensors = tensors.clone();
        tensors.insert(
            "progress.step".into(),
            Tensor::new(&[progress.step as u32], &candle_core::Device::Cpu)?,
        );
        candle_core::safetensors::save(&tensors, &tmp)?;
        std::fs::rename(&tmp, &self.tensors)?;
        write_json_atomic(&self.progress, progress)
    }

    pub fn load(&self) -> Result<(Progress, HashMap<String, Tensor>)> {
        let text = std::fs::read_to_string(&self.progress)
            .with_context(|| format!("{}: cannot read", self.progress.display()))?;
        let progress: Progress = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a training state", self.progress.display()))?;
        let mut tensors = candle_core::safetensors::load(&self.tensors, &candle_core::Device::Cpu)
            .map_err(|e| anyhow::anyhow!("{}: {e}", self.tensors.display()))?;
        let step = tensors
            .remove("progress.step")
            .and_then(|t| t.to_vec1::<u32>().ok())
            .and_then(|v| v.first().copied());
        anyhow::ensure!(
            step == Some(progress.step as u32),
            "{}: tensors are from another step than {}",
            self.tensors.display(),
            self.progress.display()
        );
        Ok((progress, tensors))
    }
}

/// Appends one JSON object a line to the run's metrics log.
pub fn log_metrics(path: &Path, value: &serde_json::Value) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(file, "{value}")?;
    Ok(())
}
