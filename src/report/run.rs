//! The report of a recipe run end to end (`marill run`): each checkpoint's plaintext accuracy
//! on the whole test split and its secure evaluations on the first rows, on each protocol.

use crate::secure::SecureEvalReport;
use serde::Serialize;
use std::path::PathBuf;

/// One checkpoint's evaluations.
#[derive(Debug, Serialize)]
pub struct ModelReport {
    pub checkpoint: PathBuf,
    /// On the whole test split.
    pub plaintext_accuracy: f64,
    /// One report per protocol, on the first `mpc_rows` test rows.
    pub mpc: Vec<SecureEvalReport>,
}

#[derive(Debug, Serialize)]
pub struct RunReport {
    pub recipe: String,
    pub task: String,
    pub test_rows: usize,
    pub mpc_rows: usize,
    /// Rows per secure forward.
    pub batch: usize,
    pub teacher: ModelReport,
    pub student: ModelReport,
}
