//! The private layers' keys and values of every position seen so far, kept as shares for
//! secure decoding: the prompt's from the prefill, then one more position per step. They are
//! never opened: they are kept masked ([`Masked`]), so in 2pc-dealer only `K - A` for a
//! uniform `A` is ever seen, once per position (when it joins the cache); every later step's
//! products reuse that opening, each with a fresh mask on the query side.
//!
//! Layout: per layer, the rows `[N, kv_heads·head_dim]` of every sequence packed one after
//! another (as [`Packing`] packs the residual stream), keys at the fixed-point scale, rotated
//! by their positions' RoPE.

use super::packing::{Packing, Queries};
use crate::mpc::protocol::Masked;
use crate::mpc::share::Share;
use anyhow::{Result, ensure};

/// One layer's cached keys and values.
#[derive(Default)]
pub struct LayerKv {
    kv: Option<(Masked, Masked)>,
}

impl LayerKv {
    /// Adds the keys and values of the rows a layer was given under `queries` (`k`, `v`
    /// `[rows, width]`) and returns those of every position, `[packing.rows(), width]`: under
    /// [`Queries::Next`] each sequence's cached rows followed by its new one; otherwise the
    /// prompt's rows, into an empty cache.
    pub fn append(
        &mut self,
        k: Masked,
        v: Masked,
        packing: &Packing,
        queries: Queries,
    ) -> Result<(Masked, Masked)> {
        let merged = match (queries, self.kv.take()) {
            (Queries::Next, Some((ck, cv))) => {
                let cached: Vec<usize> = packing.lens().iter().map(|&l| l - 1).collect();
                (interleave(&ck, &k, &cached)?, interleave(&cv, &v, &cached)?)
            }
            (Queries::Next, None) => anyhow::bail!("a decoding step before the prefill"),
            (_, Some(_)) => anyhow::bail!("a prompt's keys into a filled cache"),
            (_, None) => (k, v),
        };
        ensure!(
            merged.0.shape()[0] == packing.rows(),
            "the cache holds {} positions, the packing {}",
            merged.0.shape()[0],
            packing.rows()
        );
        self.kv = Some(merged.clone());
        Ok(merged)
    }

    /// Keeps the sequences whose `keep` is set, of lengths `lens`.
    fn retain(&mut self, lens: &[usize], keep: &[bool]) -> Result<()> {
        if let Some((k, v)) = self.kv.take() {
            self.kv = Some((select(&k, lens, keep)?, select(&v, lens, keep)?));
        }
        Ok(())
    }

    #[cfg(test)]
    fn shares(&self) -> Option<&(Masked, Masked)> {
        self.kv.as_ref()
    }
}

/// Every private layer's cache, and each sequence's cached length.
pub struct SharedKvCache {
    pub layers: Vec<LayerKv>,
    lens: Vec<usize>,
}

impl SharedKvCache {
    pub fn new(layers: usize) -> Self {
        SharedKvCache {
            layers: (0..layers).map(|_| LayerKv::default()).collect(),
            lens: Vec::new(),
        }
    }

    /// Records that every layer has run on `packing` (its sequences' full lengths).
    pub fn advance(&mut self, packing: &Packing) {
        self.lens = packing.lens().to_vec();
    }

    /// The packing of the next decoding step: every sequence one position longer.
    pub fn next_packing(&self) -> Result<Packing> {
        Packing::new(self.lens.iter().map(|&l| l + 1).collect())
    }

    /// Every layer's cached keys and values (test only: the views check that they are never
    /// opened).
    #[cfg(test)]
    pub fn snapshot(&self) -> Vec<(Share, Share)> {
        self.layers
            .iter()
            .filter_map(|l| {
                l.shares()
                    .map(|(k, v)| (k.share().clone(), v.share().clone()))
            })
            .collect()
    }

    /// Drops the sequences whose `keep` is not set (they stopped generating).
    pub fn retain(&mut self, keep: &[bool]) -> Result<()> {
        ensure!(keep.len() == self.lens.len(), "one flag per sequence");
        for layer in &mut self.layers {
            layer.retain(&self.lens, keep)?;
        }
        self.lens = self
            .lens
            .iter()
            .zip(keep)
            .filter(|(_, k)| **k)
            .map(|(&l, _)| l)
            .collect();
        Ok(())
    }
}

/// Sequence `b`'s `cached[b]` rows of `cache`, then row `b` of `new`, for every `b`. Local:
/// the masked values move in one pass each.
fn interleave(cache: &Masked, new: &Masked, cached: &[usize]) -> Result<Masked> {
    Masked::combine(&[cache, new], |s| interleave_rows(s[0], s[1], cached))
}

fn interleave_rows(cache: &Share, new: &Share, cached: &[usize]) -> Result<Share> {
    let mut parts = Vec::with_capacity(2 * cached.len());
    let mut start = 0;
    for (b, &len) in cached.iter().enumerate() {
        parts.push(cache.narrow(0, start, len)?);
        parts.push(new.narrow(0, b, 1)?);
        start += len;
    }
    Share::concat(&parts.iter().collect::<Vec<_>>(), 0)
}

/// The row blocks of the sequences (of lengths `lens`) whose `keep` is set. Local.
fn select(x: &Masked, lens: &[usize], keep: &[bool]) -> Result<Masked> {
    x.relayout(|s| {
        let mut parts = Vec::new();
        let mut start = 0;
        for (&len, &k) in lens.iter().zip(keep) {
            if k {
                parts.push(s.narrow(0, start, len)?);
            }
            start += len;
        }
        Share::concat(&parts.iter().collect::<Vec<_>>(), 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::ring::RingTensor;

    /// A masked column of `values`: mask `-(3v + 1000)`, opened `4v + 1000`, so that
    /// `opened + mask = share` holds after a move only if all three moved alike.
    fn rows(values: &[u64]) -> Masked {
        let t = |f: &dyn Fn(u64) -> u64| {
            let data = values.iter().map(|&v| f(v)).collect();
            RingTensor::new(&[values.len(), 1], data).unwrap()
        };
        Masked {
            share: Share::new(&[values.len(), 1], vec![t(&|v| v)]).unwrap(),
            opened: Some(t(&|v| 4 * v + 1000)),
            mask: Some(t(&|v| (3 * v + 1000).wrapping_neg())),
            truncation: None,
        }
    }

    /// The share's values, checked to still equal opened value plus mask.
    fn values(m: &Masked) -> Vec<u64> {
        let (opened, mask) = (m.opened.as_ref().unwrap(), m.mask.as_ref().unwrap());
        assert_eq!(opened.add(mask).unwrap().data(), m.share.parts()[0].data());
        m.share.parts()[0].data().to_vec()
    }

    #[test]
    fn steps_append_each_sequences_row_after_its_own_and_retain_drops_blocks() -> Result<()> {
        let mut cache = SharedKvCache::new(1);
        let prompt = Packing::new(vec![2, 3])?;
        let (k, _) = cache.layers[0].append(
            rows(&[10, 11, 20, 21, 22]),
            rows(&[0; 5]),
            &prompt,
            Queries::Last,
        )?;
        assert_eq!(values(&k), [10, 11, 20, 21, 22]);
        cache.advance(&prompt);
        let step = cache.next_packing()?;
        assert_eq!(step.lens(), [3, 4]);
        let (k, _) =
            cache.layers[0].append(rows(&[12, 23]), rows(&[0; 2]), &step, Queries::Next)?;
        assert_eq!(values(&k), [10, 11, 12, 20, 21, 22, 23]);
        cache.advance(&step);
        cache.retain(&[false, true])?;
        assert_eq!(cache.next_packing()?.lens(), [5]);
        let kept = cache.layers[0].shares().expect("cached");
        assert_eq!(values(&kept.0), [20, 21, 22, 23]);
        // A prompt into a filled cache, or a step into an empty one, is a bug, not a state.
        let again = cache.layers[0].append(rows(&[1]), rows(&[1]), &prompt, Queries::All);
        assert!(again.is_err());
        let mut empty = LayerKv::default();
        assert!(
            empty
                .append(rows(&[1]), rows(&[1]), &step, Queries::Next)
                .is_err()
        );
        Ok(())
    }
}
