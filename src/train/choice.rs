//! The classification objective: cross-entropy and distillation over the choices' first tokens
//! at the answer position, hidden-state MSE over every token, accuracy by the best choice.

use super::batch::{Batch, Encoded, forward_batch};
use super::loss::{choice_cross_entropy, correct_choices, distillation_kl, hidden_mse};
use super::trainer::{LossWeights, Objective, Stage};
use crate::model::Llama;
use crate::parallel::map_parts;
use crate::progress::progress_bar;
use anyhow::Result;
use candle_core::Tensor;

/// What the teacher said about each training example, computed once.
pub struct TeacherOutputs {
    /// Per example, the logits of its choices.
    pub choice_logits: Vec<Tensor>,
    /// Per example, the teacher's output of each of the student's trainable layers (only when
    /// the hidden-state loss is on).
    pub hidden_states: Vec<Vec<Tensor>>,
}

/// A choice task's training and validation rows, on the inputs of the stage's first trainable
/// layer, and for a student what the teacher said about the training rows.
pub struct ChoiceData<'a> {
    pub train: &'a [Encoded],
    pub train_inputs: &'a [Tensor],
    pub validation: &'a [Encoded],
    pub validation_inputs: &'a [Tensor],
    pub teacher: Option<&'a TeacherOutputs>,
}

impl Objective for ChoiceData<'_> {
    fn train_lengths(&self) -> Vec<usize> {
        self.train.iter().map(|e| e.ids.len()).collect()
    }

    fn loss(&self, stage: &Stage, rows: &[usize], w: &LossWeights) -> Result<(Tensor, usize)> {
        let (loss, batch) = batch_loss(stage, self, rows, w)?;
        Ok((loss, batch.tokens()))
    }

    fn validation_accuracy(&self, stage: &Stage, batch: usize) -> Result<f64> {
        choice_accuracy(
            stage.model,
            self.validation,
            self.validation_inputs,
            stage.first_layer,
            batch,
        )
    }
}

/// Validation accuracy of the model on cached inputs.
pub fn choice_accuracy(
    model: &Llama,
    examples: &[Encoded],
    inputs: &[Tensor],
    first: usize,
    batch: usize,
) -> Result<f64> {
    let mut correct = 0;
    let rows: Vec<usize> = (0..examples.len()).collect();
    for chunk in rows.chunks(batch) {
        let parts = map_parts(chunk, |_, part| {
            let b = Batch::new(part, examples, inputs)?;
            let out = forward_batch(model, &b, first, false)?;
            correct_choices(&out.choice_logits, &b.choice_mask, &b.targets)
        })?;
        correct += parts.iter().sum::<usize>();
    }
    Ok(correct as f64 / examples.len().max(1) as f64)
}

/// Teacher outputs for `examples`, from layers `first..L` on cached inputs; keeps hidden states
/// of layers `keep_from..L` when asked.
pub fn teacher_outputs(
    model: &Llama,
    examples: &[Encoded],
    inputs: &[Tensor],
    batch: usize,
    keep_hidden_from: Option<usize>,
) -> Result<TeacherOutputs> {
    let mut out = TeacherOutputs {
        choice_logits: Vec::new(),
        hidden_states: Vec::new(),
    };
    let rows: Vec<usize> = (0..examples.len()).collect();
    let bar = progress_bar(examples.len(), "teacher outputs");
    for chunk in rows.chunks(batch) {
        let parts = map_parts(chunk, |_, part| {
            let b = Batch::new(part, examples, inputs)?;
            let o = forward_batch(model, &b, 0, keep_hidden_from.is_some())?;
            part.iter()
                .enumerate()
                .map(|(row, &i)| {
                    let n = examples[i].choices.len();
                    let logits = o.choice_logits.get(row)?.narrow(0, 0, n)?.detach();
                    let len = examples[i].ids.len();
                    let states = match keep_hidden_from {
                        Some(from) => o.hidden_states[from..]
                            .iter()
                            .map(|h| Ok(h.get(row)?.narrow(0, 0, len)?.detach()))
                            .collect::<Result<Vec<_>>>()?,
                        None => Vec::new(),
                    };
                    Ok((logits, states))
                })
                .collect::<Result<Vec<_>>>()
        })?;
        for (logits, states) in parts.into_iter().flatten() {
            out.choice_logits.push(logits);
            if keep_hidden_from.is_some() {
                out.hidden_states.push(states);
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(out)
}

/// The stage's loss on one batch.
fn batch_loss(
    stage: &Stage,
    data: &ChoiceData,
    rows: &[usize],
    w: &LossWeights,
) -> Result<(Tensor, Batch)> {
    let batch = Batch::new(rows, data.train, data.train_inputs)?;
    let out = forward_batch(stage.model, &batch, stage.first_layer, w.hidden > 0.0)?;
    let mut loss =
        (choice_cross_entropy(&out.choice_logits, &batch.choice_mask, &batch.targets)? * w.ce)?;
    if let Some(teacher) = data.teacher {
        let c = batch.choice_mask.dims()[1];
        let t_logits = rows
            .iter()
            .map(|&i| {
                let l = &teacher.choice_logits[i];
                Ok(l.pad_with_zeros(0, 0, c - l.dims()[0])?)
            })
            .collect::<Result<Vec<_>>>()?;
        let t_logits = Tensor::stack(&t_logits, 0)?;
        if w.kl > 0.0 {
            let kl = distillation_kl(
                &out.choice_logits,
                &t_logits,
                &batch.choice_mask,
                w.temperature,
            )?;
            loss = (loss + (kl * w.kl)?)?;
        }
        if w.hidden > 0.0 {
            let t = batch.hidden.dims()[1];
            let layers = out.hidden_states.len();
            for (layer, student) in out.hidden_states.iter().enumerate() {
                let target = rows
                    .iter()
                    .map(|&i| {
                        let h = &teacher.hidden_states[i][layer];
                        Ok(h.pad_with_zeros(0, 0, t - h.dims()[0])?)
                    })
                    .collect::<Result<Vec<_>>>()?;
                let mse = hidden_mse(student, &Tensor::stack(&target, 0)?, &batch.token_mask)?;
                loss = (loss + (mse * (w.hidden / layers as f64))?)?;
            }
        }
    }
    Ok((loss, batch))
}
