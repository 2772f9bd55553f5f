//! AdamW with decoupled weight decay, a warm-up + decay learning-rate schedule and global-norm
//! gradient clipping. candle-nn's AdamW keeps its moments private, so a resumed run could not
//! restore them: this one exposes its state.

use crate::recipe::LrSchedule;
use anyhow::{Result, bail};
use candle_core::backprop::GradStore;
use candle_core::{Tensor, Var};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
}

/// Named trainable variables and their first / second moments.
pub struct AdamW {
    pub config: AdamWConfig,
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    /// Optimizer steps taken (bias correction uses it).
    pub step: usize,
}

impl AdamW {
    pub fn new(vars: Vec<(String, Var)>, config: AdamWConfig) -> Result<Self> {
        let zeros = |var: &Var| var.as_tensor().zeros_like();
        let m = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle_core::Result<_>>()?;
        let v = vars
            .iter()
            .map(|(_, v)| zeros(v))
            .collect::<candle_core::Result<_>>()?;
        Ok(AdamW {
            config,
            vars,
            m,
            v,
            step: 0,
        })
    }

    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// One update with learning rate `lr` from gradients `grads` (already clipped / averaged).
    pub fn update(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.step += 1;
        let c = self.config;
        let t = self.step as i32;
        let (bc1, bc2) = (1.0 - c.beta1.powi(t), 1.0 - c.beta2.powi(t));
        for (i, (name, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                bail!("trainable tensor {name} received no gradient");
            };
            self.m[i] = ((&self.m[i] * c.beta1)? + (g * (1.0 - c.beta1))?)?;
            self.v[i] = ((&self.v[i] * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
            let m_hat = (&self.m[i] / bc1)?;
            let v_hat = (&self.v[i] / bc2)?;
            let update = (m_hat / (v_hat.sqrt()? + c.eps)?)?;
            let decayed = (var.as_tensor() * (1.0 - lr * c.weight_decay))?;
            var.set(&(decayed - (update * lr)?)?)?;
        }
        Ok(())
    }

    /// Moments by name (`m.<var>`, `v.<var>`), for saving.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (name, _)) in self.vars.iter().enumerate() {
            out.insert(format!("m.{name}"), self.m[i].clone());
            out.insert(format!("v.{name}"), self.v[i].clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state_tensors`] and the step count.
    pub fn restore(&mut self, state: &HashMap<String, Tensor>, step: usize) -> Result<()> {
        for (i, (name, _)) in self.vars.iter().enumerate() {
            let get = |key: String| {
                state
                    .get(&key)
                    .cloned()
                    .ok_or_else(|| anyhow::anyhow!("training state has no {key}"))
            };
            self.m[i] = get(format!("m.{name}"))?;
            self.v[i] = get(format!("v.{name}"))?;
        }
        self.step = step;
        Ok(())
    }
}

/// The learning rate at optimizer step `step` (0-based) of `total`: linear warm-up over
/// `warmup` steps, then the decay to zero.
pub fn learning_rate(
    base: f64,
    schedule: LrSchedule,
    step: usize,
    warmup: usize,
    total: usize,
) -> f64 {
    if step < warmup {
        return base * (step + 1) as f64 / warmup as f64;
    }
    let decay_steps = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / decay_steps as f64).min(1.0);
    match schedule {
        LrSchedule::Cosine => base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
        LrSchedule::Linear => base * (1.0 - progress),
        LrSchedule::Constant => base,
    }
}

/// Scales `grads` of `vars` so that their global L2 norm is at most `max_norm` (0 = no
/// clipping); returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut GradStore, vars: &[(String, Var)], max_norm: f64) -> Result<f64> {
    let mut total = 0f64;
    for (_, var) in vars {
        if let Some(g) = grads.get(var.as_tensor()) {
            total += f64::from(g.sqr()?.sum_all()?.to_scalar::<f32>()?);
        }
    }
    let norm = total.sqrt();
    if max_norm > 0.0 && norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for (_, var) in vars {
            if let Some(g) = grads.remove(var.as_tensor()) {
                grads.insert(var.as_tensor(), (g * factor)?);
            }
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let lr = |s| learning_rate(1.0, LrSchedule::Cosine, s, 10, 110);
        assert!((lr(0) - 0.1).abs() < 1e-12);
        assert!((lr(9) - 1.0).abs() < 1e-12);
        assert!((lr(60) - 0.5).abs() < 1e-12);
        assert!(lr(110).abs() < 1e-12);
        assert!((learning_rate(1.0, LrSchedule::Linear, 35, 10, 110) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn adamw_minimises_a_quadratic_and_clipping_bounds_the_norm() -> Result<()> {
        let x = Var::new(&[3f32, -2.0], &Device::Cpu)?;
        let config = AdamWConfig {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        };
        let mut opt = AdamW::new(vec![("x".into(), x.clone())], config)?;
        for _ in 0..300 {
            let mut grads = x.as_tensor().sqr()?.sum_all()?.backward()?;
            let before = clip_grad_norm(&mut grads, opt.vars(), 1.0)?;
            let after = grads
                .get(x.as_tensor())
                .unwrap()
                .sqr()?
                .sum_all()?
                .to_scalar::<f32>()?;
            assert!(before <= 1.0 + 1e-6 || f64::from(after).sqrt() <= 1.0 + 1e-4);
            opt.update(&grads, 0.1)?;
        }
        let v: Vec<f32> = x.as_tensor().to_vec1()?;
        assert!(v.iter().all(|x| x.abs() < 0.05), "{v:?}");
        Ok(())
    }
}
