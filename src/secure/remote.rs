//! Secure evaluation with every party its own process over TCP. The evaluating process is the
//! client; the server and the dealer (2pc-dealer) or helper (3pc) run `marill party --model …`,
//! started here on loopback or by hand on other machines. When the job is done, each of them
//! sends the client its costs, so that the report covers every party as in memory. Choice
//! tasks and generation (`super::generate`) alike.
//!
//! Every connection is mutually authenticated TLS (`crate::mpc::tls`). Parties started here get
//! fresh identities, written for them into a private temporary directory and removed after
//! the run; parties started by hand bring their own (`marill keygen`).

use super::forward::{ClientJob, SecureModel, SecureRun, secure_party};
use super::generate::{ClientGeneration, GenerationPartyResult, GenerationRun, generation_party};
use super::policy::{GenerationPolicy, ServePolicy};
use super::served::ServeOptions;
use crate::mpc::comm::Phase;
use crate::mpc::cost::PartyCost;
use crate::mpc::party::{PartyConfig, run_party, run_party_on};
use crate::mpc::protocol::{Protocol, ProtocolKind, Role};
use crate::mpc::tls::{PartyTls, write_ephemeral};
use crate::mpc::transport::Expect;
use anyhow::{Context, Result, bail};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
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
    /// What the server started here serves (a base model's task, prompt format and length).
    pub serve: ServeOptions,
    /// Per message.
    pub timeout: Duration,
    /// The whole run.
    pub deadline: Duration,
    /// Parties started by hand: this client's identity and their pinned certificates.
    pub tls: Option<PartyTls>,
}

/// The longest cost report a party may send the client.
const MAX_COST_REPORT_BYTES: usize = 1 << 20;

/// What a server / dealer / helper reports to the client at the end.
#[derive(Serialize, Deserialize)]
struct ReportedCosts {
    setup: PartyCost,
    examples: PartyCost,
    query_rounds: u64,
}

/// A server, dealer or helper: serve one client job on `model` under `policy`, then report
/// the costs.
pub fn serve_secure(cfg: &PartyConfig, model: &SecureModel, policy: &ServePolicy) -> Result<()> {
    run_party(cfg, |p| {
        let result = secure_party(p, model, None, Some(policy), |_| {})?;
        let costs = ReportedCosts {
            setup: result.setup,
            examples: p.comm().cost(),
            query_rounds: result.query_rounds,
        };
        send_report(p, &costs)
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

/// The client's listener and where the other parties are (and the processes started for them,
/// with the directory of their identities).
struct Parties {
    listener: TcpListener,
    peers: Vec<(Role, SocketAddr)>,
    tls: PartyTls,
    spawned: Vec<Spawned>,
    _identities: Option<TempDir>,
}

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    /// A fresh directory under the system's temporary directory, readable by its owner only.
    fn new() -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt;
        let mut rng = crate::mpc::prg::Prg::from_os();
        let path = std::env::temp_dir().join(format!(
            "marill-tls-{}-{:016x}",
            std::process::id(),
            rng.next_u64()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("{}: cannot create", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
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
    let identities = TempDir::new()?;
    let dirs = write_ephemeral(&identities.0, &roles)?;
    let tls = PartyTls::load(&dirs[0], Role::Client, &roles[1..])?;
    let mut spawned = Vec::new();
    for (&(role, addr), dir) in addrs[1..].iter().zip(&dirs[1..]) {
        let mut cmd = Command::new(&exe);
        cmd.args([
            "party",
            "--protocol",
            kind.name(),
            "--role",
            &role.to_string(),
        ])
        .args(["--listen", &addr.to_string(), "--model", &client.model])
        .args(["--timeout", &client.timeout.as_secs().max(1).to_string()])
        .args(["--deadline", &client.deadline.as_secs().max(1).to_string()])
        .arg("--tls-dir")
        .arg(dir)
        .args(["--max-batch", &client.serve.max_batch.to_string()])
        .args(["--max-new-tokens", &client.serve.max_new_tokens.to_string()]);
        let serve = &client.serve;
        if let Some(task) = serve.task {
            cmd.args(["--task", task.name()]);
        }
        if let Some(format) = serve.format {
            cmd.args(["--format", format.name()]);
        }
        if let Some(max_len) = serve.max_len {
            cmd.args(["--max-len", &max_len.to_string()]);
        }
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
        tls,
        spawned,
        _identities: Some(identities),
    })
}

/// Runs `program` as the client over TCP, with the other parties at `client.peers` or, when
/// none are given, started here on loopback; a started party's own error is reported over the
/// client's echo of it.
fn run_as_client<T>(
    kind: ProtocolKind,
    client: &TcpClient,
    program: impl FnOnce(&mut dyn Protocol) -> Result<T>,
) -> Result<T> {
    let Parties {
        listener,
        peers,
        tls,
        spawned,
        _identities,
    } = if client.peers.is_empty() {
        spawn_local(kind, client)?
    } else {
        Parties {
            listener: TcpListener::bind(client.listen)
                .with_context(|| format!("listening on {}", client.listen))?,
            peers: client.peers.clone(),
            tls: client
                .tls
                .clone()
                .context("parties started by hand need this client's certificates (--tls-dir)")?,
            spawned: Vec::new(),
            _identities: None,
        }
    };
    let cfg = PartyConfig {
        kind,
        role: Role::Client,
        listen: listener.local_addr()?,
        peers,
        fixed: Default::default(),
        timeout: client.timeout,
        deadline: client.deadline,
        tls,
        seed: None,
    };
    let outcome = run_party_on(&cfg, listener, program).map(|(outcome, _)| outcome);
    let grace = if outcome.is_ok() {
        client.timeout
    } else {
        Duration::from_secs(2)
    };
    let failures: Vec<String> = spawned
        .into_iter()
        .filter_map(|s| s.finish(grace))
        .collect();
    match (outcome, failures.first()) {
        (Ok(o), None) => Ok(o),
        // A party process's own error is the cause; the client's is its echo.
        (_, Some(failure)) => bail!("{failure}"),
        (Err(e), None) => Err(e),
    }
}

/// Receives the cost report of every other party of `kind`.
fn recv_reports<R: DeserializeOwned>(p: &mut dyn Protocol, kind: ProtocolKind) -> Result<Vec<R>> {
    kind.roles()[1..]
        .iter()
        .map(|role| {
            let max = Expect::AtMost(MAX_COST_REPORT_BYTES);
            let bytes = p.comm().recv_bytes(role.index(), max, Phase::Offline)?;
            serde_json::from_slice(&bytes).with_context(|| format!("the {role}'s cost report"))
        })
        .collect()
}

/// Sends this party's cost report to the client.
fn send_report(p: &mut dyn Protocol, report: &impl Serialize) -> Result<()> {
    let bytes = serde_json::to_vec(report)?;
    p.comm()
        .send_bytes(Role::Client.index(), &bytes, Phase::Offline)?;
    Ok(())
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
    let (result, examples, reported) = run_as_client(kind, client, |p| {
        let result = secure_party(p, model, Some(job), None, &done)?;
        let examples = p.comm().cost();
        let reported: Vec<ReportedCosts> = recv_reports(p, kind)?;
        Ok((result, examples, reported))
    })?;
    let mut setups = vec![result.setup.clone()];
    let mut costs = vec![examples];
    let mut query_rounds = vec![result.query_rounds];
    for r in reported {
        setups.push(r.setup);
        costs.push(r.examples);
        query_rounds.push(r.query_rounds);
    }
    SecureRun::collect(result, &setups, &costs, &query_rounds)
}

/// What a server / dealer / helper of a generation job reports to the client at the end.
#[derive(Serialize, Deserialize)]
struct ReportedGeneration {
    setup: PartyCost,
    prefill: PartyCost,
    decode: PartyCost,
}

/// A server, dealer or helper: serve one client's generation job on `model` under `policy`,
/// then report the costs.
pub fn serve_generation(
    cfg: &PartyConfig,
    model: &SecureModel,
    policy: &GenerationPolicy,
) -> Result<()> {
    let head = model.vocab_head()?;
    run_party(cfg, |p| {
        let r = generation_party(p, model, &head, None, Some(policy), |_| {})?;
        send_report(
            p,
            &ReportedGeneration {
                setup: r.setup,
                prefill: r.prefill,
                decode: r.decode,
            },
        )
    })?;
    Ok(())
}

/// Runs generation `job` as the client over TCP (the parties as for [`run_secure_tcp`]).
pub fn run_generation_tcp(
    kind: ProtocolKind,
    client: &TcpClient,
    model: &SecureModel,
    job: &ClientGeneration,
    done: impl Fn(usize),
) -> Result<GenerationRun> {
    let head = model.vocab_head()?;
    let (mine, reported) = run_as_client(kind, client, |p| {
        let mine = generation_party(p, model, &head, Some(job), None, &done)?;
        let reported: Vec<ReportedGeneration> = recv_reports(p, kind)?;
        Ok((mine, reported))
    })?;
    let mut parties = vec![mine];
    parties.extend(reported.into_iter().map(|r| GenerationPartyResult {
        setup: r.setup,
        prefill: r.prefill,
        decode: r.decode,
        ..Default::default()
    }));
    GenerationRun::collect(parties)
}
