//! Entry points for one party: protocol construction, and running over TCP as its own process.

use super::comm::Communicator;
use super::cost::PartyCost;
use super::fixed::FixedPoint;
use super::prg::Prg;
use super::protocol::{Protocol, ProtocolKind, Role};
use super::provider::dealer::Dealer;
use super::replicated::Replicated;
use super::tcp::{Deadlines, TcpTransport};
use super::tls::PartyTls;
use super::two_party::TwoParty;
use anyhow::{Context, Result, bail, ensure};
use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// Build `role`'s endpoint of protocol `kind` on a connected communicator (runs the setup).
pub fn connect(
    kind: ProtocolKind,
    role: Role,
    comm: Communicator,
    fixed: FixedPoint,
    rng: &mut Prg,
) -> Result<Box<dyn Protocol>> {
    Ok(match (kind, role) {
        (ProtocolKind::TwoPartyDealer, Role::Dealer) => Box::new(Dealer::new(comm, fixed, rng)?),
        (ProtocolKind::TwoPartyDealer, Role::Client | Role::Server) => {
            Box::new(TwoParty::with_dealer(role, comm, fixed, rng)?)
        }
        (ProtocolKind::ThreeParty, Role::Client | Role::Server | Role::Helper) => {
            Box::new(Replicated::new(role, comm, fixed, rng)?)
        }
        _ => bail!("{kind} has no role {role}"),
    })
}

/// How one party process reaches the others.
#[derive(Clone, Debug)]
pub struct PartyConfig {
    pub kind: ProtocolKind,
    pub role: Role,
    pub listen: SocketAddr,
    /// The other parties of `kind` and where they listen.
    pub peers: Vec<(Role, SocketAddr)>,
    pub fixed: FixedPoint,
    /// How long to wait for a peer (connecting, or for any message).
    pub timeout: Duration,
    /// How long the whole run may take, setup included.
    pub deadline: Duration,
    /// This party's key and certificate, and its peers' pinned certificates.
    pub tls: PartyTls,
    /// Fixed randomness for reproducible runs; `None` seeds from the OS.
    pub seed: Option<u64>,
}

impl PartyConfig {
    fn check(&self) -> Result<()> {
        let roles = self.kind.roles();
        ensure!(
            roles.contains(&self.role),
            "{} has no role {}",
            self.kind,
            self.role
        );
        for (r, _) in &self.peers {
            ensure!(
                roles.contains(r) && *r != self.role,
                "{} is not a peer of {} in {}",
                r,
                self.role,
                self.kind
            );
        }
        ensure!(
            self.peers.len() == roles.len() - 1,
            "{} needs the addresses of {} peers",
            self.kind,
            roles.len() - 1
        );
        ensure!(
            self.tls.role == self.role,
            "the TLS identity is the {}'s, not the {}'s",
            self.tls.role,
            self.role
        );
        Ok(())
    }
}

/// Run `program` as one party over TCP: listen, connect to the peers, set the protocol up,
/// run. Returns the program's output and this party's costs.
pub fn run_party<T>(
    cfg: &PartyConfig,
    program: impl FnOnce(&mut dyn Protocol) -> Result<T>,
) -> Result<(T, PartyCost)> {
    cfg.check()?;
    let listener =
        TcpListener::bind(cfg.listen).with_context(|| format!("listening on {}", cfg.listen))?;
    run_party_on(cfg, listener, program)
}

/// [`run_party`] on an already bound listener.
pub fn run_party_on<T>(
    cfg: &PartyConfig,
    listener: TcpListener,
    program: impl FnOnce(&mut dyn Protocol) -> Result<T>,
) -> Result<(T, PartyCost)> {
    cfg.check()?;
    let me = cfg.role.index();
    let roles = cfg.kind.roles();
    let deadlines = Deadlines::new(cfg.timeout, cfg.deadline);
    let transport = TcpTransport::establish(&roles, listener, &cfg.peers, &cfg.tls, deadlines)?;
    let comm = Communicator::new(Box::new(transport), me, &roles);
    let mut rng = Prg::for_party(cfg.seed, me);
    let mut proto = connect(cfg.kind, cfg.role, comm, cfg.fixed, &mut rng)?;
    let out = program(proto.as_mut()).with_context(|| format!("{} failed", cfg.role))?;
    // Everything queued must reach the peers: a party whose last messages could not be
    // delivered has failed, even though its program ended.
    proto.comm().finish()?;
    Ok((out, proto.comm().cost()))
}
