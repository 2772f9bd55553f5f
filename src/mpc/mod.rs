//! Built-in MPC engine.
pub mod fixed;
pub mod prg;
pub mod ring;
pub mod dcf;
pub mod cost;
pub mod transport;
pub mod comm;
pub mod protocol;
pub mod share;
pub(crate) mod compare;
pub mod dealer;
pub mod two_party;
pub mod local;
pub mod party;
