//! Fixed-key AES-128, the DCF's PRG: each output block is `AES_k(s) xor s` for public fixed
//! keys (Matyas–Meyer–Oseas, the usual choice in FSS implementations). AES-NI when the CPU has
//! it, else a portable implementation with identical output, so parties on different machines
//! always agree.

use std::sync::OnceLock;

/// Round keys of one AES-128 key.
type RoundKeys = [[u8; 16]; 11];

/// Three public keys, one per output block of the PRG.
const KEYS: [[u8; 16]; 3] = [
    *b"marill-dcf-key-0",
    *b"marill-dcf-key-1",
    *b"marill-dcf-key-2",
];

struct Tables {
    sbox: [u8; 256],
    round_keys: [RoundKeys; 3],
    #[cfg(target_arch = "x86_64")]
    aes_ni: bool,
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let sbox = sbox();
        Tables {
            round_keys: KEYS.map(|k| expand_key(&sbox, k)),
            sbox,
            #[cfg(target_arch = "x86_64")]
            aes_ni: std::is_x86_feature_detected!("aes"),
        }
    })
}

fn xtime(x: u8) -> u8 {
    (x << 1) ^ if x & 0x80 != 0 { 0x1b } else { 0 }
}

fn gf_mul(mut a: u8, mut b: u8) -> u8 {
    let mut p = 0;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        a = xtime(a);
        b >>= 1;
    }
    p
}

/// The S-box from its definition: the GF(2^8) inverse (`x^254`) through the affine map.
fn sbox() -> [u8; 256] {
    std::array::from_fn(|x| {
        let x = x as u8;
        let mut inv = 1u8;
        for _ in 0..254 {
            inv = gf_mul(inv, x);
        }
        let inv = if x == 0 { 0 } else { inv };
        inv ^ inv.rotate_left(1)
            ^ inv.rotate_left(2)
            ^ inv.rotate_left(3)
            ^ inv.rotate_left(4)
            ^ 0x63
    })
}

fn expand_key(sbox: &[u8; 256], key: [u8; 16]) -> RoundKeys {
    let mut w = [[0u8; 4]; 44];
    for (i, word) in w.iter_mut().take(4).enumerate() {
        word.copy_from_slice(&key[4 * i..4 * i + 4]);
    }
    let mut rcon = 1u8;
    for i in 4..44 {
        let mut t = w[i - 1];
        if i % 4 == 0 {
            t = [
                sbox[t[1] as usize] ^ rcon,
                sbox[t[2] as usize],
                sbox[t[3] as usize],
                sbox[t[0] as usize],
            ];
            rcon = xtime(rcon);
        }
        w[i] = std::array::from_fn(|j| w[i - 4][j] ^ t[j]);
    }
    std::array::from_fn(|r| std::array::from_fn(|b| w[4 * r + b / 4][b % 4]))
}

fn encrypt_portable(sbox: &[u8; 256], rk: &RoundKeys, block: [u8; 16]) -> [u8; 16] {
    let mut s: [u8; 16] = std::array::from_fn(|i| block[i] ^ rk[0][i]);
    for (round, key) in rk.iter().enumerate().skip(1) {
        // SubBytes and ShiftRows (byte i = row i % 4, column i / 4).
        let shifted: [u8; 16] = std::array::from_fn(|i| {
            let (r, c) = (i % 4, i / 4);
            sbox[s[r + 4 * ((c + r) % 4)] as usize]
        });
        s = shifted;
        if round < 10 {
            for c in 0..4 {
                let a: [u8; 4] = std::array::from_fn(|r| s[4 * c + r]);
                let all = a[0] ^ a[1] ^ a[2] ^ a[3];
                for r in 0..4 {
                    s[4 * c + r] = a[r] ^ all ^ xtime(a[r] ^ a[(r + 1) % 4]);
                }
            }
        }
        for (b, k) in s.iter_mut().zip(key) {
            *b ^= k;
        }
    }
    s
}

/// `AES_{k_w}(seed) xor seed` for the listed keys `w` of each of `N` seeds, `N K` blocks at
/// once, on 128-bit blocks kept in this implementation's registers (a `u128` lives in two
/// general registers; moving it in and out of a vector register for every AES call cost more
/// than the AES). Implementations give identical output, so parties on different machines agree.
pub(crate) trait FixedKeyAes {
    type Block: Copy;

    /// The block of a little-endian 128-bit value given as (low, high) words.
    fn block(lo: u64, hi: u64) -> Self::Block;
    /// (low, high) words.
    fn words(b: Self::Block) -> [u64; 2];
    fn xor(a: Self::Block, b: Self::Block) -> Self::Block;
    /// `b` if `keep`, else zero, without a branch.
    fn keep_if(keep: bool, b: Self::Block) -> Self::Block;
    fn clear_low_bit(b: Self::Block) -> Self::Block;

    fn expand<const N: usize, const K: usize>(
        &self,
        seeds: [Self::Block; N],
        which: [[usize; K]; N],
    ) -> [[Self::Block; K]; N];
}

/// Work that runs on whichever [`FixedKeyAes`] this CPU has best. `run` is generic so that the
/// cipher inlines into it; keep what it calls `#[inline(always)]`.
pub(crate) trait AesJob {
    type Output;
    fn run<A: FixedKeyAes>(self, aes: &A) -> Self::Output;
}

/// Run `job` on AES-NI when the CPU has it, else on the portable cipher.
pub(crate) fn run<J: AesJob>(job: J) -> J::Output {
    let t = tables();
    #[cfg(target_arch = "x86_64")]
    if t.aes_ni {
        // SAFETY: AES-NI was detected at runtime.
        return unsafe { run_ni(job, &t.round_keys) };
    }
    job.run(&Portable(t))
}

/// The job compiled with AES-NI enabled, so that the whole of it (not just each block) is
/// vectorised and inlined: calling a separately compiled `#[target_feature]` function per
/// handful of blocks cost 3x more than the blocks themselves.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,sse2")]
fn run_ni<J: AesJob>(job: J, rk: &[RoundKeys; 3]) -> J::Output {
    use std::arch::x86_64::_mm_loadu_si128;
    // SAFETY: unaligned loads of 16-byte arrays.
    let keys = rk.map(|k| k.map(|r| unsafe { _mm_loadu_si128(r.as_ptr().cast()) }));
    job.run(&AesNi { keys })
}

struct Portable<'a>(&'a Tables);

impl FixedKeyAes for Portable<'_> {
    type Block = u128;

    fn block(lo: u64, hi: u64) -> u128 {
        lo as u128 | (hi as u128) << 64
    }

    fn words(b: u128) -> [u64; 2] {
        [b as u64, (b >> 64) as u64]
    }

    fn xor(a: u128, b: u128) -> u128 {
        a ^ b
    }

    fn keep_if(keep: bool, b: u128) -> u128 {
        b & (keep as u128).wrapping_neg()
    }

    fn clear_low_bit(b: u128) -> u128 {
        b & !1
    }

    fn expand<const N: usize, const K: usize>(
        &self,
        seeds: [u128; N],
        which: [[usize; K]; N],
    ) -> [[u128; K]; N] {
        std::array::from_fn(|i| {
            which[i].map(|k| {
                let block =
                    encrypt_portable(&self.0.sbox, &self.0.round_keys[k], seeds[i].to_le_bytes());
                u128::from_le_bytes(block) ^ seeds[i]
            })
        })
    }
}

#[cfg(target_arch = "x86_64")]
struct AesNi {
    keys: [[std::arch::x86_64::__m128i; 11]; 3],
}

// SAFETY (every `unsafe` below): SSE2 is part of x86_64; AES-NI is enabled in `run_ni`, the
// only place an `AesNi` exists, into which these functions inline.
#[cfg(target_arch = "x86_64")]
impl FixedKeyAes for AesNi {
    type Block = std::arch::x86_64::__m128i;

    #[inline(always)]
    fn block(lo: u64, hi: u64) -> Self::Block {
        unsafe { std::arch::x86_64::_mm_set_epi64x(hi as i64, lo as i64) }
    }

    #[inline(always)]
    fn words(b: Self::Block) -> [u64; 2] {
        use std::arch::x86_64::*;
        unsafe {
            [
                _mm_cvtsi128_si64(b),
                _mm_cvtsi128_si64(_mm_unpackhi_epi64(b, b)),
            ]
            .map(|w| w as u64)
        }
    }

    #[inline(always)]
    fn xor(a: Self::Block, b: Self::Block) -> Self::Block {
        unsafe { std::arch::x86_64::_mm_xor_si128(a, b) }
    }

    #[inline(always)]
    fn keep_if(keep: bool, b: Self::Block) -> Self::Block {
        use std::arch::x86_64::*;
        unsafe { _mm_and_si128(b, _mm_set1_epi64x(-(keep as i64))) }
    }

    #[inline(always)]
    fn clear_low_bit(b: Self::Block) -> Self::Block {
        use std::arch::x86_64::*;
        unsafe { _mm_andnot_si128(_mm_set_epi64x(0, 1), b) }
    }

    #[inline(always)]
    #[allow(clippy::needless_range_loop)]
    fn expand<const N: usize, const K: usize>(
        &self,
        seeds: [Self::Block; N],
        which: [[usize; K]; N],
    ) -> [[Self::Block; K]; N] {
        use std::arch::x86_64::*;
        // Plain loops: closures would not inherit the target features and would not inline.
        unsafe {
            // N K independent blocks in flight hide the AES latency.
            let mut s = [[_mm_setzero_si128(); K]; N];
            for lane in 0..N {
                for j in 0..K {
                    s[lane][j] = _mm_xor_si128(seeds[lane], self.keys[which[lane][j]][0]);
                }
            }
            for round in 1..10 {
                for lane in 0..N {
                    for j in 0..K {
                        s[lane][j] = _mm_aesenc_si128(s[lane][j], self.keys[which[lane][j]][round]);
                    }
                }
            }
            for lane in 0..N {
                for j in 0..K {
                    let last = _mm_aesenclast_si128(s[lane][j], self.keys[which[lane][j]][10]);
                    s[lane][j] = _mm_xor_si128(last, seeds[lane]);
                }
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fips197_vector_and_both_paths_agree() {
        let t = tables();
        let key: [u8; 16] = std::array::from_fn(|i| i as u8);
        let pt: [u8; 16] = std::array::from_fn(|i| (i as u8) * 0x11);
        let ct = encrypt_portable(&t.sbox, &expand_key(&t.sbox, key), pt);
        let want = [
            0x69, 0xc4, 0xe0, 0xd8, 0x6a, 0x7b, 0x04, 0x30, 0xd8, 0xcd, 0xb7, 0x80, 0x70, 0xb4,
            0xc5, 0x5a,
        ];
        assert_eq!(ct, want);
        fn to_u128<A: FixedKeyAes>(b: A::Block) -> u128 {
            let [lo, hi] = A::words(b);
            lo as u128 | (hi as u128) << 64
        }
        /// Expands, and applies the block operations, on the cipher it is run on.
        struct Both<const N: usize, const K: usize>([u128; N], [[usize; K]; N]);
        impl<const N: usize, const K: usize> AesJob for Both<N, K> {
            type Output = ([[u128; K]; N], [u128; 4]);
            fn run<A: FixedKeyAes>(self, aes: &A) -> Self::Output {
                let seeds = self.0.map(|v| A::block(v as u64, (v >> 64) as u64));
                let expanded = aes
                    .expand(seeds, self.1)
                    .map(|blocks| blocks.map(to_u128::<A>));
                let (a, b) = (seeds[0], seeds[N - 1]);
                let ops = [
                    A::xor(a, b),
                    A::keep_if(true, a),
                    A::keep_if(false, a),
                    A::clear_low_bit(A::xor(a, A::block(1, 0))),
                ]
                .map(to_u128::<A>);
                (expanded, ops)
            }
        }
        for i in 0..100u128 {
            let seed = i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
            let portable = t.round_keys.each_ref().map(|rk| {
                u128::from_le_bytes(encrypt_portable(&t.sbox, rk, seed.to_le_bytes())) ^ seed
            });
            let other = seed.rotate_left(17) ^ 5;
            let job = || Both([seed, other], [[0, 1, 2], [2, 0, 1]]);
            let (expanded, ops) = run(job());
            assert_eq!(expanded[0], portable);
            assert_eq!(run(Both([seed], [[2, 0]])).0, [[portable[2], portable[0]]]);
            // The portable cipher, called directly, agrees with whichever `run` picked.
            assert_eq!((expanded, ops), job().run(&Portable(t)));
            assert_eq!(ops, [seed ^ other, seed, 0, (seed ^ 1) & !1]);
        }
    }
}
