//! `marill run`: a recipe end to end. Train the teacher and the student, then evaluate both in
//! plaintext (the whole test split) and under MPC (its first rows, on each protocol, every party
//! a thread of this process), and write the side-by-side report (`report.json`, and the table
//! as `report.md`).

use crate::data::{Dataset, Split};
use crate::eval::EvalRequest;
use crate::mpc::network::Network;
use crate::mpc::protocol::ProtocolKind;
use crate::recipe::Recipe;
use crate::report::table::markdown;
use crate::report::{ModelReport, RunReport};
use crate::secure::{
    Holder, SecureEvalRequest, SecureModel, SecureTransport, ServeOptions, Served, evaluate_secure,
};
use crate::train::pipeline::{StageSelect, TrainReport, TrainRequest, run_training};
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

fn evaluate(
    dir: &Path,
    recipe: &Recipe,
    plaintext_accuracy: f64,
    mpc_rows: usize,
    batch: usize,
) -> Result<ModelReport> {
    // Every party is a thread of this process, so one copy of the checkpoint, private tensors
    // included, serves them all and the plaintext reference.
    let served = Served::load(&dir.to_string_lossy(), Holder::Server, &Device::Cpu)?;
    let policy = served.policy(&ServeOptions {
        max_batch: batch,
        ..Default::default()
    })?;
    let split = served.split?;
    let manifest = served
        .manifest
        .context("a run's checkpoint has a manifest")?;
    let loaded = &served.loaded;
    let server = SecureModel::new(&loaded.model, split.public_layers, split.secrecy)?;
    let dataset = Dataset::load(&recipe.datasets_dir()?, recipe.task.name)?;
    let rows: Vec<_> = dataset
        .split(Split::Test, recipe.task.split_seed, &recipe.task.ratios)
        .into_iter()
        .take(mpc_rows)
        .cloned()
        .collect();
    let mpc = ProtocolKind::ALL
        .iter()
        .map(|&protocol| {
            let eval = EvalRequest {
                model_name: dir.display().to_string(),
                task: recipe.task.name,
                rows: (rows.clone(), "test".to_string()),
                batch,
                max_len: manifest.task.max_len,
                format: manifest.task.format,
                max_new_tokens: 0,
            };
            let request = SecureEvalRequest {
                eval,
                protocol,
                network: Network::Lan,
                transport: SecureTransport::Memory {
                    server: &server,
                    policy: &policy,
                },
                reference: Some(loaded),
            };
            evaluate_secure(loaded, split, &request)
                .with_context(|| format!("{} under {protocol}", dir.display()))
        })
        .collect::<Result<_>>()?;
    Ok(ModelReport {
        checkpoint: dir.to_path_buf(),
        plaintext_accuracy,
        mpc,
    })
}

pub fn run_recipe(req: &RunRequest) -> Result<RunReport> {
    let train: TrainReport = run_training(&TrainRequest {
        recipe: req.recipe.clone(),
        out: req.out.clone(),
        stage: StageSelect::All,
        resume: req.resume,
    })?;
    let (Some(teacher), Some(student)) = (&train.teacher, &train.student) else {
        anyhow::bail!("training did not produce both checkpoints");
    };
    let recipe = &req.recipe;
    let test_rows = Dataset::load(&recipe.datasets_dir()?, recipe.task.name)?
        .split(Split::Test, recipe.task.split_seed, &recipe.task.ratios)
        .len();
    let report = RunReport {
        recipe: recipe.path().display().to_string(),
        task: recipe.task.name.to_string(),
        test_rows,
        mpc_rows: req.mpc_rows.min(test_rows),
        batch: req.batch,
        teacher: evaluate(
            &teacher.checkpoint,
            recipe,
            teacher.test_accuracy,
            req.mpc_rows,
            req.batch,
        )?,
        student: evaluate(
            &student.checkpoint,
            recipe,
            student.test_accuracy,
            req.mpc_rows,
            req.batch,
        )?,
    };
    crate::atomic::write_json_atomic(&req.out.join("report.json"), &report)?;
    crate::atomic::write_atomic(&req.out.join("report.md"), markdown(&report).as_bytes())?;
    Ok(report)
}
