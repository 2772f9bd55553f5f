//! Approximations of non-linear functions on shares: exp, reciprocal, rsqrt, softmax,
//! sigmoid / SiLU / GeLU (piecewise, PUMA-style), RMSNorm, LayerNorm, and MPCFormer's Quad and
//! 2Quad, one concept a file. Error bounds are the tested ones at 16 fractional bits. "Cost:"
//! lines are as in [`ops`](super::ops) (bytes each computing party sends for `n` elements,
//! critical-path rounds, offline bytes the server / client receive; `o(d)`, `cw`), pinned by
//! `mpc::tests::costs`.
//!
//! Two devices keep rounds few. A piecewise-constant function of `x` is a public linear
//! combination of one round of comparison bits (DCF keys make that round one opening), so a
//! first guess and any function of it cost no product ([`inverse`], [`exp`]'s lines). And a
//! truncation's opening doubles as its output's mask, so a result truncated last is ready for
//! the next product at no extra round.

mod activation;
mod exp;
mod inverse;
mod norm;
mod polynomial;
mod softmax;

pub use activation::{
    SILU_CUTOFF, gelu, gelu_f64, gelu_wide, quad, sigmoid, sigmoid_f64, silu, silu_f64, silu_wide,
};
pub use exp::exp;
pub use inverse::{reciprocal, rsqrt};
pub use norm::{layer_norm, normalised_f64, rms_norm};
pub use polynomial::{fit_polynomial, polynomial};
pub use softmax::{causal_mask, softmax, softmax_2quad};
