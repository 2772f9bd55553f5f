//! Secure evaluation: where the model meets the MPC protocol. The client runs the embedding and
//! the public layers `0..k` in plaintext ([`client`]) and secret-shares the hidden state; the
//! private layers ([`layer`], with [`projection`]s public, LoRA-secret or fully secret) and the
//! choice head ([`head`]) run on a protocol ([`forward`]); only the predicted label is revealed,
//! to the client. [`eval`] scores a task's rows that way next to the plaintext model.

pub mod client;
pub mod forward;
pub mod head;
pub mod layer;
pub mod projection;

pub use client::SecureInput;
pub use forward::{SecureModel, SecureRun, run_secure};
pub use projection::Secrecy;
