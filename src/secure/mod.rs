//! Secure evaluation: where the model meets the MPC protocol. The client runs the embedding and
//! the public layers `0..k` in plaintext ([`client`]) and secret-shares the hidden state; the
//! private layers ([`layer`], of an [`architecture`] such as Llama's, BERT's or GPT-2's, with
//! [`projection`]s public, LoRA-secret or fully secret, and
//! [`kv_sharing`] opening each key/value head once) and the
//! choice head ([`head`]) run on a protocol ([`forward`]), several examples per forward
//! ([`packing`]) so that they share its rounds; only the predicted label is revealed, to the
//! client. [`split`] says which part runs where. [`eval`] scores a task's rows that way next to
//! the plaintext model ([`report`]).
//!
//! Generation ([`generate`]): the private layers keep their keys and values as shares
//! ([`kv_cache`]) and each step runs one new position, the whole tied head and a vocabulary
//! argmax ([`vocab_head`]); only each token is revealed, to the client.
//!
//! Public: the base model (so a student's `W`, every norm gain and the tied head), the
//! architecture, the label words, prompt lengths. Secret (server): a student's LoRA factors, a
//! teacher's (or a bare model's) projection weights.

pub mod architecture;
pub mod client;
pub mod eval;
pub mod eval_generate;
pub mod forward;
pub mod generate;
pub mod generation_report;
pub mod head;
pub mod job;
pub mod kv_cache;
pub mod kv_sharing;
pub mod layer;
pub mod packing;
pub mod policy;
pub mod projection;
pub mod remote;
pub mod report;
pub mod served;
pub mod split;
#[cfg(test)]
mod views;
pub mod vocab_head;

pub use client::SecureInput;
pub use eval::{SecureEvalRequest, SecureTransport, evaluate_secure};
pub use forward::{ClientJob, SecureModel, SecureRun, run_secure, secure_party};
pub use policy::ServePolicy;
pub use projection::Secrecy;
pub use report::SecureEvalReport;
pub use served::{Holder, ServeOptions, Served};
pub use split::SecureSplit;
