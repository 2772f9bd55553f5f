//! Cost accounting: traffic per party and per operation class, online vs offline, and the
//! estimated time on a network profile.

use super::transport::WireBytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The class of operation online traffic is counted under (see `ops::labelled`); its JSON key
/// is [`CostClass::as_str`]. A typed class: a misspelt one does not compile.
///
/// Declared in the alphabetical order of the keys, so maps keyed by class serialise in the
/// order string keys did.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum CostClass {
    /// SiLU / GeLU / Quad and the gated product.
    Activation,
    /// Products: with public or secret weights, and between shares.
    Matmul,
    /// RMSNorm / LayerNorm.
    Norm,
    /// Everything else: sharing inputs, revealing outputs, agreeing a job. Traffic outside any
    /// labelled operation falls here.
    #[default]
    Other,
    /// Softmax (exact or 2Quad).
    Softmax,
    /// Sharing the server's weights, once per run.
    Weights,
}

impl CostClass {
    pub const ALL: [CostClass; 6] = [
        CostClass::Activation,
        CostClass::Matmul,
        CostClass::Norm,
        CostClass::Other,
        CostClass::Softmax,
        CostClass::Weights,
    ];

    /// The JSON key.
    pub fn as_str(self) -> &'static str {
        match self {
            CostClass::Activation => "activation",
            CostClass::Matmul => "matmul",
            CostClass::Norm => "norm",
            CostClass::Other => "other",
            CostClass::Softmax => "softmax",
            CostClass::Weights => "weights",
        }
    }
}

impl fmt::Display for CostClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Traffic of one party in one phase (and label).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Traffic {
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub messages_sent: u64,
    pub messages_received: u64,
    /// Communication rounds: how far the longest chain of dependent online messages advanced
    /// while this label was active.
    pub rounds: u64,
    /// Wall time spent under this label (online labels only).
    pub seconds: f64,
}

impl Traffic {
    pub fn add(&mut self, other: &Traffic) {
        self.bytes_sent += other.bytes_sent;
        self.bytes_received += other.bytes_received;
        self.messages_sent += other.messages_sent;
        self.messages_received += other.messages_received;
        self.rounds += other.rounds;
        self.seconds += other.seconds;
    }
}

/// Everything one party measured during a run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PartyCost {
    /// Online traffic per operation class.
    pub online: BTreeMap<CostClass, Traffic>,
    /// Correlated randomness (dealer / helper material), which does not depend on the inputs.
    pub offline: Traffic,
    /// Wall time of the run minus time spent blocked on receives.
    pub compute_seconds: f64,
    pub wall_seconds: f64,
    /// Bytes on the wire (framing and TLS included), over a network transport; counted from
    /// the connection's start, so they include the setup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire: Option<WireBytes>,
}

impl PartyCost {
    pub fn online_total(&self) -> Traffic {
        let mut t = Traffic::default();
        self.online.values().for_each(|v| t.add(v));
        t
    }
}

/// Summary of a run over all parties.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CostReport {
    /// Online bytes sent, summed over parties.
    pub online_bytes: u64,
    /// Offline bytes sent (dealer / helper material), summed over parties.
    pub offline_bytes: u64,
    /// Online rounds of the party with the most.
    pub rounds: u64,
    /// Largest local compute time of a party.
    pub compute_seconds: f64,
    /// Per class: online bytes (summed), rounds and seconds (max over parties).
    pub labels: BTreeMap<CostClass, LabelCost>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LabelCost {
    pub bytes: u64,
    pub rounds: u64,
    /// Longest wall time a party spent under the label.
    pub seconds: f64,
}

impl CostReport {
    pub fn from_parties(parties: &[PartyCost]) -> Self {
        let mut r = CostReport::default();
        for p in parties {
            let total = p.online_total();
            r.online_bytes += total.bytes_sent;
            r.offline_bytes += p.offline.bytes_sent;
            r.rounds = r.rounds.max(total.rounds);
            r.compute_seconds = r.compute_seconds.max(p.compute_seconds);
            for (&class, t) in &p.online {
                let e = r.labels.entry(class).or_default();
                e.bytes += t.bytes_sent;
                e.rounds = e.rounds.max(t.rounds);
                e.seconds = e.seconds.max(t.seconds);
            }
        }
        r
    }

    /// `compute + online bytes / bandwidth + rounds * RTT`.
    pub fn estimated_seconds(&self, net: &NetworkProfile) -> f64 {
        net.seconds(
            self.compute_seconds,
            self.online_bytes as f64,
            self.rounds as f64,
        )
    }
}

/// A network to estimate time on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkProfile {
    pub name: String,
    pub bandwidth_bits_per_second: f64,
    pub rtt_seconds: f64,
}

impl NetworkProfile {
    /// 1 Gbit/s, 0.5 ms RTT.
    pub fn lan() -> Self {
        Self {
            name: "lan".into(),
            bandwidth_bits_per_second: 1e9,
            rtt_seconds: 0.5e-3,
        }
    }

    /// 100 Mbit/s, 80 ms RTT.
    pub fn wan() -> Self {
        Self {
            name: "wan".into(),
            bandwidth_bits_per_second: 1e8,
            rtt_seconds: 0.08,
        }
    }

    /// `compute + online bytes * 8 / bandwidth + rounds * RTT` on this network.
    pub fn seconds(&self, compute_seconds: f64, online_bytes: f64, rounds: f64) -> f64 {
        compute_seconds
            + online_bytes * 8.0 / self.bandwidth_bits_per_second
            + rounds * self.rtt_seconds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_adds_compute_bandwidth_and_latency() {
        let mut p = PartyCost {
            compute_seconds: 0.5,
            ..Default::default()
        };
        p.online.insert(
            CostClass::Matmul,
            Traffic {
                bytes_sent: 125_000_000,
                rounds: 10,
                ..Default::default()
            },
        );
        let r = CostReport::from_parties(&[p.clone(), p]);
        assert_eq!(r.online_bytes, 250_000_000);
        assert_eq!(r.rounds, 10);
        let est = r.estimated_seconds(&NetworkProfile::lan());
        assert!((est - (0.5 + 2.0 + 0.005)).abs() < 1e-9);
    }

    #[test]
    fn classes_serialise_as_their_json_keys() -> anyhow::Result<()> {
        let keys: Vec<&str> = CostClass::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(
            keys,
            [
                "activation",
                "matmul",
                "norm",
                "other",
                "softmax",
                "weights"
            ]
        );
        for class in CostClass::ALL {
            assert_eq!(serde_json::to_value(class)?, class.as_str());
            assert_eq!(class.to_string(), class.as_str());
        }
        // As map keys, in key order, and read back.
        let mut p = PartyCost::default();
        for class in CostClass::ALL.iter().rev() {
            p.online.insert(*class, Traffic::default());
        }
        let mut json = serde_json::to_value(&p)?;
        let online: Vec<&String> = json["online"].as_object().expect("a map").keys().collect();
        assert_eq!(online, keys);
        let back: PartyCost = serde_json::from_value(json.clone())?;
        assert_eq!(back.online, p.online);
        // A class nobody defined is refused, not filed under "other".
        let online = json["online"].as_object_mut().expect("a map");
        let matmul = online.remove("matmul").expect("matmul");
        online.insert("matmull".into(), matmul);
        assert!(serde_json::from_value::<PartyCost>(json).is_err());
        Ok(())
    }
}
