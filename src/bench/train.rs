//! `marill bench train`: LoRA training throughput on SmolLM2-shaped batches (4 × 64 tokens,
//! rank 8 on q, k, v, o, gate, up, down), (a) on all layers and (b) on the top half with the
//! frozen bottom half's activations cached, as the MARILL student trains.

use crate::model::lora::DropoutRng;
use crate::model::lora_target::LoraTarget;
use crate::model::marill::{LoraSpec, attach_lora};
use crate::model::{Llama, ModelSource, load};
use crate::progress::progress_bar;
use crate::recipe::LrSchedule;
use crate::train::batch::{Batch, Encoded, forward_batch, prefix_activations};
use crate::train::loss::choice_cross_entropy;
use crate::train::optimizer::{AdamW, AdamWConfig, learning_rate};
use anyhow::Result;
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::HashMap;
use std::time::Instant;

#[derive(Debug, Serialize)]
pub struct TrainBench {
    pub model: String,
    pub batch: usize,
    pub seq_len: usize,
    pub steps: usize,
    pub lora_all_tok_s: f64,
    pub lora_top_cached_tok_s: f64,
    pub top_layers: usize,
    pub threads: usize,
}

/// Tokens per second of full optimizer steps (forward, backward, AdamW) with LoRA on layers
/// `first..L`, whose input is cached.
fn steps_per_second(
    base: &Llama,
    first: usize,
    batch: usize,
    seq: usize,
    steps: usize,
) -> Result<f64> {
    let mut model = base.clone();
    let spec = LoraSpec {
        rank: 8,
        alpha: 16.0,
        targets: LoraTarget::ALL.to_vec(),
        dropout: 0.0,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let layers = first..model.num_layers();
    let vars = attach_lora(
        &mut model,
        layers,
        &spec,
        &HashMap::new(),
        &mut rng,
        &DropoutRng::new(0),
    )?;
    let vocab = model.config.vocab_size as u32;
    let examples: Vec<Encoded> = (0..batch)
        .map(|b| Encoded {
            ids: (0..seq)
                .map(|i| ((b * seq + i) as u32).wrapping_mul(2_654_435_761) % vocab)
                .collect(),
            choices: vec![30, 31],
            target: b % 2,
        })
        .collect();
    let inputs = prefix_activations(&model, &examples, first)?;
    let rows: Vec<usize> = (0..batch).collect();
    let config = AdamWConfig {
        lr: 1e-4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let mut opt = AdamW::new(vars, config)?;
    let mut step = || -> Result<()> {
        let b = Batch::new(&rows, &examples, &inputs)?;
        let out = forward_batch(&model, &b, first, false)?;
        let loss = choice_cross_entropy(&out.choice_logits, &b.choice_mask, &b.targets)?;
        let grads = loss.backward()?;
        opt.update(&grads, learning_rate(1e-4, LrSchedule::Constant, 0, 0, 1))
    };
    step()?; // warm-up
    let bar = progress_bar(steps, "train step");
    let start = Instant::now();
    for _ in 0..steps {
        step()?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok((batch * seq * steps) as f64 / start.elapsed().as_secs_f64())
}

pub fn bench_train(
    source: &ModelSource,
    batch: usize,
    seq: usize,
    steps: usize,
) -> Result<TrainBench> {
    let base = load(source, &Device::Cpu)?.model;
    let top_layers = base.num_layers() / 2;
    Ok(TrainBench {
        model: source.describe(),
        batch,
        seq_len: seq,
        steps,
        lora_all_tok_s: steps_per_second(&base, 0, batch, seq, steps)?,
        lora_top_cached_tok_s: steps_per_second(
            &base,
            base.num_layers() - top_layers,
            batch,
            seq,
            steps,
        )?,
        top_layers,
        threads: candle_core::utils::get_num_threads(),
    })
}
