//! The task-independent example: a prompt, its answer choices and the expected answer.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::metrics::{argmax, exact_match};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// The row's `id`, unique within its file.
    pub id: String,
    pub prompt: Prompt,
    /// What the model may answer with, as its first answer token: the label words or the letters.
    /// Empty for generation tasks.
    pub choices: Vec<String>,
    pub answer: Answer,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    /// Index into [`Example::choices`].
    Choice(usize),
    /// A generation task's expected final number (normalised, see
    /// [`normalize_number`](super::normalize_number)) and the worked solution to train on.
    Text {
        final_number: String,
        solution: String,
    },
    /// A code task's tests: `check(candidate)` asserts on the function `entry_point` that the
    /// prompt begins; graded by running them (see `eval::execute`). `solution` is the
    /// reference body.
    Program {
        tests: String,
        entry_point: String,
        solution: String,
    },
}

/// The user message content, `before + truncatable + after`; only `truncatable` may be cut
/// (see [`Prompt::fit`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prompt {
    pub before: String,
    pub truncatable: String,
    pub after: String,
}

impl Prompt {
    /// A prompt with nothing to truncate.
    pub fn fixed(text: String) -> Prompt {
        Prompt {
            before: text,
            truncatable: String::new(),
            after: String::new(),
        }
    }

    /// The whole user message.
    pub fn text(&self) -> String {
        [
            self.before.as_str(),
            self.truncatable.as_str(),
            self.after.as_str(),
        ]
        .concat()
    }
}

/// What a model produced for an example.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Prediction<'a> {
    /// One score (e.g. the logit of its first token) per choice, in choice order.
    Scores(&'a [f32]),
    /// Generated text, for generation tasks.
    Generated(&'a str),
}

/// A prediction that cannot be graded against its example: a bug in the caller, not a wrong answer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GradeError {
    #[error("example {id}: {choices} choices but {scores} scores")]
    ScoreCount {
        id: String,
        choices: usize,
        scores: usize,
    },
    #[error("example {id}: a score is NaN")]
    NanScore { id: String },
    #[error("example {id}: expected {expected}, got the other kind of prediction")]
    WrongKind { id: String, expected: &'static str },
    #[error(
        "example {id}: a code task is graded by running the model's output; pass \
         --execute-code to allow it"
    )]
    NeedsExecution { id: String },
}

impl Example {
    /// What a fine-tuned model should produce after the assistant tag: the answer word or letter,
    /// or for generation tasks the worked solution (which ends in `#### <number>`).
    pub fn target(&self) -> &str {
        match &self.answer {
            Answer::Choice(index) => &self.choices[*index],
            Answer::Text { solution, .. } | Answer::Program { solution, .. } => solution,
        }
    }

    /// Whether `prediction` is right: the best-scored choice is the answer, or the generated
    /// text's final number equals the expected one. Code answers are graded only by running
    /// them (`eval::execute`): here they are [`GradeError::NeedsExecution`].
    pub fn grade(&self, prediction: Prediction<'_>) -> Result<bool, GradeError> {
        let id = || self.id.clone();
        match (&self.answer, prediction) {
            (Answer::Choice(answer), Prediction::Scores(scores)) => {
                if scores.len() != self.choices.len() {
                    return Err(GradeError::ScoreCount {
                        id: id(),
                        choices: self.choices.len(),
                        scores: scores.len(),
                    });
                }
                let best = argmax(scores).ok_or_else(|| GradeError::NanScore { id: id() })?;
                Ok(best == *answer)
            }
            (Answer::Text { final_number, .. }, Prediction::Generated(text)) => {
                Ok(exact_match(text, final_number))
            }
            (Answer::Choice(_), Prediction::Generated(_)) => Err(GradeError::WrongKind {
                id: id(),
                expected: "choice scores",
            }),
            (Answer::Program { .. }, Prediction::Generated(_)) => {
                Err(GradeError::NeedsExecution { id: id() })
            }
            (Answer::Text { .. } | Answer::Program { .. }, Prediction::Scores(_)) => {
                Err(GradeError::WrongKind {
                    id: id(),
                    expected: "generated text",
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentiment(answer: usize) -> Example {
        Example {
            id: "s".into(),
            prompt: Prompt::fixed("Review: fine".into()),
            choices: vec!["negative".into(), "positive".into()],
            answer: Answer::Choice(answer),
        }
    }

    fn word_problem() -> Example {
        Example {
            id: "g".into(),
            prompt: Prompt::fixed("Problem: 2 + 2".into()),
            choices: Vec::new(),
            answer: Answer::Text {
                final_number: "1234".into(),
                solution: "2 + 2 = 4\n#### 4".into(),
            },
        }
    }

    #[test]
    fn choice_grading_compares_the_argmax_with_the_answer() {
        assert_eq!(
            sentiment(1).grade(Prediction::Scores(&[0.1, 2.0])),
            Ok(true)
        );
        assert_eq!(
            sentiment(0).grade(Prediction::Scores(&[0.1, 2.0])),
            Ok(false)
        );
    }

    #[test]
    fn generation_grading_uses_the_final_number() {
        let example = word_problem();
        assert_eq!(
            example.grade(Prediction::Generated("so #### 1,234.0")),
            Ok(true)
        );
        assert_eq!(example.grade(Prediction::Generated("#### 1235")), Ok(false));
    }

    #[test]
    fn mismatched_predictions_are_errors_not_wrong_answers() {
        let example = sentiment(0);
        assert!(matches!(
            example.grade(Prediction::Scores(&[1.0])),
            Err(GradeError::ScoreCount {
                choices: 2,
                scores: 1,
                ..
            })
        ));
        assert!(matches!(
            example.grade(Prediction::Scores(&[f32::NAN, 1.0])),
            Err(GradeError::NanScore { .. })
        ));
        assert!(matches!(
            example.grade(Prediction::Generated("positive")),
            Err(GradeError::WrongKind { .. })
        ));
        assert!(matches!(
            word_problem().grade(Prediction::Scores(&[])),
            Err(GradeError::WrongKind { .. })
        ));
    }

    #[test]
    fn target_is_the_answer_word_or_the_solution() {
        assert_eq!(sentiment(1).target(), "positive");
        assert_eq!(word_problem().target(), "2 + 2 = 4\n#### 4");
    }
}
