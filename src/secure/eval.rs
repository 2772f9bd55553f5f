//! `marill eval --mode mpc`: a task's rows through the secure forward, next to the plaintext
//! prediction of the same model on the same rows.

use super::client::SecureInput;
use super::forward::{SecureModel, run_secure};
use super::projection::Secrecy;
use super::report::{ExampleCost, PhaseCost, SecureEvalReport, SecureRow};
use crate::checkpoint::{CheckpointKind, Manifest};
use crate::data::{Answer, Example, argmax};
use crate::eval::EvalRequest;
use crate::eval::classify::classify;
use crate::eval::prompt::{choice_token_ids, prompt_ids};
use crate::model::LoadedModel;
use crate::mpc::local::RunOptions;
use crate::mpc::protocol::ProtocolKind;
use crate::progress::progress_bar;
use anyhow::{Context, Result, bail};

/// A plaintext evaluation request (rows, prompts, batch of the plaintext reference, report
/// path) run under `protocol` as well.
pub struct SecureEvalRequest<'a> {
    pub eval: EvalRequest<'a>,
    pub protocol: ProtocolKind,
    /// `lan` or `wan`: the estimate the report leads with.
    pub network: String,
}

/// What runs in plaintext at the client and who holds the private weights: a student's
/// public prefix and secret LoRA; a teacher's (or a bare base model's) every layer, with
/// secret full weights.
pub fn split_of(manifest: Option<&Manifest>) -> (usize, Secrecy) {
    match manifest {
        Some(m) if m.kind == CheckpointKind::Student => (m.split.public_layers, Secrecy::LoraOnly),
        Some(m) => (m.split.public_layers, Secrecy::FullWeights),
        None => (0, Secrecy::FullWeights),
    }
}

pub fn evaluate_secure(
    loaded: &LoadedModel,
    manifest: Option<&Manifest>,
    secure_req: &SecureEvalRequest,
) -> Result<SecureEvalReport> {
    let (protocol, network) = (secure_req.protocol, &secure_req.network);
    let req = &secure_req.eval;
    if req.task.is_generation() {
        bail!(
            "secure evaluation supports choice tasks only, not {}",
            req.task
        );
    }
    let (model, tokenizer) = (&loaded.model, &loaded.tokenizer);
    let (rows, rows_name) = &req.rows;
    let rows: Vec<&Example> = rows.iter().collect();
    let max_len = req.max_len.min(model.config.max_position_embeddings);
    let (public_layers, secrecy) = split_of(manifest);

    let plaintext = classify(model, tokenizer, req.format, &rows, req.batch, max_len)?;
    let plain_choices: Vec<usize> = plaintext
        .rows
        .iter()
        .map(|r| {
            r.scores
                .as_deref()
                .and_then(argmax)
                .with_context(|| format!("example {}: no plaintext scores", r.id))
        })
        .collect::<Result<_>>()?;

    let inputs: Vec<SecureInput> = rows
        .iter()
        .map(|ex| {
            let ids = prompt_ids(tokenizer, req.format, ex, max_len)?;
            let choices = choice_token_ids(tokenizer, req.format, ex)?;
            SecureInput::new(model, &ids, &choices, public_layers)
        })
        .collect::<Result<_>>()?;
    let secure = SecureModel::new(model, public_layers, secrecy)?;
    let bar = progress_bar(rows.len(), &format!("mpc {}", protocol));
    let run = run_secure(
        protocol,
        &RunOptions::default(),
        &secure,
        &inputs,
        req.batch,
        false,
        |k| bar.inc(k as u64),
    )?;
    bar.finish_and_clear();

    let n = rows.len();
    let mut predictions = Vec::with_capacity(n);
    let (mut correct, mut agree) = (0, 0);
    for ((ex, &mpc), &plain) in rows.iter().zip(&run.choices).zip(&plain_choices) {
        let Answer::Choice(target) = ex.answer else {
            bail!("example {}: not a choice example", ex.id);
        };
        correct += usize::from(mpc == target);
        agree += usize::from(mpc == plain);
        predictions.push(SecureRow {
            id: ex.id.clone(),
            target,
            mpc,
            plaintext: plain,
        });
    }
    let frac = |k: usize| k as f64 / n.max(1) as f64;
    let report = SecureEvalReport {
        task: req.task.to_string(),
        model: req.model_name.clone(),
        mode: "mpc",
        protocol: protocol.to_string(),
        network: network.to_string(),
        rows: rows_name.clone(),
        n,
        accuracy: frac(correct),
        plaintext_accuracy: plaintext.accuracy.value().unwrap_or(0.0),
        agreement: frac(agree),
        public_layers,
        private_layers: model.num_layers() - public_layers,
        cost_per_example: ExampleCost::mean(&run.examples, run.examples_wall_seconds, n),
        weight_setup: PhaseCost::of(&run.setup),
        predictions,
    };
    if let Some(path) = req.json {
        crate::atomic::write_json_atomic(path, &report)?;
    }
    Ok(report)
}
