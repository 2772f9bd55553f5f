//! Tests of views: what each party receives must not depend on what it should not learn, and
//! the correlated randomness behind every message must be drawn exactly once.
//!
//! A party's view is every frame it receives, from every peer, in order, and what it opens by
//! adding a frame it received to the one it just sent the same peer ([`record`]). For each
//! protocol, each operation ([`ops`]) and each party that should learn nothing of a secret
//! (the server of the client's input, the client of the server's weights but the revealed
//! output, the dealer / helper of both):
//! - two runs with different secrets give views (and openings) of the same shape whose bytes a
//!   two-sample chi² test cannot tell apart, and within one view the differences and sums of
//!   frames look like those of independent frames ([`stats`]: a reused or negated mask shows
//!   there, however uniform each frame is alone);
//! - in runs that keep everything the party knows (the seeds of its two pairwise streams) and
//!   change only the stream between the other two, no element of the view, nor sum nor
//!   difference of two, is fixed by what the party knows yet changes with the secrets
//!   ([`determined`]: an unmasked share, masks the party can cancel);
//! - every pairwise PRG stream's two ends end the run in the same place, and every frame sent is
//!   received ([`material`]).
//!
//! [`check`] runs these on a computation for every protocol. The comparison keys the dealer hands
//! out must not depend on the comparison point ([`dcf_keys`]). The whole secure forward is
//! checked the same way in `secure::views`.
//!
//! What these tests cannot see: a leak that only the receiver's computed state reveals beyond
//! what it opens (a function of several frames and shares that is neither one element, nor a
//! sum or difference of two, nor an opening), and anything the statistics are too weak for (a
//! dependence on secrets whose every value looks uniform).

pub(crate) mod check;
pub(crate) mod dcf_keys;
pub(crate) mod determined;
pub(crate) mod material;
pub(crate) mod ops;
pub(crate) mod record;
pub(crate) mod stats;
