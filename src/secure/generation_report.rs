//! The JSON report of secure generation on a task: accuracy under MPC next to plaintext greedy
//! decoding of the same model, how often the two agree (token by token and whole answers), and
//! the cost split into the prefill (per prompt, up to its first token) and each further token.
//!
//! A decoding step of `B` prompts pays one step's rounds for all of them, so `per_token`
//! (amortised over the tokens the steps computed) is below what one prompt alone waits per
//! token; `per_step` is what one step of the batch took: at batch 1 the latency of a token.

use super::generate::GenerationRun;
use super::report::{ExampleCost, PhaseCost};
use crate::mpc::network::Network;
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct SecureGenerationReport {
    pub task: String,
    pub model: String,
    pub mode: &'static str,
    pub protocol: String,
    /// The network the headline estimate is for (both are in `est_seconds`).
    pub network: Network,
    /// Prompts decoded together.
    pub batch: usize,
    pub rows: String,
    pub n: usize,
    pub max_new_tokens: usize,
    pub accuracy: f64,
    /// Plaintext greedy decoding of the same model on the same rows, when that reference was
    /// run (it reads the private tensors, which a client does not hold).
    pub plaintext_accuracy: Option<f64>,
    /// Of every position either answer reached, the fraction where both have the same token.
    pub token_agreement: Option<f64>,
    /// The fraction of rows whose answers are the same tokens.
    pub sequence_agreement: Option<f64>,
    pub public_layers: usize,
    pub private_layers: usize,
    pub generated_tokens: usize,
    pub steps: usize,
    /// Per prompt: its share of the prefill forwards.
    pub prefill: ExampleCost,
    /// Per token after each prompt's first: the decoding steps' cost over the tokens computed.
    pub per_token: ExampleCost,
    /// Per decoding step (of the batch as it ran).
    pub per_step: ExampleCost,
    /// Sharing the server's weights, once for all prompts.
    pub weight_setup: PhaseCost,
    pub predictions: Vec<GeneratedRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GeneratedRow {
    pub id: String,
    pub correct: bool,
    pub mpc: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plaintext: Option<String>,
    /// Whether the MPC and the plaintext answers are the same tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agree: Option<bool>,
}

/// `(same tokens at the same position, positions either reached)` of two answers.
pub fn token_matches(a: &[u32], b: &[u32]) -> (usize, usize) {
    let same = a.iter().zip(b).filter(|(x, y)| x == y).count();
    (same, a.len().max(b.len()))
}

impl SecureGenerationReport {
    /// The three cost views of a run of `n` prompts.
    pub fn costs(run: &GenerationRun, n: usize) -> (ExampleCost, ExampleCost, ExampleCost) {
        (
            ExampleCost::mean(&run.prefill, run.prefill_wall_seconds, n),
            ExampleCost::mean(&run.decode, run.decode_wall_seconds, run.decoded),
            ExampleCost::mean(&run.decode, run.decode_wall_seconds, run.steps),
        )
    }

    /// What `marill eval --mode mpc` prints for a generation task.
    pub fn summary(&self) -> String {
        let reference = match (
            self.plaintext_accuracy,
            self.token_agreement,
            self.sequence_agreement,
        ) {
            (Some(p), Some(t), Some(s)) => format!(
                ", plaintext accuracy {p:.4}, token agreement {t:.4}, sequence agreement {s:.4}"
            ),
            _ => String::new(),
        };
        let mut out = format!(
            "{} {} (mpc {}, {}): accuracy {:.4}{reference} (n {}, {} tokens in {} steps)",
            self.task,
            self.rows,
            self.protocol,
            self.model,
            self.accuracy,
            self.n,
            self.generated_tokens,
            self.steps
        );
        for (name, c) in [
            ("prefill, per prompt", &self.prefill),
            ("per token", &self.per_token),
            ("per step", &self.per_step),
        ] {
            out += &format!(
                "\n{name} (batches of {}): {:.2} MB online, {:.2} MB offline, {:.0} rounds, {:.3} s measured, {:.2} s estimated on {} (lan {:.2} s, wan {:.2} s)",
                self.batch,
                c.online_bytes / 1e6,
                c.offline_bytes / 1e6,
                c.rounds,
                c.wall_seconds,
                c.est_seconds.on(self.network),
                self.network,
                c.est_seconds.lan,
                c.est_seconds.wan
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_matches_count_positions_either_answer_reached() {
        assert_eq!(token_matches(&[1, 2, 3], &[1, 5, 3, 4]), (2, 4));
        assert_eq!(token_matches(&[], &[]), (0, 0));
        assert_eq!(token_matches(&[7], &[]), (0, 1));
    }
}
