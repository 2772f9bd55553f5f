//! The Llama-family decoder written for training and inference, its loaders and tokenizers.

pub mod attention;
pub mod config;
pub mod frozen_matmul;
pub mod generate;
pub mod gguf;
pub mod hf_dir;
mod hf_rope;
pub mod hub;
pub mod linear;
pub mod llama;
pub mod lora;
pub mod lora_target;
pub mod marill;
pub mod mlp;
pub mod norm;
pub mod rope;
pub mod source;
pub mod tiny;
pub mod tokenizer;
pub mod variants;
pub mod weights;

pub use config::LlamaConfig;
pub use llama::{ForwardOutput, Llama};
pub use source::{LoadedModel, ModelSource, load};
