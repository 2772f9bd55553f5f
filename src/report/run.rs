//! The report of a recipe run end to end (`marill run`): each checkpoint's plaintext accuracy
//! on the whole test split and its secure evaluations on the first rows, on each protocol —
//! choice scoring (`R` = `SecureEvalReport`) or, for a generation task, greedy decoding
//! (`R` = `SecureGenerationReport`), teacher and student always of the same kind.

use serde::Serialize;
use std::path::PathBuf;

/// One checkpoint's evaluations.
#[derive(Debug, Serialize)]
pub struct ModelReport<R> {
    pub checkpoint: PathBuf,
    /// On the whole test split (exact match for a generation task).
    pub plaintext_accuracy: f64,
    /// One report per protocol, as `eval --mode mpc` writes it, on the first `mpc_rows` test
    /// rows.
    pub mpc: Vec<R>,
}

#[derive(Debug, Serialize)]
pub struct RunReport<R> {
    pub recipe: String,
    pub task: String,
    pub test_rows: usize,
    pub mpc_rows: usize,
    /// Rows per secure forward (prompts per decoding step for a generation task).
    pub batch: usize,
    pub teacher: ModelReport<R>,
    pub student: ModelReport<R>,
}

impl<R> RunReport<R> {
    /// The table's opening: what was run and on which rows (`costs`: how the costs were
    /// counted).
    pub fn header(&self, costs: &str) -> String {
        format!(
            "# {} ({}): standard fine-tuning (teacher) vs MARILL (student)\n\n\
             Plaintext accuracy on the {} test rows; MPC accuracy and costs on the first {} of \
             them: {costs}\n\n",
            self.recipe, self.task, self.test_rows, self.mpc_rows
        )
    }

    /// The table's closing line.
    pub fn accuracy_kept(&self) -> String {
        format!(
            "\nAccuracy kept (student / teacher, plaintext): {:.1}%\n",
            100.0 * self.student.plaintext_accuracy / self.teacher.plaintext_accuracy.max(1e-9)
        )
    }
}
