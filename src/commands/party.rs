//! `marill party`: one MPC party as its own process over TLS, running a `bench mpc` case, or
//! serving secure evaluation of a model (as its server, dealer or helper) to a client elsewhere
//! (`marill eval --mode mpc --transport tcp`). Only the server reads the private tensors.

use crate::bench::mpc::run_case_as_party;
use crate::mpc::party::PartyConfig;
use crate::mpc::protocol::{ProtocolKind, Role};
use crate::mpc::tls::PartyTls;
use crate::secure::remote::{serve_generation, serve_secure};
use crate::secure::{Holder, SecureModel, ServeOptions, Served};
use anyhow::Result;
use candle_core::Device;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub struct PartyCommand {
    pub protocol: ProtocolKind,
    pub role: Role,
    pub listen: SocketAddr,
    pub peers: Vec<(Role, SocketAddr)>,
    /// Per message.
    pub timeout: Duration,
    /// The whole run.
    pub deadline: Duration,
    /// This party's key and certificate, and each peer's certificate.
    pub tls_dir: PathBuf,
    pub job: PartyJob,
}

/// What the party runs.
pub enum PartyJob {
    /// A `bench mpc` case, by name.
    Case(String),
    /// Secure evaluation of a checkpoint or base model, under the policy `options` make: of
    /// its generation task by decoding, else of its choice task.
    Serve {
        model: String,
        options: ServeOptions,
    },
}

/// Runs the party; a bench case returns this party's report (costs, and at the client the
/// error against the reference).
pub fn run_party_command(cmd: PartyCommand, device: &Device) -> Result<Option<serde_json::Value>> {
    let peer_roles: Vec<Role> = cmd.peers.iter().map(|p| p.0).collect();
    let config = PartyConfig {
        kind: cmd.protocol,
        role: cmd.role,
        listen: cmd.listen,
        peers: cmd.peers,
        fixed: Default::default(),
        timeout: cmd.timeout,
        deadline: cmd.deadline,
        tls: PartyTls::load(&cmd.tls_dir, cmd.role, &peer_roles)?,
        seed: None,
    };
    match cmd.job {
        PartyJob::Case(case) => Ok(Some(run_case_as_party(&config, &case)?)),
        PartyJob::Serve { model, options } => {
            let holder = if cmd.role == Role::Server {
                Holder::Server
            } else {
                Holder::Public
            };
            let served = Served::load(&model, holder, device)?;
            if served.serves_generation(&options) {
                let policy = served.generation_policy(&options)?;
                let split = served.split?;
                let secure =
                    SecureModel::new(&served.loaded.model, split.public_layers, split.secrecy)?;
                serve_generation(&config, &secure, &policy)?;
                return Ok(None);
            }
            let policy = served.policy(&options)?;
            let split = served.split?;
            let secure =
                SecureModel::new(&served.loaded.model, split.public_layers, split.secrecy)?;
            serve_secure(&config, &secure, &policy)?;
            Ok(None)
        }
    }
}
