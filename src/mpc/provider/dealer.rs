//! 2pc-dealer's dealer: runs the same program as the parties, by shape only, and hands out the
//! correlated randomness each step needs. It never receives anything after setup, so it never
//! waits on the parties and adds no online rounds; all it sends is offline traffic.

use crate::mpc::comm::{Communicator, Phase};
use crate::mpc::compare::MaskedCompare;
use crate::mpc::dcf;
use crate::mpc::fixed::FixedPoint;
use crate::mpc::prg::Prg;
use crate::mpc::protocol::{
    Bilinear, Comparison, Cross, Masked, Protocol, ProtocolKind, Role, SecretWeight, TruncationMask,
};
use crate::mpc::ring::RingTensor;
use crate::mpc::share::Share;
use anyhow::{Result, bail, ensure};

const CLIENT: usize = 0;
const SERVER: usize = 1;

pub struct Dealer {
    fixed: FixedPoint,
    comm: Communicator,
    /// PRGs shared with the client and with the server.
    client: Prg,
    server: Prg,
}

impl Dealer {
    /// Set up the dealer: draw and send the two pairwise seeds.
    pub fn new(mut comm: Communicator, fixed: FixedPoint, rng: &mut Prg) -> Result<Self> {
        let (cs, ss) = (rng.seed(), rng.seed());
        comm.send_bytes(CLIENT, &cs, Phase::Offline)?;
        comm.send_bytes(SERVER, &ss, Phase::Offline)?;
        Ok(Self::from_parts(
            comm,
            fixed,
            Prg::from_seed(cs),
            Prg::from_seed(ss),
        ))
    }

    /// A dealer whose PRGs with the client and the server are already set up.
    pub(crate) fn from_parts(
        comm: Communicator,
        fixed: FixedPoint,
        client: Prg,
        server: Prg,
    ) -> Self {
        Self {
            fixed,
            comm,
            client,
            server,
        }
    }

    /// A fresh uniform secret: the sum of what the two party PRGs produce.
    fn random(&mut self, shape: &[usize]) -> Result<RingTensor> {
        self.client.ring(shape).add(&self.server.ring(shape))
    }

    /// Share `value`: the client's share comes from its PRG, the server gets the difference.
    fn correlated(&mut self, value: &RingTensor) -> Result<()> {
        let theirs = value.sub(&self.client.ring(value.shape()))?;
        self.comm.send(SERVER, theirs.data(), Phase::Offline)?;
        Ok(())
    }

    fn seeds(&mut self, n: usize) -> Vec<[u128; 2]> {
        let draw = |p: &mut Prg| p.next_u64() as u128 | (p.next_u64() as u128) << 64;
        let client: Vec<u128> = (0..n).map(|_| draw(&mut self.client)).collect();
        client
            .into_iter()
            .map(|c| [c, draw(&mut self.server)])
            .collect()
    }

    /// Truncation material for a fresh mask `r`: shares of `r >> d` and `msb(r)`; returns all
    /// three.
    fn truncation(&mut self, x: &Share, bits: u32) -> Result<[RingTensor; 3]> {
        ensure!(bits > 0 && bits < 62, "truncation by {bits} bits");
        let r = self.random(x.shape())?;
        let (high, msb) = (r.map(|v| v >> bits), r.map(|v| v >> 63));
        self.correlated(&high)?;
        self.correlated(&msb)?;
        Ok([r, high, msb])
    }

    /// Comparison material for mask `r`: shares of `msb(rho)`, seeds, DCF keys to both.
    fn comparison_keys(&mut self, mc: MaskedCompare, r: &RingTensor) -> Result<()> {
        let keys = mc.dealer(r.data());
        self.correlated(&RingTensor::new(r.shape(), keys.rho_msb)?)?;
        let seeds = self.seeds(r.len());
        let cw = dcf::gen_batch(&keys.alphas, &keys.betas, mc.levels(), &seeds);
        self.comm.send(CLIENT, &cw, Phase::Offline)?;
        self.comm.send(SERVER, &cw, Phase::Offline)?;
        Ok(())
    }

    fn shape_only(shape: &[usize]) -> Result<Share> {
        Share::new(shape, Vec::new())
    }

    /// One result of shape `shape` per threshold, by shape only.
    fn comparison_outputs(shape: &[usize], thresholds: &[u64]) -> Result<Vec<Share>> {
        thresholds.iter().map(|_| Self::shape_only(shape)).collect()
    }

    /// A masked value whose mask `c m - h` the dealer holds as `h` and `m`.
    fn parts_masked(
        shape: &[usize],
        high: RingTensor,
        msb: RingTensor,
        cross: Cross,
    ) -> Result<Masked> {
        Ok(Masked {
            share: Self::shape_only(shape)?,
            opened: None,
            mask: None,
            truncation: Some(TruncationMask {
                coef: None,
                high,
                msb,
                cross,
            }),
        })
    }
}

impl Protocol for Dealer {
    fn kind(&self) -> ProtocolKind {
        ProtocolKind::TwoPartyDealer
    }

    fn role(&self) -> Role {
        Role::Dealer
    }

    fn fixed_point(&self) -> FixedPoint {
        self.fixed
    }

    fn comm(&mut self) -> &mut Communicator {
        &mut self.comm
    }

    #[cfg(test)]
    fn streams(&self) -> Vec<crate::mpc::prg::Stream> {
        let me = Role::Dealer.index();
        vec![
            self.client.stream("dealer", CLIENT, me),
            self.server.stream("dealer", SERVER, me),
        ]
    }

    fn input(
        &mut self,
        owner: Role,
        _value: Option<&RingTensor>,
        shape: &[usize],
    ) -> Result<Share> {
        ensure!(owner != Role::Dealer, "the dealer owns no inputs");
        Self::shape_only(shape)
    }

    /// The weight's mask comes from the server's PRG alone.
    fn weight(&mut self, _value: Option<&RingTensor>, shape: &[usize]) -> Result<SecretWeight> {
        Ok(SecretWeight(Masked {
            share: Self::shape_only(shape)?,
            opened: None,
            mask: Some(self.server.ring(shape)),
            truncation: None,
        }))
    }

    /// The client's mask `A` comes from the client's PRG alone; `A B` is shared.
    fn matmul_weight(&mut self, x: &Share, w: &SecretWeight) -> Result<Share> {
        let out_shape = Bilinear::MatMul.shape(x.shape(), w.shape())?;
        let b =
            w.0.mask
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("weight without dealer mask"))?;
        let a = self.client.ring(x.shape());
        self.correlated(&a.matmul(b)?)?;
        Self::shape_only(&out_shape)
    }

    fn reveal(&mut self, _x: &Share, to: Option<Role>) -> Result<Option<RingTensor>> {
        if to == Some(Role::Dealer) {
            bail!("nothing is revealed to the dealer");
        }
        Ok(None)
    }

    fn add_public(&mut self, x: &Share, _c: &RingTensor) -> Result<Share> {
        Ok(x.clone())
    }

    fn mask(&mut self, xs: &[&Share]) -> Result<Vec<Masked>> {
        xs.iter()
            .map(|x| {
                Ok(Masked {
                    share: Self::shape_only(x.shape())?,
                    opened: None,
                    mask: Some(self.random(x.shape())?),
                    truncation: None,
                })
            })
            .collect()
    }

    /// Shares of `op(a, b)`, or of the parts the parties combine it from when a mask is a
    /// truncation's (see `TwoParty::product`).
    fn product(&mut self, x: &Masked, y: &Masked, op: Bilinear) -> Result<Share> {
        let out = Self::shape_only(&op.shape(x.shape(), y.shape())?);
        let parts = |m: &Masked| match &m.truncation {
            Some(TruncationMask {
                coef: None,
                high,
                msb,
                cross,
            }) => Ok(Some((high.clone(), msb.clone(), *cross))),
            Some(_) => bail!("the dealer holds no party's mask"),
            None => Ok(None),
        };
        let mask = |m: &Masked| {
            m.mask
                .clone()
                .ok_or_else(|| anyhow::anyhow!("share was not masked by the dealer"))
        };
        match (parts(x)?, parts(y)?) {
            (None, None) => self.correlated(&op.apply(&mask(x)?, &mask(y)?)?)?,
            (Some((high, msb, _)), None) => {
                let b = mask(y)?;
                self.correlated(&op.apply(&high, &b)?)?;
                self.correlated(&op.apply(&msb, &b)?)?;
            }
            (None, Some((high, msb, _))) => {
                let a = mask(x)?;
                self.correlated(&op.apply(&a, &high)?)?;
                self.correlated(&op.apply(&a, &msb)?)?;
            }
            (Some((h1, m1, x1)), Some((h2, m2, x2))) => {
                self.correlated(&op.apply(&h1, &h2)?)?;
                self.correlated(&op.apply(&h1, &m2)?)?;
                self.correlated(&op.apply(&m1, &h2)?)?;
                if Cross::either(x1, x2) == Cross::Kept {
                    self.correlated(&op.apply(&m1, &m2)?)?;
                }
            }
        }
        out
    }

    /// The values' masks as in [`Protocol::mask`]; a bit's `rho` is the xor of the low bits of
    /// the parties' next draws, shared arithmetically (see `TwoParty::mask_with_bits`).
    fn mask_with_bits(
        &mut self,
        values: &[&Share],
        bits: &[&Share],
    ) -> Result<(Vec<Masked>, Vec<Masked>)> {
        let values = self.mask(values)?;
        let bits = bits
            .iter()
            .map(|b| {
                let shape = b.shape();
                let rho = self
                    .client
                    .ring(shape)
                    .add(&self.server.ring(shape))?
                    .map(|v| v & 1);
                // The sum's low bit is the xor of the two low bits.
                self.correlated(&rho)?;
                Self::parts_masked(shape, rho.neg(), rho, Cross::Kept)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok((values, bits))
    }

    fn truncate_masked(&mut self, x: &Share, bits: u32) -> Result<Masked> {
        let [_, high, msb] = self.truncation(x, bits)?;
        Self::parts_masked(x.shape(), high, msb, Cross::Vanishes)
    }

    fn truncate(&mut self, x: &Share, bits: u32) -> Result<Share> {
        self.truncation(x, bits)?;
        Self::shape_only(x.shape())
    }

    fn truncate_powers(&mut self, x: &Share, bits: u32, degree: usize) -> Result<Vec<Share>> {
        let [_, high, msb] = self.truncation(x, bits)?;
        // (r>>d)^j and (r>>d)^(j-1) msb(r), j = 2..=degree.
        let mut high_pow = high.clone();
        for _ in 2..=degree {
            let with_msb = high_pow.mul(&msb)?;
            high_pow = high_pow.mul(&high)?;
            self.correlated(&high_pow)?;
            self.correlated(&with_msb)?;
        }
        (0..degree).map(|_| Self::shape_only(x.shape())).collect()
    }

    fn truncate_less_than(
        &mut self,
        x: &Share,
        bits: u32,
        thresholds: &[u64],
        cmp: Comparison,
    ) -> Result<(Masked, Vec<Share>)> {
        let mc = MaskedCompare::new(cmp)?;
        let [r, high, msb] = self.truncation(x, bits)?;
        self.comparison_keys(mc, &r)?;
        let masked = Self::parts_masked(x.shape(), high, msb, Cross::Vanishes)?;
        Ok((masked, Self::comparison_outputs(x.shape(), thresholds)?))
    }

    fn less_than(&mut self, x: &Share, thresholds: &[u64], cmp: Comparison) -> Result<Vec<Share>> {
        let mc = MaskedCompare::new(cmp)?;
        let r = self.random(x.shape())?;
        self.comparison_keys(mc, &r)?;
        Self::comparison_outputs(x.shape(), thresholds)
    }
}
