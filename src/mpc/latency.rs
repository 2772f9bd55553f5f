//! The latency of one query: what a single input pays when it runs alone (batch 1), as opposed
//! to the amortised cost per example of a batch, where the batch's rounds are shared.
//!
//! `latency = compute + 8·online bytes / bandwidth + rounds · RTT` on each network
//! ([`super::network`]). Dividing a batch's rounds by its rows hides this: a batch of `B`
//! examples pays about the rounds of one query, so its per-example rounds are `1/B` of a
//! query's latency.

use super::cost::CostReport;
use super::network::Estimates;
use serde::Serialize;

/// How a latency was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Basis {
    /// From runs of one query alone.
    Measured,
    /// From a batched run (what the computation reporting it documents).
    Derived,
}

impl Basis {
    pub fn name(self) -> &'static str {
        match self {
            Basis::Measured => "measured",
            Basis::Derived => "derived",
        }
    }
}

/// One query alone, and its estimated time on each network.
#[derive(Debug, Clone, Serialize)]
pub struct QueryLatency {
    pub basis: Basis,
    pub rounds: f64,
    pub online_bytes: f64,
    pub compute_seconds: f64,
    pub est_seconds: Estimates,
}

impl QueryLatency {
    pub fn new(basis: Basis, rounds: f64, online_bytes: f64, compute_seconds: f64) -> Self {
        QueryLatency {
            basis,
            rounds,
            online_bytes,
            compute_seconds,
            est_seconds: Estimates::of(|net| net.seconds(compute_seconds, online_bytes, rounds)),
        }
    }

    /// The costs of a run that was one query.
    pub fn measured(report: &CostReport) -> Self {
        Self::new(
            Basis::Measured,
            report.rounds as f64,
            report.online_bytes as f64,
            report.compute_seconds,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpc::network::Network;

    #[test]
    fn a_measured_query_is_estimated_like_its_run() {
        let report = CostReport {
            online_bytes: 2_000_000,
            rounds: 100,
            compute_seconds: 0.25,
            ..Default::default()
        };
        let l = QueryLatency::measured(&report);
        assert_eq!(l.basis, Basis::Measured);
        for n in Network::ALL {
            assert_eq!(l.est_seconds.on(n), report.estimated_seconds(&n.profile()));
        }
        // On wan: 0.25 s + 16 Mbit / 100 Mbit/s + 100 × 80 ms.
        assert!((l.est_seconds.wan - (0.25 + 0.16 + 8.0)).abs() < 1e-12);
        let json = serde_json::to_value(&l).unwrap();
        assert_eq!(json["basis"], "measured");
        assert_eq!(json["rounds"], 100.0);
    }
}
