//! LoRA kept unmerged: `y = x·Wᵀ + (α/r)·(x·Aᵀ)·Bᵀ`, with `W` public and frozen and `A`, `B`
//! private and trained. Under MPC `x·Wᵀ` is then a local operation on shares and only the
//! rank-`r` part multiplies secrets.

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::cell::RefCell;

thread_local! {
    static DROPOUT_RNG: RefCell<ChaCha8Rng> = RefCell::new(ChaCha8Rng::seed_from_u64(0));
}

/// Seeds this thread's dropout masks. The trainer reseeds every worker for every part of every
/// step, so a resumed run draws the same masks as an uninterrupted one.
pub fn seed_dropout(seed: u64) {
    DROPOUT_RNG.with(|rng| *rng.borrow_mut() = ChaCha8Rng::seed_from_u64(seed));
}

/// Inverted dropout of `x` with drop probability `p`, from this thread's generator.
fn dropout(x: &Tensor, p: f32) -> Result<Tensor> {
    let keep = 1.0 - p;
    let mask: Vec<f32> = DROPOUT_RNG.with(|rng| {
        let mut rng = rng.borrow_mut();
        (0..x.elem_count())
            .map(|_| {
                if rng.random::<f32>() < keep {
                    1.0 / keep
                } else {
                    0.0
                }
            })
            .collect()
    });
    Ok((x * Tensor::from_vec(mask, x.shape(), x.device())?)?)
}

#[derive(Debug, Clone)]
pub struct LoraAdapter {
    /// `(rank, in)`.
    pub a: Tensor,
    /// `(out, rank)`.
    pub b: Tensor,
    pub alpha: f64,
    /// Dropout on the adapter's input while training (0 = none).
    pub dropout: f32,
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
        };
        Ok((adapter, a, b))
    }

    /// `(α/r)·(x·Aᵀ)·Bᵀ` for `x` of shape `(rows, in)`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let x = if self.dropout > 0.0 && x.track_op() {
            dropout(x, self.dropout)?
        } else {
            x.clone()
        };
        Ok((x.matmul(&self.a.t()?)?.matmul(&self.b.t()?)? * self.scale())?)
    }

    /// `W + (α/r)·B·A`: the adapter folded into its base weight.
    pub fn merged_into(&self, weight: &Tensor) -> Result<Tensor> {
        Ok((weight + (self.b.matmul(&self.a)? * self.scale())?)?)
    }
}
