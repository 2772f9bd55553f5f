//! 3pc: 2-of-3 replicated sharing among client (0), server (1) and helper (2), honest
//! majority, semi-honest. `x = x0 + x1 + x2`; party `i` holds `(x_i, x_{i+1})`.
//!
//! - Products: each party computes its 3-of-3 term plus a zero share from pairwise PRGs
//!   (`F(k_i) - F(k_{i-1})`), then reshares to its predecessor: one round, `|z|` words each.
//! - Truncation and comparison: the helper acts as the dealer of 2pc-dealer for client and
//!   server. Client and server view the secret as 2-of-2 (`x0 + x1`, `x2`), run the one-round
//!   dealer truncation / DCF comparison among themselves (the helper sees nothing of it), and
//!   reshare the 2-of-2 result to replicated form (one more round, in which the helper only
//!   receives values masked by a client–server PRG). This is sound because no two parties
//!   collude: the helper knows the masks but never a masked value, client and server see only
//!   masked values.
//! - A product followed by a truncation skips the product's resharing: its 3-of-3 terms enter
//!   the truncation's opening directly (two rounds in all).
//! - Comparison is therefore not by bit decomposition but by the helper's DCF keys: one round
//!   plus the resharing, and far fewer bytes.

use super::comm::{Communicator, Phase};
use super::fixed::FixedPoint;
use super::prg::{Prg, SEED_BYTES, Seed};
use super::protocol::{
    Bilinear, Comparison, Masked, Protocol, ProtocolKind, Role, SecretWeight, combine_bits,
    supplied,
};
use super::provider::dealer::Dealer;
use super::ring::{RingTensor, numel};
use super::share::Share;
use super::transport::Expect;
use super::two_party::TwoParty;
use anyhow::{Result, bail, ensure};

/// Stream tags for deriving independent PRGs from one pairwise seed.
const ZERO_STREAM: u64 = 1;
const MATERIAL_STREAM: u64 = 2;
const PAIR_STREAM: u64 = 3;

/// The 2pc-dealer machinery this party takes part in for truncation and comparison.
enum Inner {
    Party(Box<TwoParty>),
    Helper(Box<Dealer>),
}

pub struct Replicated {
    party: usize,
    inner: Inner,
    /// Zero-sharing PRGs with the next and the previous party.
    next: Prg,
    prev: Prg,
    /// Client and server: the PRG they share (for resharing towards the helper).
    pair: Option<Prg>,
}

impl Replicated {
    /// Setup: party `i` draws `k_i`, sends it to party `i + 1` and receives `k_{i-1}`.
    pub fn new(
        role: Role,
        mut comm: Communicator,
        fixed: FixedPoint,
        rng: &mut Prg,
    ) -> Result<Self> {
        ensure!(role != Role::Dealer, "3pc has a helper, not a dealer");
        let party = role.index();
        let own: Seed = rng.seed();
        comm.send_bytes((party + 1) % 3, &own, Phase::Offline)?;
        let prev_seed = Prg::seed_from_bytes(comm.recv_bytes(
            (party + 2) % 3,
            Expect::Exactly(SEED_BYTES),
            Phase::Offline,
        )?)?;
        let material = |s: &Seed| Prg::derive(s, MATERIAL_STREAM);
        let (inner, pair) = match party {
            // The client's link to the helper is k_2 (its previous), the server's is k_1 (its
            // next); client and server share k_0.
            0 => (
                Inner::Party(Box::new(TwoParty::from_parts(
                    role,
                    comm,
                    fixed,
                    material(&prev_seed),
                    Prg::derive(&own, PAIR_STREAM),
                )?)),
                Some(Prg::derive(&own, PAIR_STREAM + 1)),
            ),
            1 => (
                Inner::Party(Box::new(TwoParty::from_parts(
                    role,
                    comm,
                    fixed,
                    material(&own),
                    Prg::derive(&prev_seed, PAIR_STREAM),
                )?)),
                Some(Prg::derive(&prev_seed, PAIR_STREAM + 1)),
            ),
            _ => (
                Inner::Helper(Box::new(Dealer::from_parts(
                    comm,
                    fixed,
                    material(&own),
                    material(&prev_seed),
                ))),
                None,
            ),
        };
        Ok(Self {
            party,
            inner,
            next: Prg::derive(&own, ZERO_STREAM),
            prev: Prg::derive(&prev_seed, ZERO_STREAM),
            pair,
        })
    }

    /// This party's 3-of-3 additive term of `op(x, y)`:
    /// `z_i = op(x_i, y_i + y_{i+1}) + op(x_{i+1}, y_i)` plus its zero share.
    fn local_term(&mut self, x: &Masked, y: &Masked, op: Bilinear) -> Result<RingTensor> {
        let (x0, x1) = Self::parts(&x.share)?;
        let (y0, y1) = Self::parts(&y.share)?;
        let shape = op.shape(x.shape(), y.shape())?;
        let zero = self.next.ring(&shape).sub(&self.prev.ring(&shape))?;
        op.apply(x0, &y0.add(y1)?)?
            .add(&op.apply(x1, y0)?)?
            .add(&zero)
    }

    fn proto(&mut self) -> &mut dyn Protocol {
        match &mut self.inner {
            Inner::Party(p) => p.as_mut(),
            Inner::Helper(d) => d.as_mut(),
        }
    }

    fn parts(x: &Share) -> Result<(&RingTensor, &RingTensor)> {
        match x.parts() {
            [a, b] => Ok((a, b)),
            _ => bail!("not a replicated share"),
        }
    }

    fn replicated(shape: &[usize], a: RingTensor, b: RingTensor) -> Result<Share> {
        Share::new(shape, vec![a, b])
    }

    /// Client and server's 2-of-2 view `(x0 + x1, x2)`; the helper follows by shape.
    fn as_additive(&self, x: &Share) -> Result<Share> {
        match self.party {
            0 => {
                let (a, b) = Self::parts(x)?;
                Share::new(x.shape(), vec![a.add(b)?])
            }
            1 => Share::new(x.shape(), vec![Self::parts(x)?.1.clone()]),
            _ => Share::new(x.shape(), vec![]),
        }
    }

    /// Back from client / server 2-of-2 `y` to replicated: with `s1`, `m` from the client–server
    /// PRG, `s0 = y_c - s1 + m`, `s2 = y_s - m`, both sent to the helper. One round.
    fn reshare_additive(&mut self, ys: &[Share]) -> Result<Vec<Share>> {
        match self.party {
            0 | 1 => {
                let mut out = Vec::with_capacity(ys.len());
                let mut to_helper = Vec::new();
                for y in ys {
                    let pair = self.pair.as_mut().expect("client and server share a PRG");
                    let s1 = pair.ring(y.shape());
                    let m = pair.ring(y.shape());
                    let mine = &y.parts()[0];
                    if self.party == 0 {
                        let s0 = mine.sub(&s1)?.add(&m)?;
                        to_helper.extend_from_slice(s0.data());
                        out.push(Self::replicated(y.shape(), s0, s1)?);
                    } else {
                        let s2 = mine.sub(&m)?;
                        to_helper.extend_from_slice(s2.data());
                        out.push(Self::replicated(y.shape(), s1, s2)?);
                    }
                }
                self.comm().send(2, &to_helper, Phase::Online)?;
                Ok(out)
            }
            _ => {
                let comm = self.proto().comm();
                let total: usize = ys.iter().map(Share::len).sum();
                let s0 = comm.recv(0, total, Phase::Online)?;
                let s2 = comm.recv(1, total, Phase::Online)?;
                let mut offset = 0;
                ys.iter()
                    .map(|y| {
                        let n = y.len();
                        let a = RingTensor::new(y.shape(), s2[offset..offset + n].to_vec())?;
                        let b = RingTensor::new(y.shape(), s0[offset..offset + n].to_vec())?;
                        offset += n;
                        Self::replicated(y.shape(), a, b)
                    })
                    .collect()
            }
        }
    }
}

impl Protocol for Replicated {
    fn kind(&self) -> ProtocolKind {
        ProtocolKind::ThreeParty
    }

    fn role(&self) -> Role {
        ProtocolKind::ThreeParty.roles()[self.party]
    }

    fn fixed_point(&self) -> FixedPoint {
        match &self.inner {
            Inner::Party(p) => p.fixed_point(),
            Inner::Helper(d) => d.fixed_point(),
        }
    }

    fn comm(&mut self) -> &mut Communicator {
        self.proto().comm()
    }

    /// The helper-dealt protocol's streams, the zero-sharing streams with both neighbours and
    /// client and server's resharing stream.
    #[cfg(test)]
    fn streams(&self) -> Vec<super::prg::Stream> {
        let me = self.party;
        let mut streams = match &self.inner {
            Inner::Party(p) => p.streams(),
            Inner::Helper(d) => d.streams(),
        };
        streams.push(self.next.stream("zero", me, (me + 1) % 3));
        streams.push(self.prev.stream("zero", (me + 2) % 3, me));
        streams.extend(self.pair.as_ref().map(|p| p.stream("reshare", 0, 1)));
        streams
    }

    /// The owner `o` takes `x_{o+1}` and `x_o` from its PRGs with its neighbours and sends
    /// `x_{o+2} = v - x_o - x_{o+1}` to both others: `2 |x|` words, one message each.
    fn input(&mut self, owner: Role, value: Option<&RingTensor>, shape: &[usize]) -> Result<Share> {
        ensure!(
            matches!(owner, Role::Client | Role::Server),
            "only client or server own inputs"
        );
        let o = owner.index();
        let me = self.party;
        if me == o {
            let v = supplied(value, shape, owner)?;
            let x_next = self.next.ring(shape);
            let x_own = self.prev.ring(shape);
            let x_last = v.sub(&x_own)?.sub(&x_next)?;
            for to in [(o + 1) % 3, (o + 2) % 3] {
                self.comm().send(to, x_last.data(), Phase::Online)?;
            }
            Self::replicated(shape, x_own, x_next)
        } else {
            let last = RingTensor::new(shape, self.comm().recv(o, numel(shape), Phase::Online)?)?;
            if me == (o + 1) % 3 {
                let mine = self.prev.ring(shape);
                Self::replicated(shape, mine, last)
            } else {
                let next = self.next.ring(shape);
                Self::replicated(shape, last, next)
            }
        }
    }

    /// Target `t` gets the share it lacks, `x_{t+2}`, from party `t + 1`.
    fn reveal(&mut self, x: &Share, to: Option<Role>) -> Result<Option<RingTensor>> {
        let targets: Vec<usize> = match to {
            None => vec![0, 1],
            Some(r @ (Role::Client | Role::Server)) => vec![r.index()],
            Some(r) => bail!("cannot reveal to {r} in 3pc"),
        };
        let (a, b) = Self::parts(x)?;
        let (a, b) = (a.clone(), b.clone());
        for &t in &targets {
            if self.party == (t + 1) % 3 {
                self.comm().send(t, b.data(), Phase::Online)?;
            }
        }
        if targets.contains(&self.party) {
            let from = (self.party + 1) % 3;
            let missing = self.comm().recv(from, x.len(), Phase::Online)?;
            let missing = RingTensor::new(x.shape(), missing)?;
            return Ok(Some(a.add(&b)?.add(&missing)?));
        }
        Ok(None)
    }

    /// The constant joins share `x0` (held by client and helper).
    fn add_public(&mut self, x: &Share, c: &RingTensor) -> Result<Share> {
        let (a, b) = Self::parts(x)?;
        match self.party {
            0 => Self::replicated(x.shape(), a.add(c)?, b.clone()),
            2 => Self::replicated(x.shape(), a.clone(), b.add(c)?),
            _ => Ok(x.clone()),
        }
    }

    fn mask(&mut self, xs: &[&Share]) -> Result<Vec<Masked>> {
        Ok(xs
            .iter()
            .map(|x| Masked {
                share: (*x).clone(),
                opened: None,
                mask: None,
                truncation: None,
            })
            .collect())
    }

    /// This party's 3-of-3 term `z_i` goes to party `i - 1`: one round, `|z|` words each.
    fn product(&mut self, x: &Masked, y: &Masked, op: Bilinear) -> Result<Share> {
        let z = self.local_term(x, y, op)?;
        let (prev, next) = ((self.party + 2) % 3, (self.party + 1) % 3);
        self.comm().send(prev, z.data(), Phase::Online)?;
        let shape = z.shape().to_vec();
        let z_next = RingTensor::new(&shape, self.comm().recv(next, z.len(), Phase::Online)?)?;
        Self::replicated(&shape, z, z_next)
    }

    /// The products' 3-of-3 terms go straight into the truncation's opening: client and server
    /// open `z_c + r_c` and `z_s + r_s` to each other while the helper sends them `z_h` (masked
    /// by a zero share they cannot both remove), then the 2-of-2 result is reshared. Two rounds
    /// instead of three.
    fn product_truncate(
        &mut self,
        pairs: &[(&Masked, &Masked)],
        op: Bilinear,
        bits: u32,
    ) -> Result<Vec<Share>> {
        let terms = pairs
            .iter()
            .map(|(x, y)| self.local_term(x, y, op))
            .collect::<Result<Vec<_>>>()?;
        let shapes: Vec<Share> = terms
            .iter()
            .map(|t| Share::new(t.shape(), vec![]))
            .collect::<Result<_>>()?;
        let flat: Vec<u64> = terms
            .iter()
            .flat_map(|t| t.data().iter().copied())
            .collect();
        let n = flat.len();
        let t = match &mut self.inner {
            Inner::Party(party) => {
                let z = Share::new(&[n], vec![RingTensor::new(&[n], flat)?])?;
                party.truncate_with_dealer_addend(&z, bits)?
            }
            Inner::Helper(dealer) => {
                let t = dealer.truncate(&Share::new(&[n], vec![])?, bits)?;
                for to in [0, 1] {
                    dealer.comm().send(to, &flat, Phase::Online)?;
                }
                t
            }
        };
        self.reshare_additive(&[t])?.remove(0).split_flat(&shapes)
    }

    fn matmul_weight_truncate(&mut self, x: &Share, w: &SecretWeight, bits: u32) -> Result<Share> {
        let m = self.mask(&[x])?.remove(0);
        Ok(self
            .product_truncate(&[(&m, &w.0)], Bilinear::MatMul, bits)?
            .remove(0))
    }

    fn truncate(&mut self, x: &Share, bits: u32) -> Result<Share> {
        let additive = self.as_additive(x)?;
        let t = self.proto().truncate(&additive, bits)?;
        Ok(self.reshare_additive(&[t])?.remove(0))
    }

    fn truncate_powers(&mut self, x: &Share, bits: u32, degree: usize) -> Result<Vec<Share>> {
        let additive = self.as_additive(x)?;
        let pows = self.proto().truncate_powers(&additive, bits, degree)?;
        self.reshare_additive(&pows)
    }

    /// The fused powers inside the helper-dealt protocol; only the square is reshared.
    fn truncate_square(&mut self, x: &Share, bits: u32) -> Result<Share> {
        let additive = self.as_additive(x)?;
        let square = self.proto().truncate_powers(&additive, bits, 2)?.remove(1);
        Ok(self.reshare_additive(&[square])?.remove(0))
    }

    fn truncate_less_than(
        &mut self,
        x: &Share,
        bits: u32,
        thresholds: &[u64],
        cmp: Comparison,
    ) -> Result<(Masked, Vec<Share>)> {
        let additive = self.as_additive(x)?;
        let (t, lt) = self
            .proto()
            .truncate_less_than(&additive, bits, thresholds, cmp)?;
        let mut all = self.reshare_additive(&[vec![t.share], lt].concat())?;
        let t = all.remove(0);
        Ok((self.mask(&[&t])?.remove(0), all))
    }

    /// The powers stay client–server 2-of-2 inside the helper-dealt protocol, and only the
    /// polynomial's value is reshared: one resharing instead of one per power.
    fn truncate_polynomial(
        &mut self,
        x: &Share,
        bits: u32,
        coef: &[u64],
        out_bits: u32,
    ) -> Result<Masked> {
        let additive = self.as_additive(x)?;
        let y = self
            .proto()
            .truncate_polynomial(&additive, bits, coef, out_bits)?;
        let y = self.reshare_additive(&[y.share])?.remove(0);
        Ok(self.mask(&[&y])?.remove(0))
    }

    /// The combinations are formed on the 2-of-2 bits; only they are reshared.
    fn less_than_combined(
        &mut self,
        x: &Share,
        thresholds: &[u64],
        cmp: Comparison,
        weights: &[Vec<u64>],
    ) -> Result<Vec<Share>> {
        let additive = self.as_additive(x)?;
        let bits = self.proto().less_than(&additive, thresholds, cmp)?;
        self.reshare_additive(&combine_bits(&bits, weights)?)
    }

    fn truncate_less_than_combined(
        &mut self,
        x: &Share,
        bits: u32,
        thresholds: &[u64],
        cmp: Comparison,
        weights: &[Vec<u64>],
    ) -> Result<(Masked, Vec<Share>)> {
        let additive = self.as_additive(x)?;
        let (t, lt) = self
            .proto()
            .truncate_less_than(&additive, bits, thresholds, cmp)?;
        let mut all =
            self.reshare_additive(&[vec![t.share], combine_bits(&lt, weights)?].concat())?;
        let t = all.remove(0);
        Ok((self.mask(&[&t])?.remove(0), all))
    }

    fn less_than(&mut self, x: &Share, thresholds: &[u64], cmp: Comparison) -> Result<Vec<Share>> {
        let additive = self.as_additive(x)?;
        let bits = self.proto().less_than(&additive, thresholds, cmp)?;
        self.reshare_additive(&bits)
    }
}
