//! Running a program with every party in this process: one thread per party over
//! [`MemoryTransport`].

use super::comm::Communicator;
use super::cost::{CostReport, PartyCost};
use super::fixed::FixedPoint;
use super::party::connect;
use super::prg::Prg;
use super::protocol::{Protocol, ProtocolKind, Role};
use super::transport::{CHANNEL_CAPACITY, DEFAULT_TIMEOUT, MemoryTransport};
use anyhow::{Result, anyhow};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct RunOptions {
    pub fixed: FixedPoint,
    /// Fixes every party's randomness (tests, benches); `None` seeds from the OS.
    pub seed: Option<u64>,
    pub timeout: Duration,
    /// 2pc-dealer: let the dealer produce all its material before the parties start, so the
    /// parties' wall time is the online phase alone.
    pub dealer_first: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            fixed: FixedPoint::default(),
            seed: None,
            timeout: DEFAULT_TIMEOUT,
            dealer_first: false,
        }
    }
}

pub struct PartyOutput<T> {
    pub role: Role,
    pub output: T,
    pub cost: PartyCost,
}

pub struct LocalRun<T> {
    /// In party-index order: client, server, dealer / helper.
    pub parties: Vec<PartyOutput<T>>,
    pub report: CostReport,
    /// Longest wall time of the client and server.
    pub online_wall_seconds: f64,
}

impl<T> LocalRun<T> {
    pub fn output(&self, role: Role) -> &T {
        &self.parties[role.index()].output
    }
}

fn run_one<T>(
    role: Role,
    transport: MemoryTransport,
    setup: &(dyn Fn(Role, MemoryTransport) -> Result<Box<dyn Protocol>> + Sync),
    program: &(dyn Fn(&mut dyn Protocol) -> Result<T> + Sync),
) -> Result<PartyOutput<T>> {
    let mut proto = setup(role, transport)?;
    let output = program(proto.as_mut()).map_err(|e| e.context(format!("{role} failed")))?;
    Ok(PartyOutput {
        role,
        output,
        cost: proto.comm().cost(),
    })
}

/// Run `program` on all parties of `kind` in threads; fails with the first party's error.
pub fn run_local<T: Send>(
    kind: ProtocolKind,
    opts: &RunOptions,
    program: impl Fn(&mut dyn Protocol) -> Result<T> + Sync,
) -> Result<LocalRun<T>> {
    let roles = kind.roles();
    let setup = |role: Role, transport: MemoryTransport| {
        let comm = Communicator::new(Box::new(transport), role.index(), &roles);
        connect(
            kind,
            role,
            comm,
            opts.fixed,
            &mut Prg::for_party(opts.seed, role.index()),
        )
    };
    run_local_with(kind, opts, setup, program)
}

/// [`run_local`] with each party set up by `setup` from its role and transport (in its own
/// thread) rather than by [`connect`] with randomness from [`Prg::for_party`].
pub fn run_local_with<T: Send>(
    kind: ProtocolKind,
    opts: &RunOptions,
    setup: impl Fn(Role, MemoryTransport) -> Result<Box<dyn Protocol>> + Sync,
    program: impl Fn(&mut dyn Protocol) -> Result<T> + Sync,
) -> Result<LocalRun<T>> {
    let roles = kind.roles();
    let dealer_first = opts.dealer_first && kind == ProtocolKind::TwoPartyDealer;
    // A dealer that runs to completion first must queue everything.
    let capacity = if dealer_first {
        usize::MAX
    } else {
        CHANNEL_CAPACITY
    };
    let mut transports = MemoryTransport::mesh(&roles, opts.timeout, capacity);
    let third = transports.pop().expect("three transports");
    let (setup, program) = (&setup, &program);
    let results: Vec<Result<PartyOutput<T>>> = std::thread::scope(|s| {
        let mut third = Some(third);
        let dealer_done =
            dealer_first.then(|| run_one(roles[2], third.take().expect("unused"), setup, program));
        let third_handle = third.map(|t| s.spawn(move || run_one(roles[2], t, setup, program)));
        let handles: Vec<_> = transports
            .into_iter()
            .zip(roles)
            .map(|(t, role)| s.spawn(move || run_one(role, t, setup, program)))
            .collect();
        let mut out: Vec<Result<PartyOutput<T>>> = handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("party thread panicked")))
            })
            .collect();
        out.push(match (dealer_done, third_handle) {
            (Some(done), _) => done,
            (None, Some(h)) => h
                .join()
                .unwrap_or_else(|_| Err(anyhow!("party thread panicked"))),
            (None, None) => Err(anyhow!("third party did not run")),
        });
        out
    });
    let parties = results.into_iter().collect::<Result<Vec<_>>>()?;
    let costs: Vec<PartyCost> = parties.iter().map(|p| p.cost.clone()).collect();
    let online_wall_seconds = costs[..2]
        .iter()
        .map(|c| c.wall_seconds)
        .fold(0.0, f64::max);
    Ok(LocalRun {
        report: CostReport::from_parties(&costs),
        parties,
        online_wall_seconds,
    })
}
