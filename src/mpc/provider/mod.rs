//! Who makes the correlated randomness of additive two-party sharing.
//!
//! The online protocol ([`TwoParty`](super::two_party::TwoParty)) asks for every correlation
//! by what it is, through [`Correlations`]; a provider answers with this party's additive share
//! (mod 2^64) of values neither computing party knows in the clear. A new way to make them (a
//! dealer, a helper, OT and HE between the two parties) is one new implementation of the trait.
//!
//! Correlations, for secrets `a`, `b`, `r` the provider made and this party's shares of them:
//! - a mask: a fresh uniform `a` (both parties hold shares); a private mask: a uniform secret
//!   one party knows in full (the other's share is 0), e.g. the client's side of a one-sided
//!   product;
//! - a product: shares of `op(a, b)` for two secrets it made before (Beaver's `c = ab`), under
//!   element-wise product or matmul;
//! - a truncation pair: a fresh uniform `r` with shares of `r >> d` and `msb(r)`;
//! - comparison keys for a mask `r`: shares of `msb(rho)` and DCF keys of `[m < rho]` for
//!   `rho` the top bits of `r` (see `compare`);
//! - a bit mask: a uniform bit `rho`, as xor shares (the low bits of the parties' shares) and
//!   as additive shares.
//!
//! Providers here: [`dealer_link`] (a dealer that follows the program by shape and sends only
//! offline corrections, [`dealer::Dealer`]; 3pc's helper plays it for client and server).

pub mod dealer;
pub mod dealer_link;

use super::comm::Communicator;
use super::compare::MaskedCompare;
use super::protocol::Bilinear;
use super::ring::RingTensor;
use anyhow::Result;

/// This party's shares of a truncation pair: a fresh uniform `r`, `r >> d` and `msb(r)`.
pub struct TruncationPair {
    pub r: RingTensor,
    pub high: RingTensor,
    pub msb: RingTensor,
}

/// This party's comparison material for a mask: shares of `msb(rho)`, DCF seeds and
/// correction words.
pub struct ComparisonKeys {
    pub mc: MaskedCompare,
    pub rho_msb: RingTensor,
    pub seeds: Vec<u128>,
    pub cw: Vec<u64>,
}

/// This party's shares of a uniform bit `rho`: xor (in the low bits) and additive.
pub struct BitMask {
    pub xor: RingTensor,
    pub arith: RingTensor,
}

/// A computing party's source of correlated randomness. Both parties make the same requests
/// in the same order (shapes and control flow are public); `comm` carries whatever the
/// provider exchanges, counted as offline traffic.
pub trait Correlations: Send {
    /// Every pairwise PRG stream the provider draws from (test only, see `mpc::views`).
    #[cfg(test)]
    fn streams(&self) -> Vec<super::prg::Stream>;

    /// This party's share of a fresh uniform mask.
    fn mask(&mut self, shape: &[usize]) -> RingTensor;

    /// A fresh uniform secret this party knows in full (the other party's share is 0).
    fn private_mask(&mut self, shape: &[usize]) -> RingTensor;

    /// This party's share of `op(a, b)`, given its shares `a`, `b` of two secrets the
    /// provider made.
    fn product(
        &mut self,
        comm: &mut Communicator,
        op: Bilinear,
        a: &RingTensor,
        b: &RingTensor,
    ) -> Result<RingTensor>;

    /// A fresh truncation pair for shift `bits`.
    fn truncation(
        &mut self,
        comm: &mut Communicator,
        shape: &[usize],
        bits: u32,
    ) -> Result<TruncationPair>;

    /// Comparison keys for the mask `r` (this party's share) the provider made last.
    fn comparison(
        &mut self,
        comm: &mut Communicator,
        mc: MaskedCompare,
        r: &RingTensor,
    ) -> Result<ComparisonKeys>;

    /// A fresh uniform bit per element.
    fn bit_mask(&mut self, comm: &mut Communicator, shape: &[usize]) -> Result<BitMask>;
}
