//! One (possibly fused) projection `x·Wᵀ (+ LoRA) + b` of a private layer as the protocol runs
//! it: which part is public, which is the server's secret, and how shares flow through it.
//!
//! A preceding norm's affine part folds in exactly: `(x ⊙ γ + β)·Wᵀ + b = x·(diag(γ)·Wᵀ) +
//! (β·Wᵀ + b)`.

use super::architecture::Dense;
use crate::model::linear::Linear;
use crate::mpc::ops;
use crate::mpc::protocol::{Protocol, Role, SecretWeight};
use crate::mpc::ring::RingTensor;
use crate::mpc::share::Share;
use anyhow::Result;
use candle_core::{DType, Tensor};

/// Who holds the projection weights of the private layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrecy {
    /// MARILL student: the base `W` is public, only the LoRA factors are the server's.
    LoraOnly,
    /// Standard fine-tuning (teacher, or a base model served as is): every projection weight is
    /// the server's secret.
    FullWeights,
}

/// A row-major `(rows, cols)` real matrix.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    /// `tensor` `(out, in)` as `(in, out)`, row `i` scaled by `gain[i]` (a preceding RMSNorm's
    /// gain folded in: `(x ⊙ γ)·Wᵀ = x·(diag(γ)·Wᵀ)` exactly).
    pub fn transposed(tensor: &Tensor, gain: &[f64]) -> Result<Matrix> {
        let (out, inp) = tensor.dims2()?;
        let mut data: Vec<f64> = tensor
            .t()?
            .contiguous()?
            .to_dtype(DType::F64)?
            .flatten_all()?
            .to_vec1()?;
        for (row, &g) in data.chunks_mut(out).zip(gain) {
            row.iter_mut().for_each(|v| *v *= g);
        }
        Ok(Matrix {
            rows: inp,
            cols: out,
            data,
        })
    }

    /// Side by side: `[a | b | …]` (equal row counts).
    fn hconcat(parts: &[Matrix]) -> Matrix {
        let rows = parts[0].rows;
        let cols = parts.iter().map(|m| m.cols).sum();
        let mut data = Vec::with_capacity(rows * cols);
        for r in 0..rows {
            for m in parts {
                data.extend_from_slice(&m.data[r * m.cols..(r + 1) * m.cols]);
            }
        }
        Matrix { rows, cols, data }
    }

    /// Block-diagonal `diag(a, b, …)`, placed at the given column offsets of `cols` columns.
    fn block_rows(blocks: &[(usize, Matrix)], cols: usize) -> Matrix {
        let rows = blocks.iter().map(|(_, m)| m.rows).sum();
        let mut data = vec![0.0; rows * cols];
        let mut r0 = 0;
        for (offset, m) in blocks {
            for r in 0..m.rows {
                let dst = (r0 + r) * cols + offset;
                data[dst..dst + m.cols].copy_from_slice(&m.data[r * m.cols..(r + 1) * m.cols]);
            }
            r0 += m.rows;
        }
        Matrix { rows, cols, data }
    }

    pub fn shape(&self) -> [usize; 2] {
        [self.rows, self.cols]
    }
}

/// The real weights of one projection, or of several sharing an input fused column-wise
/// (q | k | v, gate | up): one product serves them all.
#[derive(Debug, Clone)]
pub struct ProjectionWeights {
    /// `W` `(in, out)` when it is public.
    public: Option<Matrix>,
    /// `W` `(in, out)` (LoRA merged in) when it is the server's secret.
    secret: Option<Matrix>,
    /// LoRA `Aᵀ` `(in, r)` and `(α/r)·Bᵀ` `(r, out)`, block-diagonal when fused: secret.
    lora: Option<(Matrix, Matrix)>,
    /// `b` (a norm's `β·Wᵀ` folded in): the server's secret, since it depends on `W` and on
    /// the tuned biases.
    bias: Option<Vec<f64>>,
    out_features: usize,
}

/// `W` `(out, in)` of `l`, its LoRA adapter merged in.
fn merged(l: &Linear) -> Result<Tensor> {
    match &l.lora {
        Some(lora) => lora.merged_into(&l.weight),
        None => Ok(l.weight.clone()),
    }
}

/// The fused bias `b + β·Wᵀ` of `parts`, or none when no part has a bias and no `shift` is
/// folded.
fn folded_bias(parts: &[&Dense], shift: Option<&[f64]>) -> Result<Option<Vec<f64>>> {
    if shift.is_none() && parts.iter().all(|d| d.bias.is_none()) {
        return Ok(None);
    }
    let mut out = Vec::new();
    for d in parts {
        let n = d.linear.out_features();
        let mut b = d.bias.clone().unwrap_or_else(|| vec![0.0; n]);
        if let Some(beta) = shift {
            let w = Matrix::transposed(&merged(&d.linear)?, &vec![1.0; beta.len()])?;
            for (row, &bi) in w.data.chunks(w.cols).zip(beta) {
                b.iter_mut().zip(row).for_each(|(o, &wij)| *o += bi * wij);
            }
        }
        out.extend(b);
    }
    Ok(Some(out))
}

impl ProjectionWeights {
    /// Fuses `parts` (same input) with the preceding norm's `gain` and `shift` (its `γ`, `β`)
    /// folded in.
    pub fn fused(
        parts: &[&Dense],
        gain: &[f64],
        shift: Option<&[f64]>,
        secrecy: Secrecy,
    ) -> Result<Self> {
        let bias = folded_bias(parts, shift)?;
        let linears: Vec<&Linear> = parts.iter().map(|d| &d.linear).collect();
        let out_features = linears.iter().map(|l| l.out_features()).sum();
        if secrecy == Secrecy::FullWeights {
            let merged = linears
                .iter()
                .map(|l| Matrix::transposed(&merged(l)?, gain))
                .collect::<Result<Vec<_>>>()?;
            return Ok(ProjectionWeights {
                public: None,
                secret: Some(Matrix::hconcat(&merged)),
                lora: None,
                bias,
                out_features,
            });
        }
        let public = linears
            .iter()
            .map(|l| Matrix::transposed(&l.weight, gain))
            .collect::<Result<Vec<_>>>()?;
        let mut a_parts = Vec::new();
        let mut b_blocks = Vec::new();
        let mut offset = 0;
        for l in &linears {
            if let Some(lora) = &l.lora {
                a_parts.push(Matrix::transposed(&lora.a, gain)?);
                let scale = vec![lora.scale(); lora.rank()];
                b_blocks.push((offset, Matrix::transposed(&lora.b, &scale)?));
            }
            offset += l.out_features();
        }
        let lora = (!a_parts.is_empty()).then(|| {
            (
                Matrix::hconcat(&a_parts),
                Matrix::block_rows(&b_blocks, offset),
            )
        });
        Ok(ProjectionWeights {
            public: Some(Matrix::hconcat(&public)),
            secret: None,
            lora,
            bias,
            out_features,
        })
    }

    pub fn out_features(&self) -> usize {
        self.out_features
    }

    /// Encodes the public part and shares the secret parts from the server (only the server
    /// reads their values), opening their masks once for every later product; the bias is the
    /// server's input.
    pub fn share(&self, p: &mut dyn Protocol) -> Result<SharedProjection> {
        let server = p.role() == Role::Server;
        let mut weight =
            |m: &Matrix| ops::weight_f64(p, server.then_some(m.data.as_slice()), &m.shape());
        let secret = self.secret.as_ref().map(&mut weight).transpose()?;
        let lora = match &self.lora {
            Some((a, b)) => Some((weight(a)?, weight(b)?)),
            None => None,
        };
        let public = self
            .public
            .as_ref()
            .map(|m| ops::encode(p, &m.data, &m.shape()))
            .transpose()?;
        let bias = match &self.bias {
            Some(b) => {
                let mine = server.then_some(b.as_slice());
                Some(ops::share_f64(p, Role::Server, mine, &[1, b.len()])?)
            }
            None => None,
        };
        Ok(SharedProjection {
            public,
            secret,
            lora,
            bias,
        })
    }
}

/// A projection ready to run: public `W` encoded, secret parts shared with opened masks.
pub struct SharedProjection {
    public: Option<RingTensor>,
    secret: Option<SecretWeight>,
    lora: Option<(SecretWeight, SecretWeight)>,
    /// `[1, out]` at `f` bits.
    bias: Option<Share>,
}

impl SharedProjection {
    /// `x·W (+ x·A·B) + b` on `x` `(T, in)` at `f` fractional bits, returned untruncated
    /// (`2f`) so the caller can fuse the truncation with what follows. The public part and the
    /// bias are local; the LoRA part costs one truncation of the rank-`r` intermediate.
    pub fn apply(&self, p: &mut dyn Protocol, x: &Share) -> Result<Share> {
        let mut terms = Vec::new();
        if let Some(w) = &self.public {
            terms.push(x.matmul_public(w)?);
        }
        if let Some(w) = &self.secret {
            terms.push(p.matmul_weight(x, w)?);
        }
        if let Some((a, b)) = &self.lora {
            let low = ops::matmul_weight(p, x, a)?;
            terms.push(p.matmul_weight(&low, b)?);
        }
        let (first, rest) = terms.split_first().expect("a projection has a weight");
        let y = rest.iter().try_fold(first.clone(), |acc, t| acc.add(t))?;
        match &self.bias {
            Some(b) => {
                let f = p.fixed_point().frac_bits;
                y.add(&b.scale(1 << f).broadcast_to(y.shape())?)
            }
            None => Ok(y),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::lora::LoraAdapter;
    use crate::mpc::local::{RunOptions, run_local};
    use crate::mpc::protocol::ProtocolKind;
    use candle_core::Device;

    fn random(rows: usize, cols: usize, seed: u64) -> Result<Tensor> {
        let v: Vec<f32> = (0..rows * cols)
            .map(|i| ((i as u64 * 2654435761 + seed * 97) % 1000) as f32 / 1000.0 - 0.5)
            .collect();
        Ok(Tensor::from_vec(v, (rows, cols), &Device::Cpu)?)
    }

    #[test]
    fn fused_projection_on_shares_matches_each_linear() -> Result<()> {
        let (inp, t) = (6, 3);
        let mut with_lora = Linear::new(random(5, inp, 1)?);
        with_lora.lora = Some(LoraAdapter {
            a: random(2, inp, 2)?,
            b: random(5, 2, 3)?,
            alpha: 4.0,
            dropout: 0.0,
        });
        let plain = Linear::new(random(4, inp, 4)?);
        let bias: Vec<f64> = (0..4).map(|j| 0.3 - 0.2 * j as f64).collect();
        let gain: Vec<f64> = (0..inp).map(|i| 0.5 + i as f64 * 0.25).collect();
        let shift: Vec<f64> = (0..inp).map(|i| 0.1 * i as f64 - 0.2).collect();
        let x = random(t, inp, 5)?;
        // Expected: the norm's gain and shift applied to x, then each linear as candle runs
        // it, plus the bias.
        let vector = |v: &[f64]| {
            Tensor::new(
                v.iter().map(|&v| v as f32).collect::<Vec<_>>(),
                &Device::Cpu,
            )
        };
        let xg = x
            .broadcast_mul(&vector(&gain)?)?
            .broadcast_add(&vector(&shift)?)?;
        let biased = plain.forward(&xg)?.broadcast_add(&vector(&bias)?)?;
        let want = Tensor::cat(&[with_lora.forward(&xg)?, biased], 1)?;
        let want: Vec<f32> = want.flatten_all()?.to_vec1()?;
        let xs: Vec<f64> = x.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let parts = [Dense::new(with_lora, None), Dense::new(plain, Some(bias))];
        for secrecy in [Secrecy::LoraOnly, Secrecy::FullWeights] {
            let w =
                ProjectionWeights::fused(&[&parts[0], &parts[1]], &gain, Some(&shift), secrecy)?;
            assert_eq!(w.out_features(), 9);
            assert_eq!(w.lora.is_some(), secrecy == Secrecy::LoraOnly);
            for kind in ProtocolKind::ALL {
                let run = run_local(kind, &RunOptions::default(), |p| {
                    let shared = w.share(p)?;
                    let mine = (p.role() == Role::Client).then_some(xs.as_slice());
                    let s = ops::share_f64(p, Role::Client, mine, &[t, inp])?;
                    let y = shared.apply(p, &s)?;
                    let y = p.truncate(&y, p.fixed_point().frac_bits)?;
                    ops::reveal_f64(p, &y, Some(Role::Client))
                })?;
                let got = run.output(Role::Client).as_ref().expect("revealed");
                for (a, b) in got.iter().zip(&want) {
                    assert!(
                        (a - *b as f64).abs() < 1e-3,
                        "{secrecy:?} {kind}: {a} vs {b}"
                    );
                }
            }
        }
        Ok(())
    }
}
