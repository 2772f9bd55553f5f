//! What a `bench mpc` case is: the program every party runs and the f64 reference the client's
//! result is scored against.

use crate::mpc::prg::Prg;
use crate::mpc::protocol::Protocol;
use anyhow::Result;
use serde::Serialize;

/// A party's program that ends with a result revealed to the client.
pub type CaseProgram = Box<dyn Fn(&mut dyn Protocol) -> Result<Option<Vec<f64>>> + Sync>;

/// A benchmark case: the program every party runs (setup, `reset_cost`, the measured part,
/// the result revealed to the client) and the reference.
pub struct CaseSpec {
    pub program: CaseProgram,
    pub want: Vec<f64>,
    /// For layers: the residual input, to report the error of the update alone.
    pub residual: Option<Vec<f64>>,
    /// For ops: what their online bits are counted per.
    pub per: Option<Per>,
}

/// What an op's cost is spread over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Unit {
    /// An input element.
    Element,
    /// An attention score (an element of softmax's input).
    Score,
    /// An output element (of a product).
    Output,
}

/// `count` units of the case's op.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Per {
    pub unit: Unit,
    pub count: usize,
}

/// The seed of every case's data: each process of a TCP run builds the same case.
pub const SEED: u64 = 5;

/// `n` normal samples of standard deviation `sd`, the stream `tag` of [`SEED`].
pub fn gaussian(n: usize, sd: f64, tag: u64) -> Vec<f64> {
    Prg::from_seed(Prg::derived_seed(SEED, tag)).gaussian(n, sd)
}
