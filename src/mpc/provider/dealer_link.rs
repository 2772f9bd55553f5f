//! A computing party's end of the dealer: the provider of 2pc-dealer (and of 3pc's client and
//! server, whose helper deals). The dealer ([`Dealer`](super::dealer::Dealer)) follows the
//! program by shape and knows every secret it makes: a party's share of a fresh secret is the
//! next draw of the PRG it shares with the dealer (no traffic); of a value the dealer computes
//! (a product, `r >> d`, DCF keys) the client's share is again its PRG draw and the server
//! receives the difference, offline. The dealer never receives anything after setup.

use super::{BitMask, ComparisonKeys, Correlations, TruncationPair};
use crate::mpc::comm::{Communicator, Phase};
use crate::mpc::compare::MaskedCompare;
use crate::mpc::dcf;
use crate::mpc::prg::Prg;
use crate::mpc::protocol::Bilinear;
use crate::mpc::ring::{RingTensor, numel};
use anyhow::Result;

/// Index of the dealer in the transport.
pub(crate) const DEALER: usize = 2;

pub struct DealerLink {
    party: usize,
    prg: Prg,
}

impl DealerLink {
    /// Party `party`'s (0 client, 1 server) end, with the PRG it shares with the dealer.
    pub fn new(party: usize, prg: Prg) -> Self {
        Self { party, prg }
    }

    /// Own share of a value the dealer chose.
    fn correlated(&mut self, comm: &mut Communicator, shape: &[usize]) -> Result<RingTensor> {
        if self.party == 0 {
            return Ok(self.prg.ring(shape));
        }
        RingTensor::new(shape, comm.recv(DEALER, numel(shape), Phase::Offline)?)
    }
}

impl Correlations for DealerLink {
    #[cfg(test)]
    fn streams(&self) -> Vec<crate::mpc::prg::Stream> {
        vec![self.prg.stream("dealer", self.party, DEALER)]
    }

    fn mask(&mut self, shape: &[usize]) -> RingTensor {
        self.prg.ring(shape)
    }

    /// The dealer draws it from this party's stream alone.
    fn private_mask(&mut self, shape: &[usize]) -> RingTensor {
        self.prg.ring(shape)
    }

    fn product(
        &mut self,
        comm: &mut Communicator,
        op: Bilinear,
        a: &RingTensor,
        b: &RingTensor,
    ) -> Result<RingTensor> {
        self.correlated(comm, &op.shape(a.shape(), b.shape())?)
    }

    fn truncation(
        &mut self,
        comm: &mut Communicator,
        shape: &[usize],
        _bits: u32,
    ) -> Result<TruncationPair> {
        let r = self.prg.ring(shape);
        let high = self.correlated(comm, shape)?;
        let msb = self.correlated(comm, shape)?;
        Ok(TruncationPair { r, high, msb })
    }

    fn comparison(
        &mut self,
        comm: &mut Communicator,
        mc: MaskedCompare,
        r: &RingTensor,
    ) -> Result<ComparisonKeys> {
        let rho_msb = self.correlated(comm, r.shape())?;
        let n = rho_msb.len();
        let seeds = (0..n)
            .map(|_| self.prg.next_u64() as u128 | (self.prg.next_u64() as u128) << 64)
            .collect();
        let cw = comm.recv(DEALER, n * dcf::cw_words(mc.levels()), Phase::Offline)?;
        Ok(ComparisonKeys {
            mc,
            rho_msb,
            seeds,
            cw,
        })
    }

    /// `rho`'s xor shares are the low bits of this party's next draw; the dealer shares it
    /// arithmetically.
    fn bit_mask(&mut self, comm: &mut Communicator, shape: &[usize]) -> Result<BitMask> {
        let xor = self.prg.ring(shape).map(|v| v & 1);
        let arith = self.correlated(comm, shape)?;
        Ok(BitMask { xor, arith })
    }
}
