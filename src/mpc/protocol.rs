//! The one protocol interface every MPC protocol implements, and the types it speaks.

use super::comm::Communicator;
use super::fixed::FixedPoint;
use super::ring::RingTensor;
use super::share::Share;
// Where every user of the protocol has always found it.
pub use super::role::Role;
use anyhow::{Result, ensure};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The implemented protocols.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProtocolKind {
    /// Additive 2-of-2 sharing between client and server, a dealer supplies correlated randomness.
    TwoPartyDealer,
    /// 2-of-3 replicated sharing among client, server and helper (honest majority).
    ThreeParty,
}

impl ProtocolKind {
    pub const ALL: [ProtocolKind; 2] = [ProtocolKind::TwoPartyDealer, ProtocolKind::ThreeParty];

    pub fn name(self) -> &'static str {
        match self {
            ProtocolKind::TwoPartyDealer => "2pc-dealer",
            ProtocolKind::ThreeParty => "3pc",
        }
    }

    /// The roles that run, in party-index order.
    pub fn roles(self) -> [Role; 3] {
        match self {
            ProtocolKind::TwoPartyDealer => [Role::Client, Role::Server, Role::Dealer],
            ProtocolKind::ThreeParty => [Role::Client, Role::Server, Role::Helper],
        }
    }
}

impl FromStr for ProtocolKind {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        ProtocolKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown protocol {s:?} (2pc-dealer, 3pc)"))
    }
}

impl fmt::Display for ProtocolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A bilinear map that secret x secret products are computed for (Beaver-style protocols
/// handle any bilinear map the same way).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bilinear {
    /// Element-wise product, numpy broadcasting between equal-rank shapes.
    Mul,
    /// `[.., m, k] x [k, n]` or batched `[b, m, k] x [b, k, n]`.
    MatMul,
}

impl Bilinear {
    pub fn apply(self, a: &RingTensor, b: &RingTensor) -> Result<RingTensor> {
        match self {
            Bilinear::Mul => a.mul(b),
            Bilinear::MatMul => a.matmul(b),
        }
    }

    pub fn shape(self, a: &[usize], b: &[usize]) -> Result<Vec<usize>> {
        match self {
            Bilinear::Mul => super::ring::broadcast_shape(a, b),
            Bilinear::MatMul => super::ring::matmul_shape(a, b),
        }
    }
}

/// Precision of a secret comparison `[x < t]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Comparison {
    /// `|x - t|` must be below `2^(bits-1) - 2^ignored_low_bits` (raw ring units).
    pub bits: u32,
    /// Results for `x - t` in `[-2^ignored_low_bits, 0)` may come out as "not less"; ignoring low
    /// bits makes the comparison cheaper. 0 gives an exact comparison.
    pub ignored_low_bits: u32,
}

/// A share prepared for products: in Beaver-style protocols its masked value `x - a` has been
/// opened once, so any number of products with it need no further opening of `x` (weights,
/// polynomial powers, squares). Protocols without masks just keep the share.
#[derive(Clone, Debug)]
pub struct Masked {
    pub(crate) share: Share,
    /// 2pc-dealer: the opened `x - a`.
    pub(crate) opened: Option<RingTensor>,
    /// 2pc-dealer: this party's share of `a` (the dealer: all of `a`).
    pub(crate) mask: Option<RingTensor>,
    /// 2pc-dealer: `a` is a truncation's `-R = c msb(r) - (r >> d)` rather than a fresh mask,
    /// so the truncation's opening served as this value's: products with it take their
    /// dealer material in these parts.
    pub(crate) truncation: Option<TruncationMask>,
}

/// A mask of the form `a = c m - h` with public `c` and provider-made `h`, `m`: a truncation's
/// `-R`, `R = (r >> d) - c msb(r)` with `c` in `{0, 2^(64-d)}`, or a bit's
/// `(1 - 2 b^) rho = -2 b^ rho + rho` for the opened `b^ = b xor rho` (`h = -rho`, `m = rho`).
#[derive(Clone, Debug)]
pub(crate) struct TruncationMask {
    /// `c`, known to the computing parties (not to a dealer).
    pub coef: Option<RingTensor>,
    /// This party's shares of `h` and `m` (a dealer's: all of them).
    pub high: RingTensor,
    pub msb: RingTensor,
    pub cross: Cross,
}

impl TruncationMask {
    fn map(&self, f: impl Fn(&RingTensor) -> Result<RingTensor>, coef_too: bool) -> Result<Self> {
        Ok(TruncationMask {
            coef: match &self.coef {
                Some(c) if coef_too => Some(f(c)?),
                other => other.clone(),
            },
            high: f(&self.high)?,
            msb: f(&self.msb)?,
            cross: self.cross,
        })
    }
}

/// Whether `c c'` vanishes for two such masks: a truncation's coefficients are multiples of
/// `2^(64-d)` (products vanish for `d + d' <= 64`), a bit's `2 b^` are not, so products with
/// a bit's mask also take the dealer's `m m'`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cross {
    Vanishes,
    Kept,
}

impl Cross {
    pub(crate) fn either(a: Cross, b: Cross) -> Cross {
        if a == Cross::Kept || b == Cross::Kept {
            Cross::Kept
        } else {
            Cross::Vanishes
        }
    }
}

impl Masked {
    pub fn shape(&self) -> &[usize] {
        self.share.shape()
    }

    pub fn share(&self) -> &Share {
        &self.share
    }

    /// The same masked value in another shape of as many elements (local).
    pub fn reshape(&self, shape: &[usize]) -> Result<Masked> {
        let re = |t: &Option<RingTensor>| t.as_ref().map(|t| t.reshape(shape)).transpose();
        Ok(Masked {
            share: self.share.reshape(shape)?,
            opened: re(&self.opened)?,
            mask: re(&self.mask)?,
            truncation: self
                .truncation
                .as_ref()
                .map(|t| t.map(|v| v.reshape(shape), true))
                .transpose()?,
        })
    }

    /// `L x` for a linear map `L` of shares (reshaping, permuting, selecting or repeating
    /// entries, summing), still masked: `L` applied alike to the share, the opened value and
    /// the mask keeps `x = E + a` and so every product with it, and its opening is not
    /// repeated. Local. A truncation's mask is not carried (its public coefficient would need
    /// the same map).
    pub fn relayout(&self, map: impl Fn(&Share) -> Result<Share>) -> Result<Masked> {
        Masked::combine(&[self], |s| map(s[0]))
    }

    /// `map` of several masked values (e.g. joining them), applied alike to their shares,
    /// opened values and masks, each once. Local; as [`Masked::relayout`], `map` must be
    /// linear and no truncation's mask is carried.
    pub fn combine(xs: &[&Masked], map: impl Fn(&[&Share]) -> Result<Share>) -> Result<Masked> {
        ensure!(
            xs.iter().all(|x| x.truncation.is_none()),
            "a truncation's or a bit's mask cannot be moved"
        );
        let shares: Vec<&Share> = xs.iter().map(|x| &x.share).collect();
        let share = map(&shares)?;
        let part = |get: fn(&Masked) -> &Option<RingTensor>| -> Result<Option<RingTensor>> {
            let tensors: Vec<&RingTensor> = xs.iter().filter_map(|x| get(x).as_ref()).collect();
            if tensors.is_empty() {
                return Ok(None);
            }
            ensure!(
                tensors.len() == xs.len(),
                "values masked by different protocols"
            );
            let lifted = tensors
                .iter()
                .map(|t| Share::new(t.shape(), vec![(*t).clone()]))
                .collect::<Result<Vec<_>>>()?;
            let moved = map(&lifted.iter().collect::<Vec<_>>())?;
            Ok(moved.into_parts().pop())
        };
        Ok(Masked {
            opened: part(|x| &x.opened)?,
            mask: part(|x| &x.mask)?,
            share,
            truncation: None,
        })
    }

    /// `x * c` for a public tensor `c` of `x`'s shape, still masked: the share, the opened
    /// value and the mask (and a truncation mask's `h` and `m`; its public coefficient is
    /// unchanged) all scale alike, so products with it stay consistent. Local.
    pub fn mul_public(&self, c: &RingTensor) -> Result<Masked> {
        let scaled = |t: &Option<RingTensor>| t.as_ref().map(|t| t.mul(c)).transpose();
        Ok(Masked {
            share: self.share.mul_public(c)?,
            opened: scaled(&self.opened)?,
            mask: scaled(&self.mask)?,
            truncation: self
                .truncation
                .as_ref()
                .map(|t| t.map(|v| v.mul(c), false))
                .transpose()?,
        })
    }
}

/// A server-owned fixed weight in shared form. Its mask is opened once when it is shared and
/// reused by every product with it, so online traffic scales with activations only.
#[derive(Clone, Debug)]
pub struct SecretWeight(pub Masked);

impl SecretWeight {
    pub fn shape(&self) -> &[usize] {
        self.0.shape()
    }
}

/// The value an owning party must pass to [`Protocol::input`] or [`Protocol::weight`], checked.
pub(crate) fn supplied<'a>(
    value: Option<&'a RingTensor>,
    shape: &[usize],
    owner: Role,
) -> Result<&'a RingTensor> {
    let v = value.ok_or_else(|| anyhow::anyhow!("{owner} must supply its input"))?;
    anyhow::ensure!(
        v.shape() == shape,
        "input shape {:?} vs {shape:?}",
        v.shape()
    );
    Ok(v)
}

/// One party's endpoint of a protocol run. All parties (dealer and helper included) run the
/// same program against this trait; shapes and control flow are public.
///
/// Products are returned untruncated (scale `2f` for two fixed-point operands); call
/// [`Protocol::truncate`].
pub trait Protocol: Send {
    fn kind(&self) -> ProtocolKind;
    fn role(&self) -> Role;
    fn fixed_point(&self) -> FixedPoint;
    fn comm(&mut self) -> &mut Communicator;

    /// Every pairwise PRG stream this party draws masks, shares or correlated randomness from
    /// (test only: `mpc::views` checks that the two holders of each stay in lock-step).
    #[cfg(test)]
    fn streams(&self) -> Vec<super::prg::Stream>;

    /// Secret-share a tensor held by `owner` (`value` is only read there).
    /// Cost: 2pc-dealer none (the other share comes from a PRG); 3pc the owner sends the third
    /// share to both others, `16n` bytes, 1 round.
    fn input(&mut self, owner: Role, value: Option<&RingTensor>, shape: &[usize]) -> Result<Share>;

    /// Share a server-owned weight and open its product mask once.
    /// Cost: 2pc-dealer the server sends `8|w|` bytes; 3pc an input, `16|w|`.
    fn weight(&mut self, value: Option<&RingTensor>, shape: &[usize]) -> Result<SecretWeight> {
        let share = self.input(Role::Server, value, shape)?;
        Ok(SecretWeight(self.mask(&[&share])?.remove(0)))
    }

    /// Open `x` to `to` (or to client and server when `None`); others get `None`.
    /// Cost: `8n` bytes to each target, 1 round.
    fn reveal(&mut self, x: &Share, to: Option<Role>) -> Result<Option<RingTensor>>;

    /// `x + c` for a public `c` of the same shape.
    fn add_public(&mut self, x: &Share, c: &RingTensor) -> Result<Share>;

    /// Prepare shares for products, all in one round.
    /// Cost: 2pc-dealer `8 |x|` bytes each way, 1 round; 3pc none.
    fn mask(&mut self, xs: &[&Share]) -> Result<Vec<Masked>>;

    /// [`Protocol::mask`] of `values` and of `bits` (shares of the integers 0 or 1), all in
    /// one round. 2pc-dealer opens a bit's mask in one bit: `b xor rho` for a dealer bit `rho`,
    /// from the low bits of the shares (arithmetic shares of a bit are xor shares of it there).
    /// Cost: 2pc-dealer `8 |values| + ceil(|bits| / 8)` bytes each way, 1 round, offline
    /// `8 |bits|` to the server (its share of `rho`); products with a bit take 2 words of
    /// material (with a truncation's output or another bit, 4). 3pc none.
    fn mask_with_bits(
        &mut self,
        values: &[&Share],
        bits: &[&Share],
    ) -> Result<(Vec<Masked>, Vec<Masked>)> {
        let all: Vec<&Share> = values.iter().chain(bits).copied().collect();
        let mut masked = self.mask(&all)?;
        let bits = masked.split_off(values.len());
        Ok((masked, bits))
    }

    /// Secret x secret product under `op` (untruncated) of prepared shares.
    /// Cost for `z` outputs: 2pc-dealer no traffic, offline `8z` (`16z` or `24z` when one or
    /// both factors are a truncation's output); 3pc every party sends `8z` bytes (resharing),
    /// 1 round.
    fn product(&mut self, x: &Masked, y: &Masked, op: Bilinear) -> Result<Share>;

    /// Secret x secret product (untruncated): [`Protocol::mask`] then [`Protocol::product`].
    fn bilinear(&mut self, x: &Share, y: &Share, op: Bilinear) -> Result<Share> {
        let m = self.mask(&[x, y])?;
        self.product(&m[0], &m[1], op)
    }

    /// `x * x` element-wise (untruncated); opens `x` once.
    fn square(&mut self, x: &Share) -> Result<Share> {
        let m = self.mask(&[x])?.remove(0);
        self.product(&m, &m, Bilinear::Mul)
    }

    /// `truncate(x_j * y_j, bits)` under `op` for several prepared pairs, all truncated in one
    /// round. 3pc folds the products' resharing into that round's opening.
    /// Cost for `z` outputs: 2pc-dealer [`Protocol::product`] and [`Protocol::truncate`]; 3pc
    /// `(o(d) + 8) z` bytes, the helper `16z` (its terms to client and server), 2 rounds,
    /// offline `16z`.
    fn product_truncate(
        &mut self,
        pairs: &[(&Masked, &Masked)],
        op: Bilinear,
        bits: u32,
    ) -> Result<Vec<Share>> {
        let prods = pairs
            .iter()
            .map(|(x, y)| self.product(x, y, op))
            .collect::<Result<Vec<_>>>()?;
        let joined = Share::concat_flat(&prods)?;
        let t = self.truncate(&joined, bits)?;
        t.split_flat(&prods)
    }

    /// `truncate(op(x, y), bits)`: [`Protocol::mask`] and [`Protocol::product_truncate`].
    fn bilinear_truncate(
        &mut self,
        x: &Share,
        y: &Share,
        op: Bilinear,
        bits: u32,
    ) -> Result<Share> {
        let m = self.mask(&[x, y])?;
        Ok(self
            .product_truncate(&[(&m[0], &m[1])], op, bits)?
            .remove(0))
    }

    /// `x W` for a shared server weight, reusing its opened mask (untruncated).
    fn matmul_weight(&mut self, x: &Share, w: &SecretWeight) -> Result<Share> {
        let m = self.mask(&[x])?.remove(0);
        self.product(&m, &w.0, Bilinear::MatMul)
    }

    /// `truncate(x W, bits)` for a shared server weight.
    /// Cost (2pc-dealer): the client sends `8 |x|` bytes, none back, offline `8z`; then the
    /// truncation. 3pc: [`Protocol::product_truncate`].
    fn matmul_weight_truncate(&mut self, x: &Share, w: &SecretWeight, bits: u32) -> Result<Share> {
        let z = self.matmul_weight(x, w)?;
        self.truncate(&z, bits)
    }

    /// Arithmetic shift right by `bits` of a signed value with `|x| < 2^61`; the result is
    /// within one unit of the exact floor.
    /// Cost: 2pc-dealer `o(d) n` bytes, `o(d) = 8 - floor(min(d, 16) / 8)` (low bytes below
    /// the shift are not sent), 1 round, offline `16n`; 3pc `(o(d) + 8) n` (with the
    /// resharing), 2 rounds, offline `16n`.
    fn truncate(&mut self, x: &Share, bits: u32) -> Result<Share>;

    /// `[t, t^2, …, t^degree]` for `t = truncate(x, bits)`, the powers untruncated (`t^k` at
    /// `k` times `t`'s scale; they must fit the ring). Protocols that can fuse them do it in the
    /// truncation's round; this default multiplies, one round per doubling of the degree.
    /// Cost (2pc-dealer, fused): a truncation with offline `16 degree n`; 3pc the same and all
    /// `degree` powers reshared, `8 degree n` bytes.
    fn truncate_powers(&mut self, x: &Share, bits: u32, degree: usize) -> Result<Vec<Share>> {
        let mut pows = vec![self.truncate(x, bits)?];
        while pows.len() < degree {
            let have = pows.len();
            let next: Vec<(usize, usize)> = (have + 1..=(2 * have).min(degree))
                .map(|k| (k / 2, k - k / 2))
                .collect();
            let xs: Vec<Share> = next.iter().map(|&(a, _)| pows[a - 1].clone()).collect();
            let ys: Vec<Share> = next.iter().map(|&(_, b)| pows[b - 1].clone()).collect();
            let z = self.bilinear(
                &Share::concat_flat(&xs)?,
                &Share::concat_flat(&ys)?,
                Bilinear::Mul,
            )?;
            pows.extend(z.split_flat(&xs)?);
        }
        Ok(pows)
    }

    /// `t^2` for `t = truncate(x, bits)`, untruncated: the last of
    /// [`Protocol::truncate_powers`] to degree 2. Protocols that reshare the powers reshare
    /// this one alone.
    /// Cost: [`Protocol::truncate_powers`] to degree 2; 3pc reshares `8n` bytes, not `16n`.
    fn truncate_square(&mut self, x: &Share, bits: u32) -> Result<Share> {
        Ok(self.truncate_powers(x, bits, 2)?.remove(1))
    }

    /// `truncate(sum_k coef[k] t^k, out_bits)` for `t = truncate(x, bits)`, with raw ring
    /// coefficients (`coef[0]` added raw) and the powers untruncated
    /// ([`Protocol::truncate_powers`]); ready for products. Protocols that can keep the
    /// powers in a cheaper intermediate form override it.
    /// Cost: fused powers and one truncation (2 rounds in 2pc-dealer, offline
    /// `(16 degree + 16) n`); 3pc keeps them 2-of-2 and reshares the value alone (`8n`).
    fn truncate_polynomial(
        &mut self,
        x: &Share,
        bits: u32,
        coef: &[u64],
        out_bits: u32,
    ) -> Result<Masked> {
        ensure!(coef.len() >= 2, "a polynomial of degree 0");
        let pows = self.truncate_powers(x, bits, coef.len() - 1)?;
        let mut acc = pows[0].scale(coef[1]);
        for (pow, &c) in pows.iter().zip(&coef[1..]).skip(1) {
            acc = acc.add(&pow.scale(c))?;
        }
        let acc = self.add_public(&acc, &RingTensor::filled(acc.shape(), coef[0]))?;
        self.truncate_masked(&acc, out_bits)
    }

    /// `truncate(x, bits)` ready for products. Protocols whose truncation opens a masked
    /// value reuse that opening, so the product needs none of its own.
    fn truncate_masked(&mut self, x: &Share, bits: u32) -> Result<Masked> {
        let t = self.truncate(x, bits)?;
        Ok(self.mask(&[&t])?.remove(0))
    }

    /// `(truncate(x, bits), [x < t_j])`, thresholds raw at `x`'s own scale (before the
    /// truncation), the truncation ready for products as in [`Protocol::truncate_masked`].
    /// Protocols that can fuse them use a single opening.
    /// Cost (2pc-dealer, fused): one opening of `o(min(bits, cmp.ignored_low_bits)) n` bytes,
    /// 1 round, offline client `8 cw n`, server `(8 cw + 24) n`; 3pc the same and `1 + k`
    /// results reshared, `8 (1 + k) n` bytes.
    fn truncate_less_than(
        &mut self,
        x: &Share,
        bits: u32,
        thresholds: &[u64],
        cmp: Comparison,
    ) -> Result<(Masked, Vec<Share>)> {
        let t = self.truncate_masked(x, bits)?;
        Ok((t, self.less_than(x, thresholds, cmp)?))
    }

    /// `sum_j w[j] [x < t_j]` for each `w` of `weights` (public raw ring weights, one per
    /// threshold): piecewise-constant functions of `x`, all from one comparison. Protocols
    /// that reshare comparison results reshare these combinations, not every bit.
    /// Cost: [`Protocol::less_than`]'s; 3pc reshares `8 |weights| n` bytes, not `8kn`.
    fn less_than_combined(
        &mut self,
        x: &Share,
        thresholds: &[u64],
        cmp: Comparison,
        weights: &[Vec<u64>],
    ) -> Result<Vec<Share>> {
        let bits = self.less_than(x, thresholds, cmp)?;
        combine_bits(&bits, weights)
    }

    /// [`Protocol::truncate_less_than`] returning [`Protocol::less_than_combined`]'s
    /// combinations. Cost: as those; 3pc reshares `8 (1 + |weights|) n` bytes.
    fn truncate_less_than_combined(
        &mut self,
        x: &Share,
        bits: u32,
        thresholds: &[u64],
        cmp: Comparison,
        weights: &[Vec<u64>],
    ) -> Result<(Masked, Vec<Share>)> {
        let (t, lt) = self.truncate_less_than(x, bits, thresholds, cmp)?;
        Ok((t, combine_bits(&lt, weights)?))
    }

    /// Shares of the integers `[x < t_j]` (0 or 1, not fixed point) for public raw thresholds,
    /// all in one round.
    /// Cost for `k` thresholds: one opening of `ceil(bits / 8) n` bytes, 1 round, offline
    /// client `8 cw n` (`cw = dcf::cw_words(bits - ignored_low_bits - 1)`), server
    /// `(8 cw + 8) n`; 3pc also reshares every result, `8kn` bytes.
    fn less_than(&mut self, x: &Share, thresholds: &[u64], cmp: Comparison) -> Result<Vec<Share>>;
}

/// `sum_j w[j] bits[j]` for each `w` of `weights` (local: shares are linear).
pub(crate) fn combine_bits(bits: &[Share], weights: &[Vec<u64>]) -> Result<Vec<Share>> {
    weights
        .iter()
        .map(|w| {
            ensure!(
                w.len() == bits.len() && !bits.is_empty(),
                "{} weights for {} comparison bits",
                w.len(),
                bits.len()
            );
            bits.iter()
                .zip(w)
                .skip(1)
                .try_fold(bits[0].scale(w[0]), |acc, (b, &c)| acc.add(&b.scale(c)))
        })
        .collect()
}
