//! Generation tasks: greedy decoding, graded on the final number of the answer.

use super::execute::Grading;
use super::prompt::prompt_ids;
use super::report::Outcome;
use crate::data::PromptFormat;
use crate::data::{Example, Prediction};
use crate::model::Llama;
use crate::model::generate::{generate_greedy, generate_greedy_batch};
use crate::model::tokenizer::encode;
use crate::progress::progress_bar;
use anyhow::{Context, Result, anyhow};
use tokenizers::Tokenizer;

/// The tokens decoding stops before: the end-of-turn and end-of-text tokens, and, since a
/// plain-format answer ends with its paragraph (after a blank line a base model goes on to
/// invent the next question), the blank line.
pub fn stop_tokens(tokenizer: &Tokenizer) -> Result<Vec<u32>> {
    let mut stop: Vec<u32> = ["<|im_end|>", "<|endoftext|>"]
        .iter()
        .filter_map(|t| tokenizer.token_to_id(t))
        .collect();
    if let [blank_line] = encode(tokenizer, "\n\n")?[..] {
        stop.push(blank_line);
    }
    Ok(stop)
}

/// The stop token a fine-tuned model learns to end its answer with: the end of the assistant
/// turn in the chat format, the end of text in the plain one (both in [`stop_tokens`]).
pub fn end_token(tokenizer: &Tokenizer, format: PromptFormat) -> Result<u32> {
    let name = match format {
        PromptFormat::Chat => "<|im_end|>",
        PromptFormat::Plain => "<|endoftext|>",
    };
    tokenizer
        .token_to_id(name)
        .with_context(|| format!("the tokenizer has no {name} token to end an answer with"))
}

/// The prompt of `example` for an answer of up to `max_new_tokens`: the answer needs room
/// too, so the prompt may take what generation leaves of `max_len`.
pub fn generation_prompt(
    tokenizer: &Tokenizer,
    format: PromptFormat,
    example: &Example,
    max_len: usize,
    max_new_tokens: usize,
) -> Result<Vec<u32>> {
    prompt_ids(
        tokenizer,
        format,
        example,
        max_len.saturating_sub(max_new_tokens),
    )
}

/// The prompt, what the model generates for it (decoded) and how many tokens that took.
pub fn generate_answer(
    model: &Llama,
    tokenizer: &Tokenizer,
    format: PromptFormat,
    example: &Example,
    max_len: usize,
    max_new_tokens: usize,
    stop: &[u32],
) -> Result<(String, usize)> {
    let prompt = generation_prompt(tokenizer, format, example, max_len, max_new_tokens)?;
    let ids = generate_greedy(model, &prompt, max_new_tokens, stop)?;
    let text = tokenizer
        .decode(&ids, true)
        .map_err(|e| anyhow!("cannot decode: {e}"))?;
    Ok((text, prompt.len() + ids.len()))
}

/// What the model generates (decoded) for each of `examples`, decoded together as one batch;
/// prompts are cut to `max_len − max_new_tokens` as in [`generate_answer`].
pub fn generate_batch(
    model: &Llama,
    tokenizer: &Tokenizer,
    format: PromptFormat,
    examples: &[&Example],
    max_len: usize,
    max_new_tokens: usize,
    stop: &[u32],
) -> Result<Vec<String>> {
    let budget = max_len.saturating_sub(max_new_tokens);
    let prompts = examples
        .iter()
        .map(|ex| prompt_ids(tokenizer, format, ex, budget))
        .collect::<Result<Vec<_>>>()?;
    generate_greedy_batch(model, &prompts, max_new_tokens, stop)?
        .iter()
        .map(|ids| {
            tokenizer
                .decode(ids, true)
                .map_err(|e| anyhow!("cannot decode: {e}"))
        })
        .collect()
}

/// Generates an answer for every example, one at a time, and grades it as `grading` says.
pub fn generate_answers(
    model: &Llama,
    tokenizer: &Tokenizer,
    format: PromptFormat,
    examples: &[&Example],
    max_len: usize,
    max_new_tokens: usize,
    grading: &Grading,
) -> Result<Outcome> {
    let stop = stop_tokens(tokenizer)?;
    let mut outcome = Outcome {
        rows: Vec::new(),
        accuracy: Default::default(),
        tokens: 0,
    };
    let bar = progress_bar(examples.len(), "generate");
    for ex in examples {
        let (text, tokens) =
            generate_answer(model, tokenizer, format, ex, max_len, max_new_tokens, &stop)?;
        outcome.tokens += tokens;
        outcome.record(ex, Prediction::Generated(&text), grading)?;
        bar.set_message(format!("accuracy {}", outcome.accuracy));
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(outcome)
}
