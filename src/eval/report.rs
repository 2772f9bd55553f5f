//! The JSON report of an evaluation.

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
    pub predictions: Vec<super::classify::Scored>,
}
