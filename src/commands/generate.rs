//! `marill generate`: continue one prompt greedily, in plaintext or with the private layers
//! under MPC (every party a thread of this process), and print the text.
//!
//! A checkpoint must have been trained for a generation task (its manifest says which); a
//! bare base model generates as is. The prompt and the new tokens must fit the model's
//! positions.

use crate::data::PromptFormat;
use crate::eval::generate::stop_tokens;
use crate::model::generate::generate_greedy;
use crate::model::tokenizer::encode;
use crate::mpc::local::RunOptions;
use crate::mpc::protocol::ProtocolKind;
use crate::secure::generate::{ClientGeneration, run_generation};
use crate::secure::generation_report::SecureGenerationReport;
use crate::secure::{Holder, SecureModel, ServeOptions, Served};
use anyhow::{Result, anyhow, ensure};
use candle_core::Device;

/// Where the model runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GenerateMode {
    Plaintext,
    Mpc(ProtocolKind),
}

/// New tokens `generate` writes when neither `--max-new-tokens` nor the checkpoint says.
pub const DEFAULT_GENERATE_TOKENS: usize = 32;

pub struct GenerateCommand {
    /// A model or a split checkpoint.
    pub model: String,
    pub prompt: String,
    pub mode: GenerateMode,
    /// Default: a generation checkpoint's own (its longest training answer), else
    /// [`DEFAULT_GENERATE_TOKENS`].
    pub max_new_tokens: Option<usize>,
    /// Default: a checkpoint's own, else plain.
    pub format: Option<PromptFormat>,
    /// A bare base model shaped as a student with this many public layers
    /// ([`Served::student_shaped`]).
    pub student_shape: Option<usize>,
}

/// The generated text and, under MPC, what it cost.
pub struct Generated {
    pub text: String,
    /// Under MPC: the prefill's and each further token's cost, one line each.
    pub cost: Option<String>,
}

pub fn run_generate(cmd: &GenerateCommand, device: &Device) -> Result<Generated> {
    ensure!(!cmd.prompt.trim().is_empty(), "--prompt is empty");
    ensure!(
        cmd.max_new_tokens != Some(0),
        "--max-new-tokens must be at least 1"
    );
    let mut served = Served::load(&cmd.model, Holder::Server, device)?;
    if let Some(k) = cmd.student_shape {
        served = served.student_shaped(k)?;
    }
    let max_new_tokens = cmd
        .max_new_tokens
        .or(served.manifest.as_ref().and_then(|m| m.task.max_new_tokens))
        .unwrap_or(DEFAULT_GENERATE_TOKENS);
    let options = ServeOptions {
        max_new_tokens,
        ..Default::default()
    };
    let policy = served
        .generation_policy(&options)
        .map_err(|e| anyhow!("{}: {e:#}", cmd.model))?;
    let (model, tokenizer) = (&served.loaded.model, &served.loaded.tokenizer);
    let format = cmd
        .format
        .or(served.manifest.as_ref().map(|m| m.task.format))
        .unwrap_or_default();
    let ids = encode(tokenizer, &format.wrap(&cmd.prompt))?;
    ensure!(
        ids.len() + max_new_tokens <= policy.positions,
        "the prompt's {} tokens and {} new ones exceed the model's {} positions",
        ids.len(),
        max_new_tokens,
        policy.positions
    );
    let stop = stop_tokens(tokenizer)?;
    let (tokens, cost) = match cmd.mode {
        GenerateMode::Plaintext => (generate_greedy(model, &ids, max_new_tokens, &stop)?, None),
        GenerateMode::Mpc(protocol) => {
            let split = served.split?;
            let server = SecureModel::new(model, split.public_layers, split.secrecy)?;
            let prompts = [ids];
            let job = ClientGeneration {
                model,
                public_layers: split.public_layers,
                prompts: &prompts,
                batch: 1,
                max_new_tokens,
                stop: &stop,
            };
            let run = run_generation(
                protocol,
                &RunOptions::default(),
                &server,
                &job,
                &policy,
                |_| {},
            )?;
            let (prefill, per_token, _) = SecureGenerationReport::costs(&run, 1);
            let line = |name: &str, c: &crate::secure::report::ExampleCost| {
                format!(
                    "{name}: {:.2} MB online, {:.2} MB offline, {:.0} rounds, {:.3} s measured (lan {:.2} s, wan {:.2} s)",
                    c.online_bytes / 1e6,
                    c.offline_bytes / 1e6,
                    c.rounds,
                    c.wall_seconds,
                    c.est_seconds.lan,
                    c.est_seconds.wan
                )
            };
            let cost = format!(
                "mpc {protocol}, {} tokens\n{}\n{}",
                run.tokens[0].len(),
                line("prefill", &prefill),
                line("per token", &per_token)
            );
            (
                run.tokens.into_iter().next().unwrap_or_default(),
                Some(cost),
            )
        }
    };
    let text = tokenizer
        .decode(&tokens, true)
        .map_err(|e| anyhow!("cannot decode: {e}"))?;
    Ok(Generated { text, cost })
}
