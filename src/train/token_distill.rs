//! Token-level losses of generative training, per completion position over the vocabulary.
//!
//! Cross-entropy: `−mean_p log q_p(y_p)` over the positions `p` that predict a completion token
//! `y_p` (prompt positions are never among them).
//!
//! Distillation: `T² · mean_p KL(P_p ‖ Q_p)` with `P` the teacher's and `Q` the student's softmax
//! at temperature `T`. Full teacher distributions (49,152 floats a position for SmolLM2, 196 KB)
//! do not fit in memory for a training set, so the teacher is cached *bucketed*: its `k` most
//! likely tokens `S` and one "rest" bucket holding `1 − Σ_{j∈S} P(j)`. The loss is the KL of the
//! two distributions over these `k + 1` buckets:
//!
//! `Σ_{j∈S} P(j) (log P(j) − log Q(j)) + P(rest) (log P(rest) − log Q(rest))`,
//! `Q(rest) = Σ_{j∉S} Q(j)`, computed as a masked log-sum-exp (no cancellation in `1 − Σ Q`).
//!
//! With `k = V` the rest bucket is empty and this is the full KL; for `k < V` it is a lower bound
//! of it (merging outcomes never increases a KL) that is exact on the teacher's top tokens and
//! still pushes the student's mass off everything the teacher finds unlikely.

use anyhow::{Result, ensure};
use candle_core::{D, DType, Tensor};
use candle_nn::ops::log_softmax;

/// The teacher's distribution at temperature `T` at one position, bucketed: the ids of its `k`
/// most likely tokens (ties to the lower id) in ascending id order, and `k + 1` probabilities,
/// those tokens' then the rest's. Computed in f64.
pub fn top_k_buckets(logits: &[f32], k: usize, temperature: f64) -> (Vec<u32>, Vec<f32>) {
    let scaled: Vec<f64> = logits.iter().map(|&l| f64::from(l) / temperature).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scaled.iter().map(|s| (s - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let mut ids: Vec<u32> = (0..logits.len() as u32).collect();
    let k = k.min(ids.len());
    let rank = |a: &u32, b: &u32| {
        let (a, b) = (*a as usize, *b as usize);
        scaled[b].total_cmp(&scaled[a]).then(a.cmp(&b))
    };
    if k < ids.len() {
        ids.select_nth_unstable_by(k, rank);
    }
    ids.truncate(k);
    ids.sort_unstable();
    let mut probs: Vec<f32> = ids
        .iter()
        .map(|&i| (weights[i as usize] / total) as f32)
        .collect();
    let in_top: f64 = ids.iter().map(|&i| weights[i as usize]).sum();
    // The rest summed directly, not as 1 − Σ top (which cancels when the top holds nearly all).
    probs.push((((total - in_top).max(0.0)) / total) as f32);
    (ids, probs)
}

/// Mean cross-entropy of `targets` `(positions,)` under `logits` `(positions, vocab)`.
pub fn completion_cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let logp = log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?;
    Ok(picked.neg()?.mean_all()?)
}

/// `T² · mean over positions of KL(teacher ‖ student)` over the teacher's `k + 1` buckets:
/// `student` `(positions, vocab)` logits, `top_ids` `(positions, k)` the teacher's top tokens,
/// `teacher_probs` `(positions, k + 1)` their probabilities and the rest's, at `temperature`.
pub fn top_k_distillation_kl(
    student: &Tensor,
    top_ids: &Tensor,
    teacher_probs: &Tensor,
    temperature: f64,
) -> Result<Tensor> {
    let (positions, vocab) = student.dims2()?;
    let k = top_ids.dims2()?.1;
    ensure!(
        teacher_probs.dims2()? == (positions, k + 1),
        "teacher buckets {:?} do not match {positions} positions of {k} tokens and the rest",
        teacher_probs.dims()
    );
    let log_q = log_softmax(&(student / temperature)?, D::Minus1)?;
    let log_q_top = log_q.gather(top_ids, 1)?;
    // log Q(rest): log-sum-exp of the student's log-probabilities off the teacher's top tokens.
    let ids: Vec<Vec<u32>> = top_ids.to_vec2()?;
    let mut off_top = vec![0f32; positions * vocab];
    for (p, row) in ids.iter().enumerate() {
        for &id in row {
            off_top[p * vocab + id as usize] = -1e9;
        }
    }
    let rest = (&log_q + Tensor::from_vec(off_top, (positions, vocab), student.device())?)?;
    let max = rest.max_keepdim(D::Minus1)?.detach();
    let log_q_rest = (rest
        .broadcast_sub(&max)?
        .exp()?
        .sum_keepdim(D::Minus1)?
        .log()?
        + max)?;
    let log_q = Tensor::cat(&[log_q_top, log_q_rest], 1)?;
    // An empty bucket (P = 0) contributes 0: its clamped log stays finite, times 0.
    let log_p = teacher_probs.clamp(1e-30, 1.0)?.log()?;
    let kl = (teacher_probs * (log_p - log_q)?)?
        .sum(D::Minus1)?
        .mean_all()?;
    Ok((kl * (temperature * temperature))?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;
    use rand::{RngExt, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const VOCAB: usize = 40;
    const POSITIONS: usize = 3;

    fn random_logits(seed: u64) -> Vec<Vec<f32>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..POSITIONS)
            .map(|_| (0..VOCAB).map(|_| rng.random_range(-4.0..4.0)).collect())
            .collect()
    }

    fn softmax_ref(row: &[f32], t: f64) -> Vec<f64> {
        let scaled: Vec<f64> = row.iter().map(|&x| f64::from(x) / t).collect();
        let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let total: f64 = scaled.iter().map(|s| (s - max).exp()).sum();
        scaled.iter().map(|s| (s - max).exp() / total).collect()
    }

    /// `T² · mean_p Σ_b P(b) log(P(b) / Q(b))` over buckets `top ∪ {rest}`, in f64.
    fn bucketed_kl_ref(teacher: &[Vec<f32>], student: &[Vec<f32>], k: usize, t: f64) -> f64 {
        let mut total = 0.0;
        for (tr, sr) in teacher.iter().zip(student) {
            let (p, q) = (softmax_ref(tr, t), softmax_ref(sr, t));
            let mut order: Vec<usize> = (0..VOCAB).collect();
            order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
            let (top, rest) = order.split_at(k);
            let term = |pp: f64, qq: f64| if pp > 0.0 { pp * (pp / qq).ln() } else { 0.0 };
            total += top.iter().map(|&j| term(p[j], q[j])).sum::<f64>();
            let (p_rest, q_rest) = rest
                .iter()
                .fold((0.0, 0.0), |(a, b), &j| (a + p[j], b + q[j]));
            total += term(p_rest, q_rest);
        }
        t * t * total / teacher.len() as f64
    }

    fn kl_of(teacher: &[Vec<f32>], student: &[Vec<f32>], k: usize, t: f64) -> Result<f64> {
        let dev = Device::Cpu;
        let (mut ids, mut probs) = (Vec::new(), Vec::new());
        for row in teacher {
            let (i, p) = top_k_buckets(row, k, t);
            ids.extend(i);
            probs.extend(p);
        }
        let ids = Tensor::from_vec(ids, (POSITIONS, k), &dev)?;
        let probs = Tensor::from_vec(probs, (POSITIONS, k + 1), &dev)?;
        let flat: Vec<f32> = student.iter().flatten().copied().collect();
        let s = Tensor::from_vec(flat, (POSITIONS, VOCAB), &dev)?;
        Ok(f64::from(
            top_k_distillation_kl(&s, &ids, &probs, t)?.to_scalar::<f32>()?,
        ))
    }

    #[test]
    fn top_k_as_large_as_the_vocabulary_is_the_full_kl() -> Result<()> {
        let (teacher, student) = (random_logits(1), random_logits(2));
        for t in [1.0, 2.0] {
            let got = kl_of(&teacher, &student, VOCAB, t)?;
            // The full KL, written out without buckets.
            let want: f64 = teacher
                .iter()
                .zip(&student)
                .map(|(tr, sr)| {
                    let (p, q) = (softmax_ref(tr, t), softmax_ref(sr, t));
                    p.iter().zip(&q).map(|(a, b)| a * (a / b).ln()).sum::<f64>()
                })
                .sum::<f64>()
                * t
                * t
                / POSITIONS as f64;
            assert!(
                (got - want).abs() < 1e-5 * want.max(1.0),
                "T {t}: {got} vs {want}"
            );
        }
        Ok(())
    }

    #[test]
    fn top_k_kl_is_the_kl_over_the_top_tokens_and_the_rest() -> Result<()> {
        let (teacher, student) = (random_logits(3), random_logits(4));
        for k in [1, 5, 17] {
            let got = kl_of(&teacher, &student, k, 2.0)?;
            let want = bucketed_kl_ref(&teacher, &student, k, 2.0);
            assert!((got - want).abs() < 1e-5, "k {k}: {got} vs {want}");
            // A lower bound of the full KL, and strictly below it here.
            let full = bucketed_kl_ref(&teacher, &student, VOCAB, 2.0);
            assert!(got < full - 1e-4, "k {k}: {got} vs full {full}");
        }
        // The same distribution: nothing to learn.
        assert!(kl_of(&teacher, &teacher, 5, 2.0)?.abs() < 1e-6);
        Ok(())
    }

    #[test]
    fn the_rest_bucket_holds_the_teachers_remaining_probability() {
        let logits = [3.0f32, -1.0, 2.0, 0.5, 2.0];
        let (ids, probs) = top_k_buckets(&logits, 2, 1.0);
        // The two most likely; the tie at 2.0 goes to the lower id.
        assert_eq!(ids, [0, 2]);
        let p = softmax_ref(&logits, 1.0);
        let rest = p[1] + p[3] + p[4];
        assert!((f64::from(probs[0]) - p[0]).abs() < 1e-7);
        assert!((f64::from(probs[1]) - p[2]).abs() < 1e-7);
        assert!((f64::from(probs[2]) - rest).abs() < 1e-7, "{probs:?}");
        // k = V: the rest is empty.
        let (_, all) = top_k_buckets(&logits, 5, 1.0);
        assert_eq!(all[5], 0.0);
    }

    #[test]
    fn cross_entropy_is_the_mean_negative_log_likelihood_of_the_targets() -> Result<()> {
        let logits = random_logits(5);
        let targets = [7u32, 0, 39];
        let flat: Vec<f32> = logits.iter().flatten().copied().collect();
        let dev = Device::Cpu;
        let got = completion_cross_entropy(
            &Tensor::from_vec(flat, (POSITIONS, VOCAB), &dev)?,
            &Tensor::new(&targets, &dev)?,
        )?
        .to_scalar::<f32>()?;
        let want: f64 = logits
            .iter()
            .zip(targets)
            .map(|(row, y)| -softmax_ref(row, 1.0)[y as usize].ln())
            .sum::<f64>()
            / POSITIONS as f64;
        assert!((f64::from(got) - want).abs() < 1e-5, "{got} vs {want}");
        Ok(())
    }
}
