//! `marill eval --mode mpc`: a task's rows through the secure forward, next to the plaintext
//! prediction of the same model on the same rows.

use super::client::SecureInput;
use super::forward::{ClientJob, SecureModel, run_secure};
use super::projection::Secrecy;
use super::remote::{TcpClient, run_secure_tcp};
use super::report::{ExampleCost, PhaseCost, SecureEvalReport, SecureRow};
use crate::checkpoint::{CheckpointKind, Manifest, PrivateTensor};
use crate::data::{Answer, Example, argmax};
use crate::eval::EvalRequest;
use crate::eval::classify::classify;
use crate::eval::prompt::{choice_token_ids, prompt_ids};
use crate::model::LoadedModel;
use crate::mpc::local::RunOptions;
use crate::mpc::protocol::ProtocolKind;
use crate::progress::progress_bar;
use anyhow::{Context, Result, bail};

/// How the parties of a secure evaluation talk.
pub enum SecureTransport {
    /// Every party a thread of this process.
    Memory,
    /// Every party its own process over TCP: this process is the client; the others are
    /// started on loopback by the command, or by hand (`marill party`) at the given addresses.
    Tcp(TcpClient),
}

/// A plaintext evaluation request (rows, prompts, batch of the plaintext reference, report
/// path) run under `protocol` as well.
pub struct SecureEvalRequest<'a> {
    pub eval: EvalRequest<'a>,
    pub protocol: ProtocolKind,
    /// `lan` or `wan`: the estimate the report leads with.
    pub network: String,
    pub transport: SecureTransport,
}

/// What runs in plaintext at the client and who holds the private weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecureSplit {
    pub public_layers: usize,
    pub secrecy: Secrecy,
}

impl SecureSplit {
    /// A bare base model served as is: every layer private, with secret full weights.
    pub const BARE: SecureSplit = SecureSplit {
        public_layers: 0,
        secrecy: Secrecy::FullWeights,
    };

    /// A student's public prefix and secret LoRA; a teacher's every layer, with secret full
    /// weights. Refuses a checkpoint with private tensors that the secure forward would treat
    /// as public: the final norm or head (the client computes with them), and in a student
    /// any tuned norm or whole projection (only its LoRA factors are the server's).
    pub fn of_checkpoint(manifest: &Manifest, private: &[PrivateTensor]) -> Result<Self> {
        let secrecy = match manifest.kind {
            CheckpointKind::Student => Secrecy::LoraOnly,
            CheckpointKind::Teacher => Secrecy::FullWeights,
        };
        for t in private {
            let public_part = match *t {
                PrivateTensor::FinalNorm | PrivateTensor::Head => true,
                PrivateTensor::Lora { .. } => false,
                PrivateTensor::Projection { layer, .. } | PrivateTensor::Norm { layer, .. } => {
                    secrecy == Secrecy::LoraOnly || !manifest.split.is_private(layer)
                }
            };
            if public_part {
                bail!(
                    "private.safetensors holds `{}`, which secure evaluation would treat as public: this checkpoint cannot be evaluated under MPC",
                    t.name()
                );
            }
        }
        Ok(SecureSplit {
            public_layers: manifest.split.public_layers,
            secrecy,
        })
    }
}

pub fn evaluate_secure(
    loaded: &LoadedModel,
    split: SecureSplit,
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
    let SecureSplit {
        public_layers,
        secrecy,
    } = split;

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
    let job = ClientJob {
        inputs: &inputs,
        batch: req.batch,
        reveal_scores: false,
    };
    let bar = progress_bar(rows.len(), &format!("mpc {}", protocol));
    let done = |k: usize| bar.inc(k as u64);
    let run = match &secure_req.transport {
        SecureTransport::Memory => {
            run_secure(protocol, &RunOptions::default(), &secure, &job, done)?
        }
        SecureTransport::Tcp(client) => run_secure_tcp(protocol, client, &secure, &job, done)?,
    };
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
