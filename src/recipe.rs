//! The recipe: one TOML file that drives the whole pipeline (base model, task, teacher, student,
//! optimizer), its defaults and its validation. Every field is documented in `recipes/README.md`.
//!
//! Checks that need only the file run in [`Recipe::load`]; checks that need the architecture
//! (layer count, heads, projection widths) run in [`Recipe::validate`]. Every error is one line
//! that starts with the recipe's path and names the offending field.

use crate::checkpoint::Approximations;
use crate::data::{DEFAULT_SPLIT_SEED, PromptFormat, SplitRatios, TaskKind};
use crate::fetch::BASE_MODEL_PATH;
use crate::model::LlamaConfig;
use crate::model::lora_target::LoraTarget;
use crate::model::marill::{check_head_merge, check_lora_rank};
use crate::model::source::{ModelSource, sha256_bytes};
use crate::project::{DATASETS_DIR, RUNS_DIR, project_of};
use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A parsed recipe, with the file it came from (for error messages and provenance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    #[serde(default)]
    pub model: ModelSection,
    pub task: TaskSection,
    pub teacher: TeacherSection,
    pub student: StudentSection,
    #[serde(default)]
    pub optimizer: OptimizerSection,
    #[serde(skip)]
    origin: RecipeOrigin,
}

#[derive(Debug, Clone, Default, PartialEq)]
struct RecipeOrigin {
    path: PathBuf,
    sha256: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSection {
    /// A `.gguf` file, a Hugging Face model directory or a hub id, as `--model` takes.
    pub base: String,
    pub format: PromptFormat,
}

impl Default for ModelSection {
    fn default() -> Self {
        ModelSection {
            base: BASE_MODEL_PATH.to_string(),
            format: PromptFormat::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSection {
    pub name: TaskKind,
    #[serde(default = "default_split_seed")]
    pub split_seed: u64,
    #[serde(default)]
    pub ratios: SplitRatios,
    /// Token budget of a prompt plus its answer.
    #[serde(default = "default_max_len")]
    pub max_len: usize,
}

fn default_split_seed() -> u64 {
    DEFAULT_SPLIT_SEED
}

fn default_max_len() -> usize {
    128
}

/// How the teacher is fine-tuned; every layer of a teacher is private either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeacherMethod {
    /// LoRA on the chosen projections, merged into the weights at export.
    Lora,
    /// Every weight of every layer trained.
    Full,
}

/// Standard fine-tuning. `rank`, `alpha` and `targets` belong to `method = "lora"` only: they are
/// options here (not defaults) so that setting them for a full fine-tune is an error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeacherSection {
    pub method: TeacherMethod,
    pub rank: Option<usize>,
    pub alpha: Option<f64>,
    pub targets: Option<Vec<LoraTarget>>,
    pub epochs: usize,
    pub lr: f64,
    pub batch: usize,
}

impl TeacherSection {
    /// The teacher's LoRA with defaults filled in; `None` for a full fine-tune.
    pub fn lora(&self) -> Option<LoraSection> {
        (self.method == TeacherMethod::Lora).then(|| {
            let defaults = LoraSection::default();
            LoraSection {
                rank: self.rank.unwrap_or(defaults.rank),
                alpha: self.alpha,
                targets: self.targets.clone().unwrap_or(defaults.targets),
                dropout: defaults.dropout,
            }
        })
    }
}

/// The MARILL model: public bottom layers, LoRA on the private ones, merged heads,
/// approximations, distilled from the teacher.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudentSection {
    /// `k`: layers `0..k` keep the base weights and run on the client in plaintext.
    pub public_layers: Option<usize>,
    /// Alternative to `public_layers`: `k = round(public_fraction · L)`.
    pub public_fraction: Option<f64>,
    pub epochs: usize,
    pub lr: f64,
    pub batch: usize,
    #[serde(default)]
    pub lora: LoraSection,
    #[serde(default)]
    pub head_merge: HeadMergeSection,
    #[serde(default)]
    pub approximations: Approximations,
    #[serde(default)]
    pub distill: DistillSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoraSection {
    pub rank: usize,
    /// Defaults to `2 · rank`; see [`LoraSection::alpha`].
    pub alpha: Option<f64>,
    pub targets: Vec<LoraTarget>,
    pub dropout: f64,
}

impl Default for LoraSection {
    fn default() -> Self {
        LoraSection {
            rank: 8,
            alpha: None,
            targets: LoraTarget::ALL.to_vec(),
            dropout: 0.0,
        }
    }
}

impl LoraSection {
    pub fn alpha(&self) -> f64 {
        self.alpha.unwrap_or(2.0 * self.rank as f64)
    }

    /// The factor `α / r` that multiplies the low-rank update.
    pub fn scale(&self) -> f64 {
        self.alpha() / self.rank as f64
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeadMergeSection {
    /// `m`: query heads per merged head; 1 leaves the heads as they are.
    pub factor: usize,
}

impl Default for HeadMergeSection {
    fn default() -> Self {
        HeadMergeSection { factor: 1 }
    }
}

/// The teacher's tokens cached per completion position unless a recipe says otherwise.
pub const DEFAULT_TOP_K: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DistillSection {
    pub temperature: f64,
    /// KL(teacher ‖ student) on the answer logits.
    pub w_logits: f64,
    /// MSE on the private layers' hidden states.
    pub w_hidden: f64,
    /// Task cross-entropy on the gold answer.
    pub w_ce: f64,
    /// Generation tasks: how many of the teacher's most likely tokens are cached per completion
    /// position (the rest of its probability is kept as one bucket, see `train::token_distill`).
    pub top_k: usize,
}

impl Default for DistillSection {
    fn default() -> Self {
        DistillSection {
            temperature: 2.0,
            w_logits: 1.0,
            w_hidden: 0.0,
            w_ce: 0.5,
            top_k: DEFAULT_TOP_K,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LrSchedule {
    /// Linear warmup, then cosine decay to 0.
    #[default]
    Cosine,
    /// Linear warmup, then linear decay to 0.
    Linear,
    /// Linear warmup, then constant.
    Constant,
}

/// AdamW and the loop around it, shared by the teacher and the student stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerSection {
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub eps: f64,
    /// Share of the optimizer steps spent warming up.
    pub warmup_ratio: f64,
    pub schedule: LrSchedule,
    /// Max global L2 norm of the gradients; 0 turns clipping off.
    pub grad_clip: f64,
    /// Micro-batches per optimizer step.
    pub accumulation: usize,
    pub seed: u64,
    /// Optimizer steps between validation evaluations; 0 evaluates once per epoch.
    pub eval_interval: usize,
}

impl Default for OptimizerSection {
    fn default() -> Self {
        OptimizerSection {
            weight_decay: 0.0,
            betas: [0.9, 0.999],
            eps: 1e-8,
            warmup_ratio: 0.1,
            schedule: LrSchedule::Cosine,
            grad_clip: 1.0,
            accumulation: 1,
            seed: 0,
            eval_interval: 50,
        }
    }
}

/// A failed check: the field and what is wrong, before the recipe path is put in front.
type Check = std::result::Result<(), String>;

/// A top-level section of a recipe: what a stage's training depends on, and what a resumed run
/// checks is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecipeSection {
    Model,
    Task,
    Teacher,
    Student,
    Optimizer,
}

impl RecipeSection {
    /// In file order.
    pub const ALL: [RecipeSection; 5] = [
        RecipeSection::Model,
        RecipeSection::Task,
        RecipeSection::Teacher,
        RecipeSection::Student,
        RecipeSection::Optimizer,
    ];

    /// The section's name in the file.
    pub fn name(self) -> &'static str {
        match self {
            RecipeSection::Model => "model",
            RecipeSection::Task => "task",
            RecipeSection::Teacher => "teacher",
            RecipeSection::Student => "student",
            RecipeSection::Optimizer => "optimizer",
        }
    }
}

impl Recipe {
    /// Reads, parses and checks (without the architecture) a recipe file.
    pub fn load(path: &Path) -> Result<Recipe> {
        let bytes =
            std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| anyhow!("{}: not UTF-8 text: {e}", path.display()))?;
        Recipe::parse(text, path)
    }

    /// Parses recipe text as if read from `path` (which only names it in errors and provenance).
    pub fn parse(text: &str, path: &Path) -> Result<Recipe> {
        let mut recipe: Recipe = toml::from_str(text).map_err(|e| {
            // toml's message spans several lines (a source excerpt); keep the one-line summary.
            let location = e
                .span()
                .map(|span| format!("line {}: ", line_of(text, span.start)))
                .unwrap_or_default();
            anyhow!("{}: {location}{}", path.display(), one_line(e.message()))
        })?;
        recipe.origin = RecipeOrigin {
            path: path.to_path_buf(),
            sha256: sha256_bytes(text.as_bytes()),
        };
        recipe.check_fields().map_err(|e| recipe.error(e))?;
        Ok(recipe)
    }

    /// The file this recipe was read from.
    pub fn path(&self) -> &Path {
        &self.origin.path
    }

    /// Hex sha256 of the recipe file's bytes, recorded in checkpoints as provenance.
    pub fn sha256(&self) -> &str {
        &self.origin.sha256
    }

    /// The recipe as canonical TOML: every field, defaults filled in, no comments or layout, so
    /// that [`Recipe::parse`] gives the same sections back. What a run records to refuse
    /// resuming under a changed recipe.
    pub fn canonical_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| self.error(format!("cannot serialise: {e}")))
    }

    /// The top-level sections in which `self` and `other` differ, in file order.
    pub fn differing_sections(&self, other: &Recipe) -> Vec<RecipeSection> {
        RecipeSection::ALL
            .into_iter()
            .filter(|section| match section {
                RecipeSection::Model => self.model != other.model,
                RecipeSection::Task => self.task != other.task,
                RecipeSection::Teacher => self.teacher != other.teacher,
                RecipeSection::Student => self.student != other.student,
                RecipeSection::Optimizer => self.optimizer != other.optimizer,
            })
            .collect()
    }

    /// All checks, including those that need the model's architecture.
    pub fn validate(&self, config: &LlamaConfig) -> Result<()> {
        self.check_fields()
            .and_then(|()| self.check_architecture(config))
            .map_err(|e| self.error(e))
    }

    /// `k`, the number of public layers, resolved from `public_layers` or `public_fraction`.
    /// Call after [`Recipe::validate`], which guarantees exactly one of them is set.
    pub fn public_layers(&self, config: &LlamaConfig) -> usize {
        let student = &self.student;
        match (student.public_layers, student.public_fraction) {
            (Some(k), _) => k,
            (None, Some(fraction)) => (fraction * config.num_hidden_layers as f64).round() as usize,
            (None, None) => 0,
        }
    }

    /// The project this recipe belongs to, against which its relative paths resolve (see
    /// [`crate::project`]).
    pub fn project(&self) -> Result<PathBuf> {
        project_of(&self.origin.path)
    }

    /// `model.base` as a model source: a relative path resolves against the project; a hub id
    /// (no such path there) stays as written.
    pub fn base_source(&self) -> Result<String> {
        let base = &self.model.base;
        let in_project = self.project()?.join(base);
        let is_hub_id = matches!(ModelSource::parse(base), Ok(ModelSource::Hub(_)));
        if Path::new(base).is_absolute() || (is_hub_id && !in_project.exists()) {
            return Ok(base.clone());
        }
        Ok(in_project.to_string_lossy().into_owned())
    }

    /// Whether `model.base` is the default base model, which the CLI fetches on demand.
    pub fn base_is_default(&self) -> bool {
        self.model.base == BASE_MODEL_PATH
    }

    /// The project's datasets directory.
    pub fn datasets_dir(&self) -> Result<PathBuf> {
        Ok(self.project()?.join(DATASETS_DIR))
    }

    /// Where a run of this recipe goes without `--out`: `<project>/runs/<recipe name>`.
    pub fn default_run_dir(&self) -> Result<PathBuf> {
        let name = self.origin.path.file_stem().map(|s| s.to_string_lossy());
        Ok(self
            .project()?
            .join(RUNS_DIR)
            .join(name.as_deref().unwrap_or("run")))
    }

    /// Refuses a base that names no model, unless it is the default base model (which the CLI
    /// fetches on demand). Paths resolve as in [`Recipe::base_source`].
    pub fn check_base_exists(&self) -> Result<()> {
        if self.base_is_default() {
            return Ok(());
        }
        // The parser's own reason: a missing path and an existing file that is no model differ.
        ModelSource::parse(&self.base_source()?)
            .map(|_| ())
            .map_err(|e| self.error(format!("model.base {e}")))
    }

    fn error(&self, message: String) -> anyhow::Error {
        anyhow!("{}: {}", self.origin.path.display(), one_line(&message))
    }

    fn check_fields(&self) -> Check {
        if self.model.base.trim().is_empty() {
            return Err("model.base is empty".into());
        }
        if self.task.max_len == 0 {
            return Err("task.max_len must be at least 1".into());
        }
        self.check_teacher()?;
        self.check_student()?;
        check_optimizer(&self.optimizer)
    }

    fn check_teacher(&self) -> Check {
        let teacher = &self.teacher;
        check_stage("teacher", teacher.epochs, teacher.lr, teacher.batch)?;
        match teacher.lora() {
            Some(lora) => check_lora("teacher", &lora),
            None if teacher.rank.is_some()
                || teacher.alpha.is_some()
                || teacher.targets.is_some() =>
            {
                Err(
                    "teacher.rank, teacher.alpha and teacher.targets apply only to \
                     method = \"lora\", not \"full\""
                        .into(),
                )
            }
            None => Ok(()),
        }
    }

    fn check_student(&self) -> Check {
        let student = &self.student;
        check_stage("student", student.epochs, student.lr, student.batch)?;
        match (student.public_layers, student.public_fraction) {
            (Some(_), Some(_)) => {
                return Err("student: set public_layers or public_fraction, not both".into());
            }
            (None, None) => {
                return Err("student: set one of public_layers or public_fraction".into());
            }
            (None, Some(fraction)) if !(0.0..1.0).contains(&fraction) => {
                return Err(format!(
                    "student.public_fraction = {fraction} must be in [0, 1) \
                     (a student needs at least one private layer)"
                ));
            }
            _ => {}
        }
        check_lora("student.lora", &student.lora)?;
        if student.head_merge.factor == 0 {
            return Err("student.head_merge.factor must be at least 1 (1 = no merging)".into());
        }
        check_distill(&student.distill)
    }

    fn check_architecture(&self, config: &LlamaConfig) -> Check {
        let layers = config.num_hidden_layers;
        let k = self.public_layers(config);
        if k >= layers {
            return Err(format!(
                "student: {k} public layers leave no private layer (the model has {layers}; \
                 at most {} can be public)",
                layers - 1
            ));
        }
        check_head_merge(
            "student.head_merge.factor",
            self.student.head_merge.factor,
            config,
        )?;
        if let Some(lora) = self.teacher.lora() {
            check_lora_rank("teacher.rank", lora.rank, &lora.targets, config)?;
        }
        let lora = &self.student.lora;
        check_lora_rank("student.lora.rank", lora.rank, &lora.targets, config)?;
        let top_k = self.student.distill.top_k;
        if top_k > config.vocab_size {
            return Err(format!(
                "student.distill.top_k = {top_k} exceeds the model's vocabulary of {} tokens",
                config.vocab_size
            ));
        }
        if self.task.max_len > config.max_position_embeddings {
            return Err(format!(
                "task.max_len = {} exceeds the model's {} positions",
                self.task.max_len, config.max_position_embeddings
            ));
        }
        Ok(())
    }
}

fn check_stage(section: &str, epochs: usize, lr: f64, batch: usize) -> Check {
    if epochs == 0 {
        return Err(format!("{section}.epochs must be at least 1"));
    }
    if batch == 0 {
        return Err(format!("{section}.batch must be at least 1"));
    }
    check_positive(&format!("{section}.lr"), lr)
}

fn check_lora(section: &str, lora: &LoraSection) -> Check {
    if lora.rank == 0 {
        return Err(format!("{section}.rank must be at least 1"));
    }
    check_positive(&format!("{section}.alpha"), lora.alpha())?;
    if lora.targets.is_empty() {
        return Err(format!(
            "{section}.targets is empty; name at least one of q, k, v, o, gate, up, down"
        ));
    }
    if let Some(twice) = LoraTarget::first_repeated(&lora.targets) {
        return Err(format!(
            "{section}.targets names \"{}\" twice",
            twice.short_name()
        ));
    }
    if !(0.0..1.0).contains(&lora.dropout) {
        return Err(format!(
            "{section}.dropout = {} must be in [0, 1)",
            lora.dropout
        ));
    }
    Ok(())
}

fn check_distill(distill: &DistillSection) -> Check {
    check_positive("student.distill.temperature", distill.temperature)?;
    let weights = [
        ("w_logits", distill.w_logits),
        ("w_hidden", distill.w_hidden),
        ("w_ce", distill.w_ce),
    ];
    for (name, weight) in weights {
        check_non_negative(&format!("student.distill.{name}"), weight)?;
    }
    if weights.iter().all(|(_, w)| *w == 0.0) {
        return Err(
            "student.distill: w_logits, w_hidden and w_ce are all 0 (nothing to train on)".into(),
        );
    }
    if distill.top_k == 0 {
        return Err("student.distill.top_k must be at least 1".into());
    }
    Ok(())
}

fn check_optimizer(opt: &OptimizerSection) -> Check {
    check_non_negative("optimizer.weight_decay", opt.weight_decay)?;
    for (i, beta) in opt.betas.iter().enumerate() {
        if !(0.0..1.0).contains(beta) {
            return Err(format!("optimizer.betas[{i}] = {beta} must be in [0, 1)"));
        }
    }
    check_positive("optimizer.eps", opt.eps)?;
    if !(0.0..=1.0).contains(&opt.warmup_ratio) {
        return Err(format!(
            "optimizer.warmup_ratio = {} must be in [0, 1]",
            opt.warmup_ratio
        ));
    }
    check_non_negative("optimizer.grad_clip", opt.grad_clip)?;
    if opt.accumulation == 0 {
        return Err("optimizer.accumulation must be at least 1".into());
    }
    Ok(())
}

fn check_positive(field: &str, value: f64) -> Check {
    if value.is_finite() && value > 0.0 {
        Ok(())
    } else {
        Err(format!("{field} = {value} must be a positive number"))
    }
}

fn check_non_negative(field: &str, value: f64) -> Check {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(format!("{field} = {value} must be a number ≥ 0"))
    }
}

/// `message` on one line: values it quotes from the recipe may hold line breaks (a string's
/// `\n`), which are escaped, as are other control characters.
fn one_line(message: &str) -> String {
    message
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SmolLM2-135M's architecture: 30 layers, 9 query heads over 3 KV heads.
    fn smollm2() -> LlamaConfig {
        LlamaConfig {
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            vocab_size: 49152,
            rope_theta: 100_000.0,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: true,
            max_position_embeddings: 8192,
        }
    }

    const MINIMAL: &str = r#"
[task]
name = "sst2"

[teacher]
method = "lora"
epochs = 1
lr = 1e-3
batch = 8

[student]
public_layers = 15
epochs = 2
lr = 1e-3
batch = 8
"#;

    fn parse(text: &str) -> Result<Recipe> {
        Recipe::parse(text, Path::new("recipes/test.toml"))
    }

    /// The minimal recipe with `old` replaced by `new` (a line edit, to keep each test short).
    fn edited(old: &str, new: &str) -> String {
        assert!(MINIMAL.contains(old), "{old}");
        MINIMAL.replacen(old, new, 1)
    }

    fn parse_error(text: &str) -> String {
        format!("{:#}", parse(text).expect_err("recipe should be rejected"))
    }

    fn validate_error(text: &str) -> String {
        let recipe = parse(text).expect("recipe parses");
        format!(
            "{:#}",
            recipe.validate(&smollm2()).expect_err("should be invalid")
        )
    }

    fn assert_mentions(message: &str, parts: &[&str]) {
        assert!(
            !message.contains('\n'),
            "error spans several lines: {message}"
        );
        assert!(message.starts_with("recipes/test.toml: "), "{message}");
        for part in parts {
            assert!(message.contains(part), "`{part}` missing from: {message}");
        }
    }

    #[test]
    fn minimal_recipe_gets_the_documented_defaults() -> Result<()> {
        let recipe = parse(MINIMAL)?;
        recipe.validate(&smollm2())?;
        assert_eq!(recipe.model.base, BASE_MODEL_PATH);
        assert_eq!(recipe.model.format, PromptFormat::Plain);
        assert_eq!(recipe.task.split_seed, DEFAULT_SPLIT_SEED);
        assert_eq!(recipe.task.ratios, SplitRatios::default());
        assert_eq!(recipe.task.max_len, 128);
        let teacher_lora = recipe.teacher.lora().expect("lora teacher");
        assert_eq!(teacher_lora, LoraSection::default());
        assert_eq!((teacher_lora.rank, teacher_lora.alpha()), (8, 16.0));
        assert_eq!(teacher_lora.targets, LoraTarget::ALL.to_vec());
        assert_eq!(recipe.student.head_merge.factor, 1);
        assert_eq!(recipe.student.approximations, Approximations::default());
        assert_eq!(recipe.student.distill, DistillSection::default());
        assert_eq!(recipe.optimizer, OptimizerSection::default());
        assert_eq!(recipe.public_layers(&smollm2()), 15);
        assert_eq!(recipe.sha256(), sha256_bytes(MINIMAL.as_bytes()));
        assert_eq!(recipe.sha256().len(), 64);
        Ok(())
    }

    #[test]
    fn public_fraction_rounds_to_a_layer_count() -> Result<()> {
        let recipe = parse(&edited("public_layers = 15", "public_fraction = 0.34"))?;
        recipe.validate(&smollm2())?;
        assert_eq!(recipe.public_layers(&smollm2()), 10);
        Ok(())
    }

    #[test]
    fn typos_and_unknown_fields_are_errors_with_a_line() {
        let message = parse_error(&edited("batch = 8\n\n[student]", "bacth = 8\n\n[student]"));
        assert_mentions(&message, &["line 9", "unknown field `bacth`"]);
        let message = parse_error(&edited("name = \"sst2\"", "name = \"sst3\""));
        assert_mentions(&message, &["line 3", "sst3"]);
        // A value quoted in the message keeps it on one line (found by fuzzing).
        let message = parse_error(&edited("name = \"sst2\"", "name = \"sst2\\n\""));
        assert_mentions(&message, &["line 3", "`sst2\\n`"]);
    }

    #[test]
    fn loading_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.toml");
        let message = format!("{:#}", Recipe::load(&missing).unwrap_err());
        assert!(message.contains("nope.toml") && message.contains("cannot read"));
    }

    #[test]
    fn too_many_public_layers_leave_no_private_layer() {
        let message = validate_error(&edited("public_layers = 15", "public_layers = 30"));
        assert_mentions(&message, &["30 public layers", "at most 29"]);
    }

    #[test]
    fn public_layers_and_fraction_are_exclusive_and_one_is_required() {
        let both = edited(
            "public_layers = 15",
            "public_layers = 15\npublic_fraction = 0.5",
        );
        assert_mentions(&parse_error(&both), &["not both"]);
        let neither = edited("public_layers = 15\n", "");
        assert_mentions(&parse_error(&neither), &["set one of"]);
        let negative = edited("public_layers = 15", "public_layers = -1");
        assert_mentions(&parse_error(&negative), &["line 12", "-1"]);
        for bad in ["1.0", "-0.1"] {
            let fraction = edited("public_layers = 15", &format!("public_fraction = {bad}"));
            assert_mentions(&parse_error(&fraction), &["public_fraction", "[0, 1)"]);
        }
    }

    #[test]
    fn head_merge_must_respect_heads_and_kv_groups() -> Result<()> {
        for good in [1, 3, 9] {
            let text = format!("{MINIMAL}[student.head_merge]\nfactor = {good}\n");
            parse(&text)?.validate(&smollm2())?;
        }
        let zero = format!("{MINIMAL}[student.head_merge]\nfactor = 0\n");
        assert_mentions(&parse_error(&zero), &["factor must be at least 1"]);
        let four = format!("{MINIMAL}[student.head_merge]\nfactor = 4\n");
        assert_mentions(
            &validate_error(&four),
            &["must divide the 9 attention heads"],
        );
        // 12 query heads over 3 KV heads (groups of 4): merging pairs or whole groups is fine,
        // merging 6 would cut the second KV group in half.
        let mut config = smollm2();
        config.num_attention_heads = 12;
        config.num_key_value_heads = 3;
        for (factor, ok) in [(2, true), (4, true), (12, true), (6, false), (3, false)] {
            let text = format!("{MINIMAL}[student.head_merge]\nfactor = {factor}\n");
            let result = parse(&text)?.validate(&config);
            assert_eq!(result.is_ok(), ok, "factor {factor}: {result:?}");
            if let Err(e) = result {
                assert_mentions(
                    &format!("{e:#}"),
                    &["GQA group size 4", "never split a key/value group"],
                );
            }
        }
        Ok(())
    }

    #[test]
    fn lora_rank_targets_and_dropout_are_checked() {
        let zero = format!("{MINIMAL}[student.lora]\nrank = 0\n");
        assert_mentions(
            &parse_error(&zero),
            &["student.lora.rank must be at least 1"],
        );
        // k_proj of SmolLM2 maps 576 → 192.
        let huge = format!("{MINIMAL}[student.lora]\nrank = 193\n");
        assert_mentions(
            &validate_error(&huge),
            &["student.lora.rank = 193", "k_proj", "192"],
        );
        let empty = format!("{MINIMAL}[student.lora]\ntargets = []\n");
        assert_mentions(&parse_error(&empty), &["student.lora.targets is empty"]);
        let twice = format!("{MINIMAL}[student.lora]\ntargets = [\"q\", \"v\", \"q\"]\n");
        assert_mentions(&parse_error(&twice), &["names \"q\" twice"]);
        let dropout = format!("{MINIMAL}[student.lora]\ndropout = 1.0\n");
        assert_mentions(&parse_error(&dropout), &["student.lora.dropout"]);
        let unknown = format!("{MINIMAL}[student.lora]\ntargets = [\"qkv\"]\n");
        assert!(parse_error(&unknown).contains("qkv"));
        let teacher = edited("method = \"lora\"", "method = \"lora\"\nrank = 0");
        assert_mentions(&parse_error(&teacher), &["teacher.rank must be at least 1"]);
    }

    #[test]
    fn full_teacher_rejects_lora_options() -> Result<()> {
        let full = edited("method = \"lora\"", "method = \"full\"");
        assert!(parse(&full)?.teacher.lora().is_none());
        let with_rank = edited("method = \"lora\"", "method = \"full\"\nrank = 4");
        assert_mentions(&parse_error(&with_rank), &["only to method = \"lora\""]);
        Ok(())
    }

    #[test]
    fn stage_lengths_and_rates_must_be_positive() {
        let epochs = edited("epochs = 1", "epochs = 0");
        assert_mentions(
            &parse_error(&epochs),
            &["teacher.epochs must be at least 1"],
        );
        let batch = edited("batch = 8\n\n[student]", "batch = 0\n\n[student]");
        assert_mentions(&parse_error(&batch), &["teacher.batch must be at least 1"]);
        let lr = edited(
            "lr = 1e-3\nbatch = 8\n\n[student]",
            "lr = 0.0\nbatch = 8\n\n[student]",
        );
        assert_mentions(&parse_error(&lr), &["teacher.lr = 0", "positive"]);
        let student_lr = edited("epochs = 2\nlr = 1e-3", "epochs = 2\nlr = -1e-3");
        assert_mentions(&parse_error(&student_lr), &["student.lr = -0.001"]);
    }

    #[test]
    fn distillation_needs_a_temperature_and_some_weight() {
        let hot = format!("{MINIMAL}[student.distill]\ntemperature = 0.0\n");
        assert_mentions(&parse_error(&hot), &["temperature"]);
        let negative = format!("{MINIMAL}[student.distill]\nw_hidden = -1.0\n");
        assert_mentions(&parse_error(&negative), &["student.distill.w_hidden"]);
        let none = format!("{MINIMAL}[student.distill]\nw_logits = 0.0\nw_ce = 0.0\n");
        assert_mentions(&parse_error(&none), &["all 0"]);
    }

    #[test]
    fn top_k_is_between_one_and_the_vocabulary() {
        let zero = format!("{MINIMAL}[student.distill]\ntop_k = 0\n");
        assert_mentions(
            &parse_error(&zero),
            &["student.distill.top_k", "at least 1"],
        );
        let huge = format!("{MINIMAL}[student.distill]\ntop_k = 49153\n");
        assert_mentions(
            &validate_error(&huge),
            &["student.distill.top_k = 49153", "49152"],
        );
        let whole = format!("{MINIMAL}[student.distill]\ntop_k = 49152\n");
        parse(&whole).unwrap().validate(&smollm2()).unwrap();
    }

    #[test]
    fn optimizer_fields_are_checked() {
        for (field, message) in [
            (
                "accumulation = 0",
                "optimizer.accumulation must be at least 1",
            ),
            ("betas = [0.9, 1.0]", "optimizer.betas[1]"),
            ("eps = 0.0", "optimizer.eps"),
            ("warmup_ratio = 1.5", "optimizer.warmup_ratio"),
            ("grad_clip = -1.0", "optimizer.grad_clip"),
            ("weight_decay = -0.1", "optimizer.weight_decay"),
        ] {
            let text = format!("{MINIMAL}[optimizer]\n{field}\n");
            assert_mentions(&parse_error(&text), &[message]);
        }
        let schedule = format!("{MINIMAL}[optimizer]\nschedule = \"step\"\n");
        assert!(parse_error(&schedule).contains("step"));
    }

    #[test]
    fn split_ratios_validate_themselves() {
        let text = edited(
            "name = \"sst2\"",
            "name = \"sst2\"\nratios = { train = 0.5, validation = 0.1, test = 0.1 }",
        );
        assert_mentions(&parse_error(&text), &["sum to 1"]);
    }

    #[test]
    fn max_len_must_fit_the_model() {
        let text = edited("name = \"sst2\"", "name = \"sst2\"\nmax_len = 9000");
        assert_mentions(&validate_error(&text), &["task.max_len = 9000", "8192"]);
    }

    #[test]
    fn a_missing_base_is_an_error_unless_it_is_the_default() -> Result<()> {
        parse(MINIMAL)?.check_base_exists()?;
        let hub = format!("[model]\nbase = \"HuggingFaceTB/SmolLM2-135M\"\n{MINIMAL}");
        parse(&hub)?.check_base_exists()?;
        let missing = format!("[model]\nbase = \"checkpoints/nope.gguf\"\n{MINIMAL}");
        let message = format!("{:#}", parse(&missing)?.check_base_exists().unwrap_err());
        assert_mentions(&message, &["checkpoints/nope.gguf", "no such model file"]);
        let dir = tempfile::tempdir()?;
        let notes = dir.path().join("notes.txt");
        std::fs::write(&notes, "not a model")?;
        let not_a_model = format!("[model]\nbase = \"{}\"\n{MINIMAL}", notes.display());
        let message = format!(
            "{:#}",
            parse(&not_a_model)?.check_base_exists().unwrap_err()
        );
        assert_mentions(
            &message,
            &[
                &notes.display().to_string(),
                "exists but is not a model",
                ".gguf",
                "config.json",
            ],
        );
        assert!(!message.contains("no such"), "{message}");
        Ok(())
    }

    #[test]
    fn the_canonical_form_parses_back_and_diffs_name_the_sections() -> Result<()> {
        let recipe = parse(MINIMAL)?;
        let canonical = recipe.canonical_toml()?;
        let back = Recipe::parse(&canonical, Path::new("state/student.recipe.toml"))?;
        assert!(back.differing_sections(&recipe).is_empty(), "{canonical}");
        // Layout and comments are not part of it; values, defaults included, are.
        let relaid = parse(&format!("# a comment\n\n{MINIMAL}"))?;
        assert_eq!(relaid.canonical_toml()?, canonical);
        let changed = parse(&edited("public_layers = 15", "public_layers = 14"))?;
        assert_eq!(
            changed.differing_sections(&recipe),
            [RecipeSection::Student]
        );
        let changed = parse(&format!(
            "[model]\nformat = \"chat\"\n{}",
            edited("batch = 8\n\n[student]", "batch = 4\n\n[student]")
        ))?;
        assert_eq!(
            changed.differing_sections(&recipe),
            [RecipeSection::Model, RecipeSection::Teacher]
        );
        Ok(())
    }

    /// Relative paths resolve against the recipe's project, whatever the working directory;
    /// hub ids and absolute paths stay as written.
    #[test]
    fn paths_resolve_against_the_recipes_project() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let project = std::path::absolute(dir.path())?;
        std::fs::create_dir_all(project.join("datasets"))?;
        std::fs::create_dir_all(project.join("models/tiny"))?;
        let at = |base: &str| -> Result<Recipe> {
            let text = format!("[model]\nbase = \"{base}\"\n{MINIMAL}");
            Recipe::parse(&text, &project.join("recipes/mine.toml"))
        };
        let local = at("models/tiny")?;
        assert_eq!(local.project()?, project);
        assert_eq!(
            local.base_source()?,
            project.join("models/tiny").to_string_lossy()
        );
        local.check_base_exists()?;
        assert_eq!(local.datasets_dir()?, project.join("datasets"));
        assert_eq!(local.default_run_dir()?, project.join("runs/mine"));
        let default = Recipe::parse(MINIMAL, &project.join("mine.toml"))?;
        assert!(default.base_is_default());
        assert_eq!(
            default.base_source()?,
            project.join(BASE_MODEL_PATH).to_string_lossy()
        );
        assert_eq!(
            at("HuggingFaceTB/SmolLM2-135M")?.base_source()?,
            "HuggingFaceTB/SmolLM2-135M"
        );
        let absolute = project.join("models/tiny").to_string_lossy().into_owned();
        assert_eq!(at(&absolute)?.base_source()?, absolute);
        let message = format!(
            "{:#}",
            at("models/none.gguf")?.check_base_exists().unwrap_err()
        );
        assert!(
            message.contains(&project.join("models/none.gguf").display().to_string()),
            "{message}"
        );
        Ok(())
    }

    #[test]
    fn shipped_recipes_parse_and_validate() -> Result<()> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|e| e == "toml") {
                Recipe::load(&path)?.validate(&smollm2())?;
                names.push(path.file_stem().unwrap().to_string_lossy().into_owned());
            }
        }
        names.sort();
        assert_eq!(
            names,
            [
                "arithmetic",
                "arithmetic-gen",
                "boolq",
                "gsm8k",
                "quickstart",
                "sst2",
                "sst2-mpcformer"
            ]
        );
        let quickstart = Recipe::load(&dir.join("quickstart.toml"))?;
        assert_eq!(quickstart.public_layers(&smollm2()), 15);
        assert_eq!(quickstart.student.head_merge.factor, 3);
        Ok(())
    }
}
