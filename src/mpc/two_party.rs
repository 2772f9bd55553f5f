//! Additive 2-of-2 sharing between client (party 0) and server (party 1), the online half of
//! 2pc-dealer (and of 3pc's truncations and comparisons). Every correlated value it consumes
//! comes from a [`Correlations`] provider, asked for by what it is; with a dealer
//! ([`DealerLink`]) those are PRG draws and offline corrections.

use super::comm::{Communicator, Phase};
use super::compare::MaskedCompare;
use super::fixed::FixedPoint;
use super::prg::{Prg, SEED_BYTES};
use super::protocol::{
    Bilinear, Comparison, Cross, Masked, Protocol, ProtocolKind, Role, SecretWeight,
    TruncationMask, supplied,
};
use super::provider::dealer_link::{DEALER, DealerLink};
use super::provider::{ComparisonKeys, Correlations};
use super::ring::{RingTensor, numel};
use super::share::Share;
use super::transport::Expect;
use anyhow::{Result, bail, ensure};

/// The offset that makes a truncation input non-negative: inputs must satisfy `|x| < 2^62`.
pub(crate) const TRUNCATION_OFFSET_BITS: u32 = 62;
/// A truncation by `d` bits opens its masked value without the low `min(d, 16)` bits (whole
/// bytes): 6 bytes an element, not 8. Keeping 48 bits makes the dropped carry flip the wrap
/// bit with probability 2^-48 at most.
const TRUNCATION_DROPPED_BITS: u32 = 16;

/// What a truncation opening carries besides the truncation, see
/// [`TwoParty::truncation`].
#[derive(Default)]
struct TruncationRequest {
    /// Degree of the powers of `R` to fetch material for (0 or 1: none).
    degree: usize,
    cmp: Option<MaskedCompare>,
    dealer_addend: bool,
}

/// A truncation opening, see [`TwoParty::truncation`].
struct OpenedTruncation {
    public: RingTensor,
    own_mask: RingTensor,
    coef: RingTensor,
    /// This party's shares of `r >> d` and `msb(r)`.
    high: RingTensor,
    msb: RingTensor,
    /// Shares of `(r>>d)^j` and `(r>>d)^(j-1) msb(r)` for `j = 2..=degree`.
    powers: Vec<(RingTensor, RingTensor)>,
    /// With a fused comparison: its keys and the opened `x + r mod 2^n`.
    compare: Option<(ComparisonKeys, RingTensor)>,
}

pub struct TwoParty {
    role: Role,
    party: usize,
    fixed: FixedPoint,
    comm: Communicator,
    corr: Box<dyn Correlations>,
    /// PRG shared by client and server, for input sharing.
    pair: Prg,
}

impl TwoParty {
    /// Set up a 2pc-dealer party: receive the dealer seed and exchange the client–server PRG
    /// seed. `rng` draws the seeds this party chooses (OS-seeded in production, fixed in tests).
    pub fn with_dealer(
        role: Role,
        mut comm: Communicator,
        fixed: FixedPoint,
        rng: &mut Prg,
    ) -> Result<Self> {
        let party = Self::party_index(role)?;
        let dealer_seed = Prg::seed_from_bytes(comm.recv_bytes(
            DEALER,
            Expect::Exactly(SEED_BYTES),
            Phase::Offline,
        )?)?;
        let pair_seed = if party == 0 {
            let s = rng.seed();
            comm.send_bytes(1, &s, Phase::Offline)?;
            s
        } else {
            Prg::seed_from_bytes(comm.recv_bytes(
                0,
                Expect::Exactly(SEED_BYTES),
                Phase::Offline,
            )?)?
        };
        Self::from_parts(
            role,
            comm,
            fixed,
            Prg::from_seed(dealer_seed),
            Prg::from_seed(pair_seed),
        )
    }

    /// A dealer's party whose PRG with the dealer and PRG with the other party are set up.
    pub(crate) fn from_parts(
        role: Role,
        comm: Communicator,
        fixed: FixedPoint,
        dealer: Prg,
        pair: Prg,
    ) -> Result<Self> {
        let link = DealerLink::new(Self::party_index(role)?, dealer);
        Self::with_provider(role, comm, fixed, Box::new(link), pair)
    }

    /// A party whose correlated randomness comes from `corr`, sharing `pair` with the other.
    pub fn with_provider(
        role: Role,
        comm: Communicator,
        fixed: FixedPoint,
        corr: Box<dyn Correlations>,
        pair: Prg,
    ) -> Result<Self> {
        Ok(Self {
            role,
            party: Self::party_index(role)?,
            fixed,
            comm,
            corr,
            pair,
        })
    }

    fn party_index(role: Role) -> Result<usize> {
        ensure!(
            matches!(role, Role::Client | Role::Server),
            "two-party computing parties are client and server, not {role}"
        );
        Ok(role.index())
    }

    /// Open `x + 2^62 + r` and return the public part `P = (c >> d) - 2^(62-d)`, this party's
    /// share of the provider-made `R = (r >> d) - coef msb(r)` (so `trunc(x) = P - R`), with
    /// `coef = (1 - msb(c)) 2^(64-d)`, and with `degree` the material of `R`'s powers, fetched
    /// before the opening; with `cmp`, comparison keys for the same mask (the opening serves both);
    /// with `dealer_addend`, the opened value also includes a term the dealer sends (3pc's
    /// helper holding the third additive term of `x`).
    fn truncation(
        &mut self,
        x: &Share,
        bits: u32,
        req: TruncationRequest,
    ) -> Result<OpenedTruncation> {
        let TruncationRequest {
            degree,
            cmp,
            dealer_addend,
        } = req;
        ensure!(bits > 0 && bits < 62, "truncation by {bits} bits");
        let pair = self.corr.truncation(&mut self.comm, x.shape(), bits)?;
        let mut powers: Vec<(RingTensor, RingTensor)> = Vec::new();
        for _ in 2..=degree {
            let last = powers.last().map_or(&pair.high, |(h, _)| h);
            let next = self
                .corr
                .product(&mut self.comm, Bilinear::Mul, last, &pair.high)?;
            let with_msb = self
                .corr
                .product(&mut self.comm, Bilinear::Mul, last, &pair.msb)?;
            powers.push((next, with_msb));
        }
        let keys = cmp
            .map(|mc| self.corr.comparison(&mut self.comm, mc, &pair.r))
            .transpose()?;
        let r = pair.r;
        let offset = if self.party == 0 {
            1u64 << TRUNCATION_OFFSET_BITS
        } else {
            0
        };
        let masked = Self::mine(x)?.add(&r)?.map(|v| v.wrapping_add(offset));
        // Only `c >> bits` matters, and of a fused comparison's bits those above the ones it
        // ignores: the shares' high bytes alone are sent. The dropped low bytes act as if `x`
        // were a few units lower, which the truncation's and comparison's bounds absorb.
        let ignored = keys.as_ref().map_or(bits, |k| k.mc.ignored_low_bits());
        let dropped = bits.min(ignored).min(TRUNCATION_DROPPED_BITS) / 8;
        let mut c = self.open_high_bytes(&masked, dropped)?;
        if dealer_addend {
            let addend = self.comm.recv(DEALER, x.len(), Phase::Online)?;
            c = c.add(&RingTensor::new(x.shape(), addend)?)?;
        }
        let coef = c.map(|c| (1 - (c >> 63)) << (64 - bits));
        let public = c.map(|c| (c >> bits).wrapping_sub(1 << (TRUNCATION_OFFSET_BITS - bits)));
        let own_mask = pair.high.sub(&pair.msb.mul(&coef)?)?;
        let compare = keys.map(|k| {
            let mask = k.mc.modulus_mask();
            let low = c.map(|c| c.wrapping_sub(1 << TRUNCATION_OFFSET_BITS) & mask);
            (k, low)
        });
        Ok(OpenedTruncation {
            public,
            own_mask,
            coef,
            high: pair.high,
            msb: pair.msb,
            powers,
            compare,
        })
    }

    /// Shares of `[x < t]` per threshold from the opened `x + r mod 2^n`.
    fn comparison_shares(
        &self,
        keys: &ComparisonKeys,
        opened: &RingTensor,
        thresholds: &[u64],
    ) -> Result<Vec<Share>> {
        keys.mc
            .party_shares(
                self.party,
                opened.data(),
                thresholds,
                keys.rho_msb.data(),
                &keys.seeds,
                &keys.cw,
            )
            .into_iter()
            .map(|data| self.own(opened.shape(), RingTensor::new(opened.shape(), data)?))
            .collect()
    }

    /// Truncate `x + h`, where `h` is a term the dealer sends online (3pc: the helper's additive
    /// term of a product), with `h` entering only the opened, masked value.
    pub(crate) fn truncate_with_dealer_addend(&mut self, x: &Share, bits: u32) -> Result<Share> {
        let req = TruncationRequest {
            dealer_addend: true,
            ..Default::default()
        };
        let tr = self.truncation(x, bits, req)?;
        let t = self.plus_public(tr.own_mask.neg(), || Ok(tr.public))?;
        self.own(x.shape(), t)
    }

    fn peer(&self) -> usize {
        1 - self.party
    }

    /// A truncation's output `t = P - R` as a masked value: `P` is public, `-R` is the mask.
    fn truncation_masked(&self, shape: &[usize], tr: OpenedTruncation) -> Result<Masked> {
        let t = self.plus_public(tr.own_mask.neg(), || Ok(tr.public.clone()))?;
        Ok(Masked {
            share: self.own(shape, t)?,
            opened: Some(tr.public),
            mask: Some(tr.own_mask.neg()),
            truncation: Some(TruncationMask {
                coef: Some(tr.coef),
                high: tr.high,
                msb: tr.msb,
                cross: Cross::Vanishes,
            }),
        })
    }

    /// This party's share of the Beaver term `op(a, b)`. For a truncation's mask
    /// `a = -R = c msb(r) - (r >> d)` the provider does not know `c`, so it shares
    /// `op(r >> d, b)` and `op(msb(r), b)` and the parties combine them (element-wise products
    /// only); for two truncation masks `R R' = hh' - c' h m' - c m h'` since `c c' = 0` mod
    /// 2^64 for `d + d' <= 64`.
    fn product_material(&mut self, x: &Masked, y: &Masked, op: Bilinear) -> Result<RingTensor> {
        type Parts<'a> = (&'a RingTensor, &'a RingTensor, &'a RingTensor, Cross);
        fn parts(m: &Masked) -> Result<Option<Parts<'_>>> {
            match &m.truncation {
                Some(TruncationMask {
                    coef: Some(c),
                    high,
                    msb,
                    cross,
                }) => Ok(Some((c, high, msb, *cross))),
                Some(_) => bail!("a party holds no dealer mask"),
                None => Ok(None),
            }
        }
        fn mask(m: &Masked) -> Result<&RingTensor> {
            m.mask
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("share was not masked by 2pc"))
        }
        let (px, py) = (parts(x)?, parts(y)?);
        if px.is_none() && py.is_none() {
            return self.corr.product(&mut self.comm, op, mask(x)?, mask(y)?);
        }
        ensure!(
            op == Bilinear::Mul,
            "a truncation's or a bit's mask serves element-wise products only"
        );
        let comm = &mut self.comm;
        let mut product = |a: &RingTensor, b: &RingTensor| self.corr.product(comm, op, a, b);
        match (px, py) {
            (Some((c, high, msb, _)), None) => {
                let b = mask(y)?;
                let (high, msb) = (product(high, b)?, product(msb, b)?);
                msb.mul(c)?.sub(&high)
            }
            (None, Some((c, high, msb, _))) => {
                let a = mask(x)?;
                let (high, msb) = (product(a, high)?, product(a, msb)?);
                msb.mul(c)?.sub(&high)
            }
            // (c1 m1 - h1)(c2 m2 - h2) = h1 h2 - c2 h1 m2 - c1 m1 h2 + c1 c2 m1 m2.
            (Some((c1, h1, m1, x1)), Some((c2, h2, m2, x2))) => {
                let (hh, hm, mh) = (product(h1, h2)?, product(h1, m2)?, product(m1, h2)?);
                let c12 = c1.mul(c2)?;
                let three = hh.sub(&hm.mul(c2)?)?.sub(&mh.mul(c1)?)?;
                match Cross::either(x1, x2) {
                    Cross::Kept => three.add(&product(m1, m2)?.mul(&c12)?),
                    Cross::Vanishes => {
                        ensure!(
                            c12.data().iter().all(|&c| c == 0),
                            "a product of two truncations' outputs needs their shifts to sum \
                             to at most 64"
                        );
                        Ok(three)
                    }
                }
            }
            (None, None) => unreachable!("handled above"),
        }
    }

    fn mine(x: &Share) -> Result<&RingTensor> {
        x.parts()
            .first()
            .ok_or_else(|| anyhow::anyhow!("share without data"))
    }

    fn own(&self, shape: &[usize], t: RingTensor) -> Result<Share> {
        Share::new(shape, vec![t])
    }

    /// Open several tensors in one round; returns the opened values.
    fn open(&mut self, masked: &[&RingTensor]) -> Result<Vec<RingTensor>> {
        let words: Vec<u64> = masked
            .iter()
            .flat_map(|t| t.data().iter().copied())
            .collect();
        let theirs = self.comm.exchange(self.peer(), &words)?;
        let mut offset = 0;
        masked
            .iter()
            .map(|t| {
                let peer = RingTensor::new(t.shape(), theirs[offset..offset + t.len()].to_vec())?;
                offset += t.len();
                t.add(&peer)
            })
            .collect()
    }

    /// Opens `masked` on its little-endian bytes `range` alone: each party sends those bytes
    /// of its share, and each element is the sum of both shares with their other bytes
    /// cleared. One round.
    fn open_bytes(
        &mut self,
        masked: &RingTensor,
        range: std::ops::Range<usize>,
    ) -> Result<RingTensor> {
        let width = range.len();
        let keep = u64::from_le_bytes(std::array::from_fn(|i| {
            if range.contains(&i) { 0xff } else { 0 }
        }));
        let mut bytes = Vec::with_capacity(masked.len() * width);
        for v in masked.data() {
            bytes.extend_from_slice(&v.to_le_bytes()[range.clone()]);
        }
        let peer = self.peer();
        self.comm.send_bytes(peer, &bytes, Phase::Online)?;
        let theirs =
            self.comm
                .recv_bytes(peer, Expect::Exactly(masked.len() * width), Phase::Online)?;
        let data = masked
            .data()
            .iter()
            .zip(theirs.chunks_exact(width))
            .map(|(&v, c)| {
                let mut w = [0u8; 8];
                w[range.clone()].copy_from_slice(c);
                (v & keep).wrapping_add(u64::from_le_bytes(w))
            })
            .collect();
        RingTensor::new(masked.shape(), data)
    }

    /// Open `masked` up to its low `dropped` bytes: each party sends its share without them,
    /// and the sum of the shortened shares is the value with its low bytes cleared, or one
    /// unit of `2^(8 dropped)` below (the shares' dropped carry). The shares are uniform, so
    /// their high bytes alone reveal nothing either.
    fn open_high_bytes(&mut self, masked: &RingTensor, dropped: u32) -> Result<RingTensor> {
        if dropped == 0 {
            return Ok(self.open(&[masked])?.remove(0));
        }
        self.open_bytes(masked, dropped as usize..8)
    }

    /// Open a tensor whose shares only matter mod `2^bits`, sending `ceil(bits / 8)` bytes per
    /// element; one round.
    fn open_low_bits(&mut self, masked: &RingTensor, bits: u32) -> Result<RingTensor> {
        self.open_bytes(masked, 0..bits.div_ceil(8) as usize)
    }

    /// `t` on party 0, zero on party 1: how a public term enters additive shares.
    fn public_term(&self, t: RingTensor) -> Option<RingTensor> {
        (self.party == 0).then_some(t)
    }

    fn plus_public(
        &self,
        acc: RingTensor,
        t: impl FnOnce() -> Result<RingTensor>,
    ) -> Result<RingTensor> {
        match self.public_term(t()?) {
            Some(p) => acc.add(&p),
            None => Ok(acc),
        }
    }
}

impl Protocol for TwoParty {
    fn kind(&self) -> ProtocolKind {
        ProtocolKind::TwoPartyDealer
    }

    fn role(&self) -> Role {
        self.role
    }

    fn fixed_point(&self) -> FixedPoint {
        self.fixed
    }

    fn comm(&mut self) -> &mut Communicator {
        &mut self.comm
    }

    #[cfg(test)]
    fn streams(&self) -> Vec<super::prg::Stream> {
        let mut streams = self.corr.streams();
        streams.push(self.pair.stream("pair", 0, 1));
        streams
    }

    fn input(&mut self, owner: Role, value: Option<&RingTensor>, shape: &[usize]) -> Result<Share> {
        ensure!(
            matches!(owner, Role::Client | Role::Server),
            "only client or server own inputs"
        );
        let mask = self.pair.ring(shape);
        if owner != self.role {
            return self.own(shape, mask);
        }
        let v = supplied(value, shape, owner)?;
        self.own(shape, v.sub(&mask)?)
    }

    /// The server owns the weight, so it keeps all of it (the client's share is 0) and its mask
    /// `B` comes from the server's PRG with the dealer alone; the server sends `F = W - B` to the
    /// client once (`|W|` words, one way).
    fn weight(&mut self, value: Option<&RingTensor>, shape: &[usize]) -> Result<SecretWeight> {
        let masked = if self.role == Role::Server {
            let w = supplied(value, shape, Role::Server)?;
            let b = self.corr.private_mask(shape);
            let f = w.sub(&b)?;
            self.comm.send(0, f.data(), Phase::Online)?;
            Masked {
                share: self.own(shape, w.clone())?,
                opened: Some(f),
                mask: Some(b),
                truncation: None,
            }
        } else {
            let f = RingTensor::new(shape, self.comm.recv(1, numel(shape), Phase::Online)?)?;
            let zero = RingTensor::zeros(shape);
            Masked {
                share: self.own(shape, zero.clone())?,
                opened: Some(f),
                mask: Some(zero),
                truncation: None,
            }
        };
        Ok(SecretWeight(masked))
    }

    /// One-sided Beaver, as the server knows `W`: the client sends `E = x_c - A` (its own dealer
    /// mask `A`) and nothing comes back; `x W = (A F + C_c) + ((E + x_s) W + C_s)` with
    /// `C = A B`. One message client -> server, `|x|` words; one matmul per party, the client's
    /// independent of the input.
    fn matmul_weight(&mut self, x: &Share, w: &SecretWeight) -> Result<Share> {
        let out_shape = Bilinear::MatMul.shape(x.shape(), w.shape())?;
        let (share, f) = match (&w.0.share.parts().first(), &w.0.opened) {
            (Some(s), Some(f)) => (*s, f),
            _ => bail!("weight was not shared by 2pc-dealer"),
        };
        let own_mask =
            w.0.mask
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("weight without mask"))?;
        let z = if self.party == 0 {
            let a = self.corr.private_mask(x.shape());
            let c = self
                .corr
                .product(&mut self.comm, Bilinear::MatMul, &a, own_mask)?;
            self.comm
                .send(1, Self::mine(x)?.sub(&a)?.data(), Phase::Online)?;
            c.add(&a.matmul(f)?)?
        } else {
            // The client's mask is its own: this party's share of it is 0.
            let zero = RingTensor::zeros(x.shape());
            let c = self
                .corr
                .product(&mut self.comm, Bilinear::MatMul, &zero, own_mask)?;
            let e = RingTensor::new(x.shape(), self.comm.recv(0, x.len(), Phase::Online)?)?;
            c.add(&e.add(Self::mine(x)?)?.matmul(share)?)?
        };
        self.own(&out_shape, z)
    }

    fn reveal(&mut self, x: &Share, to: Option<Role>) -> Result<Option<RingTensor>> {
        let mine = Self::mine(x)?;
        match to {
            None => Ok(Some(self.open(&[mine])?.remove(0))),
            Some(r) if r == self.role => {
                let theirs = self.comm.recv(self.peer(), x.len(), Phase::Online)?;
                Ok(Some(mine.add(&RingTensor::new(x.shape(), theirs)?)?))
            }
            Some(Role::Client | Role::Server) => {
                self.comm.send(self.peer(), mine.data(), Phase::Online)?;
                Ok(None)
            }
            Some(r) => bail!("cannot reveal to {r} in 2pc-dealer"),
        }
    }

    fn add_public(&mut self, x: &Share, c: &RingTensor) -> Result<Share> {
        let out = self.plus_public(Self::mine(x)?.clone(), || Ok(c.clone()))?;
        self.own(x.shape(), out)
    }

    /// Open `E = x - a` for a fresh dealer mask `a`: one round, `|x|` words each way.
    fn mask(&mut self, xs: &[&Share]) -> Result<Vec<Masked>> {
        let masks: Vec<RingTensor> = xs.iter().map(|x| self.corr.mask(x.shape())).collect();
        let masked = xs
            .iter()
            .zip(&masks)
            .map(|(x, a)| Self::mine(x)?.sub(a))
            .collect::<Result<Vec<_>>>()?;
        let opened = self.open(&masked.iter().collect::<Vec<_>>())?;
        Ok(xs
            .iter()
            .zip(masks)
            .zip(opened)
            .map(|((x, a), e)| Masked {
                share: (*x).clone(),
                opened: Some(e),
                mask: Some(a),
                truncation: None,
            })
            .collect())
    }

    /// Values as in [`Protocol::mask`]; each bit `b` against a provider's bit `rho`, held as
    /// xor shares (low bits) and additive shares: the parties swap `(b_i xor rho_i) & 1`, packed, in the same message as
    /// the values' `x - a`. With `b^ = b xor rho` public, `b = b^ + (1 - 2 b^) rho`: the
    /// mask `c m - h` of [`TruncationMask`] with `c = -2 b^`, `m = rho`, `h = -rho`.
    fn mask_with_bits(
        &mut self,
        values: &[&Share],
        bits: &[&Share],
    ) -> Result<(Vec<Masked>, Vec<Masked>)> {
        let masks: Vec<RingTensor> = values.iter().map(|x| self.corr.mask(x.shape())).collect();
        let rho = bits
            .iter()
            .map(|b| self.corr.bit_mask(&mut self.comm, b.shape()))
            .collect::<Result<Vec<_>>>()?;
        let mut bytes = Vec::new();
        for (x, a) in values.iter().zip(&masks) {
            for v in Self::mine(x)?.sub(a)?.data() {
                bytes.extend_from_slice(&v.to_le_bytes());
            }
        }
        let own_bits: Vec<u8> = bits
            .iter()
            .zip(&rho)
            .map(|(b, rho)| {
                Ok(Self::mine(b)?
                    .data()
                    .iter()
                    .zip(rho.xor.data())
                    .map(|(&s, &r)| ((s ^ r) & 1) as u8)
                    .collect::<Vec<u8>>())
            })
            .collect::<Result<Vec<_>>>()?
            .concat();
        let value_bytes = bytes.len();
        bytes.extend(own_bits.chunks(8).map(|c| {
            c.iter()
                .enumerate()
                .fold(0u8, |acc, (i, &bit)| acc | (bit << i))
        }));
        let peer = self.peer();
        self.comm.send_bytes(peer, &bytes, Phase::Online)?;
        let theirs = self
            .comm
            .recv_bytes(peer, Expect::Exactly(bytes.len()), Phase::Online)?;
        let mut words = theirs[..value_bytes]
            .chunks_exact(8)
            .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")));
        let mut out_values = Vec::with_capacity(values.len());
        for (x, a) in values.iter().zip(masks) {
            let peer_part = RingTensor::new(x.shape(), words.by_ref().take(x.len()).collect())?;
            let e = Self::mine(x)?.sub(&a)?.add(&peer_part)?;
            out_values.push(Masked {
                share: (*x).clone(),
                opened: Some(e),
                mask: Some(a),
                truncation: None,
            });
        }
        let peer_bits = &theirs[value_bytes..];
        let mut at = 0;
        let mut out_bits = Vec::with_capacity(bits.len());
        for (b, rho) in bits.iter().zip(rho) {
            let opened: Vec<u64> = (at..at + b.len())
                .map(|i| u64::from(own_bits[i] ^ ((peer_bits[i / 8] >> (i % 8)) & 1)))
                .collect();
            at += b.len();
            let opened = RingTensor::new(b.shape(), opened)?;
            let coef = opened.map(|o| o.wrapping_mul(2).wrapping_neg());
            out_bits.push(Masked {
                share: (*b).clone(),
                mask: Some(rho.arith.add(&rho.arith.mul(&coef)?)?),
                opened: Some(opened),
                truncation: Some(TruncationMask {
                    coef: Some(coef),
                    high: rho.arith.neg(),
                    msb: rho.arith,
                    cross: Cross::Kept,
                }),
            });
        }
        Ok((out_values, out_bits))
    }

    /// Beaver: `z = c + op(E, b) + op(a, F) + op(E, F)` with `c = op(a, b)` from the provider.
    /// No communication.
    fn product(&mut self, x: &Masked, y: &Masked, op: Bilinear) -> Result<Share> {
        let parts = |m: &Masked| -> Result<(RingTensor, RingTensor)> {
            match (&m.opened, &m.mask) {
                (Some(e), Some(a)) => Ok((e.clone(), a.clone())),
                _ => bail!("share was not masked by 2pc-dealer"),
            }
        };
        let ((e, a), (f, b)) = (parts(x)?, parts(y)?);
        let out_shape = op.shape(x.shape(), y.shape())?;
        let c = self.product_material(x, y, op)?;
        // op(E, F) joins party 0's op(a, F) as op(a + E, F): two products per party.
        let a = match self.public_term(e.clone()) {
            Some(e) => a.add(&e)?,
            None => a,
        };
        let z = c.add(&op.apply(&e, &b)?)?.add(&op.apply(&a, &f)?)?;
        self.own(&out_shape, z)
    }

    /// Dealer-assisted truncation, one round: open `c = x + 2^62 + r` for a uniform `r`; with
    /// `x + 2^62 < 2^63` the wrap bit is `msb(r) * (1 - msb(c))`, so
    /// `floor((x + 2^62) / 2^d) = (c >> d) - (r >> d) + wrap * 2^(64-d) - carry`, and the
    /// dropped carry makes the result at most one unit high (and `c`'s opening without its low
    /// bytes, see [`TRUNCATION_DROPPED_BITS`], at most one unit low). The dealer shares `r >> d` and
    /// `msb(r)`.
    fn truncate(&mut self, x: &Share, bits: u32) -> Result<Share> {
        let tr = self.truncation(x, bits, TruncationRequest::default())?;
        let t = self.plus_public(tr.own_mask.neg(), || Ok(tr.public))?;
        self.own(x.shape(), t)
    }

    fn truncate_masked(&mut self, x: &Share, bits: u32) -> Result<Masked> {
        let tr = self.truncation(x, bits, TruncationRequest::default())?;
        self.truncation_masked(x.shape(), tr)
    }

    /// The truncation above, whose output `t = P - R` (public `P`, dealer-known `R`) is also
    /// raised to its powers in the same round: `t^k = sum_j C(k,j) P^(k-j) (-R)^j`, where
    /// `R = (r >> d) - c msb(r)` with public `c` in `{0, 2^(64-d)}`, so that `c^2 = 0` mod 2^64
    /// for `d <= 32` and `R^j = (r>>d)^j - j c (r>>d)^(j-1) msb(r)`: linear in the provider's
    /// shares of `(r>>d)^j` and `(r>>d)^(j-1) msb(r)`.
    fn truncate_powers(&mut self, x: &Share, bits: u32, degree: usize) -> Result<Vec<Share>> {
        ensure!(bits <= 32, "fused truncate-powers needs bits <= 32");
        ensure!(degree >= 1, "powers up to degree 0");
        let req = TruncationRequest {
            degree,
            ..Default::default()
        };
        let tr = self.truncation(x, bits, req)?;
        // R^j shares, j = 1..=degree.
        let mut r_pow = vec![tr.own_mask.clone()];
        for (high_pow, high_pow_msb) in &tr.powers {
            let j = r_pow.len() as u64 + 1;
            r_pow.push(high_pow.sub(&high_pow_msb.mul(&tr.coef)?.scale(j))?);
        }
        // Per element: sum_{j>=1} C(k,j) P^(k-j) (-R)^j, plus P^k at party 0; one pass.
        let binom: Vec<Vec<u64>> = (0..=degree as u64)
            .map(|k| {
                (0..=k)
                    .scan(1u64, |c, j| {
                        let v = *c;
                        *c = *c * (k - j) / (j + 1);
                        Some(v)
                    })
                    .collect()
            })
            .collect();
        let first = self.party == 0;
        let n = x.len();
        let mut data = vec![vec![0u64; n]; degree];
        let mut p_pow = vec![1u64; degree + 1];
        for i in 0..n {
            let pub_i = tr.public.data()[i];
            for e in 1..=degree {
                p_pow[e] = p_pow[e - 1].wrapping_mul(pub_i);
            }
            for (k, out) in data.iter_mut().enumerate().map(|(k, o)| (k + 1, o)) {
                let mut acc = if first { p_pow[k] } else { 0 };
                for (j, rj) in r_pow.iter().enumerate().take(k).map(|(j, r)| (j + 1, r)) {
                    let term = binom[k][j]
                        .wrapping_mul(p_pow[k - j])
                        .wrapping_mul(rj.data()[i]);
                    acc = if j % 2 == 1 {
                        acc.wrapping_sub(term)
                    } else {
                        acc.wrapping_add(term)
                    };
                }
                out[i] = acc;
            }
        }
        let out = data
            .into_iter()
            .map(|d| self.own(x.shape(), RingTensor::new(x.shape(), d)?))
            .collect::<Result<Vec<_>>>()?;
        Ok(out)
    }

    /// The truncation's opening doubles as the comparison's (same mask): one round, 1 word.
    fn truncate_less_than(
        &mut self,
        x: &Share,
        bits: u32,
        thresholds: &[u64],
        cmp: Comparison,
    ) -> Result<(Masked, Vec<Share>)> {
        let mc = MaskedCompare::new(cmp)?;
        let req = TruncationRequest {
            cmp: Some(mc),
            ..Default::default()
        };
        let mut tr = self.truncation(x, bits, req)?;
        let (keys, low) = tr.compare.take().expect("requested");
        let lt = self.comparison_shares(&keys, &low, thresholds)?;
        Ok((self.truncation_masked(x.shape(), tr)?, lt))
    }

    /// One opening of `x + r mod 2^bits`, then one DCF evaluation per element and threshold
    /// (see `compare::MaskedCompare`).
    fn less_than(&mut self, x: &Share, thresholds: &[u64], cmp: Comparison) -> Result<Vec<Share>> {
        let mc = MaskedCompare::new(cmp)?;
        let r = self.corr.mask(x.shape());
        let keys = self.corr.comparison(&mut self.comm, mc, &r)?;
        let mask = mc.modulus_mask();
        let masked = Self::mine(x)?.add(&r)?.map(|v| v & mask);
        let opened = self.open_low_bits(&masked, cmp.bits)?.map(|v| v & mask);
        self.comparison_shares(&keys, &opened, thresholds)
    }
}
