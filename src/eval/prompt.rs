//! Turning examples into the token sequences the model sees.

use crate::data::Example;
use crate::data::{PromptFormat, TaskKind, answer_words};
use crate::model::tokenizer::encode;
use anyhow::{Context, Result, bail};
use tokenizers::Tokenizer;

/// The token ids of `example`'s prompt, its truncatable part cut to fit `max_len`.
pub fn prompt_ids(
    tokenizer: &Tokenizer,
    format: PromptFormat,
    example: &Example,
    max_len: usize,
) -> Result<Vec<u32>> {
    let count = |message: &str| {
        encode(tokenizer, &format.wrap(message)).map_or(usize::MAX, |ids| ids.len())
    };
    let message = example
        .prompt
        .fit(max_len, count)
        .with_context(|| format!("example {}", example.id))?;
    encode(tokenizer, &format.wrap(&message))
}

/// The first token of answer `word` after the answer cue.
fn answer_token(tokenizer: &Tokenizer, format: PromptFormat, word: &str) -> Result<u32> {
    let answer = format!("{}{word}", format.answer_prefix());
    Ok(*encode(tokenizer, &answer)?
        .first()
        .context("empty choice")?)
}

/// The first tokens of every answer word `task` can offer, in choice order
/// ([`answer_words`]): what a server lets a job's choices be.
pub fn answer_token_ids(
    tokenizer: &Tokenizer,
    format: PromptFormat,
    task: TaskKind,
) -> Result<Vec<u32>> {
    answer_words(task)
        .iter()
        .map(|w| answer_token(tokenizer, format, w))
        .collect()
}

/// The first token of each answer choice: what the model's next-token logits are compared on.
pub fn choice_token_ids(
    tokenizer: &Tokenizer,
    format: PromptFormat,
    example: &Example,
) -> Result<Vec<u32>> {
    let ids: Vec<u32> = example
        .choices
        .iter()
        .map(|c| answer_token(tokenizer, format, c))
        .collect::<Result<_>>()?;
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    if unique.len() != ids.len() {
        bail!(
            "example {}: choices {:?} share a first token",
            example.id,
            example.choices
        );
    }
    Ok(ids)
}
