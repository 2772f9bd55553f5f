//! `marill run`: a recipe end to end, and the MARILL-vs-standard table.

pub mod run;
pub mod table;

pub use run::{RunReport, RunRequest, run_recipe};
