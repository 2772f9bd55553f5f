//! Benchmarks behind `marill bench`.

pub mod forward;
