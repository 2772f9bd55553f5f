//! `marill bench train`: LoRA training throughput on SmolLM2-shaped batches (4 × 64 tokens,
//! rank 8 on q, k, v, o, gate, up, down), (a) on all layers and (b) on the top half with the
//! frozen bottom half's activations cached, as the MARILL student trains.

use crate::model::lora_target::LoraTarget;
use crate::model::marill::{LoraSpec, attach_lora};
use crate::model::{Llama, ModelSource, load};
use crate::progress::progress_bar;
use crate::recipe::LrSchedule;
use crate::train::batch::{Encoded, prefix_activations};
use crate::train::choice::ChoiceData;
use crate::train::optimizer::{AdamW, AdamWConfig};
use crate::train::trainer::{LossWeights, Stage, StageConfig, step_gradients};
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
    /// Worker threads the batch is split across.
    pub workers: usize,
}

/// Tokens per second of the trainer's optimizer steps (forward and backward split across cores,
/// AdamW) with LoRA on layers `first..L`, whose input is cached.
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
    let vars = attach_lora(&mut model, layers, &spec, &HashMap::new(), &mut rng)?;
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
    let cfg = StageConfig {
        epochs: 1,
        batch,
        accumulation: 1,
        adamw: AdamWConfig {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        },
        schedule: LrSchedule::Constant,
        warmup_ratio: 0.0,
        grad_clip: 1.0,
        eval_interval: 0,
        seed: 0,
        loss: LossWeights {
            ce: 1.0,
            kl: 0.0,
            hidden: 0.0,
            temperature: 1.0,
        },
    };
    let mut opt = AdamW::new(vars.clone(), cfg.adamw)?;
    let stage = Stage {
        name: "bench",
        model: &model,
        vars,
        first_layer: first,
    };
    let data = ChoiceData {
        train: &examples,
        train_inputs: &inputs,
        validation: &[],
        validation_inputs: &[],
        teacher: None,
    };
    let group = vec![(0..batch).collect::<Vec<usize>>()];
    let mut step = || -> Result<()> {
        let (grads, _, _) = step_gradients(&stage, &data, &group, &cfg, 0)?;
        opt.update(&grads, cfg.adamw.lr)
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
        workers: crate::parallel::workers(),
    })
}
