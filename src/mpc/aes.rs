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

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "aes,sse2")]
#[allow(clippy::needless_range_loop)]
fn encrypt_ni<const N: usize, const K: usize>(
    rk: &[RoundKeys; 3],
    blocks: [[u8; 16]; N],
    which: [[usize; K]; N],
) -> [[[u8; 16]; K]; N] {
    use std::arch::x86_64::*;
    // Plain loops: closures would not inherit the target features and would not inline.
    // SAFETY: unaligned loads and stores of 16-byte arrays; the features are enabled.
    unsafe {
        let mut keys = [[_mm_setzero_si128(); 11]; 3];
        for k in 0..3 {
            for r in 0..11 {
                keys[k][r] = _mm_loadu_si128(rk[k][r].as_ptr().cast());
            }
        }
        // N K independent blocks in flight hide the AES latency.
        let mut s = [[_mm_setzero_si128(); K]; N];
        for lane in 0..N {
            let b = _mm_loadu_si128(blocks[lane].as_ptr().cast());
            for j in 0..K {
                s[lane][j] = _mm_xor_si128(b, keys[which[lane][j]][0]);
            }
        }
        for round in 1..10 {
            for lane in 0..N {
                for j in 0..K {
                    s[lane][j] = _mm_aesenc_si128(s[lane][j], keys[which[lane][j]][round]);
                }
            }
        }
        let mut out = [[[0u8; 16]; K]; N];
        for lane in 0..N {
            for j in 0..K {
                let last = _mm_aesenclast_si128(s[lane][j], keys[which[lane][j]][10]);
                _mm_storeu_si128(out[lane][j].as_mut_ptr().cast(), last);
            }
        }
        out
    }
}

/// `AES_{k_w}(block)` for the keys `w` listed per block, `N` blocks at once.
fn encrypt<const N: usize, const K: usize>(
    blocks: [[u8; 16]; N],
    which: [[usize; K]; N],
) -> [[[u8; 16]; K]; N] {
    let t = tables();
    #[cfg(target_arch = "x86_64")]
    if t.aes_ni {
        // SAFETY: AES-NI was detected at runtime.
        return unsafe { encrypt_ni(&t.round_keys, blocks, which) };
    }
    std::array::from_fn(|i| {
        which[i].map(|k| encrypt_portable(&t.sbox, &t.round_keys[k], blocks[i]))
    })
}

/// `AES_{k_w}(seed) xor seed` for the listed keys of each of `N` seeds.
pub fn expand<const N: usize, const K: usize>(
    seeds: [u128; N],
    which: [[usize; K]; N],
) -> [[u128; K]; N] {
    let out = encrypt(seeds.map(u128::to_le_bytes), which);
    std::array::from_fn(|i| out[i].map(|b| u128::from_le_bytes(b) ^ seeds[i]))
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
        for i in 0..100u128 {
            let block = i
                .wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)
                .to_le_bytes();
            let portable = t
                .round_keys
                .each_ref()
                .map(|rk| encrypt_portable(&t.sbox, rk, block));
            assert_eq!(
                encrypt([block, block], [[0, 1, 2]; 2]),
                [portable, portable]
            );
            assert_eq!(encrypt([block], [[2, 0]]), [[portable[2], portable[0]]]);
        }
    }
}
