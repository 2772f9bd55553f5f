//! `marill eval`: a task's rows through a model in plaintext, or under MPC as the client (every
//! party a thread of this process, or each its own process over TLS), next to the plaintext
//! prediction of the same model when asked.
//!
//! A checkpoint says which layers are public and what is secret (a bare model runs every layer
//! privately with secret weights), and how its task was prompted: its `max_len` and prompt
//! format are the defaults. An MPC client over TCP holds only public data: it never reads
//! `private.safetensors`. Generation tasks decode under MPC, choice tasks score the choices.

use crate::data::{PromptFormat, TaskKind};
use crate::eval::execute::{CodeRunner, Grading};
use crate::eval::report::EvalReport;
use crate::eval::{EvalRequest, Rows, evaluate_plaintext};
use crate::mpc::network::Network;
use crate::mpc::protocol::{ProtocolKind, Role};
use crate::mpc::tls::PartyTls;
use crate::secure::eval_generate::{SecureGenerationRequest, evaluate_secure_generation};
use crate::secure::generation_report::SecureGenerationReport;
use crate::secure::policy::DEFAULT_MAX_BATCH;
use crate::secure::remote::TcpClient;
use crate::secure::served::DEFAULT_MAX_LEN;
use crate::secure::{
    Holder, SecureEvalReport, SecureEvalRequest, SecureModel, SecureTransport, ServeOptions,
    Served, evaluate_secure,
};
use anyhow::{Result, ensure};
use candle_core::Device;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// New tokens a generation task's answer may take when neither `--max-new-tokens` nor the
/// checkpoint says (gsm8k's worked solutions need room).
pub const DEFAULT_EVAL_NEW_TOKENS: usize = 256;

pub struct EvalCommand {
    /// A model or a split checkpoint (`--model`), also how reports name it.
    pub model: String,
    pub task: TaskKind,
    pub rows: Rows,
    pub limit: Option<usize>,
    pub batch: usize,
    /// Default: a checkpoint's own, else [`DEFAULT_MAX_LEN`].
    pub max_len: Option<usize>,
    /// Default: a checkpoint's own, else plain.
    pub format: Option<PromptFormat>,
    /// Generation tasks. Default: a generation checkpoint's own (its longest training answer),
    /// else [`DEFAULT_EVAL_NEW_TOKENS`].
    pub max_new_tokens: Option<usize>,
    /// `None`: plaintext.
    pub mpc: Option<MpcEval>,
    /// A bare base model shaped as a student with this many public layers
    /// (`Served::student_shaped`).
    pub student_shape: Option<usize>,
    /// Code tasks: run each answer's tests, with this time limit a program (`--execute-code`).
    pub execute_code: Option<Duration>,
}

/// How to run the private part under MPC.
pub struct MpcEval {
    pub protocol: ProtocolKind,
    /// The network whose estimate the report leads with.
    pub network: Network,
    pub transport: MpcTransport,
    /// Also run the model in plaintext (it reads the private tensors) to report agreement.
    pub reference: bool,
}

pub enum MpcTransport {
    /// Every party a thread of this process.
    Memory,
    /// This process the client; the other parties at `peers`, or started here on loopback
    /// when there are none.
    Tcp {
        listen: SocketAddr,
        peers: Vec<(Role, SocketAddr)>,
        timeout: Duration,
        deadline: Duration,
        /// Parties started by hand: this client's identity and the peers' certificates.
        tls_dir: Option<PathBuf>,
    },
}

/// What an evaluation reports.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum EvalOutcome {
    Plaintext(EvalReport),
    Mpc(Box<SecureEvalReport>),
    MpcGeneration(Box<SecureGenerationReport>),
}

impl EvalOutcome {
    /// What `marill eval` prints.
    pub fn summary(&self) -> String {
        match self {
            EvalOutcome::Plaintext(r) => r.summary(),
            EvalOutcome::Mpc(r) => r.summary(),
            EvalOutcome::MpcGeneration(r) => r.summary(),
        }
    }
}

pub fn run_eval(cmd: EvalCommand, device: &Device) -> Result<EvalOutcome> {
    ensure!(
        !cmd.task.is_graded_by_execution() || cmd.execute_code.is_some(),
        "{} is graded by running the model's code: pass --execute-code to allow it (see \
         docs/humaneval.md)",
        cmd.task
    );
    // Rows first: a bad data file fails before the model is loaded.
    let rows = cmd.rows.load(cmd.task, cmd.limit)?;
    let tcp = matches!(
        cmd.mpc,
        Some(MpcEval {
            transport: MpcTransport::Tcp { .. },
            ..
        })
    );
    let holder = if tcp { Holder::Public } else { Holder::Server };
    let mut served = Served::load(&cmd.model, holder, device)?;
    if let Some(k) = cmd.student_shape {
        ensure!(
            !tcp,
            "--student-shape runs with every party in this process"
        );
        served = served.student_shaped(k)?;
    }
    let trained = served.manifest.as_ref().map(|m| &m.task);
    let request = EvalRequest {
        model_name: cmd.model.clone(),
        task: cmd.task,
        rows,
        batch: cmd.batch,
        max_len: cmd
            .max_len
            .or(trained.map(|t| t.max_len))
            .unwrap_or(DEFAULT_MAX_LEN),
        max_new_tokens: cmd
            .max_new_tokens
            .or(trained.and_then(|t| t.max_new_tokens))
            .unwrap_or(DEFAULT_EVAL_NEW_TOKENS),
        format: cmd.format.or(trained.map(|t| t.format)).unwrap_or_default(),
        grading: match cmd.execute_code {
            Some(timeout) => Grading::Execute(CodeRunner::new(timeout)?),
            None => Grading::NoExecution,
        },
    };
    let Some(mpc) = cmd.mpc else {
        return Ok(EvalOutcome::Plaintext(evaluate_plaintext(
            &served.loaded,
            &request,
        )?));
    };
    let serve = ServeOptions {
        task: Some(cmd.task),
        format: cmd.format,
        max_len: cmd.max_len,
        max_batch: cmd.batch.max(DEFAULT_MAX_BATCH),
        reveal_scores: false,
        max_new_tokens: request.max_new_tokens,
    };
    let report = match mpc.transport {
        MpcTransport::Tcp {
            listen,
            peers,
            timeout,
            deadline,
            tls_dir,
        } => {
            let reference = mpc
                .reference
                .then(|| Served::load(&cmd.model, Holder::Server, device))
                .transpose()?;
            let peer_roles: Vec<Role> = peers.iter().map(|p| p.0).collect();
            let tls = tls_dir
                .map(|dir| PartyTls::load(&dir, Role::Client, &peer_roles))
                .transpose()?;
            let tcp = TcpClient {
                listen,
                peers,
                model: cmd.model.clone(),
                serve,
                timeout,
                deadline,
                tls,
            };
            let reference = reference.as_ref().map(|r| &r.loaded);
            if cmd.task.is_generation() {
                let request = SecureGenerationRequest {
                    eval: request,
                    protocol: mpc.protocol,
                    network: mpc.network,
                    transport: SecureTransport::Tcp(tcp),
                    reference,
                };
                let report = evaluate_secure_generation(&served.loaded, served.split?, &request)?;
                return Ok(EvalOutcome::MpcGeneration(Box::new(report)));
            }
            let request = SecureEvalRequest {
                eval: request,
                protocol: mpc.protocol,
                network: mpc.network,
                transport: SecureTransport::Tcp(tcp),
                reference,
            };
            evaluate_secure(&served.loaded, served.split?, &request)?
        }
        MpcTransport::Memory if cmd.task.is_generation() => {
            let policy = served.generation_policy(&serve)?;
            let split = served.split?;
            let server =
                SecureModel::new(&served.loaded.model, split.public_layers, split.secrecy)?;
            let request = SecureGenerationRequest {
                eval: request,
                protocol: mpc.protocol,
                network: mpc.network,
                transport: SecureTransport::Memory {
                    server: &server,
                    policy: &policy,
                },
                reference: mpc.reference.then_some(&served.loaded),
            };
            let report = evaluate_secure_generation(&served.loaded, split, &request)?;
            return Ok(EvalOutcome::MpcGeneration(Box::new(report)));
        }
        MpcTransport::Memory => {
            let policy = served.policy(&serve)?;
            let split = served.split?;
            let server =
                SecureModel::new(&served.loaded.model, split.public_layers, split.secrecy)?;
            let request = SecureEvalRequest {
                eval: request,
                protocol: mpc.protocol,
                network: mpc.network,
                transport: SecureTransport::Memory {
                    server: &server,
                    policy: &policy,
                },
                reference: mpc.reference.then_some(&served.loaded),
            };
            evaluate_secure(&served.loaded, split, &request)?
        }
    };
    Ok(EvalOutcome::Mpc(Box::new(report)))
}
