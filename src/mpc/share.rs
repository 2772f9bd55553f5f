//! A party's share of a secret tensor, and the operations on shares that need no communication.

use super::ring::{self, RingTensor};
use anyhow::{Result, anyhow, ensure};

/// One party's share of a secret tensor of shape `shape`.
///
/// `parts` holds the ring tensors this party keeps: one additive share in 2pc-dealer, two
/// replicated shares in 3pc, none for the dealer (it follows the computation by shape only).
/// Every operation here is linear, so it applies to each part independently.
#[derive(Clone, Debug)]
pub struct Share {
    shape: Vec<usize>,
    parts: Vec<RingTensor>,
}

impl Share {
    pub fn new(shape: &[usize], parts: Vec<RingTensor>) -> Result<Self> {
        for p in &parts {
            ensure!(
                p.shape() == shape,
                "share part {:?} vs {shape:?}",
                p.shape()
            );
        }
        Ok(Self {
            shape: shape.to_vec(),
            parts,
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn len(&self) -> usize {
        ring::numel(&self.shape)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The last axis, along which reductions (max, softmax, norms) run; a scalar has none.
    pub fn last_axis(&self) -> Result<usize> {
        self.shape
            .len()
            .checked_sub(1)
            .ok_or_else(|| anyhow!("an operation along the last axis got a scalar share"))
    }

    pub fn parts(&self) -> &[RingTensor] {
        &self.parts
    }

    pub fn into_parts(self) -> Vec<RingTensor> {
        self.parts
    }

    /// Apply a linear map to every part; `shape` is the result's shape.
    fn lift(
        &self,
        shape: Vec<usize>,
        f: impl Fn(&RingTensor) -> Result<RingTensor>,
    ) -> Result<Self> {
        let parts = self.parts.iter().map(f).collect::<Result<Vec<_>>>()?;
        Self::new(&shape, parts)
    }

    fn zip_parts(
        &self,
        other: &Self,
        f: impl Fn(&RingTensor, &RingTensor) -> Result<RingTensor>,
    ) -> Result<Self> {
        ensure!(
            self.shape == other.shape && self.parts.len() == other.parts.len(),
            "share shapes differ: {:?} vs {:?}",
            self.shape,
            other.shape
        );
        let parts = self
            .parts
            .iter()
            .zip(&other.parts)
            .map(|(a, b)| f(a, b))
            .collect::<Result<Vec<_>>>()?;
        Self::new(&self.shape, parts)
    }

    pub fn add(&self, other: &Self) -> Result<Self> {
        self.zip_parts(other, RingTensor::add)
    }

    pub fn sub(&self, other: &Self) -> Result<Self> {
        self.zip_parts(other, RingTensor::sub)
    }

    pub fn neg(&self) -> Self {
        Self {
            shape: self.shape.clone(),
            parts: self.parts.iter().map(RingTensor::neg).collect(),
        }
    }

    /// Multiply by a public ring scalar (no truncation).
    pub fn scale(&self, c: u64) -> Self {
        Self {
            shape: self.shape.clone(),
            parts: self.parts.iter().map(|p| p.scale(c)).collect(),
        }
    }

    /// Element-wise product with a public tensor, broadcasting (no truncation).
    pub fn mul_public(&self, c: &RingTensor) -> Result<Self> {
        let shape = ring::broadcast_shape(&self.shape, c.shape())?;
        self.lift(shape, |p| p.mul(c))
    }

    /// `self x w` for a public `w` (no truncation): local, no communication.
    pub fn matmul_public(&self, w: &RingTensor) -> Result<Self> {
        let shape = ring::matmul_shape(&self.shape, w.shape())?;
        self.lift(shape, |p| p.matmul(w))
    }

    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        ensure!(
            ring::numel(shape) == self.len(),
            "reshape {:?} to {shape:?}",
            self.shape
        );
        self.lift(shape.to_vec(), |p| p.reshape(shape))
    }

    pub fn permute(&self, axes: &[usize]) -> Result<Self> {
        ensure!(
            axes.len() == self.shape.len(),
            "permute {axes:?} of {:?}",
            self.shape
        );
        self.lift(ring::permuted_shape(&self.shape, axes), |p| p.permute(axes))
    }

    /// Swap the last two axes.
    pub fn transpose(&self) -> Result<Self> {
        self.permute(&ring::transpose_axes(self.shape.len())?)
    }

    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Self> {
        ensure!(
            axis < self.shape.len() && start + len <= self.shape[axis],
            "narrow {axis}:{start}+{len} of {:?}",
            self.shape
        );
        self.lift(ring::narrowed_shape(&self.shape, axis, len), |p| {
            p.narrow(axis, start, len)
        })
    }

    pub fn concat(shares: &[&Self], axis: usize) -> Result<Self> {
        ensure!(!shares.is_empty(), "concat of nothing");
        let shapes: Vec<&[usize]> = shares.iter().map(|s| s.shape()).collect();
        let shape = ring::concat_shape(&shapes, axis);
        let parts = (0..shares[0].parts.len())
            .map(|i| {
                let ps: Vec<&RingTensor> = shares.iter().map(|s| &s.parts[i]).collect();
                RingTensor::concat(&ps, axis)
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(&shape, parts)
    }

    /// All elements of `shares` in one flat share (to batch an operation over them).
    pub fn concat_flat(shares: &[Share]) -> Result<Self> {
        let flat = shares
            .iter()
            .map(|s| s.reshape(&[s.len()]))
            .collect::<Result<Vec<_>>>()?;
        Self::concat(&flat.iter().collect::<Vec<_>>(), 0)
    }

    /// Undo [`Share::concat_flat`]: split into the shapes of `like`.
    pub fn split_flat(&self, like: &[Share]) -> Result<Vec<Self>> {
        let mut offset = 0;
        like.iter()
            .map(|l| {
                let part = self.narrow(0, offset, l.len())?.reshape(l.shape())?;
                offset += l.len();
                Ok(part)
            })
            .collect()
    }

    /// Sum along `axis`, keeping it with length 1.
    pub fn sum_axis(&self, axis: usize) -> Result<Self> {
        ensure!(
            axis < self.shape.len(),
            "sum axis {axis} of {:?}",
            self.shape
        );
        self.lift(ring::summed_shape(&self.shape, axis), |p| p.sum_axis(axis))
    }

    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        ensure!(
            ring::broadcast_shape(&self.shape, shape)? == shape,
            "cannot broadcast {:?} to {shape:?}",
            self.shape
        );
        self.lift(shape.to_vec(), |p| p.broadcast_to(shape))
    }

    /// Keep the elements where `keep` (public, same shape) is true and take `other` elsewhere.
    pub fn select_public(&self, keep: &[bool], other: &Self) -> Result<Self> {
        ensure!(
            keep.len() == self.len(),
            "mask length {} vs {}",
            keep.len(),
            self.len()
        );
        self.zip_parts(other, |a, b| {
            let data = a
                .data()
                .iter()
                .zip(b.data())
                .zip(keep)
                .map(|((&x, &y), &k)| if k { x } else { y })
                .collect();
            RingTensor::new(a.shape(), data)
        })
    }
}
