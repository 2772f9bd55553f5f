//! marill: fine-tune open LLMs so that they are cheap under secure multi-party computation,
//! export them as split checkpoints and evaluate them under MPC.

pub mod atomic;
pub mod bench;
pub mod checkpoint;
pub mod commands;
pub mod data;
pub mod eval;
pub mod fetch;
pub mod model;
pub mod mpc;
pub mod parallel;
pub mod progress;
pub mod project;
pub mod recipe;
pub mod report;
pub mod secure;
pub mod train;
