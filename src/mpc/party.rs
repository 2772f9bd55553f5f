//! Entry points for one party: protocol construction, and running over TCP as its own process.

use super::comm::Communicator;
use super::dealer::Dealer;
use super::fixed::FixedPoint;
use super::prg::Prg;
use super::protocol::{Protocol, ProtocolKind, Role};
use super::two_party::TwoPartyDealer;
use anyhow::{Result, bail};

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
            Box::new(TwoPartyDealer::new(role, comm, fixed, rng)?)
        }
        _ => bail!("{kind} has no role {role}"),
    })
}
