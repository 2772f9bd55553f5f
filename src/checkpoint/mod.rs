//! Split checkpoints (DESIGN §5): what the server keeps secret, and the public description that
//! lets the client and the evaluator rebuild the model around it.
//!
//! A checkpoint is a directory:
//! - `manifest.json` ([`Manifest`], pretty JSON): format version, base model (source string,
//!   sha256 of its weights as defined by [`BaseModel::weights_sha256`], architecture), split
//!   (layers `0..k` public, `k..L` private), LoRA (rank, alpha, targets; absent when merged),
//!   head-merge groups per private layer, approximations, task, provenance (recipe sha256,
//!   metrics), and `private_sha256`, the sha256 of `private.safetensors` as written.
//! - `private.safetensors`: only private data, by Hugging Face names ([`PrivateTensor`]):
//!   `model.layers.{i}.self_attn.q_proj.lora_A.weight` `(rank, in)` and `….lora_B.weight`
//!   `(out, rank)`; whole projections `model.layers.{i}.mlp.up_proj.weight` `(out, in)`; norms
//!   `model.layers.{i}.input_layernorm.weight`, `….post_attention_layernorm.weight`,
//!   `model.norm.weight`; the head `lm_head.weight`. Layer tensors must belong to private layers
//!   (`i ≥ k`): reading and writing both refuse anything in the public prefix, and the embedding,
//!   which the client applies to its own prompt, is never private.
//!
//! Teacher checkpoints use the same format with `k = 0`. Reading a manifest checks every size in
//! it against the architecture it records ([`Manifest::validate`]); loading over the base model
//! also verifies the base's hash ([`verify_base`]) and that the recorded architecture is the
//! base's ([`Manifest::check_base`]), before anything is built; reading the private file verifies
//! its sha256 before parsing it. [`write_peft_adapter`] exports a plain LoRA checkpoint for Hugging Face
//! PEFT; [`CheckpointSummary`] is what `marill inspect` prints.

mod atomic_dir;
#[cfg(test)]
mod fixtures;
mod io;
mod manifest;
mod model;
mod peft;
mod summary;
mod tensor_name;

pub use io::{
    MANIFEST_FILE, PRIVATE_FILE, read_checkpoint, read_manifest, verify_base, write_checkpoint,
};
pub use manifest::{
    Approximations, BaseModel, CheckpointKind, FORMAT_VERSION, HeadMerge, LoraInfo, Manifest,
    Provenance, Split, TaskInfo,
};
pub use model::{Checkpoint, is_checkpoint, load_checkpoint, load_checkpoint_public};
pub use peft::{ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE, write_peft_adapter};
pub use summary::{CheckpointSummary, PrivateParameters};
pub use tensor_name::{LayerNorm, LoraFactor, PrivateTensor, TensorKind, check_tensors};
