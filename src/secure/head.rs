//! The output of a secure forward: final RMSNorm at the last prompt position, the head restricted
//! to the choice tokens' rows (public: the label words and the tied embedding), and the secure
//! argmax revealed to the client only.

use super::projection::Matrix;
use crate::mpc::protocol::{Comparison, Protocol, Role};
use crate::mpc::share::Share;
use crate::mpc::{approx, ops};
use anyhow::{Context, Result};

/// One score per choice, `[1, C]`, from the residual stream `x` `[T, d]`. `head` is `(d, C)`
/// with the final norm's gain folded in.
pub fn choice_scores(p: &mut dyn Protocol, x: &Share, head: &Matrix, eps: f64) -> Result<Share> {
    let last = x.narrow(0, x.shape()[0] - 1, 1)?;
    let h = ops::labelled(p, "norm", |p| approx::rms_norm(p, &last, None, eps))?;
    ops::labelled(p, "matmul", |p| {
        let w = ops::encode(p, &head.data, &head.shape())?;
        ops::matmul_public(p, &h, &w)
    })
}

/// The index of the best score (ties to the lower index), revealed to the client; the other
/// parties get `None`.
pub fn reveal_choice(p: &mut dyn Protocol, scores: &Share) -> Result<Option<usize>> {
    ops::labelled(p, "other", |p| {
        let cmp = Comparison::default_for(p.fixed_point());
        let (_, index) = ops::argmax_last(p, scores, cmp)?;
        p.reveal(&index, Some(Role::Client))?
            .map(|t| t.data().first().map(|&i| i as usize).context("empty argmax"))
            .transpose()
    })
}
