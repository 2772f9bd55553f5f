//! `marill train`: a recipe's teacher and student stages, end to end, into a run directory:
//! `teacher/` and `student/` split checkpoints, `metrics.jsonl`, `state/` (for `--resume`) and
//! `train_report.json`. A choice task trains on its choices' first tokens
//! ([`super::choice`]), a generation task on its answers' tokens ([`super::completion`]); both
//! stages, state, resume and export are the same for either.
//!
//! The student stage reads the teacher only as it was saved (checkpoint and final state) and
//! draws its random initialisation from a stream of its own, so it is the same whether the
//! teacher was trained in this process (`--stage all`) or an earlier one (`--stage student`).
//! Each stage records the recipe it starts under and resumes only under the same sections.

use super::batch::{Encoded, encode_examples, prefix_activations};
use super::choice::{ChoiceData, TeacherOutputs, choice_accuracy, teacher_outputs};
use super::completion::{
    Completion, CompletionData, Decoding, TokenTargets, encode_completions, teacher_token_targets,
};
use super::export::{ExportContext, export_student, export_teacher};
use super::optimizer::AdamWConfig;
use super::state::StatePaths;
use super::trainer::{LossWeights, Stage, StageConfig, StageOutcome, train_stage};
use crate::checkpoint::{BaseModel, LoraInfo, PrivateTensor, TaskInfo, load_checkpoint};
use crate::data::{Dataset, Example, Split};
use crate::model::lora_target::LoraTarget;
use crate::model::marill::{LoraSpec, MarillArch, attach_lora, projection_mut};
use crate::model::{Llama, LoadedModel, ModelSource, load};
use crate::recipe::{DistillSection, LoraSection, Recipe, RecipeSection, TeacherMethod};
use anyhow::{Context, Result, ensure};
use candle_core::{Device, Tensor, Var};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StageSelect {
    Teacher,
    Student,
    All,
}

pub struct TrainRequest {
    pub recipe: Recipe,
    pub out: PathBuf,
    pub stage: StageSelect,
    pub resume: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageReport {
    pub outcome: StageOutcome,
    pub test_accuracy: f64,
    pub checkpoint: PathBuf,
}

#[derive(Debug, Clone, Serialize, Default)]
pub struct TrainReport {
    pub recipe: String,
    pub teacher: Option<StageReport>,
    pub student: Option<StageReport>,
}

/// The encoded rows of one split with the activations their first trainable layer reads.
struct SplitData {
    examples: Vec<Encoded>,
    inputs: Vec<Tensor>,
}

struct Rows {
    train: Vec<Encoded>,
    validation: Vec<Encoded>,
    test: Vec<Encoded>,
}

impl Rows {
    fn with_inputs(&self, model: &Llama, first: usize) -> Result<[SplitData; 3]> {
        let make = |examples: &Vec<Encoded>| -> Result<SplitData> {
            Ok(SplitData {
                inputs: prefix_activations(model, examples, first)?,
                examples: examples.clone(),
            })
        };
        Ok([
            make(&self.train)?,
            make(&self.validation)?,
            make(&self.test)?,
        ])
    }
}

/// A generation task's training completions, and the examples validation and test decode.
struct GenerationRows<'a> {
    train: Vec<Completion>,
    validation: Vec<Example>,
    test: Vec<Example>,
    decoding: Decoding<'a>,
}

/// A task's rows as its objective needs them.
enum TaskRows<'a> {
    Choice(Rows),
    Generation(GenerationRows<'a>),
}

/// What the teacher said about the training rows, for the student; of the same kind as the
/// [`TaskRows`] it was computed from.
enum TeacherCache {
    Choice(TeacherOutputs),
    Generation(Vec<TokenTargets>),
}

impl TaskRows<'_> {
    /// The teacher's outputs on the training rows (hidden states of layers `keep_hidden_from..`).
    fn teacher_cache(
        &self,
        teacher: &Llama,
        distill: &DistillSection,
        batch: usize,
        keep_hidden_from: Option<usize>,
    ) -> Result<TeacherCache> {
        Ok(match self {
            TaskRows::Choice(rows) => {
                let inputs = prefix_activations(teacher, &rows.train, 0)?;
                let out = teacher_outputs(teacher, &rows.train, &inputs, batch, keep_hidden_from)?;
                TeacherCache::Choice(out)
            }
            TaskRows::Generation(rows) => {
                let inputs = prefix_activations(teacher, &rows.train, 0)?;
                TeacherCache::Generation(teacher_token_targets(
                    teacher,
                    &rows.train,
                    &inputs,
                    batch,
                    distill.top_k,
                    distill.temperature,
                    keep_hidden_from,
                )?)
            }
        })
    }
}

fn stage_config(
    recipe: &Recipe,
    epochs: usize,
    lr: f64,
    batch: usize,
    loss: LossWeights,
) -> StageConfig {
    let o = &recipe.optimizer;
    StageConfig {
        epochs,
        batch,
        accumulation: o.accumulation,
        adamw: AdamWConfig {
            lr,
            beta1: o.betas[0],
            beta2: o.betas[1],
            eps: o.eps,
            weight_decay: o.weight_decay,
        },
        schedule: o.schedule,
        warmup_ratio: o.warmup_ratio,
        grad_clip: o.grad_clip,
        eval_interval: o.eval_interval,
        seed: o.seed,
        loss,
    }
}

fn lora_spec(section: &LoraSection) -> LoraSpec {
    LoraSpec {
        rank: section.rank,
        alpha: section.alpha(),
        targets: section.targets.clone(),
        dropout: section.dropout as f32,
    }
}

/// Every projection and norm weight of every layer as a variable (full fine-tuning; the tied
/// embedding stays frozen).
fn make_all_trainable(model: &mut Llama) -> Result<Vec<(String, Var)>> {
    let mut vars = Vec::new();
    for layer in 0..model.num_layers() {
        for target in LoraTarget::ALL {
            let linear = projection_mut(model, layer, target);
            let var = Var::from_tensor(&linear.weight)?;
            linear.weight = var.as_tensor().clone();
            vars.push((PrivateTensor::Projection { layer, target }.name(), var));
        }
    }
    Ok(vars)
}

/// The recipe sections each stage's training depends on: the teacher's not on `[student]`.
const TEACHER_SECTIONS: [RecipeSection; 4] = [
    RecipeSection::Model,
    RecipeSection::Task,
    RecipeSection::Teacher,
    RecipeSection::Optimizer,
];
const STUDENT_SECTIONS: [RecipeSection; 5] = RecipeSection::ALL;

/// Trains one stage, resuming its state when asked and the recipe's `sections` are unchanged;
/// returns its outcome and test accuracy.
fn run_stage(
    stage: &Stage,
    sections: &[RecipeSection],
    task: &TaskRows,
    teacher: Option<&TeacherCache>,
    cfg: &StageConfig,
    req: &TrainRequest,
) -> Result<(StageOutcome, f64)> {
    let state = StatePaths::new(&req.out, stage.name);
    let resume = req.resume && state.exists();
    if resume {
        state.check_recipe(&req.recipe, sections)?;
    } else {
        state.record_recipe(&req.recipe)?;
    }
    let first = stage.first_layer;
    match task {
        TaskRows::Choice(rows) => {
            let [train, validation, test] = rows.with_inputs(stage.model, first)?;
            let data = ChoiceData {
                train: &train.examples,
                train_inputs: &train.inputs,
                validation: &validation.examples,
                validation_inputs: &validation.inputs,
                // The cache was computed from these very rows, so it is of their kind.
                teacher: teacher.and_then(|t| match t {
                    TeacherCache::Choice(out) => Some(out),
                    TeacherCache::Generation(_) => None,
                }),
            };
            let outcome = train_stage(stage, &data, cfg, &req.out, resume, None)?;
            let accuracy =
                choice_accuracy(stage.model, &test.examples, &test.inputs, first, cfg.batch)?;
            Ok((outcome, accuracy))
        }
        TaskRows::Generation(rows) => {
            let inputs = prefix_activations(stage.model, &rows.train, first)?;
            let data = CompletionData {
                train: &rows.train,
                train_inputs: &inputs,
                validation: &rows.validation,
                decoding: &rows.decoding,
                teacher: teacher.and_then(|t| match t {
                    TeacherCache::Generation(targets) => Some(targets.as_slice()),
                    TeacherCache::Choice(_) => None,
                }),
            };
            let outcome = train_stage(stage, &data, cfg, &req.out, resume, None)?;
            let accuracy = rows.decoding.exact_match(stage.model, &rows.test)?;
            Ok((outcome, accuracy))
        }
    }
}

pub fn run_training(req: &TrainRequest) -> Result<TrainReport> {
    let recipe = &req.recipe;
    recipe.check_base_exists()?;
    let base_source = recipe.base_source()?;
    if recipe.base_is_default() && !Path::new(&base_source).exists() {
        crate::fetch::fetch_base_model(Path::new(&base_source))?;
    }
    let device = Device::Cpu;
    let base: LoadedModel = load(&ModelSource::parse(&base_source)?, &device)?;
    recipe.validate(&base.model.config)?;
    std::fs::create_dir_all(&req.out)
        .with_context(|| format!("{}: cannot create", req.out.display()))?;
    let base_sha = BaseModel::weights_sha256(&base.weight_files)?;

    let dataset = Dataset::load(&recipe.datasets_dir()?, recipe.task.name)?;
    let split = |split: Split| dataset.split(split, recipe.task.split_seed, &recipe.task.ratios);
    let (format, max_len) = (recipe.model.format, recipe.task.max_len);
    let in_recipe = || recipe.path().display().to_string();
    let task_rows = if recipe.task.name.is_generation() {
        let train = encode_completions(&base.tokenizer, format, &split(Split::Train), max_len)
            .with_context(in_recipe)?;
        // Room to write the longest training answer and its end token, no more: what follows
        // an answer can only spoil its final number.
        let max_new_tokens = train
            .iter()
            .map(|c| c.ids.len() - c.prompt_len)
            .max()
            .unwrap_or(1);
        let owned = |s: Split| split(s).into_iter().cloned().collect::<Vec<Example>>();
        TaskRows::Generation(GenerationRows {
            train,
            validation: owned(Split::Validation),
            test: owned(Split::Test),
            decoding: Decoding {
                tokenizer: &base.tokenizer,
                format,
                max_len,
                max_new_tokens,
            },
        })
    } else {
        let encode = |s: Split| -> Result<Vec<Encoded>> {
            encode_examples(&base.tokenizer, format, &split(s), max_len)
        };
        TaskRows::Choice(Rows {
            train: encode(Split::Train)?,
            validation: encode(Split::Validation)?,
            test: encode(Split::Test)?,
        })
    };
    let ctx = ExportContext {
        base_source: &base_source,
        base_sha256: &base_sha,
        task: TaskInfo {
            name: recipe.task.name,
            format: recipe.model.format,
            max_len: recipe.task.max_len,
            max_new_tokens: match &task_rows {
                TaskRows::Generation(g) => Some(g.decoding.max_new_tokens),
                TaskRows::Choice(_) => None,
            },
        },
        recipe_sha256: recipe.sha256(),
    };
    let mut report = TrainReport {
        recipe: recipe.path().display().to_string(),
        ..Default::default()
    };
    let teacher_dir = req.out.join("teacher");
    let student_dir = req.out.join("student");

    // Teacher: standard fine-tuning, every layer private.
    if req.stage != StageSelect::Student {
        let mut rng = stage_rng(recipe.optimizer.seed, TEACHER_STREAM);
        let teacher_lora = recipe.teacher.lora();
        let mut teacher_model = base.model.clone();
        let vars = match (&recipe.teacher.method, &teacher_lora) {
            (TeacherMethod::Lora, Some(l)) => {
                let layers = 0..teacher_model.num_layers();
                attach_lora(
                    &mut teacher_model,
                    layers,
                    &lora_spec(l),
                    &HashMap::new(),
                    &mut rng,
                )?
            }
            _ => make_all_trainable(&mut teacher_model)?,
        };
        let loss = LossWeights {
            ce: 1.0,
            kl: 0.0,
            hidden: 0.0,
            temperature: 1.0,
        };
        let t = &recipe.teacher;
        let cfg = stage_config(recipe, t.epochs, t.lr, t.batch, loss);
        let stage = Stage {
            name: "teacher",
            model: &teacher_model,
            vars,
            first_layer: 0,
        };
        let (outcome, test_accuracy) =
            run_stage(&stage, &TEACHER_SECTIONS, &task_rows, None, &cfg, req)?;
        let metrics = serde_json::json!({"best_val_accuracy": outcome.best_val_accuracy, "test_accuracy": test_accuracy});
        let targets = teacher_lora
            .as_ref()
            .map(|l| l.targets.clone())
            .unwrap_or_else(|| LoraTarget::ALL.to_vec());
        export_teacher(&teacher_dir, &ctx, &teacher_model, &targets, metrics)?;
        eprintln!(
            "teacher: test accuracy {test_accuracy:.4} -> {}",
            teacher_dir.display()
        );
        report.teacher = Some(StageReport {
            outcome,
            test_accuracy,
            checkpoint: teacher_dir.clone(),
        });
    }
    if req.stage == StageSelect::Teacher {
        write_report(&req.out, &report)?;
        return Ok(report);
    }

    // Student: MARILL architecture, distilled from the teacher as it was saved (its checkpoint
    // and its final training state), whether this process trained it or an earlier one did: so
    // `--stage teacher` then `--stage student` trains the very student `--stage all` does.
    let teacher_model = load_checkpoint(&teacher_dir, &device)
        .with_context(
            || "the student stage needs the teacher checkpoint (train it with --stage teacher)",
        )?
        .loaded
        .model;
    let init = teacher_adapters(&req.out, recipe)?;
    let s = &recipe.student;
    let arch = MarillArch {
        public_layers: recipe.public_layers(&base.model.config),
        head_merge: s.head_merge.factor,
        activation: s.approximations.activation,
        softmax: s.approximations.softmax,
    };
    let d = &s.distill;
    let keep_hidden = (d.w_hidden > 0.0).then_some(arch.public_layers);
    let teacher_out = task_rows.teacher_cache(&teacher_model, d, s.batch, keep_hidden)?;
    drop(teacher_model);

    let mut rng = stage_rng(recipe.optimizer.seed, STUDENT_STREAM);
    let mut student = base.model.clone();
    arch.apply(&mut student)?;
    let private = arch.private_layers(&student);
    let vars = attach_lora(&mut student, private, &lora_spec(&s.lora), &init, &mut rng)?;
    let loss = LossWeights {
        ce: d.w_ce,
        kl: d.w_logits,
        hidden: d.w_hidden,
        temperature: d.temperature,
    };
    let cfg = stage_config(recipe, s.epochs, s.lr, s.batch, loss);
    let stage = Stage {
        name: "student",
        model: &student,
        vars,
        first_layer: arch.public_layers,
    };
    let (outcome, test_accuracy) = run_stage(
        &stage,
        &STUDENT_SECTIONS,
        &task_rows,
        Some(&teacher_out),
        &cfg,
        req,
    )?;
    let metrics = serde_json::json!({"best_val_accuracy": outcome.best_val_accuracy, "test_accuracy": test_accuracy});
    let lora = LoraInfo {
        rank: s.lora.rank,
        alpha: s.lora.alpha(),
        targets: s.lora.targets.clone(),
    };
    export_student(&student_dir, &ctx, &student, &arch, lora, metrics)?;
    eprintln!(
        "student: test accuracy {test_accuracy:.4} -> {}",
        student_dir.display()
    );
    report.student = Some(StageReport {
        outcome,
        test_accuracy,
        checkpoint: student_dir,
    });
    write_report(&req.out, &report)?;
    Ok(report)
}

/// The random streams of the stages' adapter initialisations: each stage draws from its own, so
/// the student's does not depend on whether the teacher was trained in the same process.
const TEACHER_STREAM: u64 = 0;
const STUDENT_STREAM: u64 = 1;

fn stage_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// The LoRA factors the student's adapters start from: the finished teacher's, from its saved
/// state (its checkpoint holds them merged). A fully fine-tuned teacher has none.
fn teacher_adapters(run_dir: &Path, recipe: &Recipe) -> Result<HashMap<String, Tensor>> {
    if recipe.teacher.method != TeacherMethod::Lora {
        return Ok(HashMap::new());
    }
    let state = StatePaths::new(run_dir, "teacher");
    ensure!(
        state.exists(),
        "{}: the student starts from the teacher's adapters, which --stage teacher saves there; \
         not found (train the teacher again)",
        state.tensors.display()
    );
    let (progress, tensors) = state.load()?;
    ensure!(
        progress.done,
        "{}: the teacher stage did not finish (train it with --stage teacher --resume)",
        state.progress.display()
    );
    Ok(tensors)
}

fn write_report(dir: &Path, report: &TrainReport) -> Result<()> {
    crate::atomic::write_json_atomic(&dir.join("train_report.json"), report)
}
