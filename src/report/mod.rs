//! The report of `marill run`, and its MARILL-vs-standard tables (choice scoring in `table`,
//! greedy decoding in `generation_table`).

pub mod generation_table;
pub mod outcome;
pub mod run;
pub mod table;

pub use outcome::RunOutcome;
pub use run::{ModelReport, RunReport};
