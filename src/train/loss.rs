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

    /// Log-softmax of a row's unmasked entries at temperature `t`, in f64 (`None` where masked).
    fn log_softmax_ref(row: &[f64], mask: &[f64], t: f64) -> Vec<Option<f64>> {
        let visible: Vec<f64> = row
            .iter()
            .zip(mask)
            .filter(|(_, m)| **m > 0.0)
            .map(|(x, _)| x / t)
            .collect();
        let max = visible.iter().cloned().fold(f64::MIN, f64::max);
        let log_sum = visible.iter().map(|x| (x - max).exp()).sum::<f64>().ln() + max;
        row.iter()
            .zip(mask)
            .map(|(x, m)| (*m > 0.0).then(|| x / t - log_sum))
            .collect()
    }

    /// `T² · mean over rows of sum_j p_j (log p_j - log q_j)`, p the first argument's softmax.
    fn kl_ref(p_logits: &[[f64; 3]], q_logits: &[[f64; 3]], mask: &[[f64; 3]], t: f64) -> f64 {
        let rows = p_logits.iter().zip(q_logits).zip(mask);
        let total: f64 = rows
            .map(|((p, q), m)| {
                let (lp, lq) = (log_softmax_ref(p, m, t), log_softmax_ref(q, m, t));
                lp.iter()
                    .zip(&lq)
                    .filter_map(|(a, b)| Some(a.as_ref()?.exp() * (a.as_ref()? - b.as_ref()?)))
                    .sum::<f64>()
            })
            .sum();
        t * t * total / p_logits.len() as f64
    }

    fn tensor<const N: usize>(rows: &[[f64; N]]) -> Result<Tensor> {
        let flat: Vec<f32> = rows.iter().flatten().map(|&v| v as f32).collect();
        Ok(Tensor::from_vec(flat, (rows.len(), N), &Device::Cpu)?)
    }

    const STUDENT: [[f64; 3]; 2] = [[0.5, -1.0, 30.0], [1.5, 0.2, -0.7]];
    const TEACHER: [[f64; 3]; 2] = [[2.0, 0.5, -30.0], [-0.3, 1.1, 0.4]];
    /// Row 0's third choice is masked out (its large logits must not count).
    const MASK: [[f64; 3]; 2] = [[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]];

    #[test]
    fn distillation_kl_is_t_squared_kl_of_teacher_to_student() -> Result<()> {
        let (s, t, m) = (tensor(&STUDENT)?, tensor(&TEACHER)?, tensor(&MASK)?);
        for temperature in [1.0, 2.0, 4.0] {
            let got = f64::from(distillation_kl(&s, &t, &m, temperature)?.to_scalar::<f32>()?);
            let want = kl_ref(&TEACHER, &STUDENT, &MASK, temperature);
            assert!(
                (got - want).abs() < 1e-5 * want.max(1.0),
                "T = {temperature}: {got} vs {want}"
            );
            // The other order (KL(student ‖ teacher)) is a different number on these logits.
            let swapped = kl_ref(&STUDENT, &TEACHER, &MASK, temperature);
            assert!((swapped - want).abs() > 1e-3, "T = {temperature}");
        }
        // T² in numbers: at T = 2 the loss is 4 times the plain KL of the softened
        // distributions, computed here without the factor.
        let plain = kl_ref(&TEACHER, &STUDENT, &MASK, 2.0) / 4.0;
        let got = f64::from(distillation_kl(&s, &t, &m, 2.0)?.to_scalar::<f32>()?);
        assert!((got - 4.0 * plain).abs() < 1e-5, "{got} vs 4 x {plain}");
        Ok(())
    }

    #[test]
    fn cross_entropy_is_the_mean_negative_log_likelihood_over_unmasked_choices() -> Result<()> {
        let targets = Tensor::new(&[1u32, 2], &Device::Cpu)?;
        let got = choice_cross_entropy(&tensor(&STUDENT)?, &tensor(&MASK)?, &targets)?;
        let nll = |row: usize, target: usize| {
            -log_softmax_ref(&STUDENT[row], &MASK[row], 1.0)[target].expect("unmasked")
        };
        let want = (nll(0, 1) + nll(1, 2)) / 2.0;
        let got = f64::from(got.to_scalar::<f32>()?);
        assert!((got - want).abs() < 1e-5, "{got} vs {want}");
        Ok(())
    }

    #[test]
    fn hidden_mse_averages_features_then_real_tokens() -> Result<()> {
        let dev = Device::Cpu;
        // (batch 2, seq 3, hidden 2); padding tokens (mask 0) differ wildly and must not count.
        let student = Tensor::new(
            &[
                [[1f32, 2.0], [0.0, -1.0], [100.0, 100.0]],
                [[0.5, 0.5], [-50.0, 50.0], [9.0, 9.0]],
            ],
            &dev,
        )?;
        let teacher = Tensor::new(
            &[
                [[0f32, 0.0], [1.0, 1.0], [0.0, 0.0]],
                [[1.5, -0.5], [0.0, 0.0], [0.0, 0.0]],
            ],
            &dev,
        )?;
        let mask = Tensor::new(&[[1f32, 1.0, 0.0], [1.0, 0.0, 0.0]], &dev)?;
        // Per real token, the mean over features of the squared difference.
        let tokens = [(1.0 + 4.0) / 2.0, (1.0 + 4.0) / 2.0, (1.0 + 1.0) / 2.0];
        let want = tokens.iter().sum::<f64>() / tokens.len() as f64;
        let got = f64::from(hidden_mse(&student, &teacher, &mask)?.to_scalar::<f32>()?);
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        Ok(())
    }
}
