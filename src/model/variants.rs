//! Pluggable non-linearities: the exact ones and their MPC-friendly replacements (MPCFormer).
//! Every variant is built from differentiable candle ops so a student can be trained through it.

use anyhow::Result;
use candle_core::{D, Tensor};
use serde::{Deserialize, Serialize};

/// The activation of the MLP: of the SwiGLU gate, or of a plain MLP's hidden layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// `x·sigmoid(x)`, what the base model was trained with.
    #[default]
    #[serde(rename = "exact", alias = "silu")]
    Silu,
    /// MPCFormer's "Quad": `0.125x² + 0.25x + 0.5`, a single secret multiplication in MPC.
    Quad,
    /// PUMA's piecewise form of SiLU, `relu(x) + [|x| < 7.5]·silu(-|x|)`: equal to SiLU within
    /// 4.1e-3, and what MPC evaluates with one comparison round and a polynomial for the bounded
    /// part. Needs no retraining.
    Puma,
    /// GeLU, erf form (BERT's, GPT-2's): in MPC the PUMA-style `relu(x) + gelu(-|x|)` fit,
    /// within 4e-3.
    Gelu,
}

/// Beyond this `|x|`, the PUMA form drops SiLU's tail `silu(-|x|)`: the MPC engine's cut-off
/// (`mpc::approx::SILU_CUTOFF`; a test in `secure` keeps them equal).
pub const PUMA_SILU_CUTOFF: f64 = 7.5;

impl Activation {
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Silu => x.silu()?,
            Activation::Quad => ((x.sqr()? * 0.125)? + (x * 0.25)?)?.affine(1.0, 0.5)?,
            Activation::Puma => {
                let neg_abs = x.abs()?.neg()?;
                let inside = neg_abs.ge(-PUMA_SILU_CUTOFF)?.to_dtype(x.dtype())?;
                (x.relu()? + (neg_abs.silu()? * inside)?)?
            }
            Activation::Gelu => x.gelu_erf()?,
        })
    }
}

/// How attention scores become weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SoftmaxKind {
    /// `exp(s - max) / Σ exp(s - max)` over the allowed keys.
    #[default]
    Exact,
    /// MPCFormer's "2Quad": `(s + c)² / Σ (s + c)²` with `c = 5`, no exponential and no max.
    #[serde(rename = "2quad")]
    TwoQuad,
}

/// The shift `c` of 2Quad, as in MPCFormer.
pub const TWO_QUAD_SHIFT: f64 = 5.0;

/// Additive bias that removes a masked key from an exact softmax; finite so that a fully masked
/// row (a left-padding query) yields uniform weights instead of NaN.
const MASKED_SCORE: f64 = -1e9;

impl SoftmaxKind {
    /// Normalises `scores` over the last axis; `allowed` (broadcastable, 1 = attend, 0 = masked)
    /// carries the causal and padding masks.
    pub fn apply(self, scores: &Tensor, allowed: &Tensor) -> Result<Tensor> {
        Ok(match self {
            SoftmaxKind::Exact => {
                let bias = allowed.affine(-MASKED_SCORE, MASKED_SCORE)?;
                candle_nn::ops::softmax(&scores.broadcast_add(&bias)?, D::Minus1)?
            }
            SoftmaxKind::TwoQuad => {
                let num = scores
                    .affine(1.0, TWO_QUAD_SHIFT)?
                    .sqr()?
                    .broadcast_mul(allowed)?;
                // The epsilon keeps an all-masked row finite; real rows sum to far more.
                let den = (num.sum_keepdim(D::Minus1)? + 1e-6)?;
                num.broadcast_div(&den)?
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn quad_matches_its_formula() -> Result<()> {
        let x = Tensor::new(&[-2f32, 0.0, 1.5], &Device::Cpu)?;
        let y: Vec<f32> = Activation::Quad.apply(&x)?.to_vec1()?;
        for (xi, yi) in [-2f32, 0.0, 1.5].iter().zip(y) {
            assert!((yi - (0.125 * xi * xi + 0.25 * xi + 0.5)).abs() < 1e-6);
        }
        Ok(())
    }

    #[test]
    fn puma_silu_stays_within_its_cutoff_error() -> Result<()> {
        let xs: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.05).collect();
        let x = Tensor::new(xs.as_slice(), &Device::Cpu)?;
        let exact: Vec<f32> = Activation::Silu.apply(&x)?.to_vec1()?;
        let puma: Vec<f32> = Activation::Puma.apply(&x)?.to_vec1()?;
        let worst = exact
            .iter()
            .zip(&puma)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst < 4.2e-3 && worst > 0.0, "{worst}");
        Ok(())
    }

    #[test]
    fn softmaxes_respect_the_mask_and_normalise() -> Result<()> {
        let dev = Device::Cpu;
        let scores = Tensor::new(&[[0.3f32, -1.0, 2.0], [1.0, 1.0, 1.0]], &dev)?;
        let allowed = Tensor::new(&[[1f32, 1.0, 0.0], [1.0, 0.0, 0.0]], &dev)?;
        for kind in [SoftmaxKind::Exact, SoftmaxKind::TwoQuad] {
            let w: Vec<Vec<f32>> = kind.apply(&scores, &allowed)?.to_vec2()?;
            for row in &w {
                assert!(
                    (row.iter().sum::<f32>() - 1.0).abs() < 1e-5,
                    "{kind:?} {row:?}"
                );
            }
            assert!(w[0][2].abs() < 1e-6 && w[1][1].abs() < 1e-6 && w[1][2].abs() < 1e-6);
        }
        let exact: Vec<Vec<f32>> = SoftmaxKind::Exact.apply(&scores, &allowed)?.to_vec2()?;
        let e = (0.3f32.exp(), (-1f32).exp());
        assert!((exact[0][0] - e.0 / (e.0 + e.1)).abs() < 1e-6);
        Ok(())
    }
}
