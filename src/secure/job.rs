//! The job message: what the client tells the other parties before anything else, so that they
//! can build the same computation. It is public by design (prompt lengths, choice token ids,
//! batch grouping): leakage the security model documents. Decoding is bounded by the receiving
//! party's [`ServePolicy`]: nothing is allocated from a count before the count is checked.

use super::policy::{GenerationPolicy, ServePolicy};
use anyhow::{Result, bail, ensure};

/// What every party may know of one example: its prompt length and the token ids of its
/// choices (the task's label words or choice letters).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleShape {
    pub tokens: usize,
    pub choices: Vec<u32>,
}

/// A whole job: how many examples share a secure forward, and each example's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobShape {
    pub batch: usize,
    pub shapes: Vec<ExampleShape>,
}

impl JobShape {
    /// `[batch, n, (tokens, c, choice ids…) per example]`.
    pub fn encode(&self) -> Vec<u64> {
        let mut words = vec![self.batch as u64, self.shapes.len() as u64];
        for s in &self.shapes {
            words.push(s.tokens as u64);
            words.push(s.choices.len() as u64);
            words.extend(s.choices.iter().map(|&c| u64::from(c)));
        }
        words
    }

    /// The job in `words`, refused unless `policy` admits every count before it is used.
    pub fn decode(words: &[u64], policy: &ServePolicy) -> Result<JobShape> {
        let mut it = words.iter().copied();
        let mut next = |what: &str| match it.next() {
            Some(w) => Ok(w),
            None => bail!("the job message ends before {what}"),
        };
        let batch = next("the batch size")?;
        within(batch, 1, policy.max_batch, || {
            format!(
                "a batch of {batch} examples (this server takes 1 to {})",
                policy.max_batch
            )
        })?;
        let n = next("the example count")?;
        within(n, 1, policy.max_examples, || {
            format!(
                "{n} examples (this server takes 1 to {} per job)",
                policy.max_examples
            )
        })?;
        let mut shapes = Vec::with_capacity(n as usize);
        for i in 0..n {
            let tokens = next("a prompt length")?;
            within(tokens, 1, policy.max_tokens, || {
                format!(
                    "example {i}: a prompt of {tokens} tokens (this server takes 1 to {})",
                    policy.max_tokens
                )
            })?;
            let c = next("a choice count")?;
            within(c, 2, policy.choice_tokens.len(), || {
                format!(
                    "example {i}: {c} choices (this task has 2 to {})",
                    policy.choice_tokens.len()
                )
            })?;
            let choices = (0..c)
                .map(|_| {
                    let id = next("a choice id")?;
                    u32::try_from(id).map_err(|_| anyhow::anyhow!("a choice id of {id}"))
                })
                .collect::<Result<Vec<u32>>>()?;
            shapes.push(ExampleShape {
                tokens: tokens as usize,
                choices,
            });
        }
        ensure!(
            it.next().is_none(),
            "the job message goes on after its last example"
        );
        let job = JobShape {
            batch: batch as usize,
            shapes,
        };
        for (i, s) in job.shapes.iter().enumerate() {
            policy.admit_choices(i, &s.choices)?;
        }
        Ok(job)
    }
}

/// What every party may know of a generation job: how many prompts decode together, how many
/// new tokens each may take at most, and each prompt's length. How many tokens each prompt
/// does take is public too: the client says after every step which prompts go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerationShape {
    pub batch: usize,
    pub max_new_tokens: usize,
    pub prompt_lens: Vec<usize>,
}

impl GenerationShape {
    /// `[batch, max_new_tokens, n, prompt lengths…]`.
    pub fn encode(&self) -> Vec<u64> {
        let mut words = vec![
            self.batch as u64,
            self.max_new_tokens as u64,
            self.prompt_lens.len() as u64,
        ];
        words.extend(self.prompt_lens.iter().map(|&l| l as u64));
        words
    }

    /// The job in `words`, refused unless `policy` admits every count before it is used.
    pub fn decode(words: &[u64], policy: &GenerationPolicy) -> Result<GenerationShape> {
        let [batch, max_new, n, lens @ ..] = words else {
            bail!("the generation job message ends before its prompt count");
        };
        within(*batch, 1, policy.max_batch, || {
            format!(
                "a batch of {batch} prompts (this server takes 1 to {})",
                policy.max_batch
            )
        })?;
        within(*max_new, 1, policy.max_new_tokens, || {
            format!(
                "{max_new} new tokens (this server generates 1 to {})",
                policy.max_new_tokens
            )
        })?;
        within(*n, 1, policy.max_prompts, || {
            format!(
                "{n} prompts (this server takes 1 to {} per job)",
                policy.max_prompts
            )
        })?;
        ensure!(
            lens.len() as u64 == *n,
            "the generation job message holds {} prompt lengths for {n} prompts",
            lens.len()
        );
        let room = policy.positions.saturating_sub(*max_new as usize);
        for (i, &len) in lens.iter().enumerate() {
            within(len, 1, room, || {
                format!(
                    "prompt {i}: {len} tokens and {max_new} new ones exceed the model's {} positions",
                    policy.positions
                )
            })?;
        }
        Ok(GenerationShape {
            batch: *batch as usize,
            max_new_tokens: *max_new as usize,
            prompt_lens: lens.iter().map(|&l| l as usize).collect(),
        })
    }
}

/// Refuses a count outside `lo..=hi`, with the message `why` makes.
fn within(value: u64, lo: u64, hi: usize, why: impl FnOnce() -> String) -> Result<()> {
    ensure!((lo..=hi as u64).contains(&value), "{}", why());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> ServePolicy {
        ServePolicy {
            choice_tokens: vec![7, 9, 11],
            max_tokens: 64,
            max_batch: 4,
            max_examples: 10,
            reveal_scores: false,
        }
    }

    fn job() -> JobShape {
        JobShape {
            batch: 2,
            shapes: vec![
                ExampleShape {
                    tokens: 5,
                    choices: vec![7, 9],
                },
                ExampleShape {
                    tokens: 64,
                    choices: vec![7, 9, 11],
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(JobShape::decode(&job().encode(), &policy()).unwrap(), job());
    }

    #[test]
    fn a_generation_job_is_bounded_by_the_policy_and_the_positions() {
        let policy = GenerationPolicy {
            positions: 32,
            max_new_tokens: 8,
            max_batch: 2,
            max_prompts: 4,
        };
        let job = GenerationShape {
            batch: 2,
            max_new_tokens: 8,
            prompt_lens: vec![24, 3],
        };
        assert_eq!(
            GenerationShape::decode(&job.encode(), &policy).unwrap(),
            job
        );
        let cases: Vec<(Vec<u64>, &str)> = vec![
            (vec![2, 8], "ends before its prompt count"),
            (vec![3, 8, 1, 4], "a batch of 3 prompts"),
            (vec![2, 0, 1, 4], "0 new tokens"),
            (
                vec![2, 9, 1, 4],
                "9 new tokens (this server generates 1 to 8)",
            ),
            (vec![2, 8, u64::MAX, 4], "18446744073709551615 prompts"),
            (vec![2, 8, 2, 4], "holds 1 prompt lengths for 2 prompts"),
            (vec![2, 8, 1, 0], "prompt 0: 0 tokens"),
            (
                vec![2, 8, 1, 25],
                "prompt 0: 25 tokens and 8 new ones exceed the model's 32 positions",
            ),
        ];
        for (words, want) in cases {
            let err = GenerationShape::decode(&words, &policy)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{words:?}: {err}");
        }
    }

    #[test]
    fn every_count_is_bounded_before_use() {
        let good = job().encode();
        let cases: Vec<(Vec<u64>, &str)> = vec![
            (vec![], "ends before the batch size"),
            (vec![0, 1], "a batch of 0"),
            (vec![5, 1], "a batch of 5"),
            (vec![2, u64::MAX], "18446744073709551615 examples"),
            (vec![2, 1, 65, 2, 7, 9], "a prompt of 65 tokens"),
            (vec![2, 1, 0, 2, 7, 9], "a prompt of 0 tokens"),
            (vec![2, 1, 5, 1_000_000_000, 7], "1000000000 choices"),
            (vec![2, 1, 5, 2, 7], "ends before a choice id"),
            (vec![2, 1, 5, 2, 7, 1 << 40], "a choice id of"),
            ([good.clone(), vec![0]].concat(), "goes on after"),
            (vec![2, 3, 5, 2, 7, 9], "ends before a prompt length"),
        ];
        for (words, want) in cases {
            let err = JobShape::decode(&words, &policy()).unwrap_err().to_string();
            assert!(err.contains(want), "{words:?}: {err}");
        }
    }
}
