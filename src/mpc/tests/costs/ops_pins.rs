//! Pins for the protocol primitives and `ops`: sharing, weights, reveal, truncation, products,
//! matmuls, comparisons, ReLU, max and argmax.

use super::{C, Cmp, Model, S, T, client_input, measure, numel, pin, rows};
use crate::mpc::fixed::FixedPoint;
use crate::mpc::ops;
use crate::mpc::protocol::{Bilinear, Comparison, ProtocolKind, Role};
use crate::mpc::ring::RingTensor;

const F: u32 = 16;
const SHAPES: [&[usize]; 2] = [&[2, 4], &[3, 7]];

fn exact() -> Comparison {
    Comparison::default_for(FixedPoint::default())
}

/// ReLU's formula: `[x < 0]`, both factors masked, one product.
pub(super) fn relu(m: &mut Model, n: u64, cmp: Cmp) {
    m.less_than(n, cmp, 1);
    m.mask(2 * n);
    m.product(n, 0);
}

/// The tournament's formula: per level, `rows * h` pairs (`h` = half the length) compared
/// and selected (`carried` values selected with one bit, masked as a bit: 1 for max, 2 for
/// argmax).
pub(super) fn tournament(m: &mut Model, shape: &[usize], cmp: Cmp, carried: u64) {
    let (rows, mut len) = rows(shape);
    while len > 1 {
        let pairs = rows * (len / 2);
        m.less_than(pairs, cmp, 1);
        m.mask_with_bits(carried * pairs, carried * pairs);
        m.product_bit(carried * pairs, false);
        len = len.div_ceil(2);
    }
}

#[test]
fn sharing_weights_and_reveal() {
    for kind in ProtocolKind::ALL {
        for shape in SHAPES {
            let n = numel(shape);
            let got = measure(kind, |_| Ok(()), |p, _| client_input(p, shape).map(drop));
            let mut want = Model::new(kind);
            want.input(C, n);
            assert_eq!(got, want.cost, "client input on {kind}, {shape:?}");

            let got = measure(
                kind,
                |_| Ok(()),
                |p, _| {
                    let w = vec![0.25; n as usize];
                    let mine = (p.role() == Role::Server).then_some(&w[..]);
                    ops::weight_f64(p, mine, shape).map(drop)
                },
            );
            let mut want = Model::new(kind);
            want.weight(n);
            assert_eq!(got, want.cost, "weight on {kind}, {shape:?}");

            for to in [None, Some(Role::Client), Some(Role::Server)] {
                let got = measure(
                    kind,
                    |p| client_input(p, shape),
                    |p, x| ops::reveal_f64(p, x, to).map(drop),
                );
                let mut want = Model::new(kind);
                want.reveal(n, to.map(Role::index));
                assert_eq!(got, want.cost, "reveal to {to:?} on {kind}, {shape:?}");
            }
        }
    }
}

#[test]
fn local_ops_are_free() {
    pin(
        "local",
        &[&[1, 2, 4], &[2, 3, 6]],
        |p, x| {
            let shape = x.shape().to_vec();
            let y = ops::add_const(p, x, 1.5)?;
            let table = RingTensor::filled(&[1, shape[1], shape[2]], 3);
            let r = ops::rotary(&y, &table, &table)?;
            let z = p.add_public(&r, &RingTensor::filled(&shape, 1))?;
            let w = RingTensor::filled(&[shape[2], 5], 2);
            z.matmul_public(&w).map(drop)
        },
        |_, _| {},
    );
}

#[test]
fn truncations() {
    // 0, 1 and 2 low bytes dropped; never more than 2.
    for d in [4, 12, 16, 40] {
        pin(
            &format!("truncate by {d}"),
            &SHAPES,
            |p, x| p.truncate(x, d).map(drop),
            |m, shape| m.truncate(numel(shape), d),
        );
    }
    pin(
        "public matmul, public product, scale",
        &SHAPES,
        |p, x| {
            let k = x.shape()[1];
            ops::matmul_public(p, x, &RingTensor::filled(&[k, 3], 1))?;
            ops::mul_public(p, x, &RingTensor::filled(x.shape(), 1))?;
            ops::scale(p, x, 1.0 / 576.0, 25.0).map(drop)
        },
        |m, shape| {
            let (rows, _) = rows(shape);
            m.truncate(rows * 3, F);
            m.truncate(numel(shape), F);
            // scale's shift: min(23 - log2 c, 60 - 25 - log2 c) = 32 bits for c = 1/576.
            m.truncate(numel(shape), 32);
        },
    );
}

#[test]
fn products() {
    pin(
        "mul",
        &SHAPES,
        |p, x| ops::mul(p, x, &x.scale(3)).map(drop),
        |m, shape| {
            let n = numel(shape);
            m.mask(2 * n);
            m.product_truncate(n, F);
        },
    );
    pin(
        "square",
        &SHAPES,
        |p, x| ops::square(p, x).map(drop),
        |m, shape| {
            let n = numel(shape);
            m.mask(n);
            m.product_truncate(n, F);
        },
    );
    pin(
        "a bit masked with a value, their product",
        &SHAPES,
        |p, x| {
            let b = p.less_than(
                x,
                &[1 << 17],
                Comparison::default_for(FixedPoint::default()),
            )?;
            let (v, b) = p.mask_with_bits(&[x], &[&b[0]])?;
            p.product(&b[0], &v[0], Bilinear::Mul).map(drop)
        },
        |m, shape| {
            let n = numel(shape);
            m.less_than(
                n,
                Cmp::of(Comparison::default_for(FixedPoint::default())),
                1,
            );
            m.mask_with_bits(n, n);
            m.product_bit(n, false);
        },
    );
    pin(
        "product with a truncation's output",
        &SHAPES,
        |p, x| {
            let t = p.truncate_masked(x, 8)?;
            let y = p.mask(&[x])?.remove(0);
            p.product(&t, &y, Bilinear::Mul)?;
            p.product(&t, &t, Bilinear::Mul).map(drop)
        },
        |m, shape| {
            let n = numel(shape);
            m.truncate(n, 8);
            m.mask(n);
            // The truncation's opening is its mask: its material comes in parts.
            m.product(n, 1);
            m.product(n, 2);
        },
    );
}

#[test]
fn matmuls() {
    // x: [a, b] from the client, y: [b, c] from the server.
    for (a, b, c) in [(2, 3, 4), (3, 5, 2)] {
        for kind in ProtocolKind::ALL {
            let inputs = |p: &mut dyn crate::mpc::Protocol| {
                let x = client_input(p, &[a, b])?;
                let v = vec![0.5; b * c];
                let mine = (p.role() == Role::Server).then_some(&v[..]);
                let y = ops::share_f64(p, Role::Server, mine, &[b, c])?;
                let w = ops::weight_f64(p, mine, &[b, c])?;
                Ok((x, y, w))
            };
            let (xn, yn, out) = ((a * b) as u64, (b * c) as u64, (a * c) as u64);
            let got = measure(kind, inputs, |p, (x, y, _)| ops::matmul(p, x, y).map(drop));
            let mut want = Model::new(kind);
            want.mask(xn + yn);
            want.product_truncate(out, F);
            assert_eq!(got, want.cost, "matmul on {kind}, {a}x{b}x{c}");

            let got = measure(kind, inputs, |p, (x, _, w)| {
                ops::matmul_weight(p, x, w).map(drop)
            });
            let mut want = Model::new(kind);
            want.matmul_weight(xn, out, F);
            assert_eq!(got, want.cost, "matmul_weight on {kind}, {a}x{b}x{c}");
        }
    }
}

#[test]
fn comparisons() {
    let fp = FixedPoint::default();
    let fuzzy = Comparison::fuzzy(fp, 12, 8);
    for cmp in [exact(), fuzzy] {
        pin(
            &format!("less_than, 3 thresholds, {cmp:?}"),
            &SHAPES,
            |p, x| ops::less_than(p, x, &[-1.0, 0.0, 2.5], cmp).map(drop),
            |m, shape| m.less_than(numel(shape), Cmp::of(cmp), 3),
        );
        pin(
            &format!("compare, {cmp:?}"),
            &SHAPES,
            |p, x| ops::compare(p, x, &x.scale(2), cmp).map(drop),
            |m, shape| m.less_than(numel(shape), Cmp::of(cmp), 1),
        );
    }
    pin(
        "relu",
        &SHAPES,
        |p, x| ops::relu(p, x, exact()).map(drop),
        |m, shape| relu(m, numel(shape), Cmp::of(exact())),
    );
    // Lengths 4 and 7: full and ragged trees.
    pin(
        "max_last",
        &SHAPES,
        |p, x| ops::max_last(p, x, exact()).map(drop),
        |m, shape| tournament(m, shape, Cmp::of(exact()), 1),
    );
    pin(
        "argmax_last",
        &SHAPES,
        |p, x| ops::argmax_last(p, x, exact()).map(drop),
        |m, shape| tournament(m, shape, Cmp::of(exact()), 2),
    );
}

/// The closed forms in `ops`' docs: 2pc-dealer ReLU `ceil(bits/8) + 16` bytes per element and
/// party, 2 rounds; 3pc adds the bit's resharing (8) and the product's term (8), 3 rounds;
/// max over `m` in `2 ceil(log2 m)` rounds (2pc-dealer), `3 ceil(log2 m)` (3pc).
#[test]
fn closed_forms() {
    let cmp = Cmp::of(exact());
    let n = 1000;
    for (kind, per_element, rounds) in [
        (ProtocolKind::TwoPartyDealer, [21, 21, 0], 2),
        (ProtocolKind::ThreeParty, [21, 21, 8], 3),
    ] {
        let mut m = Model::new(kind);
        relu(&mut m, n, cmp);
        assert_eq!(m.cost.sent, per_element.map(|b| b * n), "{kind} relu");
        assert_eq!(m.cost.critical_rounds(), rounds, "{kind} relu rounds");
        assert_eq!(m.cost.offline[C], 8 * cmp.key_words * n);
        assert_eq!(m.cost.offline[T], 0);
    }
    for (len, levels) in [(2, 1), (4, 2), (7, 3), (64, 6)] {
        // 2pc-dealer: the selecting bit's share of rho and the product's two words of
        // material.
        for (kind, per_level, product_words) in [
            (ProtocolKind::TwoPartyDealer, 2, 3),
            (ProtocolKind::ThreeParty, 3, 0),
        ] {
            let mut m = Model::new(kind);
            tournament(&mut m, &[5, len], cmp, 1);
            assert_eq!(
                m.cost.critical_rounds(),
                per_level * levels,
                "{kind} max {len}"
            );
            // One comparison per element but one per row.
            let comparisons = 5 * (len as u64 - 1);
            let words = cmp.key_words + 1 + product_words;
            assert_eq!(
                m.cost.offline[S],
                8 * words * comparisons,
                "{kind} max {len}"
            );
        }
    }
}

#[test]
fn fused_truncations() {
    pin(
        "truncate_powers to degree 5",
        &SHAPES,
        |p, x| p.truncate_powers(x, 7, 5).map(drop),
        |m, shape| m.truncate_powers(numel(shape), 7, 5, 5),
    );
    pin(
        "truncate_square",
        &SHAPES,
        |p, x| p.truncate_square(x, 24).map(drop),
        |m, shape| m.truncate_powers(numel(shape), 24, 2, 1),
    );
    pin(
        "truncate_polynomial of degree 3",
        &SHAPES,
        |p, x| p.truncate_polynomial(x, 7, &[1, 2, 3, 4], 30).map(drop),
        |m, shape| m.truncate_polynomial(numel(shape), 7, 3, 30),
    );
    // The comparison ignores 8 + 16 low bits, the truncation drops 2 bytes.
    let cmp = Comparison {
        bits: 29 + F,
        ignored_low_bits: 8 + F,
    };
    pin(
        "truncate_less_than, 2 thresholds",
        &SHAPES,
        |p, x| p.truncate_less_than(x, F, &[0, 1 << 20], cmp).map(drop),
        |m, shape| m.truncate_less_than(numel(shape), F, Cmp::of(cmp), 2),
    );
}
