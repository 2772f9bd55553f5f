//! Costs pinned: every op's online bytes sent, online rounds and offline bytes received, per
//! party and protocol, equal to the formula of its doc comment ("Cost:"), on two tiny shapes.
//!
//! A formula is written with the primitives of [`Model`], each the message pattern of one
//! documented protocol step, so that a change that costs more fails here and the formula (doc
//! and test) must be updated on purpose. Sizes are in elements, words are 8 bytes.
//!
//! Rounds are Lamport depths, as [`Communicator`](crate::mpc::comm::Communicator) counts
//! them: a message carries its sender's depth + 1 and a receiver's depth becomes the largest
//! it has seen, so a party's rounds are the longest chain of dependent messages that reached
//! it, and the critical path (the rounds reports show) is the largest over parties. A
//! [`Model::step`] is a set of messages sent at once, each from its sender's depth before the
//! step.
//!
//! 2pc-dealer: client and server (`C`, `S`) run every step; the dealer (`T`) only sends offline
//! material, the client's from their common PRG (none), the server's as corrections, DCF keys
//! to both. 3pc: the helper (`T`) deals the same material to client and server, who run the
//! same two-party openings and then reshare 2-of-2 results to replicated form (`C -> T`,
//! `S -> T`).

pub(crate) mod approx_pins;
mod argmax_pins;
mod ops_pins;
mod table;

use crate::mpc::dcf;
use crate::mpc::local::{RunOptions, run_local};
use crate::mpc::protocol::{Comparison, Protocol, ProtocolKind, Role};
use anyhow::Result;

pub(crate) const C: usize = 0;
pub(crate) const S: usize = 1;
pub(crate) const T: usize = 2;

/// What a run costs, per party in index order (client, server, dealer / helper).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Cost {
    /// Online bytes each party sends.
    pub(crate) sent: [u64; 3],
    /// Online rounds each party counts (its Lamport depth).
    rounds: [u64; 3],
    /// Offline bytes (correlated randomness) each party receives.
    offline: [u64; 3],
}

impl Cost {
    /// The critical path: what `CostReport::rounds` shows.
    pub(crate) fn critical_rounds(&self) -> u64 {
        self.rounds.into_iter().max().unwrap_or(0)
    }
}

/// The bytes a truncation by `d` bits opens per element: the shares' low bytes below
/// `min(d, 16)` are not sent.
fn truncation_bytes(d: u32) -> u64 {
    8 - u64::from(d.min(16) / 8)
}

/// A comparison's per-element sizes.
#[derive(Clone, Copy)]
pub(crate) struct Cmp {
    /// Bytes the plain comparison opens: `ceil(bits / 8)`.
    opened: u64,
    /// Low bits it ignores (a fused truncation may drop their whole bytes).
    ignored_low_bits: u32,
    /// DCF correction words, `cw_words(bits - ignored - 1)`, sent to client and server alike.
    key_words: u64,
}

impl Cmp {
    fn of(cmp: Comparison) -> Self {
        Self {
            opened: u64::from(cmp.bits.div_ceil(8)),
            ignored_low_bits: cmp.ignored_low_bits,
            key_words: dcf::cw_words(cmp.bits - cmp.ignored_low_bits - 1) as u64,
        }
    }
}

/// The expected cost of a program, built step by step from the protocol primitives.
pub(crate) struct Model {
    kind: ProtocolKind,
    pub(crate) cost: Cost,
}

impl Model {
    pub(crate) fn new(kind: ProtocolKind) -> Self {
        Self {
            kind,
            cost: Cost::default(),
        }
    }

    pub(crate) fn three_party(&self) -> bool {
        self.kind == ProtocolKind::ThreeParty
    }

    /// Messages `(from, to, bytes)` sent at once.
    pub(crate) fn step(&mut self, messages: &[(usize, usize, u64)]) {
        let before = self.cost.rounds;
        for &(from, to, bytes) in messages {
            self.cost.sent[from] += bytes;
            self.cost.rounds[to] = self.cost.rounds[to].max(before[from] + 1);
        }
    }

    /// Offline words the dealer (helper) sends to `party`.
    pub(crate) fn dealt(&mut self, party: usize, words: u64) {
        self.cost.offline[party] += 8 * words;
    }

    /// Client and server swap `bytes` each: one round.
    pub(crate) fn open(&mut self, bytes: u64) {
        self.step(&[(C, S, bytes), (S, C, bytes)]);
    }

    /// 3pc: client and server send their 2-of-2 shares of `n` elements, re-randomised, to the
    /// helper (`8n` bytes each). Nothing in 2pc-dealer.
    pub(crate) fn reshare(&mut self, n: u64) {
        if self.three_party() {
            self.step(&[(C, T, 8 * n), (S, T, 8 * n)]);
        }
    }

    /// Sharing `n` elements of `owner`'s: 2pc-dealer free (PRG); 3pc the owner sends the third
    /// share to both others, `8n` bytes each.
    pub(crate) fn input(&mut self, owner: usize, n: u64) {
        if self.three_party() {
            let others: Vec<usize> = (0..3).filter(|&q| q != owner).collect();
            self.step(&[(owner, others[0], 8 * n), (owner, others[1], 8 * n)]);
        }
    }

    /// Sharing a server weight of `w` elements: 2pc-dealer the server sends `W - B` once,
    /// `8w` bytes; 3pc as an input.
    pub(crate) fn weight(&mut self, w: u64) {
        if self.three_party() {
            self.input(S, w);
        } else {
            self.step(&[(S, C, 8 * w)]);
        }
    }

    /// Opening `n` elements to client and server (`to = None`) or to one of them: 2pc-dealer
    /// the other's share, 3pc the missing share from the target's successor; `8n` bytes a
    /// target.
    pub(crate) fn reveal(&mut self, n: u64, to: Option<usize>) {
        let from = |target: usize| {
            if self.three_party() {
                (target + 1) % 3
            } else {
                1 - target
            }
        };
        let targets = to.map_or(vec![C, S], |t| vec![t]);
        let messages: Vec<(usize, usize, u64)> =
            targets.iter().map(|&t| (from(t), t, 8 * n)).collect();
        self.step(&messages);
    }

    /// Preparing `n` elements for products: 2pc-dealer opens `x - a`, `8n` bytes, one round;
    /// free in 3pc.
    pub(crate) fn mask(&mut self, n: u64) {
        if !self.three_party() {
            self.open(8 * n);
        }
    }

    /// Preparing `values` elements and `bits` bits for products in one round: 2pc-dealer
    /// opens `x - a` (`8` bytes a value) and `b xor rho` (packed, `ceil(bits / 8)` bytes), the
    /// server gets its share of each `rho` (1 word); free in 3pc.
    pub(crate) fn mask_with_bits(&mut self, values: u64, bits: u64) {
        if !self.three_party() {
            self.dealt(S, bits);
            self.open(8 * values + bits.div_ceil(8));
        }
    }

    /// A product of `out` elements with a masked bit (untruncated): 2pc-dealer the material
    /// in parts, 2 words (4 when the other factor is a truncation's output or a bit); 3pc as
    /// [`Model::product`].
    pub(crate) fn product_bit(&mut self, out: u64, other_in_parts: bool) {
        if self.three_party() {
            self.product(out, 0);
        } else {
            self.dealt(S, if other_in_parts { 4 } else { 2 } * out);
        }
    }

    /// A secret product of `out` elements (untruncated): 2pc-dealer no traffic, the dealer's
    /// `op(a, b)` (`out` words; a factor that is a truncation's output takes its material in
    /// two parts, so `1 + truncation_factors` words); 3pc each party sends its 3-of-3 term to
    /// its predecessor, `8 out` bytes, one round.
    pub(crate) fn product(&mut self, out: u64, truncation_factors: u64) {
        if self.three_party() {
            self.step(&[(C, T, 8 * out), (S, C, 8 * out), (T, S, 8 * out)]);
        } else {
            self.dealt(S, (1 + truncation_factors) * out);
        }
    }

    /// The dealer's truncation of `n` elements by `d` bits among client and server: the
    /// server gets `r >> d` and `msb(r)` (2 words, plus `extra` words of fused material),
    /// both open `truncation_bytes(d)` bytes, one round.
    pub(crate) fn dealer_truncation(&mut self, n: u64, d: u32, extra: u64) {
        self.dealt(S, (2 + extra) * n);
        self.open(truncation_bytes(d) * n);
    }

    /// Truncating `n` elements by `d` bits: the dealer's truncation, reshared in 3pc.
    pub(crate) fn truncate(&mut self, n: u64, d: u32) {
        self.dealer_truncation(n, d, 0);
        self.reshare(n);
    }

    /// A product of `out` elements truncated by `d`: 2pc-dealer product then truncation (the
    /// factors masked by the caller); 3pc the 3-of-3 terms enter the truncation's opening, the
    /// helper sending its term to client and server (`8 out` each) in the same round, then
    /// the result is reshared.
    pub(crate) fn product_truncate(&mut self, out: u64, d: u32) {
        self.product_truncate_of(out, d, 0);
    }

    /// [`Model::product_truncate`] with `truncation_factors` of the factors a truncation's
    /// output (2pc-dealer: their product material in parts).
    pub(crate) fn product_truncate_of(&mut self, out: u64, d: u32, truncation_factors: u64) {
        if self.three_party() {
            self.dealt(S, 2 * out);
            let opened = truncation_bytes(d) * out;
            self.step(&[
                (C, S, opened),
                (S, C, opened),
                (T, C, 8 * out),
                (T, S, 8 * out),
            ]);
            self.reshare(out);
        } else {
            self.product(out, truncation_factors);
            self.truncate(out, d);
        }
    }

    /// `x W` truncated by `d` for a shared weight, `x_len` input and `out` output elements:
    /// 2pc-dealer the client alone sends `x - A` (`8 x_len` bytes, no answer), the server gets
    /// `A B` (`out` words), then the truncation; 3pc as [`Model::product_truncate`].
    pub(crate) fn matmul_weight(&mut self, x_len: u64, out: u64, d: u32) {
        if self.three_party() {
            self.product_truncate(out, d);
        } else {
            self.dealt(S, out);
            self.step(&[(C, S, 8 * x_len)]);
            self.truncate(out, d);
        }
    }

    /// `[t, .., t^degree]` for `t = truncate(x, d)` on `n` elements, from one opening: the
    /// server gets `2 degree` words (`R^j` in parts); 3pc reshares `reshared` of the powers.
    pub(crate) fn truncate_powers(&mut self, n: u64, d: u32, degree: u64, reshared: u64) {
        self.dealer_truncation(n, d, 2 * (degree - 1));
        self.reshare(reshared * n);
    }

    /// A polynomial of degree `degree` in `t = truncate(x, d)`, its sum truncated by
    /// `out_bits`: fused powers, then the sum's truncation; 3pc reshares the result alone.
    pub(crate) fn truncate_polynomial(&mut self, n: u64, d: u32, degree: u64, out_bits: u32) {
        self.dealer_truncation(n, d, 2 * (degree - 1));
        self.dealer_truncation(n, out_bits, 0);
        self.reshare(n);
    }

    /// `[x < t_j]` for `thresholds` public thresholds on `n` elements, all from one opening
    /// of `cmp.opened` bytes: the client gets the DCF keys (`key_words` a element), the server
    /// those and `msb(rho)` (1 word); 3pc reshares every threshold's result.
    pub(crate) fn less_than(&mut self, n: u64, cmp: Cmp, thresholds: u64) {
        self.dealt(C, cmp.key_words * n);
        self.dealt(S, (cmp.key_words + 1) * n);
        self.open(cmp.opened * n);
        self.reshare(thresholds * n);
    }

    /// A truncation by `d` and comparisons of its input from the same opening: the material
    /// of both, and the truncation's opening with whole bytes dropped below
    /// `min(d, ignored, 16)`; 3pc reshares the truncation and every threshold's result.
    pub(crate) fn truncate_less_than(&mut self, n: u64, d: u32, cmp: Cmp, thresholds: u64) {
        self.dealt(C, cmp.key_words * n);
        self.dealt(S, (cmp.key_words + 1) * n);
        self.dealer_truncation(n, d.min(cmp.ignored_low_bits), 0);
        self.reshare((1 + thresholds) * n);
    }
}

/// Runs `setup` (inputs, weights; not counted), then `op`, on every party of `kind`, and
/// returns what `op` cost, checking that every byte sent was received.
pub(crate) fn measure<I: Sync>(
    kind: ProtocolKind,
    setup: impl Fn(&mut dyn Protocol) -> Result<I> + Sync,
    op: impl Fn(&mut dyn Protocol, &I) -> Result<()> + Sync,
) -> Cost {
    let opts = RunOptions {
        seed: Some(20261126),
        ..Default::default()
    };
    let run = run_local(kind, &opts, |p| {
        let inputs = setup(p)?;
        p.comm().reset_cost();
        op(p, &inputs)?;
        Ok(p.comm().cost())
    })
    .expect("run succeeds");
    let costs: Vec<_> = run.parties.iter().map(|p| &p.output).collect();
    let online: Vec<_> = costs.iter().map(|c| c.online_total()).collect();
    let sent: u64 = online.iter().map(|t| t.bytes_sent).sum();
    let received: u64 = online.iter().map(|t| t.bytes_received).sum();
    assert_eq!(sent, received, "{kind}: online bytes sent vs received");
    let dealt: u64 = costs.iter().map(|c| c.offline.bytes_sent).sum();
    assert_eq!(
        dealt, costs[T].offline.bytes_sent,
        "{kind}: only the dealer (helper) sends offline material after setup"
    );
    let mut cost = Cost::default();
    for (i, (c, t)) in costs.iter().zip(&online).enumerate() {
        cost.sent[i] = t.bytes_sent;
        cost.rounds[i] = t.rounds;
        cost.offline[i] = c.offline.bytes_received;
    }
    assert_eq!(
        cost.offline.iter().sum::<u64>(),
        dealt,
        "{kind}: offline bytes dealt vs received"
    );
    cost
}

/// The client's input of `shape`, values in `[0.5, 4)` (valid for every op pinned; costs do
/// not depend on values).
fn client_input(p: &mut dyn Protocol, shape: &[usize]) -> Result<crate::mpc::Share> {
    let n: usize = shape.iter().product();
    let x: Vec<f64> = (0..n).map(|i| 0.5 + (i * 37 % 101) as f64 / 29.0).collect();
    let mine = (p.role() == Role::Client).then_some(&x[..]);
    crate::mpc::ops::share_f64(p, Role::Client, mine, shape)
}

/// Asserts that `op` on the client's input of each shape costs what `formula` says, on every
/// protocol.
fn pin(
    name: &str,
    shapes: &[&[usize]],
    op: impl Fn(&mut dyn Protocol, &crate::mpc::Share) -> Result<()> + Sync,
    formula: impl Fn(&mut Model, &[usize]),
) {
    for kind in ProtocolKind::ALL {
        for &shape in shapes {
            let got = measure(kind, |p| client_input(p, shape), &op);
            let mut want = Model::new(kind);
            formula(&mut want, shape);
            assert_eq!(got, want.cost, "{name} on {kind}, shape {shape:?}");
        }
    }
}

fn numel(shape: &[usize]) -> u64 {
    shape.iter().product::<usize>() as u64
}

/// `shape`'s rows (all axes but the last) and row length.
fn rows(shape: &[usize]) -> (u64, u64) {
    let m = *shape.last().expect("rank >= 1") as u64;
    (numel(shape) / m, m)
}

/// The model itself, on a hand-worked example: depths follow the longest chain.
#[test]
fn model_counts_rounds_as_the_longest_chain() {
    let mut m = Model::new(ProtocolKind::ThreeParty);
    m.open(5); // client and server at depth 1
    m.reshare(1); // helper at 2
    m.product(1, 0); // client from the server (2), server from the helper (3), helper 2
    assert_eq!(m.cost.rounds, [2, 3, 2]);
    assert_eq!(m.cost.sent, [5 + 8 + 8, 5 + 8 + 8, 8]);
    assert_eq!(m.cost.critical_rounds(), 3);
}
