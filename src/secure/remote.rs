//! Secure evaluation with every party its own process over TCP. The evaluating process is the
//! client; the server and the dealer (2pc-dealer) or helper (3pc) run `marill party --model …`,
//! started here on loopback or by hand on other machines. When the job is done, each of them
//! sends the client its costs, so that the report covers every party as in memory.

use super::forward::{ClientJob, PartyResult, SecureModel, SecureRun, secure_party};
use crate::mpc::comm::Phase;
use crate::mpc::cost::PartyCost;
use crate::mpc::party::{PartyConfig, run_party, run_party_on};
use crate::mpc::protocol::{ProtocolKind, Role};
use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The client's end of a TCP run.
#[derive(Debug, Clone)]
pub struct TcpClient {
    /// Where the client listens.
    pub listen: SocketAddr,
    /// The other parties' addresses (started by hand); empty: start them here on loopback.
    pub peers: Vec<(Role, SocketAddr)>,
    /// What the parties started here load: the checkpoint (or base model) under evaluation.
    pub model: String,
    pub timeout: Duration,
}

/// What a server / dealer / helper reports to the client at the end.
#[derive(Serialize, Deserialize)]
struct ReportedCosts {
    setup: PartyCost,
    examples: PartyCost,
}

/// A server, dealer or helper: serve one client job on `model`, then report the costs.
pub fn serve_secure(cfg: &PartyConfig, model: &SecureModel) -> Result<()> {
    run_party(cfg, |p| {
        let result = secure_party(p, model, None, |_| {})?;
        let costs = ReportedCosts {
            setup: result.setup,
            examples: p.comm().cost(),
        };
        let bytes = serde_json::to_vec(&costs)?;
        p.comm()
            .send_bytes(Role::Client.index(), &bytes, Phase::Offline)?;
        Ok(())
    })?;
    Ok(())
}

/// A party process started by [`run_secure_tcp`], with its stderr collected.
struct Spawned {
    role: Role,
    child: Child,
    stderr: Option<JoinHandle<String>>,
}

impl Spawned {
    /// Waits up to `grace` for the process to exit (then kills it); its error line, if it failed.
    fn finish(mut self, grace: Duration) -> Option<String> {
        let deadline = Instant::now() + grace;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        match status {
            Some(s) if s.success() => None,
            Some(_) => {
                let line = stderr.lines().rev().find(|l| !l.trim().is_empty());
                Some(format!(
                    "the {} process failed: {}",
                    self.role,
                    line.unwrap_or("(no message)").trim()
                ))
            }
            None => Some(format!(
                "the {} process did not finish and was stopped",
                self.role
            )),
        }
    }
}

/// The client's listener and where the other parties are (and the processes started for them).
struct Parties {
    listener: TcpListener,
    peers: Vec<(Role, SocketAddr)>,
    spawned: Vec<Spawned>,
}

/// Binds the client's listener and starts the server and third party of `kind` as processes of
/// this executable on loopback ports.
fn spawn_local(kind: ProtocolKind, client: &TcpClient) -> Result<Parties> {
    let loopback = |what: &str| {
        TcpListener::bind("127.0.0.1:0")
            .with_context(|| format!("binding a loopback port for {what}"))
    };
    let listener = loopback("the client")?;
    let roles = kind.roles();
    let mut addrs = vec![(Role::Client, listener.local_addr()?)];
    for &role in &roles[1..] {
        // The port is free once this listener drops; the party binds it again.
        addrs.push((role, loopback(&role.to_string())?.local_addr()?));
    }
    let exe = std::env::current_exe().context("locating the marill executable")?;
    let mut spawned = Vec::new();
    for &(role, addr) in &addrs[1..] {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "party",
            "--protocol",
            kind.name(),
            "--role",
            &role.to_string(),
        ])
        .args(["--listen", &addr.to_string(), "--model", &client.model])
        .args(["--timeout", &client.timeout.as_secs().max(1).to_string()]);
        for &(peer, peer_addr) in addrs.iter().filter(|(r, _)| *r != role) {
            cmd.args(["--peer", &format!("{peer}={peer_addr}")]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting the {role} process"))?;
        let stderr = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        });
        spawned.push(Spawned {
            role,
            child,
            stderr,
        });
    }
    Ok(Parties {
        listener,
        peers: addrs[1..].to_vec(),
        spawned,
    })
}

/// Runs `job` as the client over TCP, with the other parties at `client.peers` or, when none
/// are given, started here on loopback.
pub fn run_secure_tcp(
    kind: ProtocolKind,
    client: &TcpClient,
    model: &SecureModel,
    job: &ClientJob,
    done: impl Fn(usize),
) -> Result<SecureRun> {
    let Parties {
        listener,
        peers,
        spawned,
    } = if client.peers.is_empty() {
        spawn_local(kind, client)?
    } else {
        Parties {
            listener: TcpListener::bind(client.listen)
                .with_context(|| format!("listening on {}", client.listen))?,
            peers: client.peers.clone(),
            spawned: Vec::new(),
        }
    };
    let cfg = PartyConfig {
        kind,
        role: Role::Client,
        listen: listener.local_addr()?,
        peers,
        fixed: Default::default(),
        timeout: client.timeout,
        seed: None,
    };
    type Outcome = (PartyResult, PartyCost, Vec<ReportedCosts>);
    let outcome: Result<Outcome> = run_party_on(&cfg, listener, |p| {
        let result = secure_party(p, model, Some(job), &done)?;
        let examples = p.comm().cost();
        let reported = kind.roles()[1..]
            .iter()
            .map(|role| {
                let bytes = p.comm().recv_bytes(role.index(), Phase::Offline)?;
                serde_json::from_slice(&bytes).with_context(|| format!("the {role}'s cost report"))
            })
            .collect::<Result<Vec<ReportedCosts>>>()?;
        Ok((result, examples, reported))
    })
    .map(|(outcome, _)| outcome);
    let grace = if outcome.is_ok() {
        client.timeout
    } else {
        Duration::from_secs(2)
    };
    let failures: Vec<String> = spawned
        .into_iter()
        .filter_map(|s| s.finish(grace))
        .collect();
    let (result, examples, reported) = match (outcome, failures.first()) {
        (Ok(o), None) => o,
        // A party process's own error is the cause; the client's is its echo.
        (_, Some(failure)) => bail!("{failure}"),
        (Err(e), None) => return Err(e),
    };
    let mut setups = vec![result.setup.clone()];
    let mut costs = vec![examples];
    for r in reported {
        setups.push(r.setup);
        costs.push(r.examples);
    }
    SecureRun::collect(result, &setups, &costs)
}
