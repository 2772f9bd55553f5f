//! Examples as token ids, the activations the trainable layers start from, and padded batches.

use crate::data::{Answer, Example, PromptFormat};
use crate::eval::prompt::{choice_token_ids, prompt_ids};
use crate::model::Llama;
use crate::parallel::map_parts;
use crate::progress::progress_bar;
use anyhow::{Result, bail};
use candle_core::Tensor;
use tokenizers::Tokenizer;

/// A choice example ready for training: prompt ids, its choices' first tokens and the answer.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub ids: Vec<u32>,
    pub choices: Vec<u32>,
    pub target: usize,
}

/// A training example as the model reads it: its token ids.
pub trait TokenSequence: Sync {
    fn ids(&self) -> &[u32];
}

impl TokenSequence for Encoded {
    fn ids(&self) -> &[u32] {
        &self.ids
    }
}

/// The cached prefix activations of `rows` as one `(batch, seq, hidden)` tensor, each
/// right-padded with zeros to the longest row's `seq` (returned too).
pub fn stack_padded(
    rows: &[usize],
    examples: &[impl TokenSequence],
    prefix: &[Tensor],
) -> Result<(Tensor, usize)> {
    let t = rows
        .iter()
        .map(|&i| examples[i].ids().len())
        .max()
        .unwrap_or(0);
    let hidden = rows
        .iter()
        .map(|&i| prefix[i].pad_with_zeros(0, 0, t - examples[i].ids().len()))
        .collect::<candle_core::Result<Vec<_>>>()?;
    Ok((Tensor::stack(&hidden, 0)?, t))
}

pub fn encode_examples(
    tokenizer: &Tokenizer,
    format: PromptFormat,
    examples: &[&Example],
    max_len: usize,
) -> Result<Vec<Encoded>> {
    examples
        .iter()
        .map(|ex| {
            let Answer::Choice(target) = ex.answer else {
                bail!("example {}: training supports choice tasks only", ex.id);
            };
            Ok(Encoded {
                ids: prompt_ids(tokenizer, format, ex, max_len)?,
                choices: choice_token_ids(tokenizer, format, ex)?,
                target,
            })
        })
        .collect()
}

/// The input of the first trainable layer for every example: the output of the frozen layers
/// `0..k` (the token embeddings when `k = 0`), computed once without gradients.
pub fn prefix_activations(
    model: &Llama,
    examples: &[impl TokenSequence],
    public_layers: usize,
) -> Result<Vec<Tensor>> {
    let bar = progress_bar(examples.len(), "prefix cache");
    let all: Vec<usize> = (0..examples.len()).collect();
    let parts = map_parts(&all, |_, part| {
        part.iter()
            .map(|&i| {
                let ids = examples[i].ids();
                let x = model.embed(&Tensor::new(ids, model.device())?.unsqueeze(0)?)?;
                let allowed = model.attention_mask(ids.len(), None)?;
                let (h, _) = model.forward_layers(&x, 0..public_layers, &allowed, false)?;
                bar.inc(1);
                Ok(h.squeeze(0)?.detach())
            })
            .collect::<Result<Vec<_>>>()
    })?;
    bar.finish_and_clear();
    Ok(parts.into_iter().flatten().collect())
}

/// A right-padded batch: under the causal mask no real token sees a pad, so none is masked.
pub struct Batch {
    /// `(batch, seq, hidden)`.
    pub hidden: Tensor,
    /// Index of each row's last prompt token, where the answer is predicted.
    pub answer_pos: Vec<usize>,
    /// Per row, its choice tokens (padded with the first one where rows have fewer).
    pub choice_ids: Vec<Vec<u32>>,
    /// `(batch, max choices)`: 1 for a real choice.
    pub choice_mask: Tensor,
    /// `(batch,)`.
    pub targets: Tensor,
    /// `(batch, seq)`: 1 for a real token.
    pub token_mask: Tensor,
}

impl Batch {
    pub fn new(rows: &[usize], examples: &[Encoded], prefix: &[Tensor]) -> Result<Batch> {
        let device = prefix[rows[0]].device();
        let (hidden, t) = stack_padded(rows, examples, prefix)?;
        let c = rows
            .iter()
            .map(|&i| examples[i].choices.len())
            .max()
            .unwrap_or(0);
        let (mut choice_ids, mut choice_mask, mut token_mask) =
            (Vec::new(), Vec::new(), Vec::new());
        for &i in rows {
            let ex = &examples[i];
            let len = ex.ids.len();
            let mut ids = ex.choices.clone();
            ids.resize(c, ex.choices[0]);
            choice_ids.push(ids);
            choice_mask.extend((0..c).map(|j| if j < ex.choices.len() { 1f32 } else { 0.0 }));
            token_mask.extend((0..t).map(|j| if j < len { 1f32 } else { 0.0 }));
        }
        let b = rows.len();
        Ok(Batch {
            hidden,
            answer_pos: rows.iter().map(|&i| examples[i].ids.len() - 1).collect(),
            choice_ids,
            choice_mask: Tensor::from_vec(choice_mask, (b, c), device)?,
            targets: Tensor::from_vec(
                rows.iter()
                    .map(|&i| examples[i].target as u32)
                    .collect::<Vec<_>>(),
                b,
                device,
            )?,
            token_mask: Tensor::from_vec(token_mask, (b, t), device)?,
        })
    }

    pub fn tokens(&self) -> usize {
        self.answer_pos.iter().map(|p| p + 1).sum()
    }
}

/// What the trainable layers produce for a batch.
pub struct BatchOutput {
    /// `(batch, max choices)` logits of the choice tokens at the answer position.
    pub choice_logits: Tensor,
    /// The output of each trainable layer, when asked for.
    pub hidden_states: Vec<Tensor>,
}

/// Runs layers `first..L` and the output head on `batch`, keeping only the choice logits.
pub fn forward_batch(
    model: &Llama,
    batch: &Batch,
    first: usize,
    collect: bool,
) -> Result<BatchOutput> {
    let t = batch.hidden.dims()[1];
    let allowed = model.attention_mask(t, None)?;
    let (h, hidden_states) =
        model.forward_layers(&batch.hidden, first..model.num_layers(), &allowed, collect)?;
    let last: Vec<Tensor> = batch
        .answer_pos
        .iter()
        .enumerate()
        .map(|(i, &p)| h.get(i)?.get(p))
        .collect::<candle_core::Result<_>>()?;
    let last = Tensor::stack(&last, 0)?;
    // Only the few choice rows of the (tied, frozen) output head are needed.
    let mut union: Vec<u32> = batch.choice_ids.iter().flatten().copied().collect();
    union.sort_unstable();
    union.dedup();
    let union_t = Tensor::new(union.as_slice(), model.device())?;
    let logits = model.logits_for_tokens(&last, &union_t)?;
    let index: Vec<u32> = batch
        .choice_ids
        .iter()
        .flatten()
        .map(|id| union.binary_search(id).expect("in the union") as u32)
        .collect();
    let (b, c) = batch.choice_mask.dims2()?;
    let index = Tensor::from_vec(index, (b, c), model.device())?;
    Ok(BatchOutput {
        choice_logits: logits.gather(&index, 1)?,
        hidden_states,
    })
}
