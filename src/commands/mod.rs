//! What each `marill` subcommand does beyond one library call, below its argument parsing
//! (`main.rs` parses the command line and prints; everything else is here): one file a command.
//! The top of the data flow: it may use every other module, and none uses it.

pub mod bench_mpc;
pub mod eval;
pub mod generate;
pub mod inspect;
pub mod party;
pub mod run;
