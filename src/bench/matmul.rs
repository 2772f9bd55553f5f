//! candle's f32 matmul of the MPC benchmark's shape, so `marill bench mpc` can put the ring
//! matmul's throughput next to it (the MPC engine itself does not depend on candle).

use anyhow::Result;
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct F32Matmul {
    pub shape: String,
    pub seconds: f64,
    pub gflops: f64,
}

/// Best of 20 runs of an `m×k · k×n` f32 matmul.
pub fn candle_f32_matmul(m: usize, k: usize, n: usize) -> Result<F32Matmul> {
    let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu)?;
    let mut best = f64::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        let c = a.matmul(&b)?;
        best = best.min(t.elapsed().as_secs_f64());
        anyhow::ensure!(c.dims() == [m, n], "matmul output");
    }
    Ok(F32Matmul {
        shape: format!("{m}x{k}x{n}"),
        seconds: best,
        gflops: 2.0 * (m * k * n) as f64 / best / 1e9,
    })
}
