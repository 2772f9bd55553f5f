//! The JSON report of a secure evaluation: accuracy under MPC next to the same checkpoint's
//! plaintext accuracy, what one example costs (amortised over the batches it ran in), by
//! operation class, and the latency of one query alone.
//!
//! # One query's latency
//!
//! A forward of `B` examples pays the rounds of one query of its longest prompt alone (every
//! operation works on all rows at once; only each further example's reveal adds rounds), so
//! per-example rounds are about `1/B` of what a lone query waits for. `latency_one_query` takes
//! from the run:
//! - rounds: each party's rounds from a forward's start to its first example's reveal, the
//!   party with the most, averaged over the forwards: exactly a batch-1 run's rounds per
//!   example when the prompts are as long;
//! - online bytes and compute: the per-example share of the run; padding to a forward's
//!   longest prompt makes the bytes an upper bound of a lone query's, and raises the compute
//!   too (the quickstart student, 4 test rows on 2pc-dealer: 1,252 rounds, 84.0 MB, 2.31 s
//!   derived at batch 4 against 1,244 rounds, 77.8 MB, 1.61 s measured at batch 1; wan
//!   latency 109.2 s against 107.4 s).
//!
//! Then `compute + 8·bytes / bandwidth + rounds · RTT` on lan and wan. It is `measured` when
//! every forward held one example (batch 1), else `derived`.

use crate::mpc::cost::{CostClass, CostReport};
use crate::mpc::latency::{Basis, QueryLatency};
pub use crate::mpc::network::Estimates;
use crate::mpc::network::Network;
use serde::Serialize;
use std::collections::BTreeMap;

/// The classes of an example's traffic, each always in `by_class` (the weights are shared once
/// per run, reported as `weight_setup`).
pub const EXAMPLE_CLASSES: [CostClass; 5] = [
    CostClass::Matmul,
    CostClass::Softmax,
    CostClass::Norm,
    CostClass::Activation,
    CostClass::Other,
];

#[derive(Debug, Clone, Serialize)]
pub struct SecureEvalReport {
    pub task: String,
    pub model: String,
    pub mode: &'static str,
    pub protocol: String,
    /// The network the headline estimate is for (both are in `est_seconds`).
    pub network: Network,
    /// Examples per secure forward.
    pub batch: usize,
    /// `train`, `validation`, `test`, or the `--data` file.
    pub rows: String,
    pub n: usize,
    pub accuracy: f64,
    /// The same model in plaintext on the same rows, when that reference was run (it reads the
    /// private tensors, which a client does not hold).
    pub plaintext_accuracy: Option<f64>,
    /// Fraction of rows where the MPC and the plaintext prediction agree (with the reference).
    pub agreement: Option<f64>,
    /// Whether the server revealed the choice scores to the client (its debugging flag); the
    /// client normally learns only the chosen label.
    pub scores_revealed: bool,
    /// Public layers the client ran in plaintext / private layers run under MPC.
    pub public_layers: usize,
    pub private_layers: usize,
    pub cost_per_example: ExampleCost,
    /// One query alone at batch 1 (module docs: measured, or derived from the batched run).
    pub latency_one_query: QueryLatency,
    /// Sharing the server's weights, once for all examples (their masks are reused).
    pub weight_setup: PhaseCost,
    /// Over TCP: bytes on the wire (frame headers and TLS included) as received by every
    /// party, for the whole run, setup included; beside `online_bytes + offline_bytes` of the
    /// payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wire_bytes: Option<u64>,
    pub predictions: Vec<SecureRow>,
}

impl SecureEvalReport {
    /// What `marill eval --mode mpc` prints.
    pub fn summary(&self) -> String {
        let c = &self.cost_per_example;
        let reference = match (self.plaintext_accuracy, self.agreement) {
            (Some(p), Some(a)) => format!(", plaintext accuracy {p:.4}, agreement {a:.4}"),
            _ => String::new(),
        };
        let mut out = format!(
            "{} {} (mpc {}, {}): accuracy {:.4}{reference} (n {})\n",
            self.task, self.rows, self.protocol, self.model, self.accuracy, self.n
        );
        out += &format!(
            "per example (batches of {}): {:.2} MB online, {:.2} MB offline, {:.0} rounds, {:.2} s measured, {:.2} s estimated on {} (lan {:.2} s, wan {:.2} s)",
            self.batch,
            c.online_bytes / 1e6,
            c.offline_bytes / 1e6,
            c.rounds,
            c.wall_seconds,
            c.est_seconds.on(self.network),
            self.network,
            c.est_seconds.lan,
            c.est_seconds.wan
        );
        let q = &self.latency_one_query;
        out += &format!(
            "\none query alone (batch 1, {}): {:.2} MB online, {:.0} rounds, {:.2} s latency estimated on {} (lan {:.2} s, wan {:.2} s)",
            q.basis.name(),
            q.online_bytes / 1e6,
            q.rounds,
            q.est_seconds.on(self.network),
            self.network,
            q.est_seconds.lan,
            q.est_seconds.wan
        );
        if let Some(w) = self.wire_bytes {
            let payload = self.n as f64 * (c.online_bytes + c.offline_bytes)
                + (self.weight_setup.online_bytes + self.weight_setup.offline_bytes) as f64;
            out += &format!(
                "\non the wire (whole run, all parties, TLS and framing included): {:.2} MB for {:.2} MB of payload",
                w as f64 / 1e6,
                payload / 1e6
            );
        }
        if self.scores_revealed {
            out += "\nwarning: the server revealed every choice score to the client (its --reveal-scores debugging flag)";
        }
        out
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct SecureRow {
    pub id: String,
    pub target: usize,
    pub mpc: usize,
    pub plaintext: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseCost {
    pub online_bytes: u64,
    pub offline_bytes: u64,
    pub rounds: u64,
}

impl PhaseCost {
    pub fn of(report: &CostReport) -> Self {
        PhaseCost {
            online_bytes: report.online_bytes,
            offline_bytes: report.offline_bytes,
            rounds: report.rounds,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ExampleCost {
    pub online_bytes: f64,
    pub offline_bytes: f64,
    pub rounds: f64,
    /// Measured in-process (no network), longest of client and server.
    pub wall_seconds: f64,
    pub est_seconds: Estimates,
    pub by_class: BTreeMap<CostClass, ClassCost>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassCost {
    pub online_bytes: f64,
    pub rounds: f64,
}

impl ExampleCost {
    /// The mean over `n` examples of a run that did nothing but their forwards.
    pub fn mean(report: &CostReport, wall_seconds: f64, n: usize) -> Self {
        let per = |v: f64| v / n.max(1) as f64;
        let mut by_class: BTreeMap<CostClass, ClassCost> = EXAMPLE_CLASSES
            .iter()
            .map(|&c| (c, ClassCost::default()))
            .collect();
        for (&class, cost) in &report.labels {
            let entry = by_class.entry(class).or_default();
            entry.online_bytes += per(cost.bytes as f64);
            entry.rounds += per(cost.rounds as f64);
        }
        ExampleCost {
            online_bytes: per(report.online_bytes as f64),
            offline_bytes: per(report.offline_bytes as f64),
            rounds: per(report.rounds as f64),
            wall_seconds: per(wall_seconds),
            est_seconds: Estimates::of(|net| per(report.estimated_seconds(net))),
            by_class,
        }
    }
}

/// One query alone, from a run of `n` examples in `forwards` forwards whose party with the most
/// counted `query_rounds` from its forwards' starts to their first reveals (module docs).
pub fn latency_one_query(
    examples: &CostReport,
    n: usize,
    forwards: usize,
    query_rounds: u64,
) -> QueryLatency {
    let per_example = |v: f64| v / n.max(1) as f64;
    let basis = if forwards == n {
        Basis::Measured
    } else {
        Basis::Derived
    };
    QueryLatency::new(
        basis,
        query_rounds as f64 / forwards.max(1) as f64,
        per_example(examples.online_bytes as f64),
        per_example(examples.compute_seconds),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::cost::LabelCost;

    #[test]
    fn every_example_class_is_reported_under_its_key() -> anyhow::Result<()> {
        let mut report = CostReport::default();
        let softmax = LabelCost {
            bytes: 300,
            rounds: 6,
            seconds: 0.0,
        };
        report.labels.insert(CostClass::Softmax, softmax);
        let cost = ExampleCost::mean(&report, 1.0, 3);
        let json = serde_json::to_value(&cost)?;
        let keys: Vec<&String> = json["by_class"]
            .as_object()
            .expect("a map")
            .keys()
            .collect();
        assert_eq!(keys, ["activation", "matmul", "norm", "other", "softmax"]);
        assert_eq!(json["by_class"]["softmax"]["online_bytes"], 100.0);
        assert_eq!(json["by_class"]["softmax"]["rounds"], 2.0);
        assert_eq!(json["by_class"]["matmul"]["online_bytes"], 0.0);
        Ok(())
    }
}
