//! What the server lets a job ask for, decided from its own configuration and the checkpoint's
//! manifest, never from the client: the client learns only the argmax (the chosen label), the
//! choices must be the task's answer words, and the job's sizes are capped. Revealing the scores
//! exists only as the server's debugging flag, which every report then shows.
//!
//! Why the choice tokens are checked: the head runs on whatever rows a job names, so a client
//! free to name them could turn a label query into a next-token query over the vocabulary and
//! learn far more of the private model than the label.

use crate::data::{PromptFormat, TaskKind};
use crate::eval::prompt::answer_token_ids;
use anyhow::{Result, bail, ensure};
use serde::{Deserialize, Serialize};
use tokenizers::Tokenizer;

/// Examples one job may hold (its message is then at most a few MB).
pub const MAX_EXAMPLES: usize = 1 << 16;
/// Examples one secure forward may pack, by default.
pub const DEFAULT_MAX_BATCH: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServePolicy {
    /// The first tokens of the task's answer words, in choice order: an example's choices must
    /// be the first `c` of them.
    pub choice_tokens: Vec<u32>,
    /// The longest prompt, in tokens.
    pub max_tokens: usize,
    /// Examples per secure forward.
    pub max_batch: usize,
    /// Examples per job.
    pub max_examples: usize,
    /// Debugging only: reveal every example's choice scores to the client as well.
    pub reveal_scores: bool,
}

impl ServePolicy {
    /// Serving `task` as prompted in `format`, prompts of at most `max_tokens`.
    pub fn for_task(
        task: TaskKind,
        tokenizer: &Tokenizer,
        format: PromptFormat,
        max_tokens: usize,
    ) -> Result<Self> {
        ensure!(
            !task.is_generation(),
            "secure evaluation serves choice tasks only, not {task}"
        );
        Ok(ServePolicy {
            choice_tokens: answer_token_ids(tokenizer, format, task)?,
            max_tokens,
            max_batch: DEFAULT_MAX_BATCH,
            max_examples: MAX_EXAMPLES,
            reveal_scores: false,
        })
    }

    /// The longest job message this policy can admit, in words.
    pub fn max_job_words(&self) -> usize {
        2 + self.max_examples * (2 + self.choice_tokens.len())
    }

    /// Refuses example `i` of a job if it names choices other than the task's answer words.
    pub fn admit_choices(&self, i: usize, choices: &[u32]) -> Result<()> {
        if !self.choice_tokens.starts_with(choices) {
            bail!(
                "example {i}: choice tokens {choices:?} are not this task's answer words {:?}",
                &self.choice_tokens[..choices.len().min(self.choice_tokens.len())]
            );
        }
        Ok(())
    }
}

/// What the server lets a generation job ask for, from its own configuration and the
/// checkpoint's positions: every count is bounded before anything is allocated, and a prompt
/// and its answer must fit the model's positions. The client learns only each generated token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationPolicy {
    /// The model's positions: a prompt's length plus the new tokens asked for fit in them.
    pub positions: usize,
    /// The most new tokens a prompt may ask for.
    pub max_new_tokens: usize,
    /// Prompts per decoding batch (their steps share rounds).
    pub max_batch: usize,
    /// Prompts per job.
    pub max_prompts: usize,
}

/// New tokens one prompt may ask for, by default.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 256;

impl GenerationPolicy {
    /// The longest generation job message this policy can admit, in words.
    pub fn max_job_words(&self) -> usize {
        3 + self.max_prompts
    }
}

/// The server's answer to a job, sent to the client and the dealer / helper before any secret
/// is touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    Accepted { reveal_scores: bool },
    Refused { reason: String },
}

/// A verdict's message is small; anything longer is refused unread.
pub const MAX_VERDICT_BYTES: usize = 4096;

impl Verdict {
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).expect("a verdict serialises");
        if bytes.len() > MAX_VERDICT_BYTES
            && let Verdict::Refused { reason } = self
        {
            let cut: String = reason.chars().take(MAX_VERDICT_BYTES / 8).collect();
            bytes = serde_json::to_vec(&Verdict::Refused { reason: cut }).expect("serialises");
        }
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| anyhow::anyhow!("a malformed verdict: {e}"))
    }
}
