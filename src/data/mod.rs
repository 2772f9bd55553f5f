//! Task data: JSONL datasets, task definitions, deterministic splits and metrics.
//!
//! # Tasks
//!
//! Each task folder `datasets/<task>/data.jsonl` (`arithmetic-gen` reads `arithmetic`'s) holds one example a line (see
//! `datasets/SOURCES.md`). A row becomes an [`Example`]: a [`Prompt`] (completion-style text
//! ending in a cue such as `Sentiment:` or `Answer:`, after which the answer follows; see
//! `templates.rs`), the answer `choices` and the [`Answer`].
//!
//! | task | row fields | choices (first answer token) |
//! |---|---|---|
//! | `sst2` | sentence, label | `negative`, `positive` |
//! | `rte` | premise, hypothesis, label | `yes` (entailment), `no` (not_entailment) |
//! | `boolq` | question, passage, label | `no`, `yes` |
//! | `arithmetic`, `arc_easy` | question, choices, labels, answer | `A`, `B`, ... one letter a choice |
//! | `gsm8k` | question, solution, answer | none: generation, graded on the final number |
//! | `arithmetic-gen` | `arithmetic`'s rows: question, choices, labels, answer | none: generation of the right choice's number, graded by exact match |
//!
//! RTE's labels `entailment` / `not_entailment` are not single tokens, so the model answers the
//! question "does the premise entail the hypothesis?" with `yes` / `no`, which are single,
//! distinct tokens in SmolLM2's vocabulary, with and without a leading space (as are `positive`,
//! `negative` and `A`..`E`).
//! Multiple-choice rows are always shown with letters `A`, `B`, ... in row order, even where the
//! row labels its choices `1`, `2`, ... (a few ARC rows): one answer alphabet per task.
//!
//! # Truncation
//!
//! A prompt is `before + truncatable + after`. Only `truncatable` (the BoolQ passage, the RTE
//! premise; empty for the other tasks) is ever cut, from its end, at a word boundary, so that the
//! tokenised prompt fits the model's `max_len` ([`Prompt::fit`]). The instruction, the question or
//! hypothesis and the answer format (`before`, `after`) are never cut: a prompt that does not fit
//! even without its truncatable text is an error.
//!
//! # Splits
//!
//! The files are each task's only data, so train / validation / test are carved from them by
//! [`split_indices`]: a ChaCha8 shuffle seeded by the split seed, then contiguous cuts by
//! [`SplitRatios`] (default 0.7 / 0.1 / 0.2, seed [`DEFAULT_SPLIT_SEED`]).

mod dataset;
mod example;
mod format;
mod jsonl;
mod metrics;
mod names;
mod number;
mod row;
mod split;
mod task;
mod templates;
mod truncate;

pub use dataset::Dataset;
pub use example::{Answer, Example, GradeError, Prediction, Prompt};
pub use format::{DEFAULT_SYSTEM_PROMPT, PromptFormat, chat_prompt};
pub use jsonl::load_jsonl;
pub use metrics::{Accuracy, argmax, exact_match};
pub use names::UnknownName;
pub use number::{extract_final_number, normalize_number};
pub use row::RowError;
pub use split::{DEFAULT_SPLIT_SEED, InvalidRatios, Split, SplitRatios, split_indices};
pub use task::TaskKind;
pub use templates::answer_words;
pub use truncate::PromptTooLong;
