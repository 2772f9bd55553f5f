//! Training losses over the choice logits at the answer position, and on hidden states.

use anyhow::Result;
use candle_core::{D, Tensor};
use candle_nn::ops::log_softmax;

/// Removes masked choices from a softmax over `(batch, choices)` logits.
fn masked(logits: &Tensor, mask: &Tensor) -> Result<Tensor> {
    Ok((logits + mask.affine(1e9, -1e9)?)?)
}

/// Mean cross-entropy of the right choice.
pub fn choice_cross_entropy(logits: &Tensor, mask: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = log_softmax(&masked(logits, mask)?, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?;
    Ok(picked.neg()?.mean_all()?)
}

/// `T² · KL(teacher ‖ student)` over the choices at temperature `T`, averaged over the batch
/// (Hinton et al.: the `T²` keeps gradient magnitudes comparable across temperatures).
pub fn distillation_kl(
    student: &Tensor,
    teacher: &Tensor,
    mask: &Tensor,
    temperature: f64,
) -> Result<Tensor> {
    let s = log_softmax(&masked(&(student / temperature)?, mask)?, D::Minus1)?;
    let t = log_softmax(&masked(&(teacher / temperature)?, mask)?, D::Minus1)?;
    let p = (t.exp()? * mask)?;
    let kl = (p * (t - s)?)?.sum(D::Minus1)?.mean_all()?;
    Ok((kl * (temperature * temperature))?)
}

/// Mean squared error between hidden states `(batch, seq, hidden)` over real tokens.
pub fn hidden_mse(student: &Tensor, teacher: &Tensor, token_mask: &Tensor) -> Result<Tensor> {
    let per_token = (student - teacher)?.sqr()?.mean(D::Minus1)?;
    let total = (per_token * token_mask)?.sum_all()?;
    Ok((total / token_mask.sum_all()?.to_scalar::<f32>()? as f64)?)
}

/// Accuracy counts: rows whose best unmasked choice is the target.
pub fn correct_choices(logits: &Tensor, mask: &Tensor, targets: &Tensor) -> Result<usize> {
    let best = masked(logits, mask)?.argmax(D::Minus1)?;
    Ok(best
        .eq(targets)?
        .to_dtype(candle_core::DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()? as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn losses_match_hand_computed_values() -> Result<()> {
        let dev = Device::Cpu;
        let logits = Tensor::new(&[[2f32, 0.0, 9.0], [0.0, 1.0, 0.0]], &dev)?;
        let mask = Tensor::new(&[[1f32, 1.0, 0.0], [1.0, 1.0, 1.0]], &dev)?;
        let targets = Tensor::new(&[0u32, 1], &dev)?;
        let ce = choice_cross_entropy(&logits, &mask, &targets)?.to_scalar::<f32>()?;
        let row0 = (1.0 + (-2f32).exp()).ln();
        let row1 = -(1f32.exp() / (2.0 + 1f32.exp())).ln();
        assert!((ce - (row0 + row1) / 2.0).abs() < 1e-5);
        assert_eq!(correct_choices(&logits, &mask, &targets)?, 2);
        let same = distillation_kl(&logits, &logits, &mask, 2.0)?.to_scalar::<f32>()?;
        assert!(same.abs() < 1e-6);
        let other = Tensor::new(&[[0f32, 2.0, 0.0], [1.0, 0.0, 0.0]], &dev)?;
        assert!(distillation_kl(&logits, &other, &mask, 2.0)?.to_scalar::<f32>()? > 0.01);
        Ok(())
    }
}
