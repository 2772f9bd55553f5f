//! The report of `marill run`, and its MARILL-vs-standard table.

pub mod run;
pub mod table;

pub use run::{ModelReport, RunReport};
