//! The JSON report of an evaluation.

use super::execute::Grading;
use crate::data::{Accuracy, Example, Prediction};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub task: String,
    pub model: String,
    pub mode: &'static str,
    /// `train`, `validation`, `test`, or the `--data` file.
    pub rows: String,
    pub n: usize,
    pub accuracy: f64,
    pub correct: usize,
    pub wall_seconds: f64,
    pub tokens_per_second: f64,
    pub predictions: Vec<RowResult>,
}

impl EvalReport {
    /// What `marill eval` prints.
    pub fn summary(&self) -> String {
        format!(
            "{} {} ({}, {}): accuracy {:.4} ({}/{}), {:.1} tok/s",
            self.task,
            self.rows,
            self.mode,
            self.model,
            self.accuracy,
            self.correct,
            self.n,
            self.tokens_per_second
        )
    }
}

/// What the model predicted for one row.
#[derive(Debug, Clone, Serialize)]
pub struct RowResult {
    pub id: String,
    pub correct: bool,
    /// Choice tasks: the logit of each choice's first token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scores: Option<Vec<f32>>,
    /// Generation tasks: the generated answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
}

/// The graded rows of one evaluation and how many prompt tokens it processed.
#[derive(Debug)]
pub struct Outcome {
    pub rows: Vec<RowResult>,
    pub accuracy: Accuracy,
    pub tokens: usize,
}

impl Outcome {
    /// Grades `example` on `prediction` and records it.
    pub fn record(
        &mut self,
        example: &Example,
        prediction: Prediction,
        grading: &Grading,
    ) -> anyhow::Result<()> {
        let correct = grading.grade(example, prediction)?;
        self.accuracy.record(correct);
        let (scores, generated) = match prediction {
            Prediction::Scores(s) => (Some(s.to_vec()), None),
            Prediction::Generated(g) => (None, Some(g.to_string())),
        };
        self.rows.push(RowResult {
            id: example.id.clone(),
            correct,
            scores,
            generated,
        });
        Ok(())
    }
}
