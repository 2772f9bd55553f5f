//! `marill eval --mode mpc` on a generation task (`arithmetic-gen`, `gsm8k`): every row's
//! prompt decoded greedily under MPC, graded like plaintext generation, next to plaintext
//! greedy decoding of the same model; the parties threads of this process or processes over
//! TCP, as for choice tasks.

use super::eval::{SecureEvalRequest, SecureTransport};
use super::forward::SecureModel;
use super::generate::{ClientGeneration, GenerationRun, run_generation};
use super::generation_report::{GeneratedRow, SecureGenerationReport, token_matches};
use super::policy::GenerationPolicy;
use super::remote::run_generation_tcp;
use super::report::PhaseCost;
use super::split::SecureSplit;
use crate::data::{Example, Prediction};
use crate::eval::generate::{generation_prompt, stop_tokens};
use crate::model::LoadedModel;
use crate::model::generate::generate_greedy;
use crate::mpc::local::RunOptions;
use crate::progress::progress_bar;
use anyhow::{Result, anyhow, ensure};

/// A generation task's rows under `protocol`, served under a generation policy.
pub type SecureGenerationRequest<'a> = SecureEvalRequest<'a, GenerationPolicy>;

/// Evaluates `secure_req`'s generation rows under MPC as the client (`client`: the model as
/// the client holds it).
pub fn evaluate_secure_generation(
    client: &LoadedModel,
    split: SecureSplit,
    secure_req: &SecureGenerationRequest,
) -> Result<SecureGenerationReport> {
    let req = &secure_req.eval;
    ensure!(
        req.task.is_generation(),
        "{} is a choice task, not generation",
        req.task
    );
    ensure!(
        req.max_new_tokens > 0,
        "--max-new-tokens must be at least 1"
    );
    let (model, tokenizer) = (&client.model, &client.tokenizer);
    let (rows, rows_name) = &req.rows;
    ensure!(!rows.is_empty(), "no rows to evaluate under MPC");
    let rows: Vec<&Example> = rows.iter().collect();
    let max_len = req.max_len.min(model.config.max_position_embeddings);
    let stop = stop_tokens(tokenizer)?;
    let prompts: Vec<Vec<u32>> = rows
        .iter()
        .map(|ex| generation_prompt(tokenizer, req.format, ex, max_len, req.max_new_tokens))
        .collect::<Result<_>>()?;

    let plaintext: Option<Vec<Vec<u32>>> = secure_req
        .reference
        .map(|reference| {
            let bar = progress_bar(prompts.len(), "plaintext generate");
            let tokens = prompts
                .iter()
                .map(|p| {
                    let t = generate_greedy(&reference.model, p, req.max_new_tokens, &stop);
                    bar.inc(1);
                    t
                })
                .collect::<Result<Vec<_>>>();
            bar.finish_and_clear();
            tokens
        })
        .transpose()?;

    let job = ClientGeneration {
        model,
        public_layers: split.public_layers,
        prompts: &prompts,
        batch: req.batch,
        max_new_tokens: req.max_new_tokens,
        stop: &stop,
    };
    let bar = progress_bar(
        prompts.len(),
        &format!("mpc generate {}", secure_req.protocol),
    );
    let done = |k: usize| bar.inc(k as u64);
    let run: GenerationRun = match &secure_req.transport {
        SecureTransport::Memory { server, policy } => run_generation(
            secure_req.protocol,
            &RunOptions::default(),
            server,
            &job,
            policy,
            done,
        )?,
        SecureTransport::Tcp(tcp) => {
            let secure = SecureModel::new(model, split.public_layers, split.secrecy)?;
            run_generation_tcp(secure_req.protocol, tcp, &secure, &job, done)?
        }
    };
    bar.finish_and_clear();

    let text = |ids: &[u32]| {
        tokenizer
            .decode(ids, true)
            .map_err(|e| anyhow!("cannot decode: {e}"))
    };
    let n = rows.len();
    let (mut correct, mut plain_correct, mut same_rows) = (0, 0, 0);
    let (mut same_tokens, mut positions) = (0, 0);
    let mut predictions = Vec::with_capacity(n);
    for (i, ex) in rows.iter().enumerate() {
        let mpc = text(&run.tokens[i])?;
        let ok = req.grading.grade(ex, Prediction::Generated(&mpc))?;
        correct += usize::from(ok);
        let (plain, agree) = match &plaintext {
            Some(p) => {
                let plain = text(&p[i])?;
                plain_correct += usize::from(req.grading.grade(ex, Prediction::Generated(&plain))?);
                let (same, reached) = token_matches(&run.tokens[i], &p[i]);
                same_tokens += same;
                positions += reached;
                let agree = run.tokens[i] == p[i];
                same_rows += usize::from(agree);
                (Some(plain), Some(agree))
            }
            None => (None, None),
        };
        predictions.push(GeneratedRow {
            id: ex.id.clone(),
            correct: ok,
            mpc,
            plaintext: plain,
            agree,
        });
    }
    let frac = |k: usize, of: usize| k as f64 / of.max(1) as f64;
    let referenced = plaintext.is_some();
    let (prefill, per_token, per_step) = SecureGenerationReport::costs(&run, n);
    Ok(SecureGenerationReport {
        task: req.task.to_string(),
        model: req.model_name.clone(),
        mode: "mpc",
        protocol: secure_req.protocol.to_string(),
        network: secure_req.network,
        batch: req.batch,
        rows: rows_name.clone(),
        n,
        max_new_tokens: req.max_new_tokens,
        accuracy: frac(correct, n),
        plaintext_accuracy: referenced.then(|| frac(plain_correct, n)),
        token_agreement: referenced.then(|| frac(same_tokens, positions)),
        sequence_agreement: referenced.then(|| frac(same_rows, n)),
        public_layers: split.public_layers,
        private_layers: model.num_layers() - split.public_layers,
        generated_tokens: run.tokens.iter().map(Vec::len).sum(),
        steps: run.steps,
        prefill,
        per_token,
        per_step,
        weight_setup: PhaseCost::of(&run.setup),
        predictions,
    })
}
