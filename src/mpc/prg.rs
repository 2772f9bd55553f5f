//! The CSPRNG used for shares, masks and correlated randomness: ChaCha12, seeded from the OS
//! unless a test fixes the seed.

use super::ring::{RingTensor, numel};
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha12Rng;

/// A seed for [`Prg`]; parties exchange these to derive the same stream (pairwise PRGs).
pub type Seed = [u8; SEED_BYTES];

/// The length of a [`Seed`] on the wire.
pub const SEED_BYTES: usize = 32;

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

    /// Party `party`'s own randomness: OS-seeded, or derived from a fixed `seed` (tests,
    /// benches).
    pub fn for_party(seed: Option<u64>, party: usize) -> Self {
        match seed {
            Some(s) => Self::from_seed(Self::derived_seed(s, party as u64 + 1)),
            None => Self::from_os(),
        }
    }

    /// An independent stream for purpose `tag` from a shared seed (domain separation).
    pub fn derive(seed: &Seed, tag: u64) -> Self {
        let mut rng = ChaCha12Rng::from_seed(*seed);
        rng.set_stream(tag);
        let mut s = [0u8; 32];
        rng.fill_bytes(&mut s);
        Self::from_seed(s)
    }

    /// Parse a seed received from a peer.
    pub fn seed_from_bytes(bytes: Vec<u8>) -> anyhow::Result<Seed> {
        bytes
            .try_into()
            .map_err(|b: Vec<u8>| anyhow::anyhow!("malformed seed message of {} bytes", b.len()))
    }

    pub fn seed(&mut self) -> Seed {
        let mut s = [0u8; 32];
        self.0.fill_bytes(&mut s);
        s
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// `n` normal samples with standard deviation `sd` (Box–Muller); test and benchmark data.
    pub fn gaussian(&mut self, n: usize, sd: f64) -> Vec<f64> {
        let mut unit = || (self.0.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        (0..n)
            .map(|_| {
                let (u1, u2) = (unit() + 1e-300, unit());
                sd * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            })
            .collect()
    }

    /// A tensor of uniform ring elements.
    pub fn ring(&mut self, shape: &[usize]) -> RingTensor {
        let data = (0..numel(shape)).map(|_| self.0.next_u64()).collect();
        RingTensor::new(shape, data).expect("shape and length agree")
    }
}

/// Where one end of a pairwise stream stands, for checking that both ends draw in lock-step:
/// correlated randomness is consumed exactly once when every stream's two holders have drawn
/// the same number of words and would draw the same next one (test only).
#[cfg(test)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stream {
    /// What the stream serves, and its two holders by party index, lower first.
    pub purpose: &'static str,
    pub holders: [usize; 2],
    /// 32-bit words drawn so far.
    pub position: u128,
    /// The next 64-bit output.
    pub next: u64,
}

#[cfg(test)]
impl Prg {
    /// This end of the stream `purpose` between parties `a` and `b`, without advancing it.
    pub(crate) fn stream(&self, purpose: &'static str, a: usize, b: usize) -> Stream {
        Stream {
            purpose,
            holders: [a.min(b), a.max(b)],
            position: self.0.get_word_pos(),
            next: self.0.clone().next_u64(),
        }
    }
}
