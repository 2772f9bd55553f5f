//! The output of a secure forward: final RMSNorm at the last prompt position, the head restricted
//! to the choice tokens' rows (public: the label words and the tied embedding), and the secure
//! argmax revealed to the client only.

use super::projection::Matrix;
use crate::mpc::cost::CostClass;
use crate::mpc::protocol::{Comparison, Protocol, Role};
use crate::mpc::share::Share;
use crate::mpc::{approx, ops};
use anyhow::{Context, Result};

/// One score per choice `[1, C]` for each sequence from the residual stream at its last
/// position, `last` `[B, d]`, and its head `heads[b]` `(d, C)` with the final norm's gain folded
/// in.
pub fn choice_scores(
    p: &mut dyn Protocol,
    last: &Share,
    heads: &[&Matrix],
    eps: f64,
) -> Result<Vec<Share>> {
    let h = ops::labelled(p, CostClass::Norm, |p| approx::rms_norm(p, last, None, eps))?;
    ops::labelled(p, CostClass::Matmul, |p| {
        // Local products, one truncation for all of them.
        let products: Vec<Share> = heads
            .iter()
            .enumerate()
            .map(|(b, head)| {
                let w = ops::encode(p, &head.data, &head.shape())?;
                h.narrow(0, b, 1)?.matmul_public(&w)
            })
            .collect::<Result<_>>()?;
        let f = p.fixed_point().frac_bits;
        p.truncate(&Share::concat_flat(&products)?, f)?
            .split_flat(&products)
    })
}

/// The index of the best score (ties to the lower index), revealed to the client; the other
/// parties get `None`.
pub fn reveal_choice(p: &mut dyn Protocol, scores: &Share) -> Result<Option<usize>> {
    ops::labelled(p, CostClass::Other, |p| {
        let cmp = Comparison::default_for(p.fixed_point());
        let (_, index) = ops::argmax_last(p, scores, cmp)?;
        p.reveal(&index, Some(Role::Client))?
            .map(|t| {
                t.data()
                    .first()
                    .map(|&i| i as usize)
                    .context("empty argmax")
            })
            .transpose()
    })
}
