//! Who a party is: client, server, and 2pc-dealer's dealer or 3pc's helper, by index.

use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Who a party is. Indices: client 0, server 1, dealer / helper 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Role {
    Client,
    Server,
    /// 2pc-dealer's source of correlated randomness; holds no data, learns nothing.
    Dealer,
    /// 3pc's third share holder.
    Helper,
}

impl Role {
    pub fn index(self) -> usize {
        match self {
            Role::Client => 0,
            Role::Server => 1,
            Role::Dealer | Role::Helper => 2,
        }
    }
}

impl FromStr for Role {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "client" => Role::Client,
            "server" => Role::Server,
            "dealer" => Role::Dealer,
            "helper" => Role::Helper,
            _ => anyhow::bail!("unknown role {s:?} (client, server, dealer, helper)"),
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Role::Client => "client",
            Role::Server => "server",
            Role::Dealer => "dealer",
            Role::Helper => "helper",
        };
        f.write_str(name)
    }
}
