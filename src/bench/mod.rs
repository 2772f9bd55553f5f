//! Benchmarks behind `marill bench`.

pub mod forward;
pub mod matmul;
pub mod mpc;
pub mod train;
