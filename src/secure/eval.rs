//! `marill eval --mode mpc`: a task's rows through the secure forward, next to the plaintext
//! prediction of the same model on the same rows.

use super::client::SecureInput;
use super::forward::{ClientJob, SecureModel, run_secure};
use super::policy::ServePolicy;
use super::remote::{TcpClient, run_secure_tcp};
use super::report::{ExampleCost, PhaseCost, SecureEvalReport, SecureRow, latency_one_query};
use super::split::SecureSplit;
use crate::data::{Answer, Example, argmax};
use crate::eval::EvalRequest;
use crate::eval::classify::classify;
use crate::eval::prompt::{choice_token_ids, prompt_ids};
use crate::model::LoadedModel;
use crate::mpc::local::RunOptions;
use crate::mpc::network::Network;
use crate::mpc::protocol::ProtocolKind;
use crate::progress::progress_bar;
use anyhow::{Context, Result, bail, ensure};

/// How the parties of a secure evaluation talk (`P`: the server's policy, of a choice task
/// or of generation).
pub enum SecureTransport<'a, P = ServePolicy> {
    /// Every party a thread of this process: the server's model (with its private tensors)
    /// and the policy it serves under are here too.
    Memory {
        server: &'a SecureModel,
        policy: &'a P,
    },
    /// Every party its own process over TCP: this process is the client and holds only public
    /// data; the others are started on loopback by the command, or by hand (`marill party`)
    /// at the given addresses.
    Tcp(TcpClient),
}

/// A plaintext evaluation request (rows, prompts, batch, report path) run under `protocol`
/// (`P`: the server's policy, of a choice task or of generation).
pub struct SecureEvalRequest<'a, P = ServePolicy> {
    pub eval: EvalRequest,
    pub protocol: ProtocolKind,
    /// The network whose estimate the report leads with.
    pub network: Network,
    pub transport: SecureTransport<'a, P>,
    /// The same model in plaintext, private tensors included, to compare each MPC prediction
    /// with (the operator's check, not the client's: a client does not hold them).
    pub reference: Option<&'a LoadedModel>,
}

/// Evaluates `req`'s rows under MPC as the client: `client` is the model as the client holds it
/// (the public base model in the checkpoint's architecture, no private tensors).
pub fn evaluate_secure(
    client: &LoadedModel,
    split: SecureSplit,
    secure_req: &SecureEvalRequest,
) -> Result<SecureEvalReport> {
    let (protocol, network) = (secure_req.protocol, secure_req.network);
    let req = &secure_req.eval;
    if req.task.is_generation() {
        bail!(
            "secure evaluation supports choice tasks only, not {}",
            req.task
        );
    }
    let (model, tokenizer) = (&client.model, &client.tokenizer);
    let (rows, rows_name) = &req.rows;
    ensure!(!rows.is_empty(), "no rows to evaluate under MPC");
    let rows: Vec<&Example> = rows.iter().collect();
    let max_len = req.max_len.min(model.config.max_position_embeddings);
    let SecureSplit {
        public_layers,
        secrecy,
    } = split;

    let plaintext = secure_req
        .reference
        .map(|reference| {
            let r = &reference.model;
            let scored = classify(
                r,
                &reference.tokenizer,
                req.format,
                &rows,
                req.batch,
                max_len,
            )?;
            let choices = scored
                .rows
                .iter()
                .map(|r| {
                    r.scores
                        .as_deref()
                        .and_then(argmax)
                        .with_context(|| format!("example {}: no plaintext scores", r.id))
                })
                .collect::<Result<Vec<usize>>>()?;
            anyhow::Ok((scored.accuracy.value().unwrap_or(0.0), choices))
        })
        .transpose()?;

    let inputs: Vec<SecureInput> = rows
        .iter()
        .map(|ex| {
            let ids = prompt_ids(tokenizer, req.format, ex, max_len)?;
            let choices = choice_token_ids(tokenizer, req.format, ex)?;
            SecureInput::new(model, &ids, &choices, public_layers)
        })
        .collect::<Result<_>>()?;
    let job = ClientJob {
        inputs: &inputs,
        batch: req.batch,
    };
    let bar = progress_bar(rows.len(), &format!("mpc {}", protocol));
    let done = |k: usize| bar.inc(k as u64);
    let run = match &secure_req.transport {
        SecureTransport::Memory { server, policy } => {
            run_secure(protocol, &RunOptions::default(), server, &job, policy, done)?
        }
        SecureTransport::Tcp(tcp) => {
            let secure = SecureModel::new(model, public_layers, secrecy)?;
            run_secure_tcp(protocol, tcp, &secure, &job, done)?
        }
    };
    bar.finish_and_clear();

    let n = rows.len();
    let mut predictions = Vec::with_capacity(n);
    let (mut correct, mut agree) = (0, 0);
    for (i, (ex, &mpc)) in rows.iter().zip(&run.choices).enumerate() {
        let Answer::Choice(target) = ex.answer else {
            bail!("example {}: not a choice example", ex.id);
        };
        let plain = plaintext.as_ref().map(|(_, c)| c[i]);
        correct += usize::from(mpc == target);
        agree += usize::from(plain == Some(mpc));
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
        network,
        batch: req.batch,
        rows: rows_name.clone(),
        n,
        accuracy: frac(correct),
        plaintext_accuracy: plaintext.as_ref().map(|(a, _)| *a),
        agreement: plaintext.is_some().then(|| frac(agree)),
        scores_revealed: run.scores_revealed,
        public_layers,
        private_layers: model.num_layers() - public_layers,
        cost_per_example: ExampleCost::mean(&run.examples, run.examples_wall_seconds, n),
        latency_one_query: latency_one_query(&run.examples, n, run.forwards, run.query_rounds),
        weight_setup: PhaseCost::of(&run.setup),
        wire_bytes: run.wire_bytes,
        predictions,
    };
    Ok(report)
}
