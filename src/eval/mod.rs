//! Plaintext evaluation of a model on a task's rows.

pub mod classify;
pub mod execute;
pub mod generate;
pub mod prompt;
pub mod report;
pub mod run;

pub use run::{EvalRequest, Rows, evaluate_plaintext};
