//! The output of a secure decoding step: final RMSNorm on shares, the whole tied head (the
//! public embedding, so a local product: no traffic), and a secure argmax over the vocabulary
//! whose index alone, the next token, is revealed to the client.
//!
//! The logits stay untruncated at scale `2f` (a truncation of `V` elements would cost more
//! than the wider comparisons it saves) and are compared at a resolution of `2^-6` within a
//! spread below `2^7` ([`LOGITS`]): `crate::mpc::argmax_packed`.

use super::projection::Matrix;
use crate::mpc::argmax_packed::{PackedArgmax, argmax_packed};
use crate::mpc::cost::CostClass;
use crate::mpc::fixed::FixedPoint;
use crate::mpc::protocol::{Protocol, Role};
use crate::mpc::ring::RingTensor;
use crate::mpc::share::Share;
use crate::mpc::{approx, ops};
use anyhow::{Result, ensure};
use candle_core::Tensor;

/// What the argmax assumes of the logits besides their scale: any two differ by less than
/// `2^int_bits` (SmolLM2's spread over the vocabulary is about 40), and closer than
/// `2^-resolution_bits` they may be taken for equal.
pub const LOGITS: (u32, u32) = (7, 6);

/// The tied head `(d, V)` with the final norm's gain folded in, encoded once for every step.
pub struct VocabHead {
    weight: RingTensor,
    fixed: FixedPoint,
    eps: f64,
}

impl VocabHead {
    /// From the head's weight `(V, d)` and the final norm's `gain` and `eps`.
    pub fn new(lm_head: &Tensor, gain: &[f64], eps: f64, fixed: FixedPoint) -> Result<Self> {
        let head = Matrix::transposed(lm_head, gain)?;
        Ok(VocabHead {
            weight: fixed.encode_tensor(&head.shape(), &head.data)?,
            fixed,
            eps,
        })
    }

    pub fn vocab_size(&self) -> usize {
        self.weight.shape()[1]
    }

    /// The greedy next token of each sequence from its residual stream `last` `[B, d]`,
    /// revealed to the client alone (`None` at the other parties).
    pub fn next_tokens(&self, p: &mut dyn Protocol, last: &Share) -> Result<Option<Vec<u32>>> {
        let fp = p.fixed_point();
        ensure!(
            fp == self.fixed,
            "the head was encoded at {:?}, the protocol runs at {fp:?}",
            self.fixed
        );
        let h = ops::labelled(p, CostClass::Norm, |p| {
            approx::rms_norm(p, last, None, self.eps)
        })?;
        let logits = h.matmul_public(&self.weight)?;
        let (int_bits, resolution_bits) = LOGITS;
        let spec = PackedArgmax {
            scale_bits: 2 * fp.frac_bits,
            int_bits,
            resolution_bits,
        };
        let tokens = ops::labelled(p, CostClass::Other, |p| {
            argmax_packed(p, &logits, spec, Role::Client)
        })?;
        Ok(tokens.map(|t| t.into_iter().map(|i| i as u32).collect()))
    }
}
