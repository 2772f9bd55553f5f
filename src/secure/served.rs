//! What a party of a secure evaluation loads, and the policy a server (and its dealer / helper)
//! serves it under. Only the server reads `private.safetensors`: the client and the dealer /
//! helper load the manifest and the public base model, which is all they need to build the
//! computation.

use super::policy::{
    DEFAULT_MAX_BATCH, DEFAULT_MAX_NEW_TOKENS, GenerationPolicy, MAX_EXAMPLES, ServePolicy,
};
use super::projection::Secrecy;
use super::split::SecureSplit;
use crate::checkpoint::{Manifest, is_checkpoint, load_checkpoint, load_checkpoint_public};
use crate::data::{PromptFormat, TaskKind};
use crate::fetch::resolve_model;
use crate::model::lora_target::LoraTarget;
use crate::model::marill::{LoraSpec, MarillArch, attach_lora};
use crate::model::{LoadedModel, load};
use anyhow::{Context, Result, bail, ensure};
use candle_core::Device;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::collections::HashMap;
use std::path::Path;

/// Whose copy of the model is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// The server: the checkpoint with its private tensors.
    Server,
    /// Client, dealer, helper (and plaintext evaluation's public view): no private tensors.
    Public,
}

/// A split checkpoint or a bare base model, as one party holds it.
pub struct Served {
    pub loaded: LoadedModel,
    pub manifest: Option<Manifest>,
    /// What secure evaluation keeps secret, or why it cannot evaluate this checkpoint (plaintext
    /// evaluation still can).
    pub split: Result<SecureSplit>,
}

impl Served {
    /// `model` (a checkpoint directory, a model file or directory, or a hub id; the default base
    /// model is fetched on first use) as `holder` holds it.
    pub fn load(model: &str, holder: Holder, device: &Device) -> Result<Self> {
        let path = Path::new(model);
        if !is_checkpoint(path) {
            let loaded = load(&resolve_model(model)?, device)?;
            return Ok(Served {
                loaded,
                manifest: None,
                split: Ok(SecureSplit::BARE),
            });
        }
        let ckpt = match holder {
            Holder::Server => load_checkpoint(path, device)?,
            Holder::Public => load_checkpoint_public(path, device)?,
        };
        let split = SecureSplit::of_checkpoint(&ckpt.manifest, &ckpt.private)
            .with_context(|| model.to_string());
        Ok(Served {
            loaded: ckpt.loaded,
            manifest: Some(ckpt.manifest),
            split,
        })
    }

    /// The policy this model is served under: a checkpoint serves its own task as it was
    /// prompted; a bare base model serves the task `options` name.
    pub fn policy(&self, options: &ServeOptions) -> Result<ServePolicy> {
        let positions = self.loaded.model.config.max_position_embeddings;
        let (task, format, max_len) = match &self.manifest {
            Some(m) => {
                let t = &m.task;
                if let Some(other) = options.task.filter(|&o| o != t.name) {
                    bail!("the checkpoint serves {}, not {other}", t.name);
                }
                if let Some(other) = options.format.filter(|&o| o != t.format) {
                    bail!(
                        "the checkpoint serves {} prompts, not {}",
                        t.format.name(),
                        other.name()
                    );
                }
                (t.name, t.format, options.max_len.unwrap_or(t.max_len))
            }
            None => (
                options
                    .task
                    .context("serving a base model needs the task it serves (--task)")?,
                options.format.unwrap_or_default(),
                options.max_len.unwrap_or(DEFAULT_MAX_LEN),
            ),
        };
        let mut policy =
            ServePolicy::for_task(task, &self.loaded.tokenizer, format, max_len.min(positions))?;
        policy.max_batch = options.max_batch;
        policy.reveal_scores = options.reveal_scores;
        Ok(policy)
    }
}

impl Served {
    /// A bare base model shaped as the quickstart's MARILL student, to measure secure
    /// inference before a student is trained: layers `0..public_layers` public, the private
    /// layers' query heads merged by 3 and LoRA of rank 16 on q, k, v with fresh factors
    /// (`B = 0`), which are the server's secret. Its plaintext reference is the same model.
    pub fn student_shaped(mut self, public_layers: usize) -> Result<Self> {
        if self.manifest.is_some() {
            bail!("--student-shape shapes a bare base model; a checkpoint has its own split");
        }
        let model = &mut self.loaded.model;
        let arch = MarillArch {
            public_layers,
            head_merge: 3,
            ..MarillArch::standard()
        };
        ensure!(
            public_layers < model.num_layers(),
            "--student-shape {public_layers} leaves none of the {} layers private",
            model.num_layers()
        );
        arch.apply(model)?;
        let spec = LoraSpec {
            rank: 16,
            alpha: 32.0,
            targets: vec![LoraTarget::Q, LoraTarget::K, LoraTarget::V],
            dropout: 0.0,
        };
        let private = arch.private_layers(model);
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        attach_lora(model, private, &spec, &HashMap::new(), &mut rng)?;
        self.split = Ok(SecureSplit {
            public_layers,
            secrecy: Secrecy::LoraOnly,
        });
        Ok(self)
    }

    /// Whether this model serves generation: a checkpoint trained for a generation task, or
    /// a bare base model serving one (`options.task`).
    pub fn serves_generation(&self, options: &ServeOptions) -> bool {
        match &self.manifest {
            Some(m) => m.task.name.is_generation(),
            None => options.task.is_some_and(|t| t.is_generation()),
        }
    }

    /// The policy generation is served under: a checkpoint must have been trained for a
    /// generation task (a bare base model serves any); a prompt and its new tokens fit the
    /// model's positions.
    pub fn generation_policy(&self, options: &ServeOptions) -> Result<GenerationPolicy> {
        if let Some(m) = &self.manifest {
            let task = m.task.name;
            if !task.is_generation() {
                bail!("the checkpoint serves {task}, a choice task, not generation");
            }
            if let Some(other) = options.task.filter(|&o| o != task) {
                bail!("the checkpoint serves {task}, not {other}");
            }
        }
        if let Some(task) = options.task.filter(|t| !t.is_generation()) {
            bail!("{task} is a choice task, not a generation task");
        }
        Ok(GenerationPolicy {
            positions: self.loaded.model.config.max_position_embeddings,
            max_new_tokens: options.max_new_tokens,
            max_batch: options.max_batch,
            max_prompts: MAX_EXAMPLES,
        })
    }
}

/// A prompt's longest length for a model that does not say otherwise.
pub const DEFAULT_MAX_LEN: usize = 512;

/// The server's own configuration of what it serves.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// A bare base model's task (a checkpoint's must agree with its manifest).
    pub task: Option<TaskKind>,
    pub format: Option<PromptFormat>,
    /// The longest prompt served (default: the checkpoint's max_len, else 512).
    pub max_len: Option<usize>,
    pub max_batch: usize,
    /// Debugging only: reveal every example's scores to the client.
    pub reveal_scores: bool,
    /// Generation: the most new tokens a prompt may ask for.
    pub max_new_tokens: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            task: None,
            format: None,
            max_len: None,
            max_batch: DEFAULT_MAX_BATCH,
            reveal_scores: false,
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
        }
    }
}
