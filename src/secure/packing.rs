//! Several sequences of different lengths in one forward: packed one after another along the
//! rows for everything row-wise (norms, projections, activations: no work on padding), and
//! right-padded to a common length only around attention, which needs `[B, T, ·]`.

use super::architecture::AttentionMask;
use crate::mpc::share::Share;
use anyhow::{Result, ensure};

/// Which positions a layer computes outputs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queries {
    /// Every position (a layer whose output feeds another layer).
    All,
    /// Each sequence's last position only: the last private layer, whose output only the head
    /// reads. Keys and values still cover every position.
    Last,
    /// A decoding step: the layer is given only each sequence's last (new) position; the keys
    /// and values of the earlier ones come from the cache (`super::kv_cache`).
    Next,
}

#[derive(Debug, Clone)]
pub struct Packing {
    lens: Vec<usize>,
    /// The longest length: what attention pads to.
    longest: usize,
}

impl Packing {
    pub fn new(lens: Vec<usize>) -> Result<Self> {
        ensure!(
            !lens.is_empty() && lens.iter().all(|&l| l > 0),
            "empty sequence in a batch"
        );
        let longest = lens.iter().copied().max().unwrap_or(0);
        Ok(Packing { lens, longest })
    }

    pub fn sequences(&self) -> usize {
        self.lens.len()
    }

    /// Each sequence's length, new positions included.
    pub fn lens(&self) -> &[usize] {
        &self.lens
    }

    pub fn longest(&self) -> usize {
        self.longest
    }

    /// Rows of the packed form.
    pub fn rows(&self) -> usize {
        self.lens.iter().sum()
    }

    /// The position of each packed row within its sequence.
    pub fn positions(&self) -> Vec<usize> {
        self.lens.iter().flat_map(|&len| 0..len).collect()
    }

    /// The positions of the rows a layer is given under `queries`: every row, or under
    /// [`Queries::Next`] each sequence's last.
    pub fn row_positions(&self, queries: Queries) -> Vec<usize> {
        match queries {
            Queries::All | Queries::Last => self.positions(),
            Queries::Next => self.lens.iter().map(|&len| len - 1).collect(),
        }
    }

    /// The packed row of each sequence's last position.
    fn last_rows(&self) -> Vec<usize> {
        self.lens
            .iter()
            .scan(0, |start, &len| {
                *start += len;
                Some(*start - 1)
            })
            .collect()
    }

    /// Each sequence's last row of `x`, packed along `axis`: `[.., N, ..]` to `[.., B, ..]`.
    /// Local.
    pub fn last(&self, x: &Share, axis: usize) -> Result<Share> {
        let rows: Vec<Share> = self
            .last_rows()
            .into_iter()
            .map(|row| x.narrow(axis, row, 1))
            .collect::<Result<_>>()?;
        Share::concat(&rows.iter().collect::<Vec<_>>(), axis)
    }

    /// The public attention mask of padded scores `[B·heads, Tq, T]` (`true`: visible): a query
    /// at position `i` sees keys `0..=i` (causal) or `0..len` (bidirectional), so no real token
    /// sees padding. Under [`Queries::Last`] and [`Queries::Next`] the one query of sequence `b`
    /// sits at its last position.
    pub fn attention_mask(&self, heads: usize, queries: Queries, mask: AttentionMask) -> Vec<bool> {
        let t = self.longest;
        let mut visible = Vec::new();
        for &len in &self.lens {
            let positions = match queries {
                Queries::All => 0..t,
                Queries::Last | Queries::Next => len - 1..len,
            };
            for _ in 0..heads {
                for i in positions.clone() {
                    let seen = match mask {
                        AttentionMask::Causal => i + 1,
                        AttentionMask::Bidirectional => len,
                    };
                    visible.extend((0..t).map(|j| j < seen));
                }
            }
        }
        visible
    }

    /// Packed `[N, w]` to padded `[B·T, w]`, each sequence's last row repeated into its padding
    /// (realistic values keep every approximation in range; under either mask no real token
    /// sees a pad). Local.
    pub fn pad(&self, x: &Share) -> Result<Share> {
        let w = x.shape()[1];
        let mut parts = Vec::new();
        for (&len, last) in self.lens.iter().zip(self.last_rows()) {
            parts.push(x.narrow(0, last + 1 - len, len)?);
            if len < self.longest {
                parts.push(
                    x.narrow(0, last, 1)?
                        .broadcast_to(&[self.longest - len, w])?,
                );
            }
        }
        Share::concat(&parts.iter().collect::<Vec<_>>(), 0)
    }

    /// Padded `[B·T, w]` back to packed `[N, w]`. Local.
    pub fn unpad(&self, x: &Share) -> Result<Share> {
        let parts: Vec<Share> = self
            .lens
            .iter()
            .enumerate()
            .map(|(b, &len)| x.narrow(0, b * self.longest, len))
            .collect::<Result<_>>()?;
        Share::concat(&parts.iter().collect::<Vec<_>>(), 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::ring::RingTensor;

    #[test]
    fn pad_repeats_last_rows_and_unpad_restores_the_packing() -> Result<()> {
        // Sequences of 2 and 3 rows, width 2: rows 0..5 hold their own index.
        let data: Vec<u64> = (0..5).flat_map(|r| [r, 10 + r]).collect();
        let x = Share::new(&[5, 2], vec![RingTensor::new(&[5, 2], data.clone())?])?;
        let packing = Packing::new(vec![2, 3])?;
        assert_eq!((packing.rows(), packing.longest()), (5, 3));
        assert_eq!(packing.last_rows(), vec![1, 4]);
        assert_eq!(packing.positions(), vec![0, 1, 0, 1, 2]);
        let padded = packing.pad(&x)?;
        assert_eq!(padded.shape(), &[6, 2]);
        let rows: Vec<u64> = padded.parts()[0].data().chunks(2).map(|r| r[0]).collect();
        assert_eq!(rows, vec![0, 1, 1, 2, 3, 4]);
        assert_eq!(packing.unpad(&padded)?.parts()[0].data(), data.as_slice());
        assert_eq!(packing.last(&x, 0)?.parts()[0].data(), &[1, 11, 4, 14]);
        // One head: rows 0..3 of sequence 0 (causal), then 0..3 of sequence 1.
        let causal = [true, false, false, true, true, false, true, true, true];
        let all = packing.attention_mask(1, Queries::All, AttentionMask::Causal);
        assert_eq!(all, [causal, causal].concat());
        // Bidirectional: sequence 0 sees its 2 keys (not the pad), sequence 1 all 3.
        let both = packing.attention_mask(1, Queries::All, AttentionMask::Bidirectional);
        let (b0, b1) = ([true, true, false], [true, true, true]);
        assert_eq!(both, [b0, b0, b0, b1, b1, b1].concat());
        // Only the last queries: position 1 of sequence 0 (pad key 2 hidden), 2 of sequence 1.
        let last = packing.attention_mask(2, Queries::Last, AttentionMask::Causal);
        let (s0, s1) = ([true, true, false], [true, true, true]);
        assert_eq!(last, [s0, s0, s1, s1].concat());
        for mask in [AttentionMask::Causal, AttentionMask::Bidirectional] {
            assert_eq!(packing.attention_mask(2, Queries::Next, mask), last);
            assert_eq!(packing.attention_mask(2, Queries::Last, mask), last);
        }
        assert_eq!(packing.row_positions(Queries::Next), vec![1, 2]);
        assert_eq!(packing.row_positions(Queries::Last), packing.positions());
        assert!(Packing::new(vec![2, 0]).is_err());
        Ok(())
    }
}
