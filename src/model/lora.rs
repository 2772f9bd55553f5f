//! LoRA kept unmerged: `y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ`, with `W` public and frozen and `A`, `B`
//! private and trained. Under MPC `x·Wᵀ` is then a local operation on shares and only the
//! rank-`r` part multiplies secrets.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::{Arc, Mutex};

/// A seeded source of dropout masks shared by the adapters of one model, so that a resumed run
/// draws the same masks as an uninterrupted one (the trainer reseeds it every step).
#[derive(Debug, Clone)]
pub struct DropoutRng(Arc<Mutex<ChaCha8Rng>>);

impl DropoutRng {
    pub fn new(seed: u64) -> Self {
        DropoutRng(Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed))))
    }

    pub fn reseed(&self, seed: u64) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = ChaCha8Rng::seed_from_u64(seed);
    }

    /// Inverted dropout of `x` with drop probability `p`.
    fn apply(&self, x: &Tensor, p: f32) -> Result<Tensor> {
        let n = x.elem_count();
        let keep = 1.0 - p;
        let mask: Vec<f32> = {
            let mut rng = self.0.lock().unwrap_or_else(|e| e.into_inner());
            (0..n)
                .map(|_| {
                    if rng.random::<f32>() < keep {
                        1.0 / keep
                    } else {
                        0.0
                    }
                })
                .collect()
        };
        let mask = Tensor::from_vec(mask, x.shape(), x.device())?;
        Ok((x * mask)?)
    }
}

#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// `(rank, in)`.
    pub a: Tensor,
    /// `(out, rank)`.
    pub b: Tensor,
    pub alpha: f64,
    pub dropout: f32,
    pub dropout_rng: Option<DropoutRng>,
}

impl LoraAdapter {
    pub fn rank(&self) -> usize {
        self.a.dims()[0]
    }

    pub fn scale(&self) -> f64 {
        self.alpha / self.rank() as f64
    }

    /// A fresh trainable adapter: `A` Kaiming-uniform, `B` zero, so training starts from the
    /// unadapted layer. Returns the adapter and its variables `(A, B)`.
    pub fn init(
        in_features: usize,
        out_features: usize,
        rank: usize,
        alpha: f64,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Result<(Self, Var, Var)> {
        let bound = (1.0 / in_features as f32).sqrt();
        let a: Vec<f32> = (0..rank * in_features)
            .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * bound)
            .collect();
        let a = Var::from_tensor(&Tensor::from_vec(a, (rank, in_features), device)?)?;
        let b = Var::zeros((out_features, rank), DType::F32, device)?;
        let adapter = LoraAdapter {
            a: a.as_tensor().clone(),
            b: b.as_tensor().clone(),
            alpha,
            dropout: 0.0,
            dropout_rng: None,
        };
        Ok((adapter, a, b))
    }

    /// `(α/r)·(x·Aᵀ)·Bᵀ` for `x` of shape `(rows, in)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = match (&self.dropout_rng, self.dropout > 0.0) {
            (Some(rng), true) => rng.apply(x, self.dropout)?,
            _ => x.clone(),
        };
        Ok((x.matmul(&self.a.t()?)?.matmul(&self.b.t()?)? * self.scale())?)
    }

    /// `W + (α/r)·B·A`: the adapter folded into its base weight.
    pub fn merged_into(&self, weight: &Tensor) -> Result<Tensor> {
        Ok((weight + (self.b.matmul(&self.a)? * self.scale())?)?)
    }
}
