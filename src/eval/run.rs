//! `marill eval` in plaintext: which rows, which model, and the report.

use super::classify::classify;
use super::execute::Grading;
use super::generate::generate_answers;
use super::report::EvalReport;
use crate::data::PromptFormat;
use crate::data::{Dataset, Example, Split, SplitRatios, TaskKind, load_jsonl};
use crate::model::LoadedModel;
use anyhow::{Result, bail};
use std::path::PathBuf;
use std::time::Instant;

/// Where the evaluated rows come from.
#[derive(Debug, Clone)]
pub enum Rows {
    /// One split of `datasets/<task>/data.jsonl`.
    Split {
        root: PathBuf,
        split: Split,
        seed: u64,
        ratios: SplitRatios,
    },
    /// Every row of a JSONL file in the task's format.
    File(PathBuf),
}

impl Rows {
    /// The rows (the first `limit` of them, if given) and a name for them. No rows is an error:
    /// an accuracy of 0/0 would read as a result.
    pub fn load(&self, task: TaskKind, limit: Option<usize>) -> Result<(Vec<Example>, String)> {
        if limit == Some(0) {
            bail!("--limit must be at least 1");
        }
        let (mut rows, name) = match self {
            Rows::Split {
                root,
                split,
                seed,
                ratios,
            } => {
                let data = Dataset::load(root, task)?;
                let rows: Vec<Example> = data
                    .split(*split, *seed, ratios)
                    .into_iter()
                    .cloned()
                    .collect();
                if rows.is_empty() {
                    bail!(
                        "{}: the {split} split has no rows (the file has {})",
                        Dataset::path(root, task).display(),
                        data.examples.len()
                    );
                }
                (rows, split.to_string())
            }
            Rows::File(path) => (load_jsonl(path, task)?, path.display().to_string()),
        };
        if let Some(limit) = limit {
            rows.truncate(limit);
        }
        Ok((rows, name))
    }
}

pub struct EvalRequest {
    /// How the report names the model (the `--model` argument).
    pub model_name: String,
    pub task: TaskKind,
    /// The rows to evaluate and a name for them (the split or the file).
    pub rows: (Vec<Example>, String),
    pub batch: usize,
    pub max_len: usize,
    pub format: PromptFormat,
    /// Generation tasks: the longest answer.
    pub max_new_tokens: usize,
    /// Whether code answers may be run to grade them.
    pub grading: Grading,
}

pub fn evaluate_plaintext(loaded: &LoadedModel, req: &EvalRequest) -> Result<EvalReport> {
    let (rows, rows_name) = &req.rows;
    let rows: Vec<&Example> = rows.iter().collect();
    let start = Instant::now();
    // A prompt can never be longer than the model has positions.
    let max_len = req.max_len.min(loaded.model.config.max_position_embeddings);
    let (model, tokenizer) = (&loaded.model, &loaded.tokenizer);
    let result = if req.task.is_generation() {
        generate_answers(
            model,
            tokenizer,
            req.format,
            &rows,
            max_len,
            req.max_new_tokens,
            &req.grading,
        )?
    } else {
        classify(model, tokenizer, req.format, &rows, req.batch, max_len)?
    };
    let wall = start.elapsed().as_secs_f64();
    let report = EvalReport {
        task: req.task.to_string(),
        model: req.model_name.clone(),
        mode: "plaintext",
        rows: rows_name.clone(),
        n: result.accuracy.total,
        accuracy: result.accuracy.value().unwrap_or(0.0),
        correct: result.accuracy.correct,
        wall_seconds: wall,
        tokens_per_second: result.tokens as f64 / wall,
        predictions: result.rows,
    };
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROW: &str = r#"{"id": "a", "sentence": "fine", "label": "positive"}"#;

    #[test]
    fn no_rows_to_evaluate_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        let file = Dataset::path(root.path(), TaskKind::Sst2);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, format!("{ROW}\n")).unwrap();
        let rows = Rows::File(file.clone());
        assert_eq!(rows.load(TaskKind::Sst2, Some(1)).unwrap().0.len(), 1);
        let message = rows.load(TaskKind::Sst2, Some(0)).unwrap_err().to_string();
        assert_eq!(message, "--limit must be at least 1");
        // One row: it lands in train, and test is empty.
        let split = |split| Rows::Split {
            root: root.path().into(),
            split,
            seed: 0,
            ratios: SplitRatios::default(),
        };
        assert_eq!(
            split(Split::Train)
                .load(TaskKind::Sst2, None)
                .unwrap()
                .0
                .len(),
            1
        );
        let message = split(Split::Test)
            .load(TaskKind::Sst2, None)
            .unwrap_err()
            .to_string();
        assert_eq!(
            message,
            format!(
                "{}: the test split has no rows (the file has 1)",
                file.display()
            )
        );
    }
}
