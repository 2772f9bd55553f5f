//! `marill bench mpc`: cost and accuracy of the engine's key operations and of one
//! SmolLM2-shaped layer, per protocol.

use super::approx;
use super::bench_layer::{self, LayerShape};
use super::cost::{CostReport, LabelCost, NetworkProfile, PartyCost};
use super::latency::QueryLatency;
use super::local::{RunOptions, run_local};
use super::ops;
use super::prg::Prg;
use super::protocol::{Protocol, ProtocolKind, Role};
use super::share::Share;
use anyhow::{Result, ensure};
use serde::Serialize;
use std::collections::BTreeMap;

/// One case on one protocol. Bytes are summed over parties; the one-time weight setup is
/// excluded (reported by the matmul case's `setup_bytes`).
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    pub online_bytes: u64,
    pub offline_bytes: u64,
    pub rounds: u64,
    /// Online phase, in-process transport (the dealer's material is produced beforehand);
    /// the median of `wall_seconds_runs`.
    pub wall_seconds: f64,
    /// Each run's online wall time. Bytes, rounds and errors are the median run's (bytes and
    /// rounds are the same in every run).
    pub wall_seconds_runs: Vec<f64>,
    pub rel_l2_error: f64,
    pub max_abs_error: f64,
    pub est_lan_seconds: f64,
    pub est_wan_seconds: f64,
    /// Every case is one query (no batch shares its rounds), so its latency is measured.
    pub latency_one_query: QueryLatency,
    pub labels: BTreeMap<String, LabelCost>,
    /// For layers: relative L2 error of the layer's update `out - x` (the residual excluded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rel_l2_error_update: Option<f64>,
}

/// protocol name -> case name -> result.
pub type BenchReport = BTreeMap<String, BTreeMap<String, CaseResult>>;

const SEED: u64 = 5;

fn gaussian(n: usize, sd: f64, tag: u64) -> Vec<f64> {
    Prg::from_seed(Prg::derived_seed(SEED, tag)).gaussian(n, sd)
}

fn errors(got: &[f64], want: &[f64]) -> (f64, f64) {
    let num: f64 = got.iter().zip(want).map(|(a, b)| (a - b).powi(2)).sum();
    let den: f64 = want.iter().map(|b| b * b).sum();
    let max = got
        .iter()
        .zip(want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    ((num / den).sqrt(), max)
}

/// A party's program that ends with a result revealed to the client.
pub type CaseProgram = Box<dyn Fn(&mut dyn Protocol) -> Result<Option<Vec<f64>>> + Sync>;

/// A benchmark case: the program every party runs (setup, `reset_cost`, the measured part,
/// the result revealed to the client) and the f64 reference.
pub struct CaseSpec {
    pub program: CaseProgram,
    pub want: Vec<f64>,
    /// For layers: the residual input, to report the error of the update alone.
    pub residual: Option<Vec<f64>>,
}

/// The benchmark cases, by name.
pub const CASES: [&str; 5] = [
    "softmax_9x64x64",
    "sigmoid_9x64x64",
    "rsqrt",
    "matmul_64x576x1536",
    "llama_layer_64",
];

/// Client input, reset the counters, apply `op`, reveal to the client.
fn unary_spec(
    x: Vec<f64>,
    shape: Vec<usize>,
    op: impl Fn(&mut dyn Protocol, &Share) -> Result<Share> + Sync + 'static,
    reference: impl Fn(f64) -> f64,
) -> CaseSpec {
    let want = x.iter().map(|&v| reference(v)).collect();
    let program = move |p: &mut dyn Protocol| {
        let mine = (p.role() == Role::Client).then_some(&x[..]);
        let s = ops::share_f64(p, Role::Client, mine, &shape)?;
        p.comm().reset_cost();
        let y = op(p, &s)?;
        ops::reveal_f64(p, &y, Some(Role::Client))
    };
    CaseSpec {
        program: Box::new(program),
        want,
        residual: None,
    }
}

fn softmax_rows_f64(x: &[f64], n: usize) -> Vec<f64> {
    x.chunks(n)
        .enumerate()
        .flat_map(|(r, row)| {
            let i = r % n;
            let m = row[..=i].iter().copied().fold(f64::MIN, f64::max);
            let e: Vec<f64> = (0..n)
                .map(|j| if j <= i { (row[j] - m).exp() } else { 0.0 })
                .collect();
            let z: f64 = e.iter().sum();
            e.into_iter().map(move |v| v / z)
        })
        .collect()
}

/// The program and reference of case `name` (one of [`CASES`]).
pub fn case_spec(name: &str) -> Result<CaseSpec> {
    Ok(match name {
        "softmax_9x64x64" => {
            let scores = gaussian(9 * 64 * 64, 3.0, 1);
            let want = softmax_rows_f64(&scores, 64);
            CaseSpec {
                want,
                ..unary_spec(
                    scores,
                    vec![9, 64, 64],
                    |p, s| approx::softmax(p, s, Some(&approx::causal_mask(s.shape()))),
                    |v| v,
                )
            }
        }
        "sigmoid_9x64x64" => unary_spec(
            gaussian(9 * 64 * 64, 4.0, 2),
            vec![9, 64, 64],
            approx::sigmoid,
            approx::sigmoid_f64,
        ),
        "rsqrt" => {
            // Mean squares of RMSNorm rows, log-uniform over [1e-3, 1e4], shared with 8 extra
            // fractional bits as the norms keep them.
            let ms: Vec<f64> = (0..64)
                .map(|i| 1e-3 * 10f64.powf(7.0 * i as f64 / 63.0))
                .collect();
            let want = ms.iter().map(|v| 1.0 / v.sqrt()).collect();
            let wide: Vec<f64> = ms.iter().map(|v| v * 256.0).collect();
            CaseSpec {
                want,
                ..unary_spec(
                    wide,
                    vec![64],
                    |p, s| {
                        let f = p.fixed_point().frac_bits;
                        approx::rsqrt(p, s, f + 8, 5e-4, 2e4)
                    },
                    |v| v,
                )
            }
        }
        "matmul_64x576x1536" => matmul_spec(),
        "llama_layer_64" => layer_spec(),
        _ => anyhow::bail!("unknown case {name:?}; cases: {}", CASES.join(", ")),
    })
}

fn matmul_spec() -> CaseSpec {
    let (m, k, n) = (64, 576, 1536);
    let x = gaussian(m * k, 1.0, 3);
    let w = gaussian(k * n, 1.0 / (k as f64).sqrt(), 4);
    let mut want = vec![0.0; m * n];
    for i in 0..m {
        for kk in 0..k {
            for j in 0..n {
                want[i * n + j] += x[i * k + kk] * w[kk * n + j];
            }
        }
    }
    let program = move |p: &mut dyn Protocol| {
        let server = p.role() == Role::Server;
        let ws = ops::weight_f64(p, server.then_some(&w[..]), &[k, n])?;
        let mine = (p.role() == Role::Client).then_some(&x[..]);
        let xs = ops::share_f64(p, Role::Client, mine, &[m, k])?;
        p.comm().reset_cost();
        let y = ops::matmul_weight(p, &xs, &ws)?;
        ops::reveal_f64(p, &y, Some(Role::Client))
    };
    CaseSpec {
        program: Box::new(program),
        want,
        residual: None,
    }
}

fn layer_spec() -> CaseSpec {
    let s = LayerShape::smollm2(64);
    let w = bench_layer::random_weights(&s, SEED);
    let x = bench_layer::random_input(&s, SEED);
    let want = bench_layer::layer_f64(&s, &x, &w);
    let residual = Some(x.clone());
    let program = move |p: &mut dyn Protocol| {
        let (shared, xs) = bench_layer::setup_layer(p, &s, &x, &w)?;
        p.comm().reset_cost();
        let y = bench_layer::layer(p, &s, &xs, &shared)?;
        ops::reveal_f64(p, &y, Some(Role::Client))
    };
    CaseSpec {
        program: Box::new(program),
        want,
        residual,
    }
}

/// Score what the client got against the case's reference.
fn score(
    spec: &CaseSpec,
    got: &[f64],
    report: &CostReport,
    wall_seconds: f64,
) -> Result<CaseResult> {
    ensure!(
        got.len() == spec.want.len(),
        "result length {} vs {}",
        got.len(),
        spec.want.len()
    );
    let (rel, max) = errors(got, &spec.want);
    let update = spec.residual.as_ref().map(|x| {
        let minus = |v: &[f64]| -> Vec<f64> { v.iter().zip(x).map(|(a, b)| a - b).collect() };
        errors(&minus(got), &minus(&spec.want)).0
    });
    Ok(CaseResult {
        online_bytes: report.online_bytes,
        offline_bytes: report.offline_bytes,
        rounds: report.rounds,
        wall_seconds,
        wall_seconds_runs: vec![wall_seconds],
        rel_l2_error: rel,
        max_abs_error: max,
        est_lan_seconds: report.estimated_seconds(&NetworkProfile::lan()),
        est_wan_seconds: report.estimated_seconds(&NetworkProfile::wan()),
        latency_one_query: QueryLatency::measured(report),
        labels: report.labels.clone(),
        rel_l2_error_update: update,
    })
}

/// Run case `name` with all parties in this process, `runs` times (the machine's noise shows in
/// single wall times; their median is what is reported).
pub fn run_case(kind: ProtocolKind, name: &str, runs: usize) -> Result<CaseResult> {
    ensure!(runs > 0, "--runs must be at least 1");
    let spec = case_spec(name)?;
    let opts = RunOptions {
        dealer_first: true,
        ..Default::default()
    };
    let mut results = (0..runs)
        .map(|_| {
            let run = run_local(kind, &opts, &spec.program)?;
            let got = run
                .output(Role::Client)
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("client got no result"))?;
            score(&spec, got, &run.report, run.online_wall_seconds)
        })
        .collect::<Result<Vec<_>>>()?;
    let walls: Vec<f64> = results.iter().map(|r| r.wall_seconds).collect();
    results.sort_by(|a, b| a.wall_seconds.total_cmp(&b.wall_seconds));
    let mut median = results.swap_remove(runs / 2);
    median.wall_seconds_runs = walls;
    Ok(median)
}

/// Score a case run over TCP from the client's output and all parties' costs.
pub fn score_case(
    name: &str,
    got: &[f64],
    costs: &[PartyCost],
    wall_seconds: f64,
) -> Result<CaseResult> {
    score(
        &case_spec(name)?,
        got,
        &CostReport::from_parties(costs),
        wall_seconds,
    )
}

/// All cases for each protocol, each run `runs` times.
pub fn bench(protocols: &[ProtocolKind], runs: usize) -> Result<BenchReport> {
    protocols
        .iter()
        .map(|&kind| {
            let cases = CASES
                .iter()
                .map(|&c| Ok((c.to_string(), run_case(kind, c, runs)?)))
                .collect::<Result<BTreeMap<_, _>>>()?;
            Ok((kind.name().into(), cases))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::latency::Basis;

    #[test]
    fn a_case_is_one_query_whose_latency_is_its_estimate() -> Result<()> {
        let r = run_case(ProtocolKind::TwoPartyDealer, "rsqrt", 1)?;
        let q = &r.latency_one_query;
        assert_eq!(q.basis, Basis::Measured);
        assert_eq!(
            (q.rounds, q.online_bytes),
            (r.rounds as f64, r.online_bytes as f64)
        );
        assert!(r.rounds > 0);
        assert_eq!(q.est_seconds.lan, r.est_lan_seconds);
        assert_eq!(q.est_seconds.wan, r.est_wan_seconds);
        Ok(())
    }
}
