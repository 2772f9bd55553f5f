//! `marill bench mpc`: the engine's cases on each protocol, and the ring matmul's throughput
//! beside candle's f32 matmul of the same shape.

use crate::bench::matmul::{candle_f32_matmul, ring_matmul};
use crate::bench::mpc::bench;
use crate::mpc::protocol::ProtocolKind;
use anyhow::Result;

/// The report: per protocol and case the costs, plus `ring_matmul`, `candle_f32_matmul` and
/// their time ratio `ring_over_candle_f32_seconds` (64×576·576×1536). `cases` picks cases by
/// name (empty: all of them).
pub fn bench_mpc(
    protocols: &[ProtocolKind],
    cases: &[String],
    runs: usize,
) -> Result<serde_json::Value> {
    let mpc = bench(protocols, cases, runs)?;
    let (m, k, n) = (64, 576, 1536);
    let ring = ring_matmul(m, k, n)?;
    let f32_matmul = candle_f32_matmul(m, k, n)?;
    let mut report = serde_json::to_value(&mpc)?;
    report["ring_over_candle_f32_seconds"] = serde_json::json!(ring.seconds / f32_matmul.seconds);
    report["ring_matmul"] = serde_json::to_value(ring)?;
    report["candle_f32_matmul"] = serde_json::to_value(f32_matmul)?;
    Ok(report)
}
