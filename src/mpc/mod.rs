//! The built-in MPC engine: fixed-point secret sharing over Z_2^64 for neural-network
//! inference. It knows nothing of models.
//!
//! Layout (after CrypTen's split):
//! - values: [`ring`] (tensors mod 2^64, blocked multi-threaded matmul), [`fixed`] (encoding),
//!   [`share`] (a party's share and the local linear operations on it);
//! - protocols behind one trait, [`protocol::Protocol`]: [`two_party`] (additive sharing
//!   between client and server: 2pc-dealer) and [`replicated`] (3pc with a helper);
//! - correlated randomness: [`provider`] (who makes it, behind one trait: the
//!   [`provider::dealer::Dealer`] and the parties' [`provider::dealer_link`]), [`prg`]
//!   (ChaCha12, pairwise seeds), [`dcf`] (function secret sharing for one-round comparisons,
//!   on the fixed-key AES of `aes`), [`compare`];
//! - communication: [`transport`] (trait, bounded receives, in-process channels), [`tcp`]
//!   (over mutually authenticated TLS, identities in [`tls`]), [`comm`] (framing, traffic and
//!   round counters per label), [`cost`] (reports), [`network`] (lan / wan and the time
//!   estimated on them), [`latency`] (one query alone beside a batch's per-example cost);
//! - functions: [`ops`] (products, truncation, comparison, ReLU, max, argmax), [`approx`] (exp,
//!   reciprocal, rsqrt, softmax, sigmoid / SiLU / GeLU, norms, Quad, 2Quad);
//! - running: [`local`] (all parties as threads), [`party`] (one party over TCP).
//!
//! Every party runs the same program against `&mut dyn Protocol`; shapes and control flow are
//! public, so the dealer (and helper) can follow it by shape:
//!
//! ```no_run
//! use marill::mpc::{local::{run_local, RunOptions}, ops, protocol::{ProtocolKind, Role}};
//! let x = vec![0.5, -1.0, 2.0];
//! let run = run_local(ProtocolKind::TwoPartyDealer, &RunOptions::default(), |p| {
//!     let mine = (p.role() == Role::Client).then_some(&x[..]);
//!     let s = ops::share_f64(p, Role::Client, mine, &[3])?;
//!     let y = marill::mpc::approx::silu(p, &s)?;
//!     ops::reveal_f64(p, &y, Some(Role::Client))
//! })?;
//! println!("{:?} {:?}", run.output(Role::Client), run.report);
//! # anyhow::Ok(())
//! ```

pub(crate) mod aes;
pub mod approx;
pub mod argmax_packed;
pub mod comm;
pub mod compare;
pub mod cost;
pub mod dcf;
pub mod fixed;
pub mod latency;
pub mod local;
pub mod network;
pub mod ops;
pub mod party;
pub mod prg;
pub mod protocol;
pub mod provider;
pub mod replicated;
pub mod ring;
pub mod role;
pub mod share;
pub mod tcp;
#[cfg(test)]
pub(crate) mod tests;
pub mod tls;
pub mod transport;
pub mod two_party;
#[cfg(test)]
pub(crate) mod views;

pub use protocol::{Protocol, ProtocolKind, Role};
pub use ring::RingTensor;
pub use share::Share;
