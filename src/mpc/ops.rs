//! Fixed-point arithmetic on shares, composed from the [`Protocol`] primitives: products with
//! truncation, public scaling, comparisons, ReLU, max and argmax.
//!
//! "Cost:" lines give, for `n` elements, the online bytes each computing party sends, the
//! rounds (critical path) and the offline bytes the server receives (the client's, DCF keys,
//! where there are any), per protocol; in 3pc the helper's sends where it sends. They are
//! pinned by `mpc::tests::costs` and tabled in `docs/costs.md`. Building blocks: a truncation
//! by `d` bits opens `o(d) = 8 - floor(min(d, 16) / 8)` bytes per element (2pc-dealer: 1
//! round, offline `16n`; 3pc: `o(d) + 8` bytes with the resharing, 2 rounds, offline `16n`);
//! a comparison of `bits` bits ignoring `low` opens `ceil(bits / 8)` bytes with DCF keys of
//! `cw = dcf::cw_words(bits - low - 1)` words; masking for a product is `8n` bytes and 1 round
//! in 2pc-dealer, free in 3pc.

use super::cost::CostClass;
use super::fixed::FixedPoint;
use super::protocol::{Bilinear, Comparison, Protocol, Role, SecretWeight};
use super::ring::RingTensor;
use super::share::Share;
use anyhow::{Result, ensure};

impl Comparison {
    /// Exact comparison for `|x - t| < 2^(int_bits)` reals at `fp`.
    pub fn exact(fp: FixedPoint, int_bits: u32) -> Self {
        Self {
            bits: fp.frac_bits + int_bits + 1,
            ignored_low_bits: 0,
        }
    }

    /// Comparison that may misjudge `x - t in [-2^-resolution_bits, 0)`, cheaper to evaluate.
    pub fn fuzzy(fp: FixedPoint, int_bits: u32, resolution_bits: u32) -> Self {
        Self {
            bits: fp.frac_bits + int_bits + 1,
            ignored_low_bits: fp.frac_bits.saturating_sub(resolution_bits),
        }
    }

    /// Default for ReLU and friends: exact, `|x| < 2^20`.
    pub fn default_for(fp: FixedPoint) -> Self {
        Self::exact(fp, 20)
    }
}

/// Run `f` with traffic counted under `class`, restoring the previous class after.
pub fn labelled<T>(
    p: &mut dyn Protocol,
    class: CostClass,
    f: impl FnOnce(&mut dyn Protocol) -> Result<T>,
) -> Result<T> {
    let prev = p.comm().set_label(class);
    let out = f(p);
    p.comm().set_label(prev);
    out
}

pub fn encode(p: &dyn Protocol, values: &[f64], shape: &[usize]) -> Result<RingTensor> {
    p.fixed_point().encode_tensor(shape, values)
}

/// Share a real tensor held by `owner` (others pass `None`).
/// Cost: 2pc-dealer none (PRGs); 3pc the owner sends `16n` bytes (the third share to both), 1
/// round.
pub fn share_f64(
    p: &mut dyn Protocol,
    owner: Role,
    values: Option<&[f64]>,
    shape: &[usize],
) -> Result<Share> {
    let encoded = values.map(|v| encode(p, v, shape)).transpose()?;
    p.input(owner, encoded.as_ref(), shape)
}

/// Share a server weight (only the server passes values); opens its mask once.
/// Cost: once per weight, 2pc-dealer the server sends `8|w|` bytes; 3pc `16|w|` (an input).
pub fn weight_f64(
    p: &mut dyn Protocol,
    values: Option<&[f64]>,
    shape: &[usize],
) -> Result<SecretWeight> {
    let encoded = values.map(|v| encode(p, v, shape)).transpose()?;
    p.weight(encoded.as_ref(), shape)
}

/// Reveal as reals to `to` (`None`: client and server).
/// Cost: `8n` bytes to each target (2pc-dealer from the other party, 3pc from the target's
/// successor), 1 round.
pub fn reveal_f64(p: &mut dyn Protocol, x: &Share, to: Option<Role>) -> Result<Option<Vec<f64>>> {
    let fp = p.fixed_point();
    Ok(p.reveal(x, to)?.map(|t| fp.decode_tensor(&t)))
}

/// `x + c` for a real constant. Cost: none.
pub fn add_const(p: &mut dyn Protocol, x: &Share, c: f64) -> Result<Share> {
    let v = p.fixed_point().encode(c);
    add_raw(p, x, v)
}

/// `x + v` for a raw ring constant. Cost: none.
pub fn add_raw(p: &mut dyn Protocol, x: &Share, v: u64) -> Result<Share> {
    p.add_public(x, &RingTensor::filled(x.shape(), v))
}

/// A share of zeros shaped like `x` (no communication).
pub fn zeros_like(x: &Share) -> Share {
    x.scale(0)
}

/// Element-wise product.
/// Cost: 2pc-dealer `22n` bytes (both factors masked, `16n`, then a truncation), 2 rounds,
/// offline `24n`; 3pc `14n`, helper `16n`, 2 rounds, offline `16n`.
pub fn mul(p: &mut dyn Protocol, x: &Share, y: &Share) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    p.bilinear_truncate(x, y, Bilinear::Mul, f)
}

/// Square.
/// Cost: 2pc-dealer `14n` bytes (one masking), 2 rounds, offline `24n`; 3pc as [`mul`].
pub fn square(p: &mut dyn Protocol, x: &Share) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    let m = p.mask(&[x])?.remove(0);
    Ok(p.product_truncate(&[(&m, &m)], Bilinear::Mul, f)?.remove(0))
}

/// Secret x secret matmul: 2pc-dealer opens both operands (1 round) then truncates the
/// output (1); 3pc opens its output terms for the truncation (1) and reshares (1).
/// Cost for `[m, k] x [k, p]`: 2pc-dealer `8(mk + kp) + 6mp` bytes, 2 rounds, offline `24mp`;
/// 3pc `14mp`, helper `16mp`, 2 rounds, offline `16mp`.
pub fn matmul(p: &mut dyn Protocol, x: &Share, y: &Share) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    p.bilinear_truncate(x, y, Bilinear::MatMul, f)
}

/// `x W` for a server weight: 2pc-dealer sends only the client's masked `x` (1 round, one way)
/// and truncates the output (1); 3pc as [`matmul`].
/// Cost for `[m, k] x [k, p]`: 2pc-dealer client `8mk + 6mp` bytes, server `6mp`, 2 rounds,
/// offline `24mp`; 3pc as [`matmul`].
pub fn matmul_weight(p: &mut dyn Protocol, x: &Share, w: &SecretWeight) -> Result<Share> {
    let f = p.fixed_point().frac_bits;
    p.matmul_weight_truncate(x, w, f)
}

/// `x W` for a public real `W`: local product + trunc.
/// Cost: one truncation by `f` of the output.
pub fn matmul_public(p: &mut dyn Protocol, x: &Share, w: &RingTensor) -> Result<Share> {
    let z = x.matmul_public(w)?;
    p.truncate(&z, p.fixed_point().frac_bits)
}

/// `x * c` for a public real tensor `c` (broadcast): local product + trunc.
/// Cost: one truncation by `f` of the output.
pub fn mul_public(p: &mut dyn Protocol, x: &Share, c: &RingTensor) -> Result<Share> {
    let z = x.mul_public(c)?;
    p.truncate(&z, p.fixed_point().frac_bits)
}

/// `x * c` for a public real scalar `c`, encoded with as many significant bits (up to 24) as
/// fit when `|x|`'s raw value is below `2^max_raw_log2`, so that small constants such as `1/576`
/// stay accurate.
/// Cost: one truncation (by `min(23 - log2 |c|, 60 - max_raw_log2 - log2 |c|)` bits).
pub fn scale(p: &mut dyn Protocol, x: &Share, c: f64, max_raw_log2: f64) -> Result<Share> {
    ensure!(c.is_finite() && c != 0.0, "scale by {c}");
    let lc = c.abs().log2();
    let bits = (23.0 - lc)
        .min(60.0 - max_raw_log2 - lc)
        .floor()
        .clamp(1.0, 60.0) as u32;
    let enc = (c * (bits as f64).exp2()).round() as i64 as u64;
    p.truncate(&x.scale(enc), bits)
}

/// `[x < t_j]` as integer shares for real thresholds, all from one opening.
/// Cost for `k` thresholds: 2pc-dealer `ceil(bits / 8) n` bytes, 1 round, offline client
/// `8 cw n`, server `8 (cw + 1) n`; 3pc `(ceil(bits / 8) + 8k) n` (every result reshared),
/// 2 rounds, same offline.
pub fn less_than(
    p: &mut dyn Protocol,
    x: &Share,
    thresholds: &[f64],
    cmp: Comparison,
) -> Result<Vec<Share>> {
    let fp = p.fixed_point();
    let raw: Vec<u64> = thresholds.iter().map(|&t| fp.encode(t)).collect();
    p.less_than(x, &raw, cmp)
}

/// `[x < 0]`. Cost: [`less_than`] with one threshold.
pub fn less_than_zero(p: &mut dyn Protocol, x: &Share, cmp: Comparison) -> Result<Share> {
    Ok(p.less_than(x, &[0], cmp)?.remove(0))
}

/// `[x < y]`. Cost: [`less_than`] with one threshold.
pub fn compare(p: &mut dyn Protocol, x: &Share, y: &Share, cmp: Comparison) -> Result<Share> {
    less_than_zero(p, &x.sub(y)?, cmp)
}

/// `max(x, 0) = x - [x < 0] x`; exact under `cmp`'s range.
/// Cost: 2pc-dealer `(ceil(bits / 8) + 16) n` bytes (comparison, both factors masked), 2
/// rounds, offline client `8 cw n`, server `(8 cw + 16) n`; 3pc the same bytes (comparison,
/// resharing, product), helper `8n`, 3 rounds, offline server `(8 cw + 8) n` (default `cmp`:
/// 37 bits, `cw = 111`: `21n` bytes).
pub fn relu(p: &mut dyn Protocol, x: &Share, cmp: Comparison) -> Result<Share> {
    let neg = less_than_zero(p, x, cmp)?;
    let drop = p.bilinear(&neg, x, Bilinear::Mul)?;
    x.sub(&drop)
}

/// Maximum along the last axis by a tournament tree: `ceil(log2 m)` levels of one comparison
/// and one selection. With a fuzzy `cmp` the result may be below the true maximum by the
/// comparison's resolution.
/// Cost for `r` rows of `m`: `r (m - 1)` comparisons, each opening `ceil(bits / 8)` bytes, then
/// the difference masked (8) and the selecting bit masked as a bit (1/8: 2pc-dealer
/// `ceil(bits / 8) + 8 + 1/8` bytes, offline server `8 cw + 24`), 2pc-dealer `2 ceil(log2 m)`
/// rounds; 3pc the comparison reshared and the product, `ceil(bits / 8) + 16`,
/// `3 ceil(log2 m)` rounds.
pub fn max_last(p: &mut dyn Protocol, x: &Share, cmp: Comparison) -> Result<Share> {
    Ok(tournament(p, x, None, cmp)?.0)
}

/// Maximum and its index along the last axis (index as an integer share, ties to the lower
/// index), same rounds as [`max_last`]. Reveal the index with `p.reveal(&idx, Some(Client))`.
/// Cost: [`max_last`]'s, with two values selected per comparison: 2pc-dealer `+8 + 1/8` bytes
/// and offline `+24` per comparison, 3pc `+8` bytes per party (helper too).
pub fn argmax_last(p: &mut dyn Protocol, x: &Share, cmp: Comparison) -> Result<(Share, Share)> {
    let n = x.shape()[x.last_axis()?];
    let rows = x.len() / n;
    let idx: Vec<u64> = (0..rows).flat_map(|_| 0..n as u64).collect();
    let idx = p.add_public(&zeros_like(x), &RingTensor::new(x.shape(), idx)?)?;
    let (m, i) = tournament(p, x, Some(idx), cmp)?;
    Ok((m, i.expect("index carried")))
}

fn tournament(
    p: &mut dyn Protocol,
    x: &Share,
    mut idx: Option<Share>,
    cmp: Comparison,
) -> Result<(Share, Option<Share>)> {
    let axis = x.last_axis()?;
    let mut x = x.clone();
    while x.shape()[axis] > 1 {
        let n = x.shape()[axis];
        let h = n / 2;
        let (a, b) = (x.narrow(axis, 0, h)?, x.narrow(axis, h, h)?);
        let diff = b.sub(&a)?;
        // Take b where a < b.
        let take_b = less_than_zero(p, &a.sub(&b)?, cmp)?;
        let mut values = vec![diff];
        if let Some(i) = &idx {
            values.push(i.narrow(axis, h, h)?.sub(&i.narrow(axis, 0, h)?)?);
        }
        // One product selects every carried value; the bit is masked as a bit (once per value,
        // a bit each) in the values' round.
        let joined = Share::concat_flat(&values)?;
        let take = Share::concat_flat(&vec![take_b; values.len()])?;
        let (v, b) = p.mask_with_bits(&[&joined], &[&take])?;
        let moved = p
            .product(&b[0], &v[0], Bilinear::Mul)?
            .split_flat(&values)?;
        let keep_tail = |t: &Share, m: Share| -> Result<Share> {
            if n % 2 == 1 {
                Share::concat(&[&m, &t.narrow(axis, n - 1, 1)?], axis)
            } else {
                Ok(m)
            }
        };
        let new_x = keep_tail(&x, a.add(&moved[0])?)?;
        if let Some(i) = &idx {
            let low = i.narrow(axis, 0, h)?.add(&moved[1])?;
            idx = Some(keep_tail(i, low)?);
        }
        x = new_x;
    }
    Ok((x, idx))
}

/// Rotary position embedding with public tables: `x cos + rotate_half(x) sin` on `[h, T, hd]`
/// (half-split layout), local and without truncation (the scale grows by f). Cost: none.
pub fn rotary(x: &Share, cos: &RingTensor, sin: &RingTensor) -> Result<Share> {
    ensure!(
        x.shape().len() == 3,
        "rotary needs [heads, T, head_dim], got {:?}",
        x.shape()
    );
    let hd = x.shape()[2];
    let (x1, x2) = (x.narrow(2, 0, hd / 2)?, x.narrow(2, hd / 2, hd / 2)?);
    let rotated = Share::concat(&[&x2.neg(), &x1], 2)?;
    x.mul_public(cos)?.add(&rotated.mul_public(sin)?)
}
