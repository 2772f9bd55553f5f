//! Turning examples into token sequences the model sees: chat-formatted, truncated to fit.

use crate::data::Example;
use crate::model::tokenizer::{chat_prompt, encode};
use anyhow::{Context, Result, bail};
use tokenizers::Tokenizer;

/// The chat-formatted token ids of `example`'s prompt, its truncatable part cut to fit `max_len`.
pub fn prompt_ids(tokenizer: &Tokenizer, example: &Example, max_len: usize) -> Result<Vec<u32>> {
    let count = |message: &str| {
        encode(tokenizer, &chat_prompt(message)).map_or(usize::MAX, |ids| ids.len())
    };
    let message = example
        .prompt
        .fit(max_len, count)
        .with_context(|| format!("example {}", example.id))?;
    encode(tokenizer, &chat_prompt(&message))
}

/// The first token of each answer choice: what the model's next-token logits are compared on.
pub fn choice_token_ids(tokenizer: &Tokenizer, example: &Example) -> Result<Vec<u32>> {
    let ids: Vec<u32> = example
        .choices
        .iter()
        .map(|c| Ok(*encode(tokenizer, c)?.first().context("empty choice")?))
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
