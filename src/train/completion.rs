//! The generation objective: a prompt followed by its completion (the example's target and the
//! end token the decoder stops on), trained on the completion tokens only, and graded by greedy
//! decoding and exact match of the final number.
//!
//! A sequence `x_0 … x_{n-1}` with prompt `x_0 … x_{m-1}` is trained on the `n − m` positions
//! `m − 1 … n − 2`, whose next-token predictions are the completion `x_m … x_{n-1}`: prompt
//! tokens are inputs only. The student's teacher is cached at exactly those positions (its
//! top-k buckets, see [`super::token_distill`], and, for the hidden-state loss, its private
//! layers' outputs there).

use super::batch::TokenSequence;
use super::token_distill::{completion_cross_entropy, top_k_buckets, top_k_distillation_kl};
use super::trainer::{LossWeights, Objective, Stage};
use crate::data::{Answer, Example, Prediction, PromptFormat};
use crate::eval::generate::{end_token, generate_answer, stop_tokens};
use crate::eval::prompt::prompt_ids;
use crate::model::Llama;
use crate::model::tokenizer::encode;
use crate::parallel::map_parts;
use crate::progress::progress_bar;
use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use std::ops::Range;
use tokenizers::Tokenizer;

/// A generation example ready for training: the prompt's ids, then the completion's.
#[derive(Debug, Clone)]
pub struct Completion {
    pub ids: Vec<u32>,
    pub prompt_len: usize,
}

impl TokenSequence for Completion {
    fn ids(&self) -> &[u32] {
        &self.ids
    }
}

impl Completion {
    /// The positions whose next token is a completion token.
    pub fn predicting(&self) -> Range<usize> {
        self.prompt_len - 1..self.ids.len() - 1
    }
}

/// Prompt and completion ids of every example; a prompt that does not fit `max_len` together
/// with its completion is an error (only truncatable text is ever cut, as for classification).
pub fn encode_completions(
    tokenizer: &Tokenizer,
    format: PromptFormat,
    examples: &[&Example],
    max_len: usize,
) -> Result<Vec<Completion>> {
    let end = end_token(tokenizer, format)?;
    examples
        .iter()
        .map(|ex| {
            let Answer::Text { .. } = ex.answer else {
                bail!("example {}: generative training needs a text answer", ex.id);
            };
            let mut completion =
                encode(tokenizer, &format!("{}{}", format.answer_prefix(), ex.target()))?;
            completion.push(end);
            let budget = max_len.saturating_sub(completion.len());
            let mut ids = prompt_ids(tokenizer, format, ex, budget).with_context(|| {
                format!(
                    "a prompt must fit task.max_len = {max_len} with its answer ({} tokens)",
                    completion.len()
                )
            })?;
            if ids.is_empty() {
                bail!("example {}: empty prompt", ex.id);
            }
            let prompt_len = ids.len();
            ids.extend(completion);
            Ok(Completion { ids, prompt_len })
        })
        .collect()
}

/// A right-padded batch and the flat `(row · seq + position)` indices of its predicting
/// positions, row by row.
pub struct CompletionBatch {
    /// `(batch, seq, hidden)`.
    pub hidden: Tensor,
    /// `(positions,)` into the batch flattened to `(batch · seq, hidden)`.
    pub positions: Tensor,
    /// `(positions,)`: the completion token each position predicts.
    pub targets: Tensor,
    /// Predicting positions per row.
    pub counts: Vec<usize>,
    tokens: usize,
}

impl CompletionBatch {
    pub fn new(rows: &[usize], examples: &[Completion], prefix: &[Tensor]) -> Result<Self> {
        let device = prefix[rows[0]].device();
        let t = rows.iter().map(|&i| examples[i].ids.len()).max().unwrap_or(0);
        let (mut hidden, mut positions, mut targets, mut counts) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (row, &i) in rows.iter().enumerate() {
            let (ex, h) = (&examples[i], &prefix[i]);
            hidden.push(h.pad_with_zeros(0, 0, t - ex.ids.len())?);
            let predicting = ex.predicting();
            counts.push(predicting.len());
            for p in predicting {
                positions.push((row * t + p) as u32);
                targets.push(ex.ids[p + 1]);
            }
        }
        let n = positions.len();
        Ok(CompletionBatch {
            hidden: Tensor::stack(&hidden, 0)?,
            positions: Tensor::from_vec(positions, n, device)?,
            targets: Tensor::from_vec(targets, n, device)?,
            counts,
            tokens: rows.iter().map(|&i| examples[i].ids.len()).sum(),
        })
    }
}

/// What the trainable layers produce at a batch's predicting positions.
pub struct CompletionOutput {
    /// `(positions, vocab)`.
    pub logits: Tensor,
    /// Each trainable layer's output `(positions, hidden)`, when asked for.
    pub hidden_states: Vec<Tensor>,
}

/// Runs layers `first..L` on `batch` and the full output head at its predicting positions.
pub fn forward_completions(
    model: &Llama,
    batch: &CompletionBatch,
    first: usize,
    collect: bool,
) -> Result<CompletionOutput> {
    let (b, t, d) = batch.hidden.dims3()?;
    let allowed = model.attention_mask(t, None)?;
    let (h, states) =
        model.forward_layers(&batch.hidden, first..model.num_layers(), &allowed, collect)?;
    let at_positions = |h: &Tensor| -> Result<Tensor> {
        Ok(h.reshape((b * t, d))?.index_select(&batch.positions, 0)?)
    };
    Ok(CompletionOutput {
        logits: model.logits(&at_positions(&h)?)?,
        hidden_states: states.iter().map(at_positions).collect::<Result<_>>()?,
    })
}

/// What the teacher said at one example's predicting positions, computed once.
pub struct TokenTargets {
    /// `(positions, k)`: the teacher's `k` most likely tokens at each position.
    pub top_ids: Tensor,
    /// `(positions, k + 1)`: their probabilities at the distillation temperature, then the rest's.
    pub probs: Tensor,
    /// The teacher's output of each of the student's trainable layers `(positions, hidden)`
    /// (only when the hidden-state loss is on).
    pub hidden_states: Vec<Tensor>,
}

/// The teacher's [`TokenTargets`] for `examples` on their embeddings `inputs`, keeping the
/// hidden states of layers `keep_hidden_from..L` when asked.
pub fn teacher_token_targets(
    model: &Llama,
    examples: &[Completion],
    inputs: &[Tensor],
    batch: usize,
    top_k: usize,
    temperature: f64,
    keep_hidden_from: Option<usize>,
) -> Result<Vec<TokenTargets>> {
    let rows: Vec<usize> = (0..examples.len()).collect();
    let bar = progress_bar(examples.len(), "teacher top-k");
    let mut out = Vec::with_capacity(examples.len());
    for chunk in rows.chunks(batch) {
        let parts = map_parts(chunk, |_, part| {
            let b = CompletionBatch::new(part, examples, inputs)?;
            let o = forward_completions(model, &b, 0, keep_hidden_from.is_some())?;
            let logits: Vec<Vec<f32>> = o.logits.to_vec2()?;
            let mut start = 0;
            let targets = b
                .counts
                .iter()
                .map(|&n| {
                    let (mut ids, mut probs) = (Vec::new(), Vec::new());
                    for row in &logits[start..start + n] {
                        let (i, p) = top_k_buckets(row, top_k, temperature);
                        ids.extend(i);
                        probs.extend(p);
                    }
                    let device = model.device();
                    let hidden_states = match keep_hidden_from {
                        Some(from) => o.hidden_states[from..]
                            .iter()
                            .map(|h| Ok(h.narrow(0, start, n)?.detach()))
                            .collect::<Result<Vec<_>>>()?,
                        None => Vec::new(),
                    };
                    start += n;
                    Ok(TokenTargets {
                        top_ids: Tensor::from_vec(ids, (n, top_k), device)?,
                        probs: Tensor::from_vec(probs, (n, top_k + 1), device)?,
                        hidden_states,
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            bar.inc(part.len() as u64);
            Ok(targets)
        })?;
        out.extend(parts.into_iter().flatten());
    }
    bar.finish_and_clear();
    Ok(out)
}

/// How a generation task is graded: greedy decoding (stopping where `marill eval` does), exact
/// match of the final number.
pub struct Decoding<'a> {
    pub tokenizer: &'a Tokenizer,
    pub format: PromptFormat,
    /// The prompt's budget, as in training.
    pub max_len: usize,
    /// The longest answer decoded.
    pub max_new_tokens: usize,
}

impl Decoding<'_> {
    /// The share of `examples` whose greedy answer has the right final number, rows split
    /// across cores.
    pub fn exact_match(&self, model: &Llama, examples: &[Example]) -> Result<f64> {
        let stop = stop_tokens(self.tokenizer)?;
        let bar = progress_bar(examples.len(), "generate");
        let rows: Vec<usize> = (0..examples.len()).collect();
        let correct = map_parts(&rows, |_, part| {
            let mut correct = 0usize;
            for &i in part {
                let ex = &examples[i];
                // The prompt keeps its training budget; the answer comes on top.
                let (text, _) = generate_answer(
                    model,
                    self.tokenizer,
                    self.format,
                    ex,
                    self.max_len + self.max_new_tokens,
                    self.max_new_tokens,
                    &stop,
                )?;
                correct += usize::from(ex.grade(Prediction::Generated(&text))?);
                bar.inc(1);
            }
            Ok(correct)
        })?;
        bar.finish_and_clear();
        Ok(correct.iter().sum::<usize>() as f64 / examples.len().max(1) as f64)
    }
}

/// A generation task's training rows on the inputs of the stage's first trainable layer, its
/// validation examples (decoded), and for a student the teacher's targets of the training rows.
pub struct CompletionData<'a> {
    pub train: &'a [Completion],
    pub train_inputs: &'a [Tensor],
    pub validation: &'a [Example],
    pub decoding: &'a Decoding<'a>,
    pub teacher: Option<&'a [TokenTargets]>,
}

impl Objective for CompletionData<'_> {
    fn train_lengths(&self) -> Vec<usize> {
        self.train.iter().map(|e| e.ids.len()).collect()
    }

    fn loss(&self, stage: &Stage, rows: &[usize], w: &LossWeights) -> Result<(Tensor, usize)> {
        let batch = CompletionBatch::new(rows, self.train, self.train_inputs)?;
        let collect = w.hidden > 0.0 && self.teacher.is_some();
        let out = forward_completions(stage.model, &batch, stage.first_layer, collect)?;
        let mut loss = (completion_cross_entropy(&out.logits, &batch.targets)? * w.ce)?;
        if let Some(teacher) = self.teacher {
            let rows_of = |pick: &dyn Fn(&TokenTargets) -> &Tensor| -> Result<Tensor> {
                let parts: Vec<&Tensor> = rows.iter().map(|&i| pick(&teacher[i])).collect();
                Ok(Tensor::cat(&parts, 0)?)
            };
            if w.kl > 0.0 {
                let kl = top_k_distillation_kl(
                    &out.logits,
                    &rows_of(&|t| &t.top_ids)?,
                    &rows_of(&|t| &t.probs)?,
                    w.temperature,
                )?;
                loss = (loss + (kl * w.kl)?)?;
            }
            if w.hidden > 0.0 {
                let layers = out.hidden_states.len();
                for (layer, student) in out.hidden_states.iter().enumerate() {
                    let target = rows_of(&|t| &t.hidden_states[layer])?;
                    // Mean over positions of the mean over features, as for classification.
                    let mse = (student - target)?.sqr()?.mean_all()?;
                    loss = (loss + (mse * (w.hidden / layers as f64))?)?;
                }
            }
        }
        Ok((loss, batch.tokens))
    }

    fn validation_accuracy(&self, stage: &Stage, _batch: usize) -> Result<f64> {
        self.decoding.exact_match(stage.model, self.validation)
    }
}
