//! Masked comparison with DCF keys: the arithmetic shared by the key dealer and the parties.
//!
//! To get `[y < 0]` for `|y| < 2^(n-1)`, parties open `x + r mod 2^n` once; for each public
//! threshold `t`, `u = x - t + 2^(n-1)` has `[y < 0] = 1 - msb(u)`, and the opened `u + r` is
//! public. With `h(v)` the top `k = n - low` bits of `v`, `h(u + r) - h(r) = h(u) + carry`
//! (carry in {0,1}), so `msb(h(u))` is found up to the carry, which only matters for
//! `y in [-2^low, 0)`. For a k-bit value masked by `rho = h(r)`:
//! `msb = msb(m) xor msb(rho) xor [m_low < rho_low]`, and the last term is one DCF evaluation.
//! The xor with the secret `msb(rho)` is linear because the DCF payload is `1 - 2 msb(rho)`.

use super::dcf;
use super::protocol::Comparison;
use anyhow::{Result, ensure};

#[derive(Clone, Copy, Debug)]
pub struct MaskedCompare {
    n: u32,
    low: u32,
}

/// What the dealer hands out per element, besides the DCF keys: shares of `msb(rho)`.
pub(crate) struct DealerComparison {
    pub rho_msb: Vec<u64>,
    pub alphas: Vec<u64>,
    pub betas: Vec<u64>,
}

impl MaskedCompare {
    pub fn new(cmp: Comparison) -> Result<Self> {
        ensure!(
            cmp.bits <= 64 && cmp.bits >= cmp.ignored_low_bits + 2,
            "comparison needs 2 <= bits - ignored_low_bits and bits <= 64: {cmp:?}"
        );
        Ok(Self {
            n: cmp.bits,
            low: cmp.ignored_low_bits,
        })
    }

    /// Mask for reduction mod 2^n.
    pub fn modulus_mask(&self) -> u64 {
        if self.n == 64 {
            u64::MAX
        } else {
            (1 << self.n) - 1
        }
    }

    /// The low bits of the opened value that the comparison ignores.
    pub fn ignored_low_bits(&self) -> u32 {
        self.low
    }

    /// Input bits of the DCF.
    pub fn levels(&self) -> u32 {
        self.n - self.low - 1
    }

    /// (msb, remaining k-1 bits) of the top k bits of an n-bit value.
    fn split(&self, v: u64) -> (u64, u64) {
        let h = (v & self.modulus_mask()) >> self.low;
        let k1 = self.levels();
        (h >> k1, h & ((1 << k1) - 1))
    }

    /// Key parameters for masks `r` (full ring values; only the low n bits matter).
    pub(crate) fn dealer(&self, r: &[u64]) -> DealerComparison {
        let mut out = DealerComparison {
            rho_msb: Vec::with_capacity(r.len()),
            alphas: Vec::with_capacity(r.len()),
            betas: Vec::with_capacity(r.len()),
        };
        for &v in r {
            let (msb, rest) = self.split(v);
            out.rho_msb.push(msb);
            out.alphas.push(rest);
            out.betas.push(1u64.wrapping_sub(2 * msb));
        }
        out
    }

    /// A party's additive shares of `[x < t]` for every element and each threshold `t`
    /// (threshold-major), given the opened `x + r mod 2^n`, its shares of `msb(rho)` and its
    /// DCF keys: one multi-point evaluation of each element's key.
    pub(crate) fn party_shares(
        &self,
        party: usize,
        opened: &[u64],
        thresholds: &[u64],
        rho_msb: &[u64],
        seeds: &[u128],
        cw: &[u64],
    ) -> Vec<Vec<u64>> {
        let (k, n) = (thresholds.len(), opened.len());
        // Element-major: each key's points together.
        let mut msbs = Vec::with_capacity(n * k);
        let mut points = Vec::with_capacity(n * k);
        for &c in opened {
            for &t in thresholds {
                let (msb, rest) = self.split(c.wrapping_sub(t).wrapping_add(1 << (self.n - 1)));
                msbs.push(msb);
                points.push(rest);
            }
        }
        let lt = dcf::eval_points(party, seeds, cw, self.levels(), &points, k);
        let first = u64::from(party == 0);
        let mut out = vec![vec![0; n]; k];
        for (e, (msbs, lt)) in msbs.chunks_exact(k).zip(lt.chunks_exact(k)).enumerate() {
            for (j, (&m_msb, &lt)) in msbs.iter().zip(lt).enumerate() {
                // msb = m_msb xor (rho_msb xor lt), with m_msb public; the result is 1 - msb.
                let xor_rho = rho_msb[e].wrapping_add(lt);
                let msb = (first * m_msb)
                    .wrapping_add(xor_rho.wrapping_mul(1u64.wrapping_sub(2 * m_msb)));
                out[j][e] = first.wrapping_sub(msb);
            }
        }
        out
    }
}
