//! `marill bench forward`: model load time and plaintext forward throughput.

use crate::model::{ModelSource, load};
use crate::parallel::map_parts;
use anyhow::Result;
use candle_core::{Device, Tensor};
use serde::Serialize;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct ForwardBench {
    pub model: String,
    pub load_seconds: f64,
    pub batch: usize,
    pub seq_len: usize,
    pub iterations: usize,
    /// Full forward, logits at every position.
    pub forward_tok_s: f64,
    /// Worker threads the batch is split across.
    pub workers: usize,
}

pub fn bench_forward(
    source: &ModelSource,
    batch: usize,
    seq_len: usize,
    iterations: usize,
) -> Result<ForwardBench> {
    let start = Instant::now();
    let loaded = load(source, &Device::Cpu)?;
    let load_seconds = start.elapsed().as_secs_f64();
    let model = &loaded.model;
    let vocab = model.config.vocab_size as u32;
    // Deterministic pseudo-random ids; the cost of a forward does not depend on them.
    let ids: Vec<u32> = (0..batch * seq_len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761) % vocab)
        .collect();
    let ids = Tensor::from_vec(ids, (batch, seq_len), model.device())?;
    let rows: Vec<usize> = (0..batch).collect();
    // Rows split across cores, as evaluation does.
    let forward = || -> Result<()> {
        map_parts(&rows, |_, part| {
            let ids = ids.narrow(0, part[0], part.len())?;
            model.forward(&ids, None, false).map(|_| ())
        })
        .map(|_| ())
    };
    forward()?; // warm-up
    let bar = crate::progress::progress_bar(iterations, "forward");
    let start = Instant::now();
    for _ in 0..iterations {
        forward()?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    Ok(ForwardBench {
        model: source.describe(),
        load_seconds,
        batch,
        seq_len,
        iterations,
        forward_tok_s: (batch * seq_len * iterations) as f64 / secs,
        workers: crate::parallel::workers(),
    })
}
