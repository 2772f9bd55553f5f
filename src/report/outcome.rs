//! A run's report of either kind of task, and its tables.

use super::run::RunReport;
use super::{generation_table, table};
use crate::secure::SecureEvalReport;
use crate::secure::generation_report::SecureGenerationReport;
use serde::Serialize;

/// A run's report, of the recipe's kind of task.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RunOutcome {
    Choice(RunReport<SecureEvalReport>),
    Generation(RunReport<SecureGenerationReport>),
}

impl RunOutcome {
    /// The MARILL-vs-standard tables as Markdown.
    pub fn markdown(&self) -> String {
        match self {
            RunOutcome::Choice(r) => table::markdown(r),
            RunOutcome::Generation(r) => generation_table::markdown(r),
        }
    }
}
