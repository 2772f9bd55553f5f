//! The networks a run's time is estimated on, and a time on each of them.
//!
//! A run that sent `B` online bytes in `R` rounds with `C` seconds of local compute takes about
//! `C + 8·B / bandwidth + R · RTT` on a network ([`NetworkProfile::seconds`]); the profiles are
//! lan (1 Gbit/s, 0.5 ms RTT) and wan (100 Mbit/s, 80 ms RTT). On wan a round costs as much as
//! a megabyte, so rounds, not bytes, set a single query's latency there.

use super::cost::NetworkProfile;
use serde::{Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

/// A network profile by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Network {
    Lan,
    Wan,
}

impl Network {
    pub const ALL: [Network; 2] = [Network::Lan, Network::Wan];

    pub fn name(self) -> &'static str {
        match self {
            Network::Lan => "lan",
            Network::Wan => "wan",
        }
    }

    pub fn profile(self) -> NetworkProfile {
        match self {
            Network::Lan => NetworkProfile::lan(),
            Network::Wan => NetworkProfile::wan(),
        }
    }
}

impl FromStr for Network {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<Self> {
        Network::ALL
            .into_iter()
            .find(|n| n.name() == s)
            .ok_or_else(|| anyhow::anyhow!("unknown network {s:?} (lan, wan)"))
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Reports name the network, as `"lan"` / `"wan"`.
impl Serialize for Network {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Seconds on each network.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimates {
    pub lan: f64,
    pub wan: f64,
}

impl Estimates {
    /// `seconds` on every profile.
    pub fn of(seconds: impl Fn(&NetworkProfile) -> f64) -> Self {
        Estimates {
            lan: seconds(&Network::Lan.profile()),
            wan: seconds(&Network::Wan.profile()),
        }
    }

    pub fn on(&self, network: Network) -> f64 {
        match network {
            Network::Lan => self.lan,
            Network::Wan => self.wan,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_refused() {
        for n in Network::ALL {
            assert_eq!(n.name().parse::<Network>().unwrap(), n);
            assert_eq!(serde_json::to_value(n).unwrap(), n.name());
        }
        let err = "dsl".parse::<Network>().unwrap_err().to_string();
        assert_eq!(err, "unknown network \"dsl\" (lan, wan)");
    }

    #[test]
    fn estimates_are_taken_on_each_profile() {
        // One second of compute, 1 MB, 10 rounds.
        let e = Estimates::of(|net| net.seconds(1.0, 1e6, 10.0));
        assert!((e.on(Network::Lan) - (1.0 + 8e6 / 1e9 + 10.0 * 0.5e-3)).abs() < 1e-12);
        assert!((e.on(Network::Wan) - (1.0 + 8e6 / 1e8 + 10.0 * 0.08)).abs() < 1e-12);
    }
}
