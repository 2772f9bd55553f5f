//! DCF key privacy: either party's key alone, its seed and the correction words both parties
//! receive, must not depend on the comparison point `alpha` (the dealer's mask, which would
//! unmask the compared value).
//!
//! For each key width the comparisons use, many keys for `alpha = 0`, a fresh random `alpha`,
//! `2^(n-1) - 1` (`2^63 - 1` at 64 bits) and `2^n - 1` are compared with keys for random
//! points: the histogram of every byte position of the key (and of the key evaluated at a few
//! public points, which a party can compute from its key), and of all key bytes together. Both
//! keys together do determine `alpha`, and the same test sees it: that is what shows the test
//! can fail.

use super::stats::{CHI_LIMIT, chi_square_two_sample};
use crate::mpc::dcf;
use crate::mpc::prg::Prg;

const KEYS: usize = 4096;

/// Key widths: softmax's fuzzy comparison (20 bits), the default exact one (36), the widest.
const LEVELS: [u32; 3] = [20, 36, 64];

#[derive(Clone, Copy, Debug)]
enum Alpha {
    Zero,
    Random,
    HalfMinusOne,
    AllOnes,
}

/// What is looked at: one party's key, or both keys' evaluations summed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Holder {
    Party(usize),
    Both,
}

/// Per key, the words `holder` sees: for a party its seed, the correction words and its key
/// evaluated at public points; for both, the reconstructed comparison at those points.
fn features(levels: u32, alpha: Alpha, holder: Holder, tag: u64) -> Vec<Vec<u64>> {
    let mut rng = Prg::from_seed(Prg::derived_seed(0xdcf, tag));
    let mask = u64::MAX >> (64 - levels);
    let alphas: Vec<u64> = (0..KEYS)
        .map(|_| match alpha {
            Alpha::Zero => 0,
            Alpha::Random => rng.next_u64() & mask,
            Alpha::HalfMinusOne => mask >> 1,
            Alpha::AllOnes => mask,
        })
        .collect();
    // As the comparison deals them: payload 1 - 2 msb(rho), one of ±1.
    let betas: Vec<u64> = (0..KEYS)
        .map(|_| 1u64.wrapping_sub(2 * (rng.next_u64() & 1)))
        .collect();
    let mut seed = || rng.next_u64() as u128 | (rng.next_u64() as u128) << 64;
    let seeds: Vec<[u128; 2]> = (0..KEYS).map(|_| [seed(), seed()]).collect();
    let cw = dcf::gen_batch(&alphas, &betas, levels, &seeds);
    let words = dcf::cw_words(levels);
    let points = [0, 1 << (levels - 1), mask, 0x1234_5678_9abc_def0 & mask];
    let evals = |party: usize| -> Vec<Vec<u64>> {
        let own: Vec<u128> = seeds.iter().map(|s| s[party]).collect();
        points
            .iter()
            .map(|&x| dcf::eval_batch(party, &own, &cw, levels, &vec![x; KEYS]))
            .collect()
    };
    match holder {
        Holder::Party(party) => {
            let evals = evals(party);
            (0..KEYS)
                .map(|i| {
                    let s = seeds[i][party];
                    let mut f = vec![s as u64, (s >> 64) as u64];
                    f.extend_from_slice(&cw[i * words..(i + 1) * words]);
                    f.extend(evals.iter().map(|e| e[i]));
                    f
                })
                .collect()
        }
        Holder::Both => {
            let (e0, e1) = (evals(0), evals(1));
            (0..KEYS)
                .map(|i| {
                    e0.iter()
                        .zip(&e1)
                        .map(|(a, b)| a[i].wrapping_add(b[i]))
                        .collect()
                })
                .collect()
        }
    }
}

/// The largest chi-square between keys for `alpha` and keys for random points, over every
/// byte position and over all bytes together, and where it was.
fn largest_difference(levels: u32, alpha: Alpha, holder: Holder) -> (f64, String) {
    let tested = features(levels, alpha, holder, 1);
    let reference = features(levels, Alpha::Random, holder, 2);
    let bytes = |keys: &[Vec<u64>], word: usize, byte: usize| -> Vec<u8> {
        keys.iter().map(|k| (k[word] >> (8 * byte)) as u8).collect()
    };
    let mut worst = (0.0, String::new());
    for word in 0..tested[0].len() {
        for byte in 0..8 {
            let chi =
                chi_square_two_sample(&bytes(&tested, word, byte), &bytes(&reference, word, byte));
            if chi > worst.0 {
                worst = (chi, format!("word {word} byte {byte}"));
            }
        }
    }
    let all = |keys: &[Vec<u64>]| -> Vec<u8> {
        keys.iter()
            .flatten()
            .flat_map(|w| w.to_le_bytes())
            .collect()
    };
    let chi = chi_square_two_sample(&all(&tested), &all(&reference));
    if chi > worst.0 {
        worst = (chi, "all bytes".into());
    }
    worst
}

#[test]
fn either_dcf_key_alone_does_not_depend_on_alpha() {
    let mut failures = Vec::new();
    for levels in LEVELS {
        for alpha in [
            Alpha::Zero,
            Alpha::Random,
            Alpha::HalfMinusOne,
            Alpha::AllOnes,
        ] {
            for party in 0..2 {
                let (chi, at) = largest_difference(levels, alpha, Holder::Party(party));
                if chi > CHI_LIMIT {
                    failures.push(format!(
                        "{levels} bits, {alpha:?}, party {party}: chi^2 {chi:.0} at {at}"
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Both keys together reveal where alpha lies, and the same statistic sees it.
#[test]
fn both_dcf_keys_together_depend_on_alpha() {
    for levels in LEVELS {
        for alpha in [Alpha::Zero, Alpha::HalfMinusOne, Alpha::AllOnes] {
            let (chi, at) = largest_difference(levels, alpha, Holder::Both);
            assert!(
                chi > CHI_LIMIT,
                "{levels} bits, {alpha:?}: chi^2 {chi:.0} at {at}"
            );
        }
    }
}
