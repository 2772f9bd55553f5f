//! The JSON report of a secure evaluation: accuracy under MPC next to the same checkpoint's
//! plaintext accuracy, and what one example costs, by operation class.

use crate::mpc::cost::{CostReport, NetworkProfile};
use serde::Serialize;
use std::collections::BTreeMap;

/// The operation classes the secure forward labels its traffic with.
pub const CLASSES: [&str; 5] = ["matmul", "softmax", "norm", "activation", "other"];

#[derive(Debug, Clone, Serialize)]
pub struct SecureEvalReport {
    pub task: String,
    pub model: String,
    pub mode: &'static str,
    pub protocol: String,
    /// The network the headline estimate is for (both are in `est_seconds`).
    pub network: String,
    /// `train`, `validation`, `test`, or the `--data` file.
    pub rows: String,
    pub n: usize,
    pub accuracy: f64,
    pub plaintext_accuracy: f64,
    /// Fraction of rows where the MPC and the plaintext prediction agree.
    pub agreement: f64,
    /// Public layers the client ran in plaintext / private layers run under MPC.
    pub public_layers: usize,
    pub private_layers: usize,
    pub cost_per_example: ExampleCost,
    /// Sharing the server's weights, once for all examples (their masks are reused).
    pub weight_setup: PhaseCost,
    pub predictions: Vec<SecureRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SecureRow {
    pub id: String,
    pub target: usize,
    pub mpc: usize,
    pub plaintext: usize,
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
    pub by_class: BTreeMap<String, ClassCost>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Estimates {
    pub lan: f64,
    pub wan: f64,
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
        let mut by_class: BTreeMap<String, ClassCost> = CLASSES
            .iter()
            .map(|c| (c.to_string(), ClassCost::default()))
            .collect();
        for (label, cost) in &report.labels {
            let class = if CLASSES.contains(&label.as_str()) {
                label.as_str()
            } else {
                "other"
            };
            let entry = by_class.entry(class.to_string()).or_default();
            entry.online_bytes += per(cost.bytes as f64);
            entry.rounds += per(cost.rounds as f64);
        }
        ExampleCost {
            online_bytes: per(report.online_bytes as f64),
            offline_bytes: per(report.offline_bytes as f64),
            rounds: per(report.rounds as f64),
            wall_seconds: per(wall_seconds),
            est_seconds: Estimates {
                lan: per(report.estimated_seconds(&NetworkProfile::lan())),
                wan: per(report.estimated_seconds(&NetworkProfile::wan())),
            },
            by_class,
        }
    }
}
