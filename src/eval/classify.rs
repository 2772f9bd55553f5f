//! Classification by comparing the logits of the choices' first tokens at the answer position.

use super::execute::Grading;
use super::prompt::{choice_token_ids, prompt_ids};
use super::report::Outcome;
use crate::data::PromptFormat;
use crate::data::{Example, Prediction};
use crate::model::Llama;
use crate::parallel::map_parts;
use crate::progress::progress_bar;
use anyhow::{Result, bail};
use candle_core::Tensor;
use tokenizers::Tokenizer;

/// Scores every example, `batch` at a time (sorted by length so padding stays small).
pub fn classify(
    model: &Llama,
    tokenizer: &Tokenizer,
    format: PromptFormat,
    examples: &[&Example],
    batch: usize,
    max_len: usize,
) -> Result<Outcome> {
    if batch == 0 {
        bail!("--batch must be at least 1");
    }
    let prompts: Vec<Vec<u32>> = examples
        .iter()
        .map(|ex| prompt_ids(tokenizer, format, ex, max_len))
        .collect::<Result<_>>()?;
    let choices: Vec<Vec<u32>> = examples
        .iter()
        .map(|ex| choice_token_ids(tokenizer, format, ex))
        .collect::<Result<_>>()?;
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.sort_by_key(|&i| prompts[i].len());

    let bar = progress_bar(examples.len(), "eval");
    let mut scores: Vec<Vec<f32>> = vec![Vec::new(); examples.len()];
    for chunk in order.chunks(batch) {
        let parts = map_parts(chunk, |_, part| {
            let rows: Vec<&[u32]> = part.iter().map(|&i| prompts[i].as_slice()).collect();
            last_position_logits(model, &rows)
        })?;
        let last = Tensor::cat(&parts, 0)?;
        for (row, &i) in chunk.iter().enumerate() {
            let logits = last.get(row)?;
            let ids = Tensor::new(choices[i].as_slice(), model.device())?;
            scores[i] = logits.index_select(&ids, 0)?.to_vec1()?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();

    let mut outcome = Outcome {
        rows: Vec::new(),
        accuracy: Default::default(),
        tokens: prompts.iter().map(Vec::len).sum(),
    };
    for (ex, scores) in examples.iter().zip(&scores) {
        outcome.record(ex, Prediction::Scores(scores), &Grading::NoExecution)?;
    }
    Ok(outcome)
}

/// Right-pads `rows` into one batch and returns the next-token logits `(batch, vocab)` at each
/// row's last real token. Right padding needs no padding mask: under the causal mask no real
/// token ever sees a pad.
pub fn last_position_logits(model: &Llama, rows: &[&[u32]]) -> Result<Tensor> {
    let t = rows.iter().map(|r| r.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(rows.len() * t);
    for r in rows {
        ids.extend_from_slice(r);
        ids.extend(std::iter::repeat_n(0u32, t - r.len()));
    }
    let ids = Tensor::from_vec(ids, (rows.len(), t), model.device())?;
    let allowed = model.attention_mask(t, None)?;
    let (hidden, _) =
        model.forward_layers(&model.embed(&ids)?, 0..model.num_layers(), &allowed, false)?;
    let last: Vec<Tensor> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| hidden.get(i)?.get(r.len() - 1))
        .collect::<candle_core::Result<_>>()?;
    model.logits(&Tensor::stack(&last, 0)?)
}
