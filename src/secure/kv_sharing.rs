//! How merged heads share key/value heads under MPC, so that every key/value head is opened
//! once. A secret × secret product opens both operands; repeating a key/value head for each
//! query head that reads it (Hugging Face's `repeat_kv`, or a merged head's concatenation)
//! would open it once per copy.
//!
//! Recipes require `m | g` or `g | m` (merge factor `m`, GQA group size `g`). Attention then runs
//! on `units` blocks of the same shape: each stacks `rows` merged heads along the query rows
//! against `kv` key/value heads concatenated along the width. Within a merged head the query
//! heads that read the same key/value head are summed first, since `Σ_h q_h kᵀ = (Σ_h q_h) kᵀ`
//! exactly in the ring.
//! - `m | g` (e.g. the standard layer, or `m = g`): `rows = g / m` merged heads per key/value head.
//! - `g | m`: one merged head per unit, reading `kv = m / g` key/value heads.

use crate::model::attention::AttentionLayout;
use crate::mpc::share::Share;
use anyhow::{Result, ensure};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvSharing {
    units: usize,
    /// Merged heads per unit.
    rows: usize,
    /// Key/value heads per unit.
    kv: usize,
    /// Query heads of one merged head that read the same key/value head.
    summed: usize,
}

impl KvSharing {
    pub fn new(l: AttentionLayout) -> Result<Self> {
        let (g, m) = (l.group_size(), l.merge);
        ensure!(
            g % m == 0 || m % g == 0,
            "head merge factor {m} must divide or be a multiple of the GQA group size {g} \
             to run under MPC"
        );
        let (rows, kv) = if g % m == 0 { (g / m, 1) } else { (1, m / g) };
        Ok(Self {
            units: l.softmax_heads() / rows,
            rows,
            kv,
            summed: m / kv,
        })
    }

    /// Query heads `[B·heads, Tq, hd]` to `[B·units, rows·Tq, kv·hd]`.
    pub fn queries(&self, q: &Share, batch: usize) -> Result<Share> {
        let (tq, hd) = (q.shape()[1], q.shape()[2]);
        let b = batch * self.units;
        q.reshape(&[b * self.rows * self.kv, self.summed, tq * hd])?
            .sum_axis(1)?
            .reshape(&[b, self.rows, self.kv, tq, hd])?
            .permute(&[0, 1, 3, 2, 4])?
            .reshape(&[b, self.rows * tq, self.kv * hd])
    }

    /// Key or value heads `[B·kv_heads, T, hd]` to `[B·units, T, kv·hd]`.
    pub fn keys(&self, k: &Share, batch: usize) -> Result<Share> {
        let (t, hd) = (k.shape()[1], k.shape()[2]);
        let b = batch * self.units;
        k.reshape(&[b, self.kv, t, hd])?
            .permute(&[0, 2, 1, 3])?
            .reshape(&[b, t, self.kv * hd])
    }

    /// `[B·units, rows·Tq, n]` to one row per merged head, `[B·softmax_heads, Tq, n]`.
    pub fn per_head(&self, x: &Share) -> Result<Share> {
        let (b, n) = (x.shape()[0], x.shape()[2]);
        x.reshape(&[b * self.rows, x.shape()[1] / self.rows, n])
    }

    /// [`per_head`](Self::per_head) undone.
    pub fn per_unit(&self, x: &Share) -> Result<Share> {
        let (b, n) = (x.shape()[0], x.shape()[2]);
        x.reshape(&[b / self.rows, x.shape()[1] * self.rows, n])
    }

    /// Attention output `[B·units, rows·Tq, kv·hd]` to rows `[B·Tq, heads·hd]`: each query head
    /// gets its merged head's output for the key/value head it reads.
    pub fn output(&self, out: &Share, batch: usize) -> Result<Share> {
        let (tq, hd) = (out.shape()[1] / self.rows, out.shape()[2] / self.kv);
        let (u, r, kv, s) = (self.units, self.rows, self.kv, self.summed);
        out.reshape(&[batch, u, r, tq, kv, 1, hd])?
            .broadcast_to(&[batch, u, r, tq, kv, s, hd])?
            .permute(&[0, 3, 1, 2, 4, 5, 6])?
            .reshape(&[batch * tq, u * r * kv * s * hd])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::prg::Prg;
    use crate::mpc::ring::RingTensor;

    fn share(t: RingTensor) -> Share {
        let shape = t.shape().to_vec();
        Share::new(&shape, vec![t]).unwrap()
    }

    fn ring(s: &Share) -> &RingTensor {
        &s.parts()[0]
    }

    /// Rows `[T, hd]` of head `h` of sequence `b` in `[B·n, T, hd]`.
    fn head(x: &RingTensor, n: usize, b: usize, h: usize) -> RingTensor {
        let (t, hd) = (x.shape()[1], x.shape()[2]);
        x.narrow(0, b * n + h, 1)
            .unwrap()
            .reshape(&[t, hd])
            .unwrap()
    }

    /// Against `repeat_kv` and concatenation: every merged head's scores, and every query
    /// head's output, for merge factors on both sides of the group size.
    #[test]
    fn shared_heads_compute_what_repeated_heads_do() -> Result<()> {
        let mut rng = Prg::from_seed(Prg::derived_seed(3, 4));
        let (batch, tq, t, hd) = (2, 3, 4, 2);
        for (nq, nkv, m) in [
            (6, 2, 1),
            (6, 2, 3),
            (6, 2, 6),
            (8, 2, 2),
            (8, 2, 8),
            (4, 4, 2),
        ] {
            let l = AttentionLayout::merged(nq, nkv, hd, m);
            let (g, heads) = (l.group_size(), l.softmax_heads());
            let sharing = KvSharing::new(l)?;
            let q = rng.ring(&[batch * nq, tq, hd]);
            let k = rng.ring(&[batch * nkv, t, hd]);
            let v = rng.ring(&[batch * nkv, t, hd]);
            let kt = ring(&sharing.keys(&share(k.clone()), batch)?).transpose()?;
            let scores = ring(&sharing.queries(&share(q.clone()), batch)?).matmul(&kt)?;
            let scores = sharing.per_head(&share(scores))?;
            let probs = rng.ring(scores.shape());
            let vs = ring(&sharing.keys(&share(v.clone()), batch)?).clone();
            let per_unit = ring(&sharing.per_unit(&share(probs.clone()))?).matmul(&vs)?;
            let out = ring(&sharing.output(&share(per_unit), batch)?).clone();
            for b in 0..batch {
                for j in 0..heads {
                    let mut want = RingTensor::zeros(&[tq, t]);
                    for h in j * m..(j + 1) * m {
                        let kh = head(&k, nkv, b, h / g).transpose()?;
                        want = want.add(&head(&q, nq, b, h).matmul(&kh)?)?;
                    }
                    assert_eq!(head(ring(&scores), heads, b, j), want, "{nq} {nkv} {m}");
                    for h in j * m..(j + 1) * m {
                        let want = head(&probs, heads, b, j).matmul(&head(&v, nkv, b, h / g))?;
                        let got = out.narrow(0, b * tq, tq)?.narrow(1, h * hd, hd)?;
                        assert_eq!(got, want, "{nq} {nkv} {m} head {h}");
                    }
                }
            }
        }
        let odd = AttentionLayout::merged(6, 2, 2, 2);
        assert!(KvSharing::new(odd).is_err());
        Ok(())
    }
}
