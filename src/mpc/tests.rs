//! Every operation against an f64 reference, for every protocol; share uniformity; TCP. What
//! each party's view reveals is tested in `super::views`.

use super::approx;
use super::fixed::FixedPoint;
use super::local::{LocalRun, RunOptions, run_local};
use super::ops;
use super::prg::Prg;
use super::protocol::Comparison;
use super::protocol::{Bilinear, Protocol, ProtocolKind, Role};
use super::share::Share;
use super::views::stats::{CHI_LIMIT, chi_square_bytes};
use anyhow::Result;

pub(crate) mod costs;

const SEED: u64 = 20261125;

fn opts() -> RunOptions {
    RunOptions {
        seed: Some(SEED),
        ..Default::default()
    }
}

/// Deterministic test data: normal(0, sd) with a few outliers of size `outlier`.
fn normal(n: usize, sd: f64, outlier: f64, tag: u64) -> Vec<f64> {
    let mut rng = Prg::from_seed(Prg::derived_seed(SEED, 1000 + tag));
    rng.gaussian(n, 1.0)
        .into_iter()
        .enumerate()
        .map(|(i, z)| {
            if outlier > 0.0 && i % 97 == 5 {
                outlier * z.signum()
            } else {
                sd * z
            }
        })
        .collect()
}

fn run<T: Send>(
    kind: ProtocolKind,
    f: impl Fn(&mut dyn Protocol) -> Result<T> + Sync,
) -> LocalRun<T> {
    run_local(kind, &opts(), f).expect("run succeeds")
}

/// Client shares `x`, `op` runs, everyone gets the revealed result.
fn unary(
    kind: ProtocolKind,
    x: &[f64],
    shape: &[usize],
    op: impl Fn(&mut dyn Protocol, &Share) -> Result<Share> + Sync,
) -> Vec<f64> {
    let out = run(kind, |p| {
        let v = (p.role() == Role::Client).then_some(x);
        let s = ops::share_f64(p, Role::Client, v, shape)?;
        let y = op(p, &s)?;
        ops::reveal_f64(p, &y, None)
    });
    out.output(Role::Client)
        .clone()
        .expect("client sees the result")
}

fn max_abs_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max)
}

fn check(name: &str, got: &[f64], want: &[f64], tol: f64) {
    let e = max_abs_err(got, want);
    assert!(e <= tol, "{name}: max error {e} > {tol}");
}

fn each_kind(test: impl Fn(ProtocolKind)) {
    for kind in ProtocolKind::ALL {
        test(kind);
    }
}

#[test]
fn products_truncation_and_public_ops() {
    each_kind(|kind| {
        // References use the fixed-point inputs, so only protocol error remains.
        let q = |v: Vec<f64>| -> Vec<f64> {
            v.iter().map(|x| (x * 65536.0).round() / 65536.0).collect()
        };
        let x = q(normal(240, 3.0, 200.0, 1));
        let y = q(normal(240, 2.0, 0.0, 2));
        let w = q(normal(20 * 12, 0.1, 0.0, 3));
        let out = run(kind, |p| {
            let client = p.role() == Role::Client;
            let server = p.role() == Role::Server;
            let xs = ops::share_f64(p, Role::Client, client.then_some(&x[..]), &[12, 20])?;
            let ys = ops::share_f64(p, Role::Server, server.then_some(&y[..]), &[12, 20])?;
            let ws = ops::weight_f64(p, server.then_some(&w[..]), &[20, 12])?;
            let prod = ops::mul(p, &xs, &ys)?;
            let sq = ops::square(p, &xs)?;
            let mm = ops::matmul(p, &xs, &ys.transpose()?)?;
            let w1 = ops::matmul_weight(p, &xs, &ws)?;
            // The weight's mask is reused: a second product costs only the activation opening.
            let w2 = ops::matmul_weight(p, &ys, &ws)?;
            // The generic product path with a weight gives the same.
            let ym = p.mask(&[&ys])?.remove(0);
            let w2_generic = p
                .product_truncate(&[(&ym, &ws.0)], Bilinear::MatMul, 16)?
                .remove(0);
            let wt = ops::encode(p, &w, &[20, 12])?;
            let wp = ops::matmul_public(p, &xs, &wt)?;
            let sc = ops::scale(p, &xs, 1.0 / 576.0, 16.0 + 9.0)?;
            let all = Share::concat(
                &[
                    &prod.reshape(&[240])?,
                    &sq.reshape(&[240])?,
                    &mm.reshape(&[144])?,
                    &w1.reshape(&[144])?,
                    &w2.reshape(&[144])?,
                    &w2_generic.reshape(&[144])?,
                    &wp.reshape(&[144])?,
                    &sc.reshape(&[240])?,
                ],
                0,
            )?;
            ops::reveal_f64(p, &all, Some(Role::Client))
        });
        let got = out.output(Role::Client).clone().unwrap();
        let mm = |a: &[f64], b: &[f64], bt: bool| -> Vec<f64> {
            (0..12)
                .flat_map(|i| {
                    (0..12).map(move |j| {
                        (0..20)
                            .map(|k| a[i * 20 + k] * if bt { b[j * 20 + k] } else { b[k * 12 + j] })
                            .sum::<f64>()
                    })
                })
                .collect()
        };
        let mut want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
        want.extend(x.iter().map(|a| a * a));
        want.extend(mm(&x, &y, true));
        want.extend(mm(&x, &w, false));
        want.extend(mm(&y, &w, false));
        want.extend(mm(&y, &w, false));
        want.extend(mm(&x, &w, false));
        want.extend(x.iter().map(|a| a / 576.0));
        // One output unit per truncation, plus the rounding of 1/576.
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let tol = 3.0 / 65536.0 + 1e-6 * w.abs();
            assert!((g - w).abs() <= tol, "{kind} item {i}: {g} vs {w}");
        }
        assert!(out.report.rounds > 0);
    });
}

/// Every power of a truncated value from one opening, and products with a truncation's output
/// that reuse its opening as their mask, against f64.
#[test]
fn truncated_powers_and_truncation_masked_products() {
    each_kind(|kind| {
        let x: Vec<f64> = normal(400, 1.5, 0.0, 7)
            .into_iter()
            .map(|v| v.clamp(-3.9, 3.9))
            .collect();
        let y = normal(400, 2.0, 0.0, 8);
        let f = FixedPoint::default().frac_bits;
        let out = run(kind, |p| {
            let (xv, yv) = (p.role() == Role::Client)
                .then_some((&x[..], &y[..]))
                .unzip();
            let xs = ops::share_f64(p, Role::Client, xv, &[400])?;
            let ys = ops::share_f64(p, Role::Client, yv, &[400])?;
            // t = x at 9 fractional bits; t^k at 9k bits.
            let pows = p.truncate_powers(&xs, f - 9, 5)?;
            let mut revealed = Vec::new();
            for (k, pow) in pows.iter().enumerate() {
                // The dealer learns nothing.
                if let Some(r) = p.reveal(pow, None)? {
                    let scale = ((9 * (k + 1)) as f64).exp2();
                    revealed.push(r.data().iter().map(|&v| v as i64 as f64 / scale).collect());
                }
            }
            // truncate(x · 2^f, f) times y, the truncation's opening as x's mask.
            let t = p.truncate_masked(&xs.scale(1 << f), f)?;
            let ym = p.mask(&[&ys])?.remove(0);
            let prod = p.product(&t, &ym, Bilinear::Mul)?;
            let prod = p.truncate(&prod, f)?;
            revealed.extend(ops::reveal_f64(p, &prod, None)?);
            Ok(revealed)
        });
        let got = out.output(Role::Client);
        for k in 1..=5 {
            let want: Vec<f64> = x.iter().map(|v| v.powi(k as i32)).collect();
            // One unit of 2^-9 in t, raised to the k-th power.
            let tol = k as f64 * 3.9f64.powi(k as i32 - 1) * 2.0 * 2f64.powi(-9);
            check(&format!("{kind} t^{k}"), &got[k - 1], &want, tol);
        }
        let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
        check(
            &format!("{kind} truncation-masked product"),
            &got[5],
            &want,
            1e-3,
        );
    });
}

#[test]
fn truncation_is_off_by_at_most_one_unit() {
    each_kind(|kind| {
        let raw: Vec<u64> = (0..4000u64)
            .map(|i| {
                let v = (i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 4) as i64 >> (i % 50);
                v as u64
            })
            .collect();
        let out = run(kind, |p| {
            let t = super::ring::RingTensor::new(&[raw.len()], raw.clone())?;
            let v = (p.role() == Role::Client).then_some(&t);
            let s = p.input(Role::Client, v, &[raw.len()])?;
            let tr = p.truncate(&s, 16)?;
            p.reveal(&tr, None)
        });
        let got = out.output(Role::Server).clone().unwrap();
        for (g, &r) in got.data().iter().zip(&raw) {
            let want = (r as i64) >> 16;
            let d = *g as i64 - want;
            assert!(d.abs() <= 1, "{kind}: {r} -> {} want {want}", *g as i64);
        }
    });
}

#[test]
fn comparisons_relu_max_argmax() {
    each_kind(|kind| {
        let mut x = normal(64, 4.0, 300.0, 4);
        x[3] = 0.0;
        x[4] = -1.0 / 65536.0;
        let fp = super::fixed::FixedPoint::default();
        let exact = Comparison::default_for(fp);
        let lt = unary(kind, &x, &[4, 16], |p, s| {
            let b = ops::less_than(p, s, &[0.0, 1.5], exact)?;
            Share::concat(&[&b[0], &b[1]], 0)
        });
        let want: Vec<f64> = [0.0, 1.5]
            .iter()
            .flat_map(|&t| x.iter().map(move |&v| if v < t { 1.0 } else { 0.0 }))
            .collect();
        // Integer results read at fixed point: 1 -> 2^-16.
        let got: Vec<f64> = lt.iter().map(|v| v * 65536.0).collect();
        check(&format!("{kind} less_than"), &got, &want, 1e-9);

        let relu = unary(kind, &x, &[4, 16], |p, s| ops::relu(p, s, exact));
        let want: Vec<f64> = x.iter().map(|v| v.max(0.0)).collect();
        check(&format!("{kind} relu"), &relu, &want, 2e-5);

        let out = run(kind, |p| {
            let v = (p.role() == Role::Client).then_some(&x[..]);
            let s = ops::share_f64(p, Role::Client, v, &[4, 16])?;
            let m = ops::max_last(p, &s, exact)?;
            let (_, idx) = ops::argmax_last(p, &s, exact)?;
            let m = ops::reveal_f64(p, &m, None)?;
            let idx = p.reveal(&idx, Some(Role::Client))?;
            Ok((m, idx))
        });
        let (m, idx) = out.output(Role::Client).clone();
        assert!(
            out.output(Role::Server).1.is_none(),
            "argmax goes to the client only"
        );
        for r in 0..4 {
            let row = &x[r * 16..(r + 1) * 16];
            let (wi, wm) =
                row.iter().enumerate().fold(
                    (0, f64::MIN),
                    |acc, (i, &v)| if v > acc.1 { (i, v) } else { acc },
                );
            assert!(
                (m.as_ref().unwrap()[r] - wm).abs() < 2e-5,
                "{kind} max row {r}"
            );
            assert_eq!(
                idx.as_ref().unwrap().data()[r] as usize,
                wi,
                "{kind} argmax row {r}"
            );
        }
    });
}

#[test]
fn exp_reciprocal_rsqrt() {
    each_kind(|kind| {
        let x: Vec<f64> = (0..200).map(|i| -20.0 + i as f64 * 0.1005).collect();
        let got = unary(kind, &x, &[200], approx::exp);
        let want: Vec<f64> = x.iter().map(|v| v.exp()).collect();
        check(&format!("{kind} exp"), &got, &want, 1.5e-3);

        let x: Vec<f64> = (0..200).map(|i| 0.5 * 1.03f64.powi(i)).collect();
        let got = unary(kind, &x, &[200], |p, s| {
            approx::reciprocal(p, s, 0.25, 300.0)
        });
        for (g, v) in got.iter().zip(&x) {
            assert!((g * v - 1.0).abs() < 1e-3 + 2e-5 * v, "{kind} 1/{v} = {g}");
        }

        let x: Vec<f64> = (0..200).map(|i| 1e-3 * 1.07f64.powi(i)).collect();
        let got = unary(kind, &x, &[200], |p, s| approx::rsqrt(p, s, 16, 5e-4, 1e6));
        for (g, v) in got.iter().zip(&x) {
            // Input quantisation at 2^-16 dominates for the smallest inputs.
            let tol = 1e-3 + 0.5 / (v * 65536.0);
            assert!((g * v.sqrt() - 1.0).abs() < tol, "{kind} rsqrt {v} = {g}");
        }
    });
}

fn softmax_ref(x: &[f64], n: usize, causal: bool) -> Vec<f64> {
    x.chunks(n)
        .enumerate()
        .flat_map(|(r, row)| {
            let i = r % n;
            let vis = |j: usize| !causal || j <= i;
            let m = (0..n)
                .filter(|&j| vis(j))
                .map(|j| row[j])
                .fold(f64::MIN, f64::max);
            let e: Vec<f64> = (0..n)
                .map(|j| if vis(j) { (row[j] - m).exp() } else { 0.0 })
                .collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / s)
        })
        .collect()
}

#[test]
fn softmax_and_2quad() {
    each_kind(|kind| {
        let n = 16;
        let x = normal(2 * n * n, 3.0, 0.0, 5);
        let got = unary(kind, &x, &[2, n, n], |p, s| {
            approx::softmax(p, s, Some(&approx::causal_mask(s.shape())?))
        });
        check(
            &format!("{kind} softmax"),
            &got,
            &softmax_ref(&x, n, true),
            5e-3,
        );
        let got = unary(kind, &x, &[2, n, n], |p, s| approx::softmax(p, s, None));
        check(
            &format!("{kind} softmax"),
            &got,
            &softmax_ref(&x, n, false),
            5e-3,
        );

        let got = unary(kind, &x, &[2, n, n], |p, s| {
            approx::softmax_2quad(p, s, Some(&approx::causal_mask(s.shape())?))
        });
        let want: Vec<f64> = x
            .chunks(n)
            .enumerate()
            .flat_map(|(r, row)| {
                let q: Vec<f64> = (0..n)
                    .map(|j| {
                        if j <= r % n {
                            (row[j] + 5.0).powi(2)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let s: f64 = q.iter().sum::<f64>() + 1e-3;
                q.into_iter().map(move |v| v / s)
            })
            .collect();
        check(&format!("{kind} 2quad"), &got, &want, 2e-3);
    });
}

#[test]
fn activations() {
    each_kind(|kind| {
        let x = normal(300, 3.0, 150.0, 6);
        type Op = fn(&mut dyn Protocol, &Share) -> Result<Share>;
        type Case = (&'static str, Op, fn(f64) -> f64, f64);
        let cases: [Case; 4] = [
            ("silu", approx::silu, approx::silu_f64, 5e-3),
            ("gelu", approx::gelu, approx::gelu_f64, 4e-3),
            ("sigmoid", approx::sigmoid, approx::sigmoid_f64, 5e-3),
            (
                "quad",
                approx::quad,
                |v| 0.125 * v * v + 0.25 * v + 0.5,
                1e-3,
            ),
        ];
        // The fused truncate-and-compare path: the input arrives untruncated, times 2^16.
        let wide = unary(kind, &x, &[300], |p, s| {
            let z = s.scale(1 << 16);
            approx::silu_wide(p, &z, 16)
        });
        let want: Vec<f64> = x.iter().map(|&v| approx::silu_f64(v)).collect();
        check(&format!("{kind} silu_wide"), &wide, &want, 5e-3);
        for (name, op, reference, tol) in cases {
            let xs: Vec<f64> = if name == "quad" {
                x.iter().map(|v| v.clamp(-10.0, 10.0)).collect()
            } else {
                x.clone()
            };
            let got = unary(kind, &xs, &[300], op);
            let want: Vec<f64> = xs.iter().map(|&v| reference(v)).collect();
            check(&format!("{kind} {name}"), &got, &want, tol);
        }
    });
}

#[test]
fn norms_with_tiny_mean_square_and_outliers() {
    each_kind(|kind| {
        let d = 64;
        // Row 0: mean square 0.008; row 1: outliers in the hundreds; rows 2, 3: ordinary.
        let mut x = normal(d, 0.0894, 0.0, 7);
        x.extend(normal(d, 1.0, 300.0, 8));
        x.extend(normal(2 * d, 2.0, 0.0, 9));
        let ms0 = x[..d].iter().map(|v| v * v).sum::<f64>() / d as f64;
        assert!((ms0 - 0.008).abs() < 0.004, "row 0 mean square {ms0}");
        let gamma = vec![1.5; d];
        let got = unary(kind, &x, &[4, d], |p, s| {
            approx::rms_norm(p, s, Some(&gamma), 1e-5)
        });
        let want: Vec<f64> = approx::normalised_f64(&x, d, false, 1e-5)
            .iter()
            .map(|v| v * 1.5)
            .collect();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 2e-3 + 2e-3 * w.abs(),
                "{kind} rmsnorm {i}: {g} vs {w}"
            );
        }
        let got = unary(kind, &x, &[4, d], |p, s| {
            approx::layer_norm(p, s, None, Some(&vec![0.5; d]), 1e-5)
        });
        let want: Vec<f64> = approx::normalised_f64(&x, d, true, 1e-5)
            .iter()
            .map(|v| v + 0.5)
            .collect();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert!(
                (g - w).abs() < 2e-3 + 2e-3 * w.abs(),
                "{kind} layernorm {i}: {g} vs {w}"
            );
        }
    });
}

#[test]
fn shares_are_uniform() {
    each_kind(|kind| {
        let n = 50_000;
        let run = run(kind, |p| {
            let v = vec![1.0; n];
            let mine = (p.role() == Role::Client).then_some(&v[..]);
            let s = ops::share_f64(p, Role::Client, mine, &[n])?;
            Ok(s.into_parts())
        });
        for role in [Role::Client, Role::Server] {
            for part in run.output(role) {
                for byte in [0, 3, 7] {
                    let bytes: Vec<u8> = part
                        .data()
                        .iter()
                        .map(|w| (w >> (8 * byte)) as u8)
                        .collect();
                    let chi = chi_square_bytes(&bytes);
                    assert!(chi < CHI_LIMIT, "{kind} {role} byte {byte}: chi^2 {chi}");
                }
            }
        }
    });
}

fn tcp_configs(kind: ProtocolKind) -> Vec<(super::party::PartyConfig, std::net::TcpListener)> {
    let listeners: Vec<std::net::TcpListener> = (0..3)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let addrs: Vec<std::net::SocketAddr> =
        listeners.iter().map(|l| l.local_addr().unwrap()).collect();
    let roles = kind.roles();
    let identities = super::tls::PartyTls::ephemeral(&roles).unwrap();
    listeners
        .into_iter()
        .zip(identities)
        .enumerate()
        .map(|(i, (l, tls))| {
            let cfg = super::party::PartyConfig {
                kind,
                role: roles[i],
                listen: addrs[i],
                peers: (0..3)
                    .filter(|&j| j != i)
                    .map(|j| (roles[j], addrs[j]))
                    .collect(),
                fixed: Default::default(),
                timeout: std::time::Duration::from_secs(20),
                deadline: std::time::Duration::from_secs(60),
                tls,
                seed: Some(SEED),
            };
            (cfg, l)
        })
        .collect()
}

/// Over TCP, each party on its own connections, the result is bit-identical to in-memory.
#[test]
fn tcp_matches_in_memory() {
    each_kind(|kind| {
        let x = normal(4 * 16, 3.0, 0.0, 10);
        let program = |p: &mut dyn Protocol| -> Result<Option<super::ring::RingTensor>> {
            let mine = (p.role() == Role::Client).then_some(&x[..]);
            let s = ops::share_f64(p, Role::Client, mine, &[4, 16])?;
            let sq = ops::mul(p, &s, &s)?;
            let y = approx::softmax(p, &sq, None)?;
            p.reveal(&y, Some(Role::Client))
        };
        let local = run(kind, program);
        let want = local.output(Role::Client).clone().unwrap();
        let results: Vec<_> = std::thread::scope(|sc| {
            let handles: Vec<_> = tcp_configs(kind)
                .into_iter()
                .map(|(cfg, l)| sc.spawn(move || super::party::run_party_on(&cfg, l, program)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().unwrap())
                .collect()
        });
        assert_eq!(results[0].0.as_ref().unwrap(), &want, "{kind}");
        assert!(results[0].1.online_total().bytes_sent > 0);
    });
}

/// A party that stops makes the others fail with a clear error, not hang.
#[test]
fn tcp_peer_loss_is_an_error() {
    let kind = ProtocolKind::TwoPartyDealer;
    let errors: Vec<String> = std::thread::scope(|sc| {
        let handles: Vec<_> = tcp_configs(kind)
            .into_iter()
            .map(|(cfg, l)| {
                sc.spawn(move || {
                    super::party::run_party_on(&cfg, l, |p| {
                        anyhow::ensure!(p.role() != Role::Server, "server quits");
                        let v = [1.0; 4];
                        let mine = (p.role() == Role::Client).then_some(&v[..]);
                        let s = ops::share_f64(p, Role::Client, mine, &[4])?;
                        p.reveal(&s, None)
                    })
                    .map(|_| ())
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap().err().map(|e| format!("{e:#}")))
            .collect()
    });
    assert!(
        errors.iter().any(|e| e.contains("server quits")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("the server disconnected")),
        "{errors:?}"
    );
}

/// A rank-0 share is one element: element-wise ops work on it, and ops along the last axis
/// refuse it with an error (they used to panic).
#[test]
fn rank_zero_shares() {
    each_kind(|kind| {
        let x = [-0.75];
        let fp = FixedPoint::default();
        let exact = Comparison::default_for(fp);
        let got = unary(kind, &x, &[], |p, s| {
            let sq = ops::mul(p, s, s)?;
            let relu = ops::relu(p, &s.neg(), exact)?;
            let e = approx::exp(p, s)?;
            let silu = approx::silu(p, s)?;
            Share::concat(
                &[
                    &sq.reshape(&[1])?,
                    &relu.reshape(&[1])?,
                    &e.reshape(&[1])?,
                    &silu.reshape(&[1])?,
                ],
                0,
            )
        });
        let want = [0.5625, 0.75, (-0.75f64).exp(), approx::silu_f64(-0.75)];
        check(&format!("{kind} rank 0"), &got, &want, 5e-3);

        type Op = fn(&mut dyn Protocol, &Share) -> Result<Share>;
        let along_last_axis: [(&str, Op); 7] = [
            ("max_last", |p, s| {
                let cmp = Comparison::default_for(p.fixed_point());
                ops::max_last(p, s, cmp)
            }),
            ("argmax_last", |p, s| {
                let cmp = Comparison::default_for(p.fixed_point());
                Ok(ops::argmax_last(p, s, cmp)?.0)
            }),
            ("softmax", |p, s| approx::softmax(p, s, None)),
            ("softmax_2quad", |p, s| approx::softmax_2quad(p, s, None)),
            ("rms_norm", |p, s| approx::rms_norm(p, s, None, 1e-5)),
            ("layer_norm", |p, s| {
                approx::layer_norm(p, s, None, None, 1e-5)
            }),
            ("rotary", |p, s| {
                let table = ops::encode(p, &[1.0], &[])?;
                ops::rotary(s, &table, &table)
            }),
        ];
        for (name, op) in along_last_axis {
            let err = run_local(kind, &opts(), |p| {
                let v = (p.role() == Role::Client).then_some(&x[..]);
                let s = ops::share_f64(p, Role::Client, v, &[])?;
                op(p, &s)
            })
            .err()
            .unwrap_or_else(|| panic!("{kind} {name} of a scalar must fail"));
            let err = format!("{err:#}");
            assert!(
                err.contains("scalar") || err.contains("got []"),
                "{kind} {name}: {err}"
            );
        }
    });
}

/// A polynomial of fewer than 2 coefficients is refused with an error on every protocol, and
/// the shortest one accepted, a line, is evaluated.
#[test]
fn polynomials_need_two_coefficients() {
    each_kind(|kind| {
        for coef in [&[][..], &[1.5][..]] {
            let err = run_local(kind, &opts(), |p| {
                let v = (p.role() == Role::Client).then_some(&[0.5][..]);
                let s = ops::share_f64(p, Role::Client, v, &[1])?;
                approx::polynomial(p, &s, coef)
            })
            .err()
            .unwrap_or_else(|| panic!("{kind}: {} coefficients must fail", coef.len()));
            assert!(format!("{err:#}").contains("at least 2"), "{kind}: {err:#}");
        }
        let got = unary(kind, &[0.5, -2.0], &[2], |p, s| {
            approx::polynomial(p, s, &[1.5, 2.0])
        });
        check(&format!("{kind} line"), &got, &[2.5, -2.5], 1e-3);
    });
}
