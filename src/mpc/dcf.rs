//! Distributed comparison functions (function secret sharing), after Boyle et al., "Function
//! Secret Sharing for Mixed-Mode and Fixed-Point Secure Computation" (Eurocrypt 2021), Fig. 3.
//!
//! The dealer splits `f(x) = beta * [x < alpha]` over `levels`-bit inputs into two keys; each key
//! alone is pseudorandom, and `eval(0, k0, x) + eval(1, k1, x) = f(x)` in Z_2^64 for every public
//! `x`. This is what lets a comparison cost a single online opening (as in SIGMA): the parties
//! open `x + r` and evaluate keys made for `alpha` derived from the dealer's mask `r`.
//!
//! Key layout, per element: `3 * levels + 3` words of correction material shared by both keys
//! (seed correction lo/hi and value correction per level, then the packed left / right control
//! bits, then the final correction) plus a 128-bit seed per party.

use super::aes::{self, AesJob, FixedKeyAes};
use rayon::prelude::*;

/// Words of correction material per element for a domain of `levels` bits.
pub fn cw_words(levels: u32) -> usize {
    3 * levels as usize + 3
}

/// Most input bits supported (control bits are packed into one word per side).
pub const MAX_LEVELS: u32 = 64;

struct Expanded<B> {
    s: [B; 2],
    v: [u64; 2],
    t: [bool; 2],
}

/// A u128 seed as a block of `A`.
#[inline(always)]
fn block<A: FixedKeyAes>(v: u128) -> A::Block {
    A::block(v as u64, (v >> 64) as u64)
}

/// The low bit of a block.
#[inline(always)]
fn low_bit<A: FixedKeyAes>(b: A::Block) -> bool {
    A::words(b)[0] & 1 == 1
}

/// The length-doubling PRG G on `N` seeds: seed -> (s_L, v_L, t_L, s_R, v_R, t_R) from three
/// fixed-key AES blocks (block 0: left seed, block 1: right seed, block 2: both values); the
/// control bits are the seeds' low bits (seeds keep 127 bits).
#[inline(always)]
fn expand<A: FixedKeyAes, const N: usize>(
    aes: &A,
    seeds: [A::Block; N],
) -> [Expanded<A::Block>; N] {
    aes.expand(seeds, [[0, 1, 2]; N])
        .map(|[b0, b1, b2]| Expanded {
            s: [A::clear_low_bit(b0), A::clear_low_bit(b1)],
            v: A::words(b2),
            t: [low_bit::<A>(b0), low_bit::<A>(b1)],
        })
}

/// `(-1)^t * v` in Z_2^64.
#[inline(always)]
fn signed(t: bool, v: u64) -> u64 {
    if t { v.wrapping_neg() } else { v }
}

#[inline(always)]
fn bit(x: u64, levels: u32, i: u32) -> usize {
    ((x >> (levels - 1 - i)) & 1) as usize
}

/// Key generation for one element, appending the shared correction words to `cw`; the
/// parties' keys are `(seeds[0], cw)` and `(seeds[1], cw)`.
#[inline(always)]
fn keygen_into<A: FixedKeyAes>(
    aes: &A,
    alpha: u64,
    beta: u64,
    levels: u32,
    seeds: [u128; 2],
    cw: &mut Vec<u64>,
) {
    let (mut s, mut t) = (seeds.map(block::<A>), [false, true]);
    let mut v_alpha = 0u64;
    let (mut t_left_bits, mut t_right_bits) = (0u64, 0u64);
    for i in 0..levels {
        let a = bit(alpha, levels, i);
        let g = expand(aes, s);
        let (keep, lose) = (a, 1 - a);
        let s_cw = A::xor(g[0].s[lose], g[1].s[lose]);
        let mut v_cw = signed(
            t[1],
            g[1].v[lose]
                .wrapping_sub(g[0].v[lose])
                .wrapping_sub(v_alpha),
        );
        if lose == 0 {
            v_cw = v_cw.wrapping_add(signed(t[1], beta));
        }
        v_alpha = v_alpha
            .wrapping_sub(g[1].v[keep])
            .wrapping_add(g[0].v[keep])
            .wrapping_add(signed(t[1], v_cw));
        let t_cw = [
            g[0].t[0] ^ g[1].t[0] ^ (a == 1) ^ true,
            g[0].t[1] ^ g[1].t[1] ^ (a == 1),
        ];
        t_left_bits |= (t_cw[0] as u64) << i;
        t_right_bits |= (t_cw[1] as u64) << i;
        let [s_cw_lo, s_cw_hi] = A::words(s_cw);
        cw.extend([s_cw_lo, s_cw_hi, v_cw]);
        for b in 0..2 {
            s[b] = A::xor(g[b].s[keep], A::keep_if(t[b], s_cw));
            t[b] = g[b].t[keep] ^ (t[b] & t_cw[keep]);
        }
    }
    let last = signed(
        t[1],
        A::words(s[1])[0]
            .wrapping_sub(A::words(s[0])[0])
            .wrapping_sub(v_alpha),
    );
    cw.extend([t_left_bits, t_right_bits, last]);
}

/// One side of G (what evaluation needs): `(s, v, t)` of child `side` in two AES blocks.
#[inline(always)]
fn expand_side<A: FixedKeyAes, const N: usize>(
    aes: &A,
    seeds: [A::Block; N],
    sides: [usize; N],
) -> [(A::Block, u64, bool); N] {
    let out = aes.expand(seeds, sides.map(|side| [side, 2]));
    std::array::from_fn(|i| {
        let [b, bv] = out[i];
        let [v_left, v_right] = A::words(bv);
        let v = if sides[i] == 1 { v_right } else { v_left };
        (A::clear_low_bit(b), v, low_bit::<A>(b))
    })
}

/// A walk down the tree of element `elem`'s key: the state at `depth` on the path that the
/// points `sorted[lo..hi]` share.
#[derive(Clone, Copy)]
struct Walk<B> {
    elem: u32,
    lo: u32,
    hi: u32,
    depth: u32,
    s: B,
    t: bool,
    v: u64,
}

/// Walks in lock-step, so that their PRG calls overlap.
const LANES: usize = 4;

/// Evaluation of consecutive elements' keys, `k` points each (see [`eval_points`]).
struct EvalRun<'a> {
    party: usize,
    seeds: &'a [u128],
    cw: &'a [u64],
    levels: u32,
    xs: &'a [u64],
    k: usize,
    out: &'a mut [u64],
}

impl AesJob for EvalRun<'_> {
    type Output = ();

    /// Depth first over the trie of each element's sorted points, [`LANES`] walks at a time:
    /// a path shared by several points is walked once; where the points part, the walk
    /// follows the left ones and leaves the right ones' walk, from the same node, for later.
    #[inline(always)]
    fn run<A: FixedKeyAes>(self, aes: &A) {
        let (levels, words, k) = (self.levels, cw_words(self.levels), self.k);
        let n = levels as usize;
        let mut sorted: Vec<(u64, u32)> = self
            .xs
            .iter()
            .enumerate()
            .map(|(i, &x)| (x, i as u32))
            .collect();
        if k > 1 {
            for points in sorted.chunks_mut(k) {
                points.sort_unstable_by_key(|p| p.0);
            }
        }
        let mut pending: Vec<Walk<A::Block>> = vec![];
        let mut roots = (0..self.seeds.len()).map(|e| Walk {
            elem: e as u32,
            lo: (e * k) as u32,
            hi: ((e + 1) * k) as u32,
            depth: 0,
            s: block::<A>(self.seeds[e]),
            t: self.party == 1,
            v: 0,
        });
        // The lanes' walks as arrays of their fields, which stay in registers; an idle lane
        // (no walk left) runs on a zero seed and its results are dropped.
        let idle = Walk {
            elem: 0,
            lo: 0,
            hi: 0,
            depth: 0,
            s: block::<A>(0),
            t: false,
            v: 0,
        };
        let mut busy = [false; LANES];
        let mut elem = [0u32; LANES];
        let (mut lo, mut hi, mut depth) = ([0u32; LANES], [0u32; LANES], [0u32; LANES]);
        let (mut s, mut t, mut v) = ([idle.s; LANES], [false; LANES], [0u64; LANES]);
        macro_rules! load {
            ($lane:expr, $w:expr) => {{
                let (lane, w): (usize, Option<Walk<A::Block>>) = ($lane, $w);
                busy[lane] = w.is_some();
                let w = w.unwrap_or(idle);
                (elem[lane], lo[lane], hi[lane], depth[lane]) = (w.elem, w.lo, w.hi, w.depth);
                (s[lane], t[lane], v[lane]) = (w.s, w.t, w.v);
            }};
        }
        for lane in 0..LANES {
            load!(lane, roots.next());
        }
        while busy.iter().any(|&b| b) {
            let mut sides = [0usize; LANES];
            for lane in 0..LANES {
                if !busy[lane] {
                    continue;
                }
                let points = &sorted[lo[lane] as usize..hi[lane] as usize];
                let side = bit(points[0].0, levels, depth[lane]);
                // Sorted points sharing the bits above `depth` part at most once, here.
                if bit(points[points.len() - 1].0, levels, depth[lane]) != side {
                    let d = depth[lane];
                    let mid =
                        lo[lane] + points.partition_point(|p| bit(p.0, levels, d) == 0) as u32;
                    pending.push(Walk {
                        elem: elem[lane],
                        lo: mid,
                        hi: hi[lane],
                        depth: d,
                        s: s[lane],
                        t: t[lane],
                        v: v[lane],
                    });
                    hi[lane] = mid;
                }
                sides[lane] = side;
            }
            let g = expand_side(aes, s, sides);
            for lane in 0..LANES {
                if !busy[lane] {
                    continue;
                }
                let i = depth[lane] as usize;
                let cw = &self.cw[elem[lane] as usize * words..][..words];
                let (s_cw, v_cw) = (A::block(cw[3 * i], cw[3 * i + 1]), cw[3 * i + 2]);
                let t_cw = (cw[3 * n + sides[lane]] >> i) & 1 == 1;
                let (g_s, g_v, g_t) = g[lane];
                // Party 1's terms are negated; that sign is applied once, at the end.
                v[lane] =
                    v[lane].wrapping_add(g_v.wrapping_add(v_cw & (t[lane] as u64).wrapping_neg()));
                s[lane] = A::xor(g_s, A::keep_if(t[lane], s_cw));
                t[lane] = g_t ^ (t[lane] & t_cw);
                depth[lane] += 1;
                if depth[lane] == levels {
                    let final_corr = if t[lane] { cw[3 * n + 2] } else { 0 };
                    let total = v[lane]
                        .wrapping_add(A::words(s[lane])[0])
                        .wrapping_add(final_corr);
                    for &(_, at) in &sorted[lo[lane] as usize..hi[lane] as usize] {
                        self.out[at as usize] = signed(self.party == 1, total);
                    }
                    load!(lane, pending.pop().or_else(|| roots.next()));
                }
            }
        }
    }
}

/// Points evaluated per parallel task (whole elements, at least one).
const TASK_POINTS: usize = 2048;

/// Evaluate party `party`'s key at the public point `x`.
pub fn eval(party: usize, seed: u128, cw: &[u64], levels: u32, x: u64) -> u64 {
    eval_batch(party, &[seed], cw, levels, &[x])[0]
}

/// Evaluate element `i`'s key (seed `seeds[i]`, words `cw[i * cw_words..]`) at `xs[i]`.
pub fn eval_batch(party: usize, seeds: &[u128], cw: &[u64], levels: u32, xs: &[u64]) -> Vec<u64> {
    eval_points(party, seeds, cw, levels, xs, 1)
}

/// Evaluate element `i`'s key at each of its `k` points `xs[i * k..(i + 1) * k]`, in
/// parallel. Points of one key that agree on their top bits share that part of the walk (a
/// comparison against many thresholds: the inverses' grids, the splines' breaks), so the
/// work is the size of the points' trie, not `k` walks.
pub fn eval_points(
    party: usize,
    seeds: &[u128],
    cw: &[u64],
    levels: u32,
    xs: &[u64],
    k: usize,
) -> Vec<u64> {
    assert_eq!(xs.len(), seeds.len() * k, "{k} points per key");
    let mut out = vec![0u64; xs.len()];
    if k == 0 {
        return out;
    }
    let words = cw_words(levels);
    let per_task = (TASK_POINTS / k).max(1);
    out.par_chunks_mut(per_task * k)
        .enumerate()
        .for_each(|(c, out)| {
            let elems = c * per_task..c * per_task + out.len() / k;
            aes::run(EvalRun {
                party,
                seeds: &seeds[elems.clone()],
                cw: &cw[elems.start * words..elems.end * words],
                levels,
                xs: &xs[elems.start * k..elems.end * k],
                k,
                out,
            })
        });
    out
}

/// Elements per parallel key-generation task.
const CHUNK: usize = 512;

/// Key generation for a run of consecutive elements (see [`gen_batch`]).
struct KeyGenRun<'a> {
    alphas: &'a [u64],
    betas: &'a [u64],
    levels: u32,
    seeds: &'a [[u128; 2]],
}

impl AesJob for KeyGenRun<'_> {
    type Output = Vec<u64>;

    #[inline(always)]
    fn run<A: FixedKeyAes>(self, aes: &A) -> Vec<u64> {
        let mut cw = Vec::with_capacity(self.alphas.len() * cw_words(self.levels));
        for ((&a, &b), &s) in self.alphas.iter().zip(self.betas).zip(self.seeds) {
            keygen_into(aes, a, b, self.levels, s, &mut cw);
        }
        cw
    }
}

/// Key generation for one element: returns the shared correction words; the parties' keys are
/// `(seeds[0], cw)` and `(seeds[1], cw)`.
pub fn keygen(alpha: u64, beta: u64, levels: u32, seeds: [u128; 2]) -> Vec<u64> {
    gen_batch(&[alpha], &[beta], levels, &[seeds])
}

/// Generate keys for many elements in parallel; `cw` comes back flat.
pub fn gen_batch(alphas: &[u64], betas: &[u64], levels: u32, seeds: &[[u128; 2]]) -> Vec<u64> {
    assert!((1..=MAX_LEVELS).contains(&levels));
    alphas
        .par_chunks(CHUNK)
        .zip(betas.par_chunks(CHUNK))
        .zip(seeds.par_chunks(CHUNK))
        .flat_map_iter(|((alphas, betas), seeds)| {
            aes::run(KeyGenRun {
                alphas,
                betas,
                levels,
                seeds,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn keys_reconstruct_comparison() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        for levels in [1u32, 2, 5, 17, 40, 64] {
            let mask = if levels == 64 {
                u64::MAX
            } else {
                (1 << levels) - 1
            };
            for _ in 0..20 {
                let alpha = rng.next_u64() & mask;
                let beta = rng.next_u64();
                let seeds = [rng.next_u64() as u128, rng.next_u64() as u128 | 1 << 100];
                let cw = keygen(alpha, beta, levels, seeds);
                let mut points: Vec<u64> = (0..10).map(|_| rng.next_u64() & mask).collect();
                points.extend([
                    alpha,
                    alpha.wrapping_sub(1) & mask,
                    (alpha + 1) & mask,
                    0,
                    mask,
                ]);
                for x in points {
                    let y = eval(0, seeds[0], &cw, levels, x)
                        .wrapping_add(eval(1, seeds[1], &cw, levels, x));
                    let want = if x < alpha { beta } else { 0 };
                    assert_eq!(y, want, "levels {levels} alpha {alpha} x {x}");
                }
            }
        }
    }

    /// Batches run in parallel tasks and PRG groups, with a remainder: every element still
    /// reconstructs its own comparison.
    #[test]
    fn batches_reconstruct_every_element() {
        let mut rng = ChaCha8Rng::seed_from_u64(8);
        let (n, levels) = (2 * TASK_POINTS + 3, 15);
        let mask = (1u64 << levels) - 1;
        let alphas: Vec<u64> = (0..n).map(|_| rng.next_u64() & mask).collect();
        let betas: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
        let seeds: Vec<[u128; 2]> = (0..n)
            .map(|_| [rng.next_u64() as u128, (rng.next_u64() as u128) << 60])
            .collect();
        let xs: Vec<u64> = (0..n).map(|_| rng.next_u64() & mask).collect();
        let cw = gen_batch(&alphas, &betas, levels, &seeds);
        let party = |p: usize| {
            let own: Vec<u128> = seeds.iter().map(|s| s[p]).collect();
            eval_batch(p, &own, &cw, levels, &xs)
        };
        let (y0, y1) = (party(0), party(1));
        for i in 0..n {
            let want = if xs[i] < alphas[i] { betas[i] } else { 0 };
            assert_eq!(y0[i].wrapping_add(y1[i]), want, "element {i}");
        }
    }

    /// Many points per key, in any order, with repeats, clustered (sharing long prefixes) and
    /// spread: each reconstructs its comparison, and each party's share is the one a walk of
    /// that point alone gives.
    #[test]
    fn points_sharing_a_walk_reconstruct_every_comparison() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        for (levels, k) in [(1u32, 3usize), (20, 24), (40, 300), (64, 5)] {
            let mask = u64::MAX >> (64 - levels);
            let n = 2 * TASK_POINTS / k + 2;
            let alphas: Vec<u64> = (0..n).map(|_| rng.next_u64() & mask).collect();
            let betas: Vec<u64> = (0..n).map(|_| rng.next_u64()).collect();
            let seeds: Vec<[u128; 2]> = (0..n)
                .map(|_| [rng.next_u64() as u128, (rng.next_u64() as u128) << 64])
                .collect();
            let xs: Vec<u64> = (0..n * k)
                .map(|i| {
                    let near = alphas[i / k]
                        .wrapping_add(rng.next_u64() % 9)
                        .wrapping_sub(4);
                    let x = match i % 4 {
                        0 => rng.next_u64(),
                        1 | 2 => near,
                        _ => alphas[i / k],
                    };
                    x & mask
                })
                .collect();
            let cw = gen_batch(&alphas, &betas, levels, &seeds);
            let words = cw_words(levels);
            let shares = |p: usize| {
                let own: Vec<u128> = seeds.iter().map(|s| s[p]).collect();
                eval_points(p, &own, &cw, levels, &xs, k)
            };
            let (y0, y1) = (shares(0), shares(1));
            for (i, &x) in xs.iter().enumerate() {
                let e = i / k;
                let want = if x < alphas[e] { betas[e] } else { 0 };
                assert_eq!(y0[i].wrapping_add(y1[i]), want, "levels {levels} point {i}");
                let key = &cw[e * words..(e + 1) * words];
                assert_eq!(y0[i], eval(0, seeds[e][0], key, levels, x), "point {i}");
            }
        }
    }
}
