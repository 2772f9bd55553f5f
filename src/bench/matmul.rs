//! Matmul throughput at the MPC benchmark's shape: the engine's ring (Z_2^64) matmul next to
//! candle's f32 matmul, so `marill bench mpc` can report their ratio (the MPC engine itself
//! does not depend on candle).

use crate::mpc::prg::Prg;
use anyhow::{Result, ensure};
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::time::Instant;

/// Timed runs per matmul; the best is reported, since single runs of a few ms vary with the
/// thread pool waking up and with page faults.
const RUNS: usize = 20;

/// The ring operands' PRG seed (base, tag); any fixed value will do.
const RING_SEED: (u64, u64) = (5, 9);

#[derive(Clone, Debug, Serialize)]
pub struct RingMatmul {
    pub shape: String,
    pub seconds: f64,
    /// 2 m k n / seconds, in 1e9 ring operations per second.
    pub gops: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct F32Matmul {
    pub shape: String,
    pub seconds: f64,
    pub gflops: f64,
}

/// Best wall time of [`RUNS`] calls of `product`, which returns its output's element count
/// (checked against `m n`, so the work cannot be skipped).
fn best_seconds((m, n): (usize, usize), mut product: impl FnMut() -> Result<usize>) -> Result<f64> {
    let mut best = f64::MAX;
    for _ in 0..RUNS {
        let t = Instant::now();
        let len = product()?;
        best = best.min(t.elapsed().as_secs_f64());
        ensure!(
            len == m * n,
            "matmul output has {len} elements, not {m}x{n}"
        );
    }
    Ok(best)
}

/// 1e9 multiply-adds counted twice per second.
fn rate(m: usize, k: usize, n: usize, seconds: f64) -> f64 {
    2.0 * (m * k * n) as f64 / seconds / 1e9
}

/// The ring matmul of random `m×k · k×n` tensors.
pub fn ring_matmul(m: usize, k: usize, n: usize) -> Result<RingMatmul> {
    let mut rng = Prg::from_seed(Prg::derived_seed(RING_SEED.0, RING_SEED.1));
    let a = rng.ring(&[m, k]);
    let b = rng.ring(&[k, n]);
    let seconds = best_seconds((m, n), || Ok(a.matmul(&b)?.len()))?;
    Ok(RingMatmul {
        shape: format!("{m}x{k}x{n}"),
        seconds,
        gops: rate(m, k, n, seconds),
    })
}

/// candle's f32 matmul of random `m×k · k×n` tensors.
pub fn candle_f32_matmul(m: usize, k: usize, n: usize) -> Result<F32Matmul> {
    let a = Tensor::randn(0f32, 1.0, (m, k), &Device::Cpu)?;
    let b = Tensor::randn(0f32, 1.0, (k, n), &Device::Cpu)?;
    let seconds = best_seconds((m, n), || Ok(a.matmul(&b)?.elem_count()))?;
    Ok(F32Matmul {
        shape: format!("{m}x{k}x{n}"),
        seconds,
        gflops: rate(m, k, n, seconds),
    })
}
