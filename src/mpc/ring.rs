//! Tensors over the ring Z_2^64: every operation wraps, which is exactly arithmetic mod 2^64.

use anyhow::{Result, bail, ensure};
use rayon::prelude::*;

/// A dense row-major tensor of ring elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RingTensor {
    shape: Vec<usize>,
    data: Vec<u64>,
}

/// Element-wise operations below this size run on one thread.
const PARALLEL_MIN: usize = 1 << 16;

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Shape after permuting axes.
pub fn permuted_shape(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    axes.iter().map(|&a| shape[a]).collect()
}

/// The axis order that swaps the last two axes of a rank-`rank` tensor.
pub fn transpose_axes(rank: usize) -> Result<Vec<usize>> {
    ensure!(rank >= 2, "transpose needs rank >= 2");
    let mut axes: Vec<usize> = (0..rank).collect();
    axes.swap(rank - 2, rank - 1);
    Ok(axes)
}

/// Shape of a `narrow` along `axis`.
pub fn narrowed_shape(shape: &[usize], axis: usize, len: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s[axis] = len;
    s
}

/// Shape of a concatenation along `axis`.
pub fn concat_shape(shapes: &[&[usize]], axis: usize) -> Vec<usize> {
    let mut s = shapes[0].to_vec();
    s[axis] = shapes.iter().map(|t| t[axis]).sum();
    s
}

/// Shape of a sum along `axis`, keeping the axis with length 1.
pub fn summed_shape(shape: &[usize], axis: usize) -> Vec<usize> {
    narrowed_shape(shape, axis, 1)
}

/// Numpy-style broadcast of two shapes of equal rank.
pub fn broadcast_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    ensure!(
        a.len() == b.len(),
        "broadcast needs equal ranks: {a:?} vs {b:?}"
    );
    a.iter()
        .zip(b)
        .map(|(&x, &y)| match (x, y) {
            _ if x == y => Ok(x),
            (1, _) => Ok(y),
            (_, 1) => Ok(x),
            _ => bail!("shapes {a:?} and {b:?} do not broadcast"),
        })
        .collect()
}

/// Output shape of a (batched) matmul: `[.., m, k] x [k, n]` or `[b, m, k] x [b, k, n]`.
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
    ensure!(
        a.len() >= 2 && (b.len() == 2 || b.len() == a.len()),
        "matmul shapes {a:?} x {b:?}"
    );
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
    ensure!(k == k2, "matmul inner dimensions differ: {a:?} x {b:?}");
    if b.len() > 2 {
        ensure!(
            a[..a.len() - 2] == b[..b.len() - 2],
            "matmul batch dims differ: {a:?} x {b:?}"
        );
    }
    let mut s = a[..a.len() - 2].to_vec();
    s.extend([m, n]);
    Ok(s)
}

/// Row-major strides of a shape.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    st
}

impl RingTensor {
    pub fn new(shape: &[usize], data: Vec<u64>) -> Result<Self> {
        ensure!(
            numel(shape) == data.len(),
            "shape {shape:?} needs {} elements, got {}",
            numel(shape),
            data.len()
        );
        Ok(Self {
            shape: shape.to_vec(),
            data,
        })
    }

    pub fn zeros(shape: &[usize]) -> Self {
        Self {
            shape: shape.to_vec(),
            data: vec![0; numel(shape)],
        }
    }

    pub fn filled(shape: &[usize], value: u64) -> Self {
        Self {
            shape: shape.to_vec(),
            data: vec![value; numel(shape)],
        }
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn data(&self) -> &[u64] {
        &self.data
    }

    pub fn data_mut(&mut self) -> &mut [u64] {
        &mut self.data
    }

    pub fn into_data(self) -> Vec<u64> {
        self.data
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Element-wise map (threads only for large tensors, where they pay off).
    pub fn map(&self, f: impl Fn(u64) -> u64 + Sync) -> Self {
        let data = if self.len() < PARALLEL_MIN {
            self.data.iter().map(|&x| f(x)).collect()
        } else {
            self.data.par_iter().map(|&x| f(x)).collect()
        };
        Self {
            shape: self.shape.clone(),
            data,
        }
    }

    /// Element-wise combination of two tensors of the same shape.
    pub fn zip(&self, other: &Self, f: impl Fn(u64, u64) -> u64 + Sync) -> Result<Self> {
        ensure!(
            self.shape == other.shape,
            "shape mismatch: {:?} vs {:?}",
            self.shape,
            other.shape
        );
        let pairs = |(&a, &b): (&u64, &u64)| f(a, b);
        let data = if self.len() < PARALLEL_MIN {
            self.data.iter().zip(&other.data).map(pairs).collect()
        } else {
            self.data.par_iter().zip(&other.data).map(pairs).collect()
        };
        Ok(Self {
            shape: self.shape.clone(),
            data,
        })
    }

    pub fn add(&self, other: &Self) -> Result<Self> {
        self.zip(other, u64::wrapping_add)
    }

    pub fn sub(&self, other: &Self) -> Result<Self> {
        self.zip(other, u64::wrapping_sub)
    }

    pub fn neg(&self) -> Self {
        self.map(u64::wrapping_neg)
    }

    pub fn scale(&self, c: u64) -> Self {
        self.map(|x| x.wrapping_mul(c))
    }

    /// Element-wise product with numpy broadcasting (equal ranks).
    pub fn mul(&self, other: &Self) -> Result<Self> {
        if self.shape == other.shape {
            return self.zip(other, u64::wrapping_mul);
        }
        let shape = broadcast_shape(&self.shape, &other.shape)?;
        let a = self.broadcast_to(&shape)?;
        let b = other.broadcast_to(&shape)?;
        a.zip(&b, u64::wrapping_mul)
    }

    /// Materialise a broadcast to `shape` (axes of length 1 repeat).
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        if self.shape == shape {
            return Ok(self.clone());
        }
        let target = broadcast_shape(&self.shape, shape)?;
        ensure!(
            target == shape,
            "cannot broadcast {:?} to {shape:?}",
            self.shape
        );
        let src_strides: Vec<usize> = strides(&self.shape)
            .into_iter()
            .zip(&self.shape)
            .map(|(s, &d)| if d == 1 { 0 } else { s })
            .collect();
        let out_strides = strides(shape);
        let data = (0..numel(shape))
            .into_par_iter()
            .map(|i| {
                let src: usize = out_strides
                    .iter()
                    .zip(shape)
                    .zip(&src_strides)
                    .map(|((&os, &d), &ss)| (i / os % d) * ss)
                    .sum();
                self.data[src]
            })
            .collect();
        Ok(Self {
            shape: shape.to_vec(),
            data,
        })
    }

    pub fn reshape(&self, shape: &[usize]) -> Result<Self> {
        Self::new(shape, self.data.clone())
    }

    /// General axis permutation.
    pub fn permute(&self, axes: &[usize]) -> Result<Self> {
        ensure!(
            axes.len() == self.shape.len(),
            "permute axes {axes:?} for shape {:?}",
            self.shape
        );
        let shape = permuted_shape(&self.shape, axes);
        let in_strides = strides(&self.shape);
        let perm_strides: Vec<usize> = axes.iter().map(|&a| in_strides[a]).collect();
        let out_strides = strides(&shape);
        let data = (0..self.len())
            .into_par_iter()
            .map(|i| {
                let src: usize = out_strides
                    .iter()
                    .zip(&shape)
                    .zip(&perm_strides)
                    .map(|((&os, &d), &ps)| (i / os % d) * ps)
                    .sum();
                self.data[src]
            })
            .collect();
        Ok(Self { shape, data })
    }

    /// Swap the last two axes.
    pub fn transpose(&self) -> Result<Self> {
        self.permute(&transpose_axes(self.shape.len())?)
    }

    /// The sub-tensor `start..start+len` along `axis`.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Self> {
        ensure!(
            axis < self.shape.len() && start + len <= self.shape[axis],
            "narrow {axis}:{start}+{len} out of shape {:?}",
            self.shape
        );
        let outer = numel(&self.shape[..axis]);
        let inner = numel(&self.shape[axis + 1..]);
        let d = self.shape[axis];
        let mut data = Vec::with_capacity(outer * len * inner);
        for o in 0..outer {
            let base = (o * d + start) * inner;
            data.extend_from_slice(&self.data[base..base + len * inner]);
        }
        Ok(Self {
            shape: narrowed_shape(&self.shape, axis, len),
            data,
        })
    }

    /// Concatenate along `axis`.
    pub fn concat(parts: &[&Self], axis: usize) -> Result<Self> {
        ensure!(!parts.is_empty(), "concat of nothing");
        let shapes: Vec<&[usize]> = parts.iter().map(|p| p.shape()).collect();
        for s in &shapes {
            ensure!(
                s.len() == shapes[0].len()
                    && s.iter()
                        .zip(shapes[0])
                        .enumerate()
                        .all(|(i, (a, b))| i == axis || a == b),
                "concat shapes {shapes:?} along {axis}"
            );
        }
        let shape = concat_shape(&shapes, axis);
        let outer = numel(&shape[..axis]);
        let mut data = Vec::with_capacity(numel(&shape));
        for o in 0..outer {
            for p in parts {
                let chunk = numel(&p.shape[axis..]);
                data.extend_from_slice(&p.data[o * chunk..(o + 1) * chunk]);
            }
        }
        Ok(Self { shape, data })
    }

    /// Sum along `axis`, keeping it with length 1.
    pub fn sum_axis(&self, axis: usize) -> Result<Self> {
        ensure!(
            axis < self.shape.len(),
            "sum axis {axis} of {:?}",
            self.shape
        );
        let outer = numel(&self.shape[..axis]);
        let inner = numel(&self.shape[axis + 1..]);
        let d = self.shape[axis];
        let mut data = vec![0u64; outer * inner];
        for o in 0..outer {
            for k in 0..d {
                let src = &self.data[(o * d + k) * inner..(o * d + k + 1) * inner];
                for (acc, &v) in data[o * inner..(o + 1) * inner].iter_mut().zip(src) {
                    *acc = acc.wrapping_add(v);
                }
            }
        }
        Ok(Self {
            shape: summed_shape(&self.shape, axis),
            data,
        })
    }

    /// Matrix product mod 2^64: `[.., m, k] x [k, n]` or batched `[b, m, k] x [b, k, n]`.
    pub fn matmul(&self, other: &Self) -> Result<Self> {
        let shape = matmul_shape(&self.shape, &other.shape)?;
        let r = self.shape.len();
        let (m, k, n) = (
            self.shape[r - 2],
            self.shape[r - 1],
            other.shape[1 + other.shape.len() - 2],
        );
        let batch = numel(&self.shape[..r - 2]);
        let mut out = vec![0u64; batch * m * n];
        if other.shape.len() == 2 {
            // Unbatched right operand: fold the batch into the rows.
            matmul_into(&self.data, &other.data, &mut out, batch * m, k, n);
        } else {
            for b in 0..batch {
                matmul_into(
                    &self.data[b * m * k..(b + 1) * m * k],
                    &other.data[b * k * n..(b + 1) * k * n],
                    &mut out[b * m * n..(b + 1) * m * n],
                    m,
                    k,
                    n,
                );
            }
        }
        Ok(Self { shape, data: out })
    }
}

/// Rows of the output handled by one rayon task.
const ROW_BLOCK: usize = 8;
/// Depth of a k-panel, so that a panel of B stays in L2.
const K_BLOCK: usize = 128;
/// Width of a panel of B.
const N_BLOCK: usize = 512;

/// `c += a * b` for row-major `a: m x k`, `b: k x n`, `c: m x n`, wrapping.
fn matmul_into(a: &[u64], b: &[u64], c: &mut [u64], m: usize, k: usize, n: usize) {
    debug_assert_eq!(a.len(), m * k);
    c.par_chunks_mut(ROW_BLOCK * n)
        .enumerate()
        .for_each(|(blk, c_rows)| {
            let rows = c_rows.len() / n;
            let a_rows = &a[blk * ROW_BLOCK * k..(blk * ROW_BLOCK + rows) * k];
            kernel(a_rows, b, c_rows, rows, k, n);
        });
}

/// Dispatch to the widest vector unit available; the body is the same scalar loop, which the
/// compiler vectorises under each target feature set.
fn kernel(a: &[u64], b: &[u64], c: &mut [u64], rows: usize, k: usize, n: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512dq") {
            // SAFETY: the feature was detected at runtime.
            return unsafe { kernel_avx512(a, b, c, rows, k, n) };
        }
        if std::is_x86_feature_detected!("avx2") {
            // SAFETY: the feature was detected at runtime.
            return unsafe { kernel_avx2(a, b, c, rows, k, n) };
        }
    }
    kernel_body(a, b, c, rows, k, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl")]
unsafe fn kernel_avx512(a: &[u64], b: &[u64], c: &mut [u64], rows: usize, k: usize, n: usize) {
    kernel_body(a, b, c, rows, k, n)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn kernel_avx2(a: &[u64], b: &[u64], c: &mut [u64], rows: usize, k: usize, n: usize) {
    kernel_body(a, b, c, rows, k, n)
}

/// Rows and columns of the register tile of C (8 accumulators of 8 words under AVX-512).
const TILE_ROWS: usize = 4;
const TILE_COLS: usize = 16;

#[inline(always)]
fn kernel_body(a: &[u64], b: &[u64], c: &mut [u64], rows: usize, k: usize, n: usize) {
    for j0 in (0..n).step_by(N_BLOCK) {
        let j1 = (j0 + N_BLOCK).min(n);
        for k0 in (0..k).step_by(K_BLOCK) {
            let k1 = (k0 + K_BLOCK).min(k);
            let tiled_rows = rows - rows % TILE_ROWS;
            let tiled_end = j0 + (j1 - j0) / TILE_COLS * TILE_COLS;
            for i in (0..tiled_rows).step_by(TILE_ROWS) {
                for j in (j0..tiled_end).step_by(TILE_COLS) {
                    tile(a, b, c, i, j, k0..k1, k, n);
                }
            }
            // Edges: a row of C at a time.
            for i in 0..rows {
                let cols = if i < tiled_rows {
                    tiled_end..j1
                } else {
                    j0..j1
                };
                let c_row = &mut c[i * n + cols.start..i * n + cols.end];
                for kk in k0..k1 {
                    let av = a[i * k + kk];
                    let b_row = &b[kk * n + cols.start..kk * n + cols.end];
                    for (cv, &bv) in c_row.iter_mut().zip(b_row) {
                        *cv = cv.wrapping_add(av.wrapping_mul(bv));
                    }
                }
            }
        }
    }
}

/// `C[i.., j..] += A[i.., ks] B[ks, j..]` on one register tile: the accumulators stay in
/// registers across the k-panel, so each product costs no load or store of C.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn tile(
    a: &[u64],
    b: &[u64],
    c: &mut [u64],
    i: usize,
    j: usize,
    ks: std::ops::Range<usize>,
    k: usize,
    n: usize,
) {
    let mut acc = [[0u64; TILE_COLS]; TILE_ROWS];
    for kk in ks {
        let b_row: &[u64; TILE_COLS] = b[kk * n + j..kk * n + j + TILE_COLS]
            .try_into()
            .expect("tile width");
        for (r, acc_row) in acc.iter_mut().enumerate() {
            let av = a[(i + r) * k + kk];
            for (x, &bv) in acc_row.iter_mut().zip(b_row) {
                *x = x.wrapping_add(av.wrapping_mul(bv));
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate() {
        let c_row = &mut c[(i + r) * n + j..(i + r) * n + j + TILE_COLS];
        for (cv, &x) in c_row.iter_mut().zip(acc_row) {
            *cv = cv.wrapping_add(x);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &RingTensor, b: &RingTensor) -> RingTensor {
        let (m, k) = (a.shape[0], a.shape[1]);
        let n = b.shape[1];
        let mut out = vec![0u64; m * n];
        for i in 0..m {
            for j in 0..n {
                for t in 0..k {
                    out[i * n + j] = out[i * n + j]
                        .wrapping_add(a.data[i * k + t].wrapping_mul(b.data[t * n + j]));
                }
            }
        }
        RingTensor::new(&[m, n], out).unwrap()
    }

    fn pseudo(shape: &[usize], seed: u64) -> RingTensor {
        let mut s = seed;
        let data = (0..numel(shape))
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                s ^ (s >> 29)
            })
            .collect();
        RingTensor::new(shape, data).unwrap()
    }

    #[test]
    fn matmul_matches_naive_with_wraparound() {
        let a = pseudo(&[19, 300], 1);
        let b = pseudo(&[300, 530], 2);
        assert_eq!(a.matmul(&b).unwrap(), naive(&a, &b));
    }

    #[test]
    fn batched_matmul_and_layout_ops() {
        let a = pseudo(&[2, 3, 4], 3);
        let b = pseudo(&[2, 4, 5], 4);
        let c = a.matmul(&b).unwrap();
        for bi in 0..2 {
            let ab = a.narrow(0, bi, 1).unwrap().reshape(&[3, 4]).unwrap();
            let bb = b.narrow(0, bi, 1).unwrap().reshape(&[4, 5]).unwrap();
            let cb = c.narrow(0, bi, 1).unwrap().reshape(&[3, 5]).unwrap();
            assert_eq!(naive(&ab, &bb), cb);
        }
        let t = a.transpose().unwrap();
        assert_eq!(t.shape(), &[2, 4, 3]);
        // t[1, 2, 1] = a[1, 1, 2]
        assert_eq!(t.data[12 + 2 * 3 + 1], a.data[12 + 4 + 2]);
        let halves = [&a.narrow(2, 0, 2).unwrap(), &a.narrow(2, 2, 2).unwrap()];
        assert_eq!(RingTensor::concat(&halves, 2).unwrap(), a);
        let s = a.sum_axis(1).unwrap();
        assert_eq!(
            s.data[0],
            a.data[0].wrapping_add(a.data[4]).wrapping_add(a.data[8])
        );
        let row = pseudo(&[2, 3, 1], 5);
        let prod = a.mul(&row).unwrap();
        assert_eq!(prod.data[5], a.data[5].wrapping_mul(row.data[1]));
    }
}
