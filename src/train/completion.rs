//! The generation objective: a prompt followed by its completion (the example's target and the
//! end token the decoder stops on), trained on the completion tokens only, and graded by greedy
//! decoding and exact match of the final number.
//!
//! A sequence `x_0 … x_{n-1}` with prompt `x_0 … x_{m-1}` is trained on the `n − m` positions
//! `m − 1 … n − 2`, whose next-token predictions are the completion `x_m … x_{n-1}`: prompt
//! tokens are inputs only. The student's teacher is cached at exactly those positions (its
//! top-k buckets, see [`super::token_distill`], and, for the hidden-state loss, its private
//! layers' outputs there).

use super::batch::{TokenSequence, stack_padded};
use super::token_distill::{completion_cross_entropy, top_k_buckets, top_k_distillation_kl};
use super::trainer::{LossWeights, Objective, Stage};
use crate::data::{Answer, Example, Prediction, PromptFormat};
use crate::eval::generate::{end_token, generate_batch, stop_tokens};
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
            let mut completion = encode(
                tokenizer,
                &format!("{}{}", format.answer_prefix(), ex.target()),
            )?;
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
        let (hidden, t) = stack_padded(rows, examples, prefix)?;
        let (mut positions, mut targets, mut counts) = (Vec::new(), Vec::new(), Vec::new());
        for (row, &i) in rows.iter().enumerate() {
            let predicting = examples[i].predicting();
            counts.push(predicting.len());
            for p in predicting {
                positions.push((row * t + p) as u32);
                targets.push(examples[i].ids[p + 1]);
            }
        }
        let n = positions.len();
        Ok(CompletionBatch {
            hidden,
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

/// Rows decoded together: long enough that a step's products are matrix products, short enough
/// that padding to the longest prompt wastes little.
const DECODE_BATCH: usize = 16;

impl Decoding<'_> {
    /// The share of `examples` whose greedy answer has the right final number, decoded in
    /// batches split across cores.
    pub fn exact_match(&self, model: &Llama, examples: &[Example]) -> Result<f64> {
        let stop = stop_tokens(self.tokenizer)?;
        let bar = progress_bar(examples.len(), "generate");
        let rows: Vec<usize> = (0..examples.len()).collect();
        let mut correct = 0usize;
        for chunk in rows.chunks(DECODE_BATCH * crate::parallel::workers()) {
            let parts = map_parts(chunk, |_, part| {
                let batch: Vec<&Example> = part.iter().map(|&i| &examples[i]).collect();
                // The prompt keeps its training budget; the answer comes on top.
                let texts = generate_batch(
                    model,
                    self.tokenizer,
                    self.format,
                    &batch,
                    self.max_len + self.max_new_tokens,
                    self.max_new_tokens,
                    &stop,
                )?;
                let mut right = 0usize;
                for (ex, text) in batch.iter().zip(&texts) {
                    right += usize::from(ex.grade(Prediction::Generated(text))?);
                }
                bar.inc(part.len() as u64);
                Ok(right)
            })?;
            correct += parts.iter().sum::<usize>();
        }
        bar.finish_and_clear();
        Ok(correct as f64 / examples.len().max(1) as f64)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Prompt;
    use crate::model::LlamaConfig;
    use crate::model::lora_target::LoraTarget;
    use crate::model::marill::{LoraSpec, MarillArch, attach_lora};
    use crate::model::tiny::{tiny_tokenizer, tiny_weights};
    use crate::model::weights::Weights;
    use crate::train::batch::prefix_activations;
    use candle_core::{D, Device, Var};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use std::collections::HashMap;

    fn sum(a: i32, b: i32) -> Example {
        let total = (a + b).to_string();
        Example {
            id: format!("{a}+{b}"),
            prompt: Prompt::fixed(format!("Calculate {a} + {b} =")),
            choices: Vec::new(),
            answer: Answer::Text {
                final_number: total.clone(),
                solution: total,
            },
        }
    }

    fn tiny(seed: u64) -> Result<Llama> {
        let config = LlamaConfig::tiny();
        let weights = Weights::new(tiny_weights(&config, seed)?);
        Llama::from_weights(config, &weights, &Device::Cpu)
    }

    fn weights(ce: f64, kl: f64, hidden: f64) -> LossWeights {
        LossWeights {
            ce,
            kl,
            hidden,
            temperature: 2.0,
        }
    }

    #[test]
    fn a_completion_is_the_answer_then_the_end_token_after_the_prompt() -> Result<()> {
        let tokenizer = tiny_tokenizer()?;
        let ex = sum(5, 91);
        let [c] = &encode_completions(&tokenizer, PromptFormat::Plain, &[&ex], 64)?[..] else {
            panic!("one example");
        };
        let prompt = encode(&tokenizer, "Calculate 5 + 91 =")?;
        let answer = encode(&tokenizer, " 96")?;
        let end = tokenizer.token_to_id("<|endoftext|>").unwrap();
        assert_eq!(c.prompt_len, prompt.len());
        assert_eq!(c.ids, [prompt, answer, vec![end]].concat());
        // The chat format ends the answer with the end of the assistant turn.
        let chat = encode_completions(&tokenizer, PromptFormat::Chat, &[&ex], 256)?;
        assert_eq!(
            chat[0].ids.last(),
            tokenizer.token_to_id("<|im_end|>").as_ref()
        );
        // A prompt that does not fit with its answer: one line naming the budget.
        let err = encode_completions(&tokenizer, PromptFormat::Plain, &[&ex], 20).unwrap_err();
        let message = format!("{err:#}");
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains("task.max_len = 20"), "{message}");
        assert!(message.contains("example 5+91"), "{message}");
        Ok(())
    }

    #[test]
    fn cross_entropy_counts_the_completion_tokens_only() -> Result<()> {
        let model = tiny(3)?;
        let tokenizer = tiny_tokenizer()?;
        let examples = [sum(5, 91), sum(12, 7), sum(0, 3)];
        let refs: Vec<&Example> = examples.iter().collect();
        let train = encode_completions(&tokenizer, PromptFormat::Plain, &refs, 64)?;
        let inputs = prefix_activations(&model, &train, 0)?;
        let decoding = Decoding {
            tokenizer: &tokenizer,
            format: PromptFormat::Plain,
            max_len: 64,
            max_new_tokens: 4,
        };
        let data = CompletionData {
            train: &train,
            train_inputs: &inputs,
            validation: &[],
            decoding: &decoding,
            teacher: None,
        };
        let stage = Stage {
            name: "teacher",
            model: &model,
            vars: Vec::new(),
            first_layer: 0,
        };
        let (loss, _) = data.loss(&stage, &[0, 1, 2], &weights(1.0, 0.0, 0.0))?;
        let got = f64::from(loss.to_scalar::<f32>()?);
        // Reference: each sequence alone through the whole model, log-softmax in f64, the mean
        // over every position that predicts a completion token, and over every position.
        let (mut completion, mut all) = (Vec::new(), Vec::new());
        for c in &train {
            let ids = Tensor::new(c.ids.as_slice(), &Device::Cpu)?.unsqueeze(0)?;
            let logits: Vec<Vec<f32>> =
                model.forward(&ids, None, false)?.logits.get(0)?.to_vec2()?;
            for p in 0..c.ids.len() - 1 {
                let row: Vec<f64> = logits[p].iter().map(|&x| f64::from(x)).collect();
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = row.iter().map(|x| (x - max).exp()).sum::<f64>().ln() + max;
                let nll = lse - row[c.ids[p + 1] as usize];
                all.push(nll);
                if p + 1 >= c.prompt_len {
                    completion.push(nll);
                }
            }
        }
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!(
            (got - mean(&completion)).abs() < 1e-4,
            "{got} vs {}",
            mean(&completion)
        );
        assert!(
            (got - mean(&all)).abs() > 1e-3,
            "the prompt positions would count"
        );
        Ok(())
    }

    #[test]
    fn token_distillation_reaches_every_student_adapter() -> Result<()> {
        let tokenizer = tiny_tokenizer()?;
        let examples = [sum(5, 91), sum(12, 7), sum(40, 3), sum(8, 8)];
        let refs: Vec<&Example> = examples.iter().collect();
        let train = encode_completions(&tokenizer, PromptFormat::Plain, &refs, 64)?;
        let teacher = tiny(4)?;
        let embeddings = prefix_activations(&teacher, &train, 0)?;
        let (k, public) = (16, 1);
        let targets =
            teacher_token_targets(&teacher, &train, &embeddings, 2, k, 2.0, Some(public))?;
        assert_eq!(targets[0].top_ids.dims(), [train[0].predicting().len(), k]);
        // Each position's buckets hold all of the teacher's probability.
        let totals: Vec<f32> = targets[1].probs.sum(D::Minus1)?.to_vec1()?;
        assert!(totals.iter().all(|t| (t - 1.0).abs() < 1e-5), "{totals:?}");

        let mut student = tiny(5)?;
        let arch = MarillArch {
            public_layers: public,
            head_merge: 3,
            ..MarillArch::standard()
        };
        arch.apply(&mut student)?;
        let spec = LoraSpec {
            rank: 4,
            alpha: 8.0,
            targets: LoraTarget::ALL.to_vec(),
            dropout: 0.0,
        };
        let private = arch.private_layers(&student);
        let vars: Vec<(String, Var)> = attach_lora(
            &mut student,
            private,
            &spec,
            &HashMap::new(),
            &mut ChaCha8Rng::seed_from_u64(6),
        )?;
        let inputs = prefix_activations(&student, &train, public)?;
        let decoding = Decoding {
            tokenizer: &tokenizer,
            format: PromptFormat::Plain,
            max_len: 64,
            max_new_tokens: 4,
        };
        let data = CompletionData {
            train: &train,
            train_inputs: &inputs,
            validation: &[],
            decoding: &decoding,
            teacher: Some(&targets),
        };
        let stage = Stage {
            name: "student",
            model: &student,
            vars: vars.clone(),
            first_layer: public,
        };
        let rows = [0, 1, 2, 3];
        // Distillation alone (no cross-entropy): B starts at zero, so one plain SGD step on B
        // first makes A's gradient non-zero too.
        let loss = |w| -> Result<Tensor> { Ok(data.loss(&stage, &rows, &w)?.0) };
        let distill_only = weights(0.0, 1.0, 0.5);
        let grads = loss(distill_only)?.backward()?;
        for (name, var) in vars.iter().filter(|(n, _)| n.contains("lora_B")) {
            let g = grads.get(var.as_tensor()).expect(name);
            var.set(&(var.as_tensor() - g)?)?;
        }
        for w in [distill_only, weights(0.0, 1.0, 0.0)] {
            let grads = loss(w)?.backward()?;
            for (name, var) in &vars {
                let g = grads.get(var.as_tensor()).expect(name);
                assert!(
                    g.sqr()?.sum_all()?.to_scalar::<f32>()? > 0.0,
                    "{name}: zero gradient"
                );
            }
        }
        Ok(())
    }
}
