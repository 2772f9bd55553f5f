//! The CSPRNG used for shares, masks and correlated randomness: ChaCha12, seeded from the OS
//! unless a test fixes the seed.

use super::ring::{RingTensor, numel};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

/// A seed for [`Prg`]; parties exchange these to derive the same stream (pairwise PRGs).
pub type Seed = [u8; 32];

pub struct Prg(ChaCha12Rng);

impl Prg {
    pub fn from_os() -> Self {
        Self(rand::make_rng())
    }

    pub fn from_seed(seed: Seed) -> Self {
        Self(ChaCha12Rng::from_seed(seed))
    }

    /// A deterministic seed derived from a number and a domain tag (tests and benches only).
    pub fn derived_seed(base: u64, tag: u64) -> Seed {
        let mut rng = ChaCha12Rng::seed_from_u64(base ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let mut s = [0u8; 32];
        rng.fill_bytes(&mut s);
        s
    }

    pub fn seed(&mut self) -> Seed {
        let mut s = [0u8; 32];
        self.0.fill_bytes(&mut s);
        s
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// A tensor of uniform ring elements.
    pub fn ring(&mut self, shape: &[usize]) -> RingTensor {
        let data = (0..numel(shape)).map(|_| self.0.next_u64()).collect();
        RingTensor::new(shape, data).expect("shape and length agree")
    }
}
