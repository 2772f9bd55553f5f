//! Benchmarks behind `marill bench`.

pub mod forward;
pub mod train;
