//! Argmax over a long last axis (tens of thousands of values: a vocabulary's scores) revealing
//! only the index, cheap in bytes because the values need far fewer than 64 bits.
//!
//! Each value `x_j` (raw, `2^scale_bits` a unit) is packed with its index into one ring
//! element, `y_j = x_j·2^k + (n - 1 - j)` with `k = ceil(log2 n)` index bits, a local
//! operation. A tournament tree then carries one element per pair instead of a value and an
//! index: `ceil(log2 n)` levels, each one batched comparison `[a < b]` and one batched
//! selection `a + [a < b]·(b - a)` (an exact ring product with the 0/1 comparison share). The
//! comparison ignores the `k + scale_bits - resolution_bits` low bits of the packed
//! difference (the index and the value's bits below `2^-resolution_bits`) and needs only
//! `int_bits + resolution_bits` DCF levels, instead of the 36 of an exact 37-bit comparison;
//! packing also halves the selections of [`super::ops::argmax_last`], which carries the
//! index beside the value.
//!
//! The winner's index is extracted exactly and locally: `y·2^(64-k) = (n - 1 - j)·2^(64-k)`
//! mod `2^64`, the value's bits shifted out of the ring. Only that is revealed, so the target
//! learns the index and nothing of the winning value.
//!
//! Accuracy: a comparison may take two values within `2^-resolution_bits` of each other for
//! equal and keep either, so the chosen value is within `levels · 2^-resolution_bits` of the
//! maximum (in practice within one resolution step), and of exact ties any may win.

use super::ops::less_than_zero;
use super::protocol::{Bilinear, Comparison, Protocol, Role};
use super::ring::RingTensor;
use super::share::Share;
use anyhow::{Result, ensure};

/// What the values of a [`argmax_packed`] are: their scale and range, and how close two may be
/// to be told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackedArgmax {
    /// Raw units per value unit: `2^scale_bits` (`2f` for an untruncated product).
    pub scale_bits: u32,
    /// Any two values of a row differ by less than `2^int_bits`.
    pub int_bits: u32,
    /// Values closer than `2^-resolution_bits` may be taken for equal.
    pub resolution_bits: u32,
}

impl PackedArgmax {
    /// Index bits for rows of `n`.
    fn index_bits(n: usize) -> u32 {
        usize::BITS - (n.max(2) - 1).leading_zeros()
    }

    /// The comparison of two packed elements of rows of `n`.
    pub fn comparison(&self, n: usize) -> Result<Comparison> {
        let k = Self::index_bits(n);
        let bits = self.int_bits + self.scale_bits + k + 1;
        ensure!(
            self.resolution_bits <= self.scale_bits && bits <= 63,
            "a packed argmax of {n} values at 2^{} with differences below 2^{} needs {bits} bits \
             (at most 63) and a resolution of at most {} bits",
            self.scale_bits,
            self.int_bits,
            self.scale_bits
        );
        Ok(Comparison {
            bits,
            ignored_low_bits: k + self.scale_bits - self.resolution_bits,
        })
    }
}

/// The index of the largest value of every row of `x` `[.., n]`, revealed to `to` alone (the
/// other parties get `None`).
/// Cost for `r` rows of `n`: `r (n - 1)` comparisons of `spec.comparison(n)` and selections of
/// one element, by levels as [`super::ops::max_last`]: 2pc-dealer per level of `q` pairs
/// `(ceil(bits / 8) + 16) q` bytes, 2 rounds, offline client `8 cw q`, server
/// `(8 cw + 16) q` (`cw = dcf::cw_words(int_bits + resolution_bits)`); 3pc per level the
/// comparison reshared and the product, `(ceil(bits / 8) + 16) q` bytes, helper `8q`, 3 rounds,
/// offline server `(8 cw + 8) q`; then the reveal, `8r` bytes to `to`, 1 round.
pub fn argmax_packed(
    p: &mut dyn Protocol,
    x: &Share,
    spec: PackedArgmax,
    to: Role,
) -> Result<Option<Vec<usize>>> {
    let axis = x.last_axis()?;
    let n = x.shape()[axis];
    ensure!(n > 0, "an argmax over no values");
    let cmp = spec.comparison(n)?;
    let k = PackedArgmax::index_bits(n);
    let rows = x.len() / n;
    let reversed: Vec<u64> = (0..rows).flat_map(|_| (0..n as u64).rev()).collect();
    let mut y = p.add_public(&x.scale(1 << k), &RingTensor::new(x.shape(), reversed)?)?;
    while y.shape()[axis] > 1 {
        let len = y.shape()[axis];
        let h = len / 2;
        let (a, b) = (y.narrow(axis, 0, h)?, y.narrow(axis, h, h)?);
        let take_b = less_than_zero(p, &a.sub(&b)?, cmp)?;
        // The selecting bit is masked as a bit in the difference's round.
        let (d, bit) = p.mask_with_bits(&[&b.sub(&a)?], &[&take_b])?;
        let moved = p.product(&bit[0], &d[0], Bilinear::Mul)?;
        let winners = a.add(&moved)?;
        y = if len % 2 == 1 {
            Share::concat(&[&winners, &y.narrow(axis, len - 1, 1)?], axis)?
        } else {
            winners
        };
    }
    let index = y.scale(1 << (64 - k));
    Ok(p.reveal(&index, Some(to))?.map(|t| {
        t.data()
            .iter()
            .map(|&v| n - 1 - (v >> (64 - k)) as usize)
            .collect()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::local::{RunOptions, run_local};
    use crate::mpc::ops;
    use crate::mpc::prg::Prg;
    use crate::mpc::protocol::ProtocolKind;

    /// Against the f64 argmax: rows of 3,001 values (odd lengths at several levels) spread
    /// over ±20 whose maximum leads by at least the resolution, plus a row of exact ties, at
    /// scale `f` and at an untruncated product's `2f` (any of the tied may win).
    #[test]
    fn finds_the_f64_argmax_and_reveals_only_to_the_target() -> Result<()> {
        let (rows, n) = (3, 3001);
        let mut rng = Prg::from_seed(Prg::derived_seed(7, 11));
        let mut x: Vec<f64> = rng.gaussian(rows * n, 8.0);
        for (r, row) in x.chunks_mut(n).enumerate() {
            let top = row.iter().cloned().fold(f64::MIN, f64::max);
            row[(r * 977 + 5) % n] = top + 0.05;
        }
        let want: Vec<usize> = x
            .chunks(n)
            .map(|row| {
                (0..n)
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .expect("a value")
            })
            .collect();
        let tied = [7, 1007, 2007, 3000];
        x.extend((0..n).map(|j| if tied.contains(&j) { 3.0 } else { -1.0 }));
        for kind in ProtocolKind::ALL {
            for wide in [false, true] {
                let run = run_local(kind, &RunOptions::default(), |p| {
                    let f = p.fixed_point().frac_bits;
                    let mine = (p.role() == Role::Client).then_some(x.as_slice());
                    let mut s = ops::share_f64(p, Role::Client, mine, &[rows + 1, n])?;
                    if wide {
                        s = s.scale(1 << f);
                    }
                    let spec = PackedArgmax {
                        scale_bits: if wide { 2 * f } else { f },
                        int_bits: 7,
                        resolution_bits: 6,
                    };
                    argmax_packed(p, &s, spec, Role::Client)
                })?;
                let got = run.output(Role::Client).as_ref().expect("revealed");
                assert_eq!(got[..rows], want, "{kind}");
                assert!(
                    tied.contains(&got[rows]),
                    "{kind}: {} is not tied",
                    got[rows]
                );
                assert!(run.output(Role::Server).is_none(), "{kind}");
            }
        }
        Ok(())
    }

    #[test]
    fn refuses_values_that_do_not_fit() {
        let spec = PackedArgmax {
            scale_bits: 32,
            int_bits: 20,
            resolution_bits: 6,
        };
        assert!(spec.comparison(49_152).is_err());
        let ok = PackedArgmax {
            int_bits: 7,
            ..spec
        };
        let cmp = ok.comparison(49_152).expect("fits");
        assert_eq!((cmp.bits, cmp.ignored_low_bits), (56, 42));
    }
}
