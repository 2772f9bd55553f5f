//! Trained models as split checkpoints: the teacher's adapters merged into its weights (every
//! layer private), the student's adapters kept as factors on its private layers.

use crate::checkpoint::{
    Approximations, BaseModel, CheckpointKind, FORMAT_VERSION, HeadMerge, LoraInfo, Manifest,
    PrivateTensor, Provenance, Split, TaskInfo, write_checkpoint,
};
use crate::model::Llama;
use crate::model::lora_target::LoraTarget;
use crate::model::marill::{MarillArch, lora_names, projection};
use anyhow::{Context, Result};
use candle_core::Tensor;
use std::collections::HashMap;
use std::path::Path;

/// What every checkpoint of one run shares.
pub struct ExportContext<'a> {
    pub base_source: &'a str,
    pub base_sha256: &'a str,
    pub task: TaskInfo,
    pub recipe_sha256: &'a str,
}

fn manifest(
    ctx: &ExportContext,
    model: &Llama,
    kind: CheckpointKind,
    arch: &MarillArch,
    lora: Option<LoraInfo>,
    metrics: serde_json::Value,
) -> Manifest {
    let split = Split {
        public_layers: arch.public_layers,
        num_layers: model.num_layers(),
    };
    Manifest {
        format_version: FORMAT_VERSION,
        kind,
        base: BaseModel {
            source: ctx.base_source.to_string(),
            sha256: ctx.base_sha256.to_string(),
            config: model.config.clone(),
        },
        head_merge: HeadMerge::uniform(arch.head_merge, &model.config, &split),
        split,
        lora,
        approximations: Approximations {
            activation: arch.activation,
            softmax: arch.softmax,
        },
        task: ctx.task.clone(),
        training: Provenance {
            recipe_sha256: ctx.recipe_sha256.to_string(),
            metrics,
        },
    }
}

/// The teacher with its adapters folded in: every adapted projection is a private weight.
pub fn export_teacher(
    dir: &Path,
    ctx: &ExportContext,
    model: &Llama,
    targets: &[LoraTarget],
    metrics: serde_json::Value,
) -> Result<()> {
    let mut tensors = HashMap::new();
    for layer in 0..model.num_layers() {
        for &target in targets {
            let linear = projection(model, layer, target);
            let weight = match &linear.lora {
                Some(lora) => lora.merged_into(&linear.weight)?,
                None => linear.weight.clone(),
            };
            let name = PrivateTensor::Projection { layer, target }.name();
            tensors.insert(name, weight.detach());
        }
    }
    let m = manifest(
        ctx,
        model,
        CheckpointKind::Teacher,
        &MarillArch::standard(),
        None,
        metrics,
    );
    write_checkpoint(dir, &m, &tensors)
}

/// The student: LoRA factors of the private layers only.
pub fn export_student(
    dir: &Path,
    ctx: &ExportContext,
    model: &Llama,
    arch: &MarillArch,
    lora: LoraInfo,
    metrics: serde_json::Value,
) -> Result<()> {
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for layer in arch.private_layers(model) {
        for &target in &lora.targets {
            let adapter = projection(model, layer, target)
                .lora
                .as_ref()
                .with_context(|| format!("layer {layer} has no {} adapter", target.short_name()))?;
            let (a, b) = lora_names(layer, target);
            tensors.insert(a, adapter.a.detach());
            tensors.insert(b, adapter.b.detach());
        }
    }
    let m = manifest(
        ctx,
        model,
        CheckpointKind::Student,
        arch,
        Some(lora),
        metrics,
    );
    write_checkpoint(dir, &m, &tensors)
}

/// What `export_run` wrote, and why it wrote no PEFT adapter where it did not.
#[derive(Debug, Default)]
pub struct Exported {
    pub written: Vec<std::path::PathBuf>,
    pub skipped: Vec<String>,
}

/// `marill export RUN --out DIR`: the run's checkpoints, re-verified and rewritten under `out`,
/// and each checkpoint that PEFT can express (plain LoRA: no merged heads, exact
/// non-linearities) also as a PEFT adapter (`<name>-peft/`).
pub fn export_run(run: &Path, out: &Path) -> Result<Exported> {
    let mut exported = Exported::default();
    for name in ["teacher", "student"] {
        let src = run.join(name);
        if !src.is_dir() {
            continue;
        }
        let (manifest, tensors) = crate::checkpoint::read_checkpoint(&src)?;
        let dest = out.join(name);
        write_checkpoint(&dest, &manifest, &tensors)?;
        exported.written.push(dest);
        if manifest.lora.is_none() {
            continue;
        }
        let peft = out.join(format!("{name}-peft"));
        match crate::checkpoint::write_peft_adapter(&peft, &manifest, &tensors) {
            Ok(()) => exported.written.push(peft),
            Err(e) => exported.skipped.push(format!("{e:#}")),
        }
    }
    anyhow::ensure!(
        !exported.written.is_empty(),
        "{}: no teacher/ or student/ checkpoint in this run directory",
        run.display()
    );
    Ok(exported)
}
