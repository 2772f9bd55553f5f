//! One training stage: AdamW over the trainable variables, with warm-up and decay, clipping,
//! accumulation, periodic validation (the best variables are kept) and resumable state. What
//! the loss and the validation accuracy are is the stage's [`Objective`]: choices
//! ([`super::choice`]) or generated answers ([`super::completion`]).

use super::optimizer::{AdamW, AdamWConfig, clip_grad_norm, learning_rate};
use super::state::{Progress, StatePaths, log_metrics};
use crate::model::Llama;
use crate::model::lora::seed_dropout;
use crate::parallel::map_parts;
use crate::progress::progress_bar;
use crate::recipe::LrSchedule;
use anyhow::{Result, ensure};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct LossWeights {
    pub ce: f64,
    pub kl: f64,
    pub hidden: f64,
    pub temperature: f64,
}

#[derive(Debug, Clone)]
pub struct StageConfig {
    pub epochs: usize,
    pub batch: usize,
    pub accumulation: usize,
    pub adamw: AdamWConfig,
    pub schedule: LrSchedule,
    pub warmup_ratio: f64,
    pub grad_clip: f64,
    /// Optimizer steps between validations; 0 = at the end of each epoch.
    pub eval_interval: usize,
    pub seed: u64,
    pub loss: LossWeights,
}

/// A model and the variables one stage trains; layers `first..L` run on cached inputs.
pub struct Stage<'a> {
    pub name: &'a str,
    pub model: &'a Llama,
    pub vars: Vec<(String, Var)>,
    pub first_layer: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct StageOutcome {
    pub steps: usize,
    pub best_val_accuracy: f64,
    pub best_step: usize,
    pub train_tok_s: f64,
}

/// Examples sorted by length within each window of this many batches, so that a batch pads
/// little while batches still come in random order.
const LENGTH_WINDOW: usize = 16;

/// One epoch's micro-batches: a seeded shuffle, length-sorted windows, shuffled batches.
/// Depends only on `(seed, epoch)`, so a resumed run replays the same order.
fn epoch_batches(lengths: &[usize], batch: usize, seed: u64, epoch: usize) -> Vec<Vec<usize>> {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches = Vec::new();
    for window in order.chunks(batch * LENGTH_WINDOW) {
        let mut window = window.to_vec();
        window.sort_by_key(|&i| lengths[i]);
        batches.extend(window.chunks(batch).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// What a stage learns from: its training rows (their token counts order the batches), the
/// loss on some of them, and the validation accuracy that picks the best variables.
pub trait Objective: Sync {
    /// The token count of every training example, in order.
    fn train_lengths(&self) -> Vec<usize>;
    /// The loss on training rows `rows` (a mean over them) and the tokens it processed.
    fn loss(&self, stage: &Stage, rows: &[usize], weights: &LossWeights)
    -> Result<(Tensor, usize)>;
    /// The accuracy of the stage's model on the validation split.
    fn validation_accuracy(&self, stage: &Stage, batch: usize) -> Result<f64>;
}

/// Gradients of one optimizer step's mean loss over the micro-batches `group`, each split
/// across cores; also the loss and the tokens processed. `first_micro` numbers the micro-batches
/// for the dropout seeds.
pub fn step_gradients(
    stage: &Stage,
    data: &impl Objective,
    group: &[Vec<usize>],
    cfg: &StageConfig,
    first_micro: u64,
) -> Result<(GradStore, f64, usize)> {
    let (mut acc, mut loss_sum, mut tokens) = (None, 0.0, 0);
    for (j, rows) in group.iter().enumerate() {
        let micro = first_micro + j as u64;
        // Each part's loss is a mean over its rows: weighting it by its share of the
        // micro-batch (and the micro-batch by its share of the step) makes the summed
        // gradient that of the whole step's mean loss.
        let parts = map_parts(rows, |part_index, part| {
            seed_dropout(
                cfg.seed ^ (micro * 64 + part_index as u64).wrapping_mul(0xA24B_AED4_963E_E407),
            );
            let (loss, part_tokens) = data.loss(stage, part, &cfg.loss)?;
            let share = part.len() as f64 / rows.len() as f64 / group.len() as f64;
            let grads = (&loss * share)?.backward()?;
            Ok((
                f64::from(loss.to_scalar::<f32>()?) * share,
                part_tokens,
                grads,
            ))
        })?;
        for (loss, part_tokens, grads) in parts {
            loss_sum += loss;
            tokens += part_tokens;
            add_grads(&mut acc, grads, &stage.vars)?;
        }
    }
    let grads = acc.ok_or_else(|| anyhow::anyhow!("an optimizer step needs at least one batch"))?;
    Ok((grads, loss_sum, tokens))
}

fn add_grads(acc: &mut Option<GradStore>, grads: GradStore, vars: &[(String, Var)]) -> Result<()> {
    match acc {
        None => *acc = Some(grads),
        Some(total) => {
            for (_, var) in vars {
                if let (Some(g), Some(t)) =
                    (grads.get(var.as_tensor()), total.remove(var.as_tensor()))
                {
                    total.insert(var.as_tensor(), (t + g)?);
                }
            }
        }
    }
    Ok(())
}

fn snapshot(vars: &[(String, Var)]) -> Result<HashMap<String, Tensor>> {
    vars.iter()
        .map(|(n, v)| Ok((n.clone(), v.as_tensor().copy()?)))
        .collect()
}

/// Trains `stage` on `data`; resumes from `run_dir/state/<stage>` when `resume` and a state is
/// there. `stop_after` ends the run after that many optimizer steps (as a kill would), leaving
/// the state to resume from.
pub fn train_stage(
    stage: &Stage,
    data: &impl Objective,
    cfg: &StageConfig,
    run_dir: &Path,
    resume: bool,
    stop_after: Option<usize>,
) -> Result<StageOutcome> {
    ensure!(
        cfg.batch > 0 && cfg.accumulation > 0 && cfg.epochs > 0,
        "batch, accumulation and epochs must be positive"
    );
    let lengths = data.train_lengths();
    ensure!(!lengths.is_empty(), "no training examples");
    let micro_per_epoch = lengths.len().div_ceil(cfg.batch);
    let steps_per_epoch = micro_per_epoch.div_ceil(cfg.accumulation);
    let total_steps = steps_per_epoch * cfg.epochs;
    let warmup = (cfg.warmup_ratio * total_steps as f64).round() as usize;
    let eval_every = if cfg.eval_interval == 0 {
        steps_per_epoch
    } else {
        cfg.eval_interval
    };
    let paths = StatePaths::new(run_dir, stage.name);
    let metrics = run_dir.join("metrics.jsonl");

    let mut opt = AdamW::new(stage.vars.clone(), cfg.adamw)?;
    let mut progress = Progress::default();
    let mut best: Option<HashMap<String, Tensor>> = None;
    if resume && paths.exists() {
        let (saved, tensors) = paths.load()?;
        for (name, var) in &stage.vars {
            let t = tensors
                .get(name)
                .ok_or_else(|| anyhow::anyhow!("{}: no {name}", paths.tensors.display()))?;
            var.set(t)?;
        }
        opt.restore(&tensors, saved.step)?;
        let best_tensors: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("best.").map(|n| (n.to_string(), v.clone())))
            .collect();
        best = (!best_tensors.is_empty()).then_some(best_tensors);
        progress = saved;
    }
    let save =
        |progress: &Progress, opt: &AdamW, best: &Option<HashMap<String, Tensor>>| -> Result<()> {
            let mut tensors = snapshot(&stage.vars)?;
            tensors.extend(opt.state_tensors());
            if let Some(b) = best {
                tensors.extend(b.iter().map(|(k, v)| (format!("best.{k}"), v.clone())));
            }
            paths.save(progress, &tensors)
        };

    let bar = progress_bar(total_steps, stage.name);
    bar.set_position(progress.step as u64);
    let start = Instant::now();
    let mut tokens = 0usize;
    while progress.step < total_steps && !progress.done {
        let epoch = progress.step / steps_per_epoch;
        let micro = epoch_batches(&lengths, cfg.batch, cfg.seed, epoch);
        let first_micro = (progress.step % steps_per_epoch) * cfg.accumulation;
        for group in micro[first_micro..].chunks(cfg.accumulation) {
            let first = (progress.step * cfg.accumulation) as u64;
            let (mut grads, loss, step_tokens) = step_gradients(stage, data, group, cfg, first)?;
            tokens += step_tokens;
            let grad_norm = clip_grad_norm(&mut grads, &stage.vars, cfg.grad_clip)?;
            let lr = learning_rate(
                cfg.adamw.lr,
                cfg.schedule,
                progress.step,
                warmup,
                total_steps,
            );
            opt.update(&grads, lr)?;
            progress.step += 1;
            let tok_s = tokens as f64 / start.elapsed().as_secs_f64();
            bar.set_message(format!("loss {loss:.4} {tok_s:.0} tok/s"));
            bar.inc(1);
            log_metrics(
                &metrics,
                &serde_json::json!({"stage": stage.name, "step": progress.step, "epoch": epoch, "loss": loss, "lr": lr, "grad_norm": grad_norm, "tok_s": tok_s}),
            )?;
            if progress.step % eval_every == 0 || progress.step == total_steps {
                let acc = data.validation_accuracy(stage, cfg.batch)?;
                log_metrics(
                    &metrics,
                    &serde_json::json!({"stage": stage.name, "step": progress.step, "val_accuracy": acc}),
                )?;
                if progress.best_val_accuracy.is_none_or(|b| acc > b) {
                    progress.best_val_accuracy = Some(acc);
                    progress.best_step = progress.step;
                    best = Some(snapshot(&stage.vars)?);
                }
                save(&progress, &opt, &best)?;
            }
            if stop_after.is_some_and(|s| progress.step >= s) {
                save(&progress, &opt, &best)?;
                bar.finish_and_clear();
                return Ok(StageOutcome {
                    steps: progress.step,
                    best_val_accuracy: progress.best_val_accuracy.unwrap_or(0.0),
                    best_step: progress.best_step,
                    train_tok_s: tokens as f64 / start.elapsed().as_secs_f64(),
                });
            }
        }
    }
    bar.finish_and_clear();
    if let Some(best) = &best {
        for (name, var) in &stage.vars {
            var.set(&best[name])?;
        }
    }
    progress.done = true;
    save(&progress, &opt, &best)?;
    Ok(StageOutcome {
        steps: progress.step,
        best_val_accuracy: progress.best_val_accuracy.unwrap_or(0.0),
        best_step: progress.best_step,
        train_tok_s: tokens as f64 / start.elapsed().as_secs_f64().max(1e-9),
    })
}
