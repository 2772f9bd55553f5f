//! `marill run`: a recipe end to end. Train the teacher and the student, then evaluate both in
//! plaintext (the whole test split) and under MPC (its first rows, on each protocol, every party
//! a thread of this process): choices scored, or for a generation task answers decoded greedily
//! up to the longest training answer; and write the side-by-side report (`report.json`, and the
//! tables as `report.md`).

use crate::checkpoint::TaskInfo;
use crate::data::{Dataset, Example, Split};
use crate::eval::EvalRequest;
use crate::eval::execute::Grading;
use crate::model::LoadedModel;
use crate::mpc::network::Network;
use crate::mpc::protocol::ProtocolKind;
use crate::recipe::Recipe;
use crate::report::{ModelReport, RunOutcome, RunReport};
use crate::secure::eval_generate::evaluate_secure_generation;
use crate::secure::generation_report::SecureGenerationReport;
use crate::secure::{
    Holder, SecureEvalReport, SecureEvalRequest, SecureModel, SecureSplit, SecureTransport,
    ServeOptions, Served, evaluate_secure,
};
use crate::train::pipeline::{StageReport, StageSelect, TrainReport, TrainRequest, run_training};
use anyhow::{Context, Result};
use candle_core::Device;
use std::path::{Path, PathBuf};

pub struct RunRequest {
    pub recipe: Recipe,
    pub out: PathBuf,
    /// Test rows evaluated under MPC (secure inference costs seconds a row).
    pub mpc_rows: usize,
    /// Rows per secure forward.
    pub batch: usize,
    pub resume: bool,
}

/// A checkpoint of a run, loaded once for every protocol, and the test rows evaluated under
/// MPC. Every party is a thread of this process, so one copy of the checkpoint, private
/// tensors included, serves them all and the plaintext reference.
struct Loaded {
    served: Served,
    split: SecureSplit,
    task: TaskInfo,
    server: SecureModel,
    rows: Vec<Example>,
}

impl Loaded {
    /// `rows`: the test rows evaluated under MPC.
    fn new(dir: &Path, rows: &[Example]) -> Result<Self> {
        let served = Served::load(&dir.to_string_lossy(), Holder::Server, &Device::Cpu)?;
        let split = *served
            .split
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", dir.display()))?;
        let task = served
            .manifest
            .as_ref()
            .context("a run's checkpoint has a manifest")?
            .task
            .clone();
        let server = SecureModel::new(&served.loaded.model, split.public_layers, split.secrecy)?;
        Ok(Loaded {
            served,
            split,
            task,
            server,
            rows: rows.to_vec(),
        })
    }

    /// The rows as `eval` requests them (`max_new_tokens`: the checkpoint's, for generation).
    fn request(&self, dir: &Path, batch: usize) -> EvalRequest {
        EvalRequest {
            model_name: dir.display().to_string(),
            task: self.task.name,
            rows: (self.rows.clone(), "test".to_string()),
            batch,
            max_len: self.task.max_len,
            format: self.task.format,
            max_new_tokens: self.task.max_new_tokens.unwrap_or(0),
            // `run`'s recipes are graded without running code.
            grading: Grading::NoExecution,
        }
    }

    /// `evaluate` under each protocol, the server serving under `policy`.
    fn under_each_protocol<P, R>(
        &self,
        dir: &Path,
        batch: usize,
        policy: &P,
        evaluate: fn(&LoadedModel, SecureSplit, &SecureEvalRequest<P>) -> Result<R>,
    ) -> Result<Vec<R>> {
        let loaded = &self.served.loaded;
        ProtocolKind::ALL
            .iter()
            .map(|&protocol| {
                let request = SecureEvalRequest {
                    eval: self.request(dir, batch),
                    protocol,
                    network: Network::Lan,
                    transport: SecureTransport::Memory {
                        server: &self.server,
                        policy,
                    },
                    reference: Some(loaded),
                };
                evaluate(loaded, self.split, &request)
                    .with_context(|| format!("{} under {protocol}", dir.display()))
            })
            .collect()
    }

    /// Choice scoring under each protocol.
    fn choice(&self, dir: &Path, batch: usize) -> Result<Vec<SecureEvalReport>> {
        let policy = self.served.policy(&ServeOptions {
            max_batch: batch,
            ..Default::default()
        })?;
        self.under_each_protocol(dir, batch, &policy, evaluate_secure)
    }

    /// Greedy decoding under each protocol, up to the checkpoint's longest training answer.
    fn generation(&self, dir: &Path, batch: usize) -> Result<Vec<SecureGenerationReport>> {
        let max_new_tokens = self.task.max_new_tokens.with_context(|| {
            format!(
                "{}: manifest.json has no task.max_new_tokens",
                dir.display()
            )
        })?;
        let policy = self.served.generation_policy(&ServeOptions {
            max_batch: batch,
            max_new_tokens,
            ..Default::default()
        })?;
        self.under_each_protocol(dir, batch, &policy, evaluate_secure_generation)
    }
}

/// Both checkpoints' plaintext accuracy and secure evaluations on the first `mpc_rows` of
/// `test` (`secure`: choice scoring or decoding of a loaded checkpoint).
fn evaluate_both<R>(
    req: &RunRequest,
    train: &TrainReport,
    test: &[Example],
    secure: impl Fn(&Loaded, &Path) -> Result<Vec<R>>,
) -> Result<RunReport<R>> {
    let (Some(teacher), Some(student)) = (&train.teacher, &train.student) else {
        anyhow::bail!("training did not produce both checkpoints");
    };
    let model = |stage: &StageReport| -> Result<ModelReport<R>> {
        let dir = &stage.checkpoint;
        let loaded = Loaded::new(dir, &test[..req.mpc_rows.min(test.len())])?;
        Ok(ModelReport {
            checkpoint: dir.clone(),
            plaintext_accuracy: stage.test_accuracy,
            mpc: secure(&loaded, dir)?,
        })
    };
    Ok(RunReport {
        recipe: req.recipe.path().display().to_string(),
        task: req.recipe.task.name.to_string(),
        test_rows: test.len(),
        mpc_rows: req.mpc_rows.min(test.len()),
        batch: req.batch,
        teacher: model(teacher)?,
        student: model(student)?,
    })
}

pub fn run_recipe(req: &RunRequest) -> Result<RunOutcome> {
    let train: TrainReport = run_training(&TrainRequest {
        recipe: req.recipe.clone(),
        out: req.out.clone(),
        stage: StageSelect::All,
        resume: req.resume,
    })?;
    let recipe = &req.recipe;
    // The dataset is read once: its test split's size for the report, its first rows for MPC.
    let dataset = Dataset::load(&recipe.datasets_dir()?, recipe.task.name)?;
    let test: Vec<Example> = dataset
        .split(Split::Test, recipe.task.split_seed, &recipe.task.ratios)
        .into_iter()
        .cloned()
        .collect();
    let batch = req.batch;
    let report = if recipe.task.name.is_generation() {
        RunOutcome::Generation(evaluate_both(req, &train, &test, |l, dir| {
            l.generation(dir, batch)
        })?)
    } else {
        RunOutcome::Choice(evaluate_both(req, &train, &test, |l, dir| {
            l.choice(dir, batch)
        })?)
    };
    crate::atomic::write_json_atomic(&req.out.join("report.json"), &report)?;
    crate::atomic::write_atomic(&req.out.join("report.md"), report.markdown().as_bytes())?;
    Ok(report)
}
