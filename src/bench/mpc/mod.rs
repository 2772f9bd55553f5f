//! `marill bench mpc`: cost and accuracy of the engine's key operations ([`op_cases`]) and of
//! one SmolLM2-shaped secure layer ([`layer_case`]), per protocol, with every party in this
//! process ([`run_case`]) or as its own process over TCP ([`run_case_as_party`]).

pub mod case;
pub mod layer_case;
pub mod op_cases;

use crate::mpc::cost::{CostClass, CostReport, LabelCost, NetworkProfile};
use crate::mpc::latency::QueryLatency;
use crate::mpc::local::{RunOptions, run_local};
use crate::mpc::party::{PartyConfig, run_party};
use crate::mpc::protocol::{ProtocolKind, Role};
use anyhow::{Result, ensure};
use case::CaseSpec;
use serde::Serialize;
use std::collections::BTreeMap;

/// One case on one protocol. Bytes are summed over parties; the setup (sharing the inputs and
/// the server's weights, whose masks are opened once) is excluded.
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
    pub labels: BTreeMap<CostClass, LabelCost>,
    /// For layers: relative L2 error of the layer's update `out - x` (the residual excluded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rel_l2_error_update: Option<f64>,
}

/// protocol name -> case name -> result.
pub type BenchReport = BTreeMap<String, BTreeMap<String, CaseResult>>;

/// The benchmark cases, by name.
pub const CASES: [&str; 5] = [
    "softmax_9x64x64",
    "sigmoid_9x64x64",
    "rsqrt",
    "matmul_64x576x1536",
    "llama_layer_64",
];

/// The program and reference of case `name` (one of [`CASES`]).
pub fn case_spec(name: &str) -> Result<CaseSpec> {
    Ok(match name {
        "softmax_9x64x64" => op_cases::softmax_9x64x64(),
        "sigmoid_9x64x64" => op_cases::sigmoid_9x64x64(),
        "rsqrt" => op_cases::rsqrt(),
        "matmul_64x576x1536" => op_cases::matmul_64x576x1536(),
        "llama_layer_64" => layer_case::decoder_layer(&layer_case::smollm2_layer(), 64)?,
        _ => anyhow::bail!("unknown case {name:?}; cases: {}", CASES.join(", ")),
    })
}

/// Relative L2 and largest absolute error of `got` against `want`.
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

/// Run `spec` with all parties in this process, `runs` times (the machine's noise shows in
/// single wall times; their median is what is reported).
fn run_spec(kind: ProtocolKind, spec: &CaseSpec, runs: usize) -> Result<CaseResult> {
    ensure!(runs > 0, "--runs must be at least 1");
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
            score(spec, got, &run.report, run.online_wall_seconds)
        })
        .collect::<Result<Vec<_>>>()?;
    let walls: Vec<f64> = results.iter().map(|r| r.wall_seconds).collect();
    results.sort_by(|a, b| a.wall_seconds.total_cmp(&b.wall_seconds));
    let mut median = results.swap_remove(runs / 2);
    median.wall_seconds_runs = walls;
    Ok(median)
}

/// Run case `name` with all parties in this process, `runs` times.
pub fn run_case(kind: ProtocolKind, name: &str, runs: usize) -> Result<CaseResult> {
    run_spec(kind, &case_spec(name)?, runs)
}

/// Cases `names` (empty: all of [`CASES`]) for each protocol, each run `runs` times.
pub fn bench(protocols: &[ProtocolKind], names: &[String], runs: usize) -> Result<BenchReport> {
    let all: Vec<String> = CASES.iter().map(|c| c.to_string()).collect();
    let names = if names.is_empty() { &all[..] } else { names };
    protocols
        .iter()
        .map(|&kind| {
            let cases = names
                .iter()
                .map(|c| Ok((c.clone(), run_case(kind, c, runs)?)))
                .collect::<Result<BTreeMap<_, _>>>()?;
            Ok((kind.name().into(), cases))
        })
        .collect()
}

/// `marill party`: run case `name` as this party over TCP. Returns this party's costs, and for
/// the client the result's error against the reference.
pub fn run_case_as_party(cfg: &PartyConfig, name: &str) -> Result<serde_json::Value> {
    let spec = case_spec(name)?;
    let (got, cost) = run_party(cfg, |p| (spec.program)(p))?;
    let mut report = serde_json::json!({
        "protocol": cfg.kind.name(),
        "role": cfg.role.to_string(),
        "case": name,
        "cost": cost,
    });
    if let Some(got) = got {
        let costs = CostReport::from_parties(std::slice::from_ref(&cost));
        let scored = score(&spec, &got, &costs, cost.wall_seconds)?;
        report["rel_l2_error"] = scored.rel_l2_error.into();
        report["max_abs_error"] = scored.max_abs_error.into();
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LlamaConfig;
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

    /// A layer case at the tiny model's shape, so the test runs in seconds.
    fn tiny_layer_case() -> Result<CaseSpec> {
        let config = LlamaConfig {
            num_hidden_layers: 1,
            ..LlamaConfig::tiny()
        };
        layer_case::decoder_layer(&config, 12)
    }

    #[test]
    fn the_secure_layer_matches_the_plaintext_layer_on_every_protocol() -> Result<()> {
        let spec = tiny_layer_case()?;
        for kind in ProtocolKind::ALL {
            let r = run_spec(kind, &spec, 1)?;
            assert!(r.rel_l2_error < 1e-2, "{kind}: {}", r.rel_l2_error);
            let update = r.rel_l2_error_update.expect("a layer reports its update");
            assert!(update < 2e-2, "{kind}: update {update}");
            assert!(r.rounds > 0 && r.online_bytes > 0 && r.offline_bytes > 0);
            let json = serde_json::to_value(&r)?;
            let keys: Vec<&String> = json["labels"].as_object().expect("labels").keys().collect();
            assert_eq!(
                keys,
                ["activation", "matmul", "norm", "other", "softmax"],
                "{kind}"
            );
        }
        Ok(())
    }

    /// `llama_layer_64`'s exact online bytes (all parties) and rounds per protocol, as
    /// README and docs/costs.md quote them (2026-12-02): a change to the layer's cost fails
    /// here and must update them on purpose.
    #[test]
    fn the_smollm2_layer_costs_what_the_docs_say() -> Result<()> {
        let spec = case_spec("llama_layer_64")?;
        for (kind, bytes, rounds) in [
            (ProtocolKind::TwoPartyDealer, 19_711_344, 48),
            (ProtocolKind::ThreeParty, 44_662_784, 76),
        ] {
            let r = run_spec(kind, &spec, 1)?;
            assert_eq!((r.online_bytes, r.rounds), (bytes, rounds), "{kind}");
            assert!(r.rel_l2_error < 1e-3, "{kind}: {}", r.rel_l2_error);
        }
        Ok(())
    }

    /// Every process of a TCP run builds its case alone: the data must not depend on the run.
    #[test]
    fn cases_are_built_the_same_every_time() -> Result<()> {
        let (a, b) = (tiny_layer_case()?, tiny_layer_case()?);
        assert_eq!(a.want, b.want);
        assert_eq!(a.residual, b.residual);
        assert_eq!(case_spec("rsqrt")?.want, case_spec("rsqrt")?.want);
        Ok(())
    }

    #[test]
    fn unknown_cases_and_zero_runs_are_refused() {
        let err = case_spec("llama_layer_65").err().expect("unknown");
        assert!(err.to_string().contains("llama_layer_64"), "{err}");
        let err = run_case(ProtocolKind::TwoPartyDealer, "rsqrt", 0).unwrap_err();
        assert!(err.to_string().contains("--runs"), "{err}");
    }
}
