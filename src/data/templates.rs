//! Per-task prompt templates: how a dataset row becomes an [`Example`].
//!
//! Templates are completion-style and short: the text ends with a cue (`Sentiment:`,
//! `Answer:`) and the answer follows it after a space. SmolLM2-135M scores far better this way
//! than inside its chat template (SST-2 zero-shot on 100 training rows: 0.82 against 0.49, where
//! the chat turn makes it answer `positive` to everything), and every token saved is a token
//! less for the private layers to process under MPC.

use super::example::{Answer, Example, Prompt};
use super::number::{extract_final_number, normalize_number};
use super::row::{Row, RowError};
use super::task::TaskKind;

/// A classification task's dataset labels and the answer word the model gives for each.
struct LabelWords(&'static [(&'static str, &'static str)]);

const SST2_LABELS: LabelWords = LabelWords(&[("negative", "negative"), ("positive", "positive")]);
/// `entailment` is several tokens; the template asks a yes/no question instead.
const RTE_LABELS: LabelWords = LabelWords(&[("entailment", "yes"), ("not_entailment", "no")]);
const BOOLQ_LABELS: LabelWords = LabelWords(&[("no", "no"), ("yes", "yes")]);

/// Answer letters of multiple-choice questions, in choice order.
const LETTERS: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Parses one JSONL line of `task`'s dataset into an example.
pub fn parse_line(task: TaskKind, line: &str) -> Result<Example, RowError> {
    example_from_row(task, &Row::parse(line)?)
}

fn example_from_row(task: TaskKind, row: &Row) -> Result<Example, RowError> {
    let id = row.text("id")?.to_owned();
    let (prompt, choices, answer) = match task {
        TaskKind::Sst2 => {
            let prompt = Prompt::fixed(format!(
                "Review: {}\nSentiment:",
                row.text("sentence")?.trim()
            ));
            let (choices, answer) = SST2_LABELS.answer(row)?;
            (prompt, choices, answer)
        }
        TaskKind::Rte => {
            let prompt = Prompt {
                before: "Premise: ".to_owned(),
                truncatable: row.text("premise")?.trim().to_owned(),
                after: format!(
                    "\nHypothesis: {}\nDoes the premise entail the hypothesis?\nAnswer:",
                    row.text("hypothesis")?.trim()
                ),
            };
            let (choices, answer) = RTE_LABELS.answer(row)?;
            (prompt, choices, answer)
        }
        TaskKind::Boolq => {
            let prompt = Prompt {
                before: "Passage: ".to_owned(),
                truncatable: row.text("passage")?.trim().to_owned(),
                after: format!(
                    "\nQuestion: {}\nAnswer:",
                    as_question(row.text("question")?)
                ),
            };
            let (choices, answer) = BOOLQ_LABELS.answer(row)?;
            (prompt, choices, answer)
        }
        TaskKind::Arithmetic | TaskKind::ArcEasy => multiple_choice(row)?,
        TaskKind::Gsm8k => word_problem(row)?,
        TaskKind::ArithmeticGen => free_form_arithmetic(row)?,
        TaskKind::HumanEval => code_completion(row)?,
    };
    Ok(Example {
        id,
        prompt,
        choices,
        answer,
    })
}

/// Every answer word `task`'s examples can offer, in choice order: the label words, or the
/// letters (an example with `c` choices offers the first `c`). None for generation.
pub fn answer_words(task: TaskKind) -> Vec<&'static str> {
    let labels = |l: &LabelWords| l.0.iter().map(|(_, word)| *word).collect();
    match task {
        TaskKind::Sst2 => labels(&SST2_LABELS),
        TaskKind::Rte => labels(&RTE_LABELS),
        TaskKind::Boolq => labels(&BOOLQ_LABELS),
        TaskKind::Arithmetic | TaskKind::ArcEasy => {
            (0..LETTERS.len()).map(|i| &LETTERS[i..i + 1]).collect()
        }
        TaskKind::Gsm8k | TaskKind::ArithmeticGen | TaskKind::HumanEval => Vec::new(),
    }
}

impl LabelWords {
    /// The answer words as choices, and the index of the row's `label`.
    fn answer(&self, row: &Row) -> Result<(Vec<String>, Answer), RowError> {
        let label = row.text("label")?;
        let index = self
            .0
            .iter()
            .position(|(known, _)| *known == label)
            .ok_or_else(|| RowError::NotOneOf {
                field: "label",
                value: label.to_owned(),
                allowed: self
                    .0
                    .iter()
                    .map(|(known, _)| *known)
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let words = self.0.iter().map(|(_, word)| (*word).to_owned()).collect();
        Ok((words, Answer::Choice(index)))
    }
}

/// BoolQ questions are lowercase and lack the question mark.
fn as_question(question: &str) -> String {
    let question = question.trim();
    let mut chars = question.chars();
    let first = chars.next().map(|c| c.to_uppercase().collect::<String>());
    let mark = if question.ends_with('?') { "" } else { "?" };
    format!("{}{}{mark}", first.unwrap_or_default(), chars.as_str())
}

/// Question, lettered choices, and the letter of the row's `answer` among its `labels`.
fn multiple_choice(row: &Row) -> Result<(Prompt, Vec<String>, Answer), RowError> {
    let question = row.text("question")?.trim();
    let (texts, index) = choice_texts(row)?;
    let letters: Vec<String> = LETTERS[..texts.len()].chars().map(String::from).collect();
    let mut text = format!("Question: {question}\n");
    for (letter, choice) in letters.iter().zip(&texts) {
        text.push_str(&format!("{letter}. {}\n", choice.trim()));
    }
    text.push_str("Answer:");
    Ok((Prompt::fixed(text), letters, Answer::Choice(index)))
}

/// A multiple-choice row's choice texts and the index of its `answer` among its `labels`.
fn choice_texts(row: &Row) -> Result<(Vec<&str>, usize), RowError> {
    let texts = row.text_list("choices")?;
    let labels = row.text_list("labels")?;
    let answer = row.text("answer")?;
    if !(2..=LETTERS.len()).contains(&texts.len()) {
        return Err(RowError::ChoiceCount {
            found: texts.len(),
            max: LETTERS.len(),
        });
    }
    if labels.len() != texts.len() {
        return Err(RowError::ChoicesLabelsMismatch {
            choices: texts.len(),
            labels: labels.len(),
        });
    }
    let index = labels
        .iter()
        .position(|label| *label == answer)
        .ok_or_else(|| RowError::NotOneOf {
            field: "answer",
            value: answer.to_owned(),
            allowed: labels.join(", "),
        })?;
    Ok((texts, index))
}

/// An `arithmetic` row asked without its choices: the question is the prompt, the right
/// choice's number both the answer and the whole training target.
fn free_form_arithmetic(row: &Row) -> Result<(Prompt, Vec<String>, Answer), RowError> {
    let (texts, index) = choice_texts(row)?;
    let written = texts[index].trim();
    let final_number = normalize_number(written).ok_or_else(|| RowError::NotANumber {
        field: "choices",
        value: written.to_owned(),
    })?;
    let prompt = Prompt::fixed(row.text("question")?.trim().to_owned());
    let answer = Answer::Text {
        solution: final_number.clone(),
        final_number,
    };
    Ok((prompt, Vec::new(), answer))
}

/// A HumanEval problem: the prompt is the code as given (signature and docstring), which the
/// model continues with the body; not trimmed, since the body's indentation follows it.
fn code_completion(row: &Row) -> Result<(Prompt, Vec<String>, Answer), RowError> {
    let answer = Answer::Program {
        tests: row.text("test")?.to_owned(),
        entry_point: row.text("entry_point")?.trim().to_owned(),
        solution: row.text("canonical_solution")?.to_owned(),
    };
    Ok((
        Prompt::fixed(row.text("prompt")?.to_owned()),
        Vec::new(),
        answer,
    ))
}

/// A GSM8K problem; the model is asked to end in the dataset's own `#### <number>` format.
fn word_problem(row: &Row) -> Result<(Prompt, Vec<String>, Answer), RowError> {
    let prompt = Prompt::fixed(format!(
        "Question: {}\nAnswer:",
        row.text("question")?.trim()
    ));
    let written = row.text("answer")?;
    let final_number = normalize_number(written).ok_or_else(|| RowError::NotANumber {
        field: "answer",
        value: written.to_owned(),
    })?;
    let solution = without_calculator_annotations(row.text("solution")?.trim());
    let solution_number = extract_final_number(&solution);
    if solution_number.as_ref() != Some(&final_number) {
        return Err(RowError::SolutionDisagrees {
            solution: solution_number.unwrap_or_else(|| "none".to_owned()),
            answer: written.to_owned(),
        });
    }
    let answer = Answer::Text {
        final_number,
        solution,
    };
    Ok((prompt, Vec::new(), answer))
}

/// GSM8K solutions mark calculator calls as `<<16-3-4=9>>`; a model should not learn to write
/// them, so they are removed from the training target.
fn without_calculator_annotations(solution: &str) -> String {
    let mut kept = String::with_capacity(solution.len());
    let mut rest = solution;
    while let Some(open) = rest.find("<<") {
        let Some(close) = rest[open..].find(">>") else {
            break;
        };
        kept.push_str(&rest[..open]);
        rest = &rest[open + close + 2..];
    }
    kept.push_str(rest);
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(task: TaskKind, line: &str) -> Result<Example, RowError> {
        parse_line(task, line)
    }

    #[test]
    fn sst2_row_becomes_a_two_word_choice() {
        let example = parse(
            TaskKind::Sst2,
            r#"{"id": "sst2-0", "sentence": "it 's a charming journey .", "label": "positive"}"#,
        )
        .unwrap();
        assert_eq!(example.id, "sst2-0");
        assert_eq!(
            example.prompt.text(),
            "Review: it 's a charming journey .\nSentiment:"
        );
        assert_eq!(example.choices, ["negative", "positive"]);
        assert_eq!(example.answer, Answer::Choice(1));
        assert_eq!(example.target(), "positive");
    }

    #[test]
    fn rte_maps_entailment_to_yes_and_truncates_the_premise() {
        let line = r#"{"id": "rte-1", "premise": "Bacteria mutate.", "hypothesis": "Bacteria win.", "label": "not_entailment"}"#;
        let example = parse(TaskKind::Rte, line).unwrap();
        assert_eq!(example.choices, ["yes", "no"]);
        assert_eq!(example.answer, Answer::Choice(1));
        assert_eq!(example.prompt.truncatable, "Bacteria mutate.");
        assert!(example.prompt.before.ends_with("Premise: "));
        assert!(
            example
                .prompt
                .after
                .starts_with("\nHypothesis: Bacteria win.\n")
        );
        assert!(
            example
                .prompt
                .after
                .ends_with("Does the premise entail the hypothesis?\nAnswer:")
        );
    }

    #[test]
    fn boolq_truncates_the_passage_and_asks_a_proper_question() {
        let line = r#"{"id": "boolq-1", "question": "is the sky blue", "passage": "The sky is blue.", "label": "yes"}"#;
        let example = parse(TaskKind::Boolq, line).unwrap();
        assert_eq!(example.choices, ["no", "yes"]);
        assert_eq!(example.answer, Answer::Choice(1));
        assert_eq!(example.prompt.truncatable, "The sky is blue.");
        assert_eq!(
            example.prompt.after,
            "\nQuestion: Is the sky blue?\nAnswer:"
        );
    }

    #[test]
    fn multiple_choice_rows_are_lettered_whatever_their_labels() {
        let line = r#"{"id": "arc-1", "question": "Which is a gas?", "choices": ["ice", "steam", "rock"], "labels": ["1", "2", "3"], "answer": "2"}"#;
        let example = parse(TaskKind::ArcEasy, line).unwrap();
        assert_eq!(example.choices, ["A", "B", "C"]);
        assert_eq!(example.answer, Answer::Choice(1));
        assert_eq!(
            example.prompt.text(),
            "Question: Which is a gas?\nA. ice\nB. steam\nC. rock\nAnswer:"
        );
    }

    #[test]
    fn arithmetic_gen_asks_the_question_and_expects_the_right_choice() {
        use crate::data::Prediction;
        let line = r#"{"id": "q1", "question": "Calculate 0 - 42 =", "choices": ["-41", "-43", "42", "-42"], "labels": ["A", "B", "C", "D"], "answer": "D"}"#;
        let example = parse(TaskKind::ArithmeticGen, line).unwrap();
        assert_eq!(example.prompt.text(), "Calculate 0 - 42 =");
        assert!(example.choices.is_empty());
        assert_eq!(example.target(), "-42");
        assert!(example.grade(Prediction::Generated(" -42")).unwrap());
        assert!(!example.grade(Prediction::Generated(" 42")).unwrap());
    }

    #[test]
    fn arithmetic_uses_the_multiple_choice_template() {
        let line = r#"{"id": "q1", "question": "Calculate 5 + 91 =", "choices": ["97", "95", "106", "96"], "labels": ["A", "B", "C", "D"], "answer": "D"}"#;
        let example = parse(TaskKind::Arithmetic, line).unwrap();
        assert_eq!(example.answer, Answer::Choice(3));
        assert_eq!(example.target(), "D");
        assert!(example.prompt.text().contains("D. 96\n"));
        assert!(example.prompt.text().ends_with("D. 96\nAnswer:"));
    }

    #[test]
    fn gsm8k_keeps_the_normalised_answer_and_a_clean_solution() {
        let line = r#"{"id": "gsm8k-9", "question": "How many?", "solution": "2125 = <<2000+125=2125>>2,125 blocks\n#### 2,125", "answer": "2,125"}"#;
        let example = parse(TaskKind::Gsm8k, line).unwrap();
        assert!(example.choices.is_empty());
        assert_eq!(
            example.answer,
            Answer::Text {
                final_number: "2125".into(),
                solution: "2125 = 2,125 blocks\n#### 2,125".into(),
            }
        );
        assert_eq!(example.prompt.text(), "Question: How many?\nAnswer:");
    }

    #[test]
    fn bad_rows_say_what_is_wrong() {
        let cases = [
            (
                TaskKind::Sst2,
                r#"{"id": "a", "sentence": "ok", "label": "maybe"}"#,
                "label \"maybe\" is not one of negative, positive",
            ),
            (
                TaskKind::Rte,
                r#"{"id": "a", "premise": "p", "label": "entailment"}"#,
                "missing field \"hypothesis\"",
            ),
            (
                TaskKind::ArcEasy,
                r#"{"id": "a", "question": "q", "choices": ["x", "y"], "labels": ["A", "B"], "answer": "C"}"#,
                "answer \"C\" is not one of A, B",
            ),
            (
                TaskKind::Arithmetic,
                r#"{"id": "a", "question": "q", "choices": ["x", "y"], "labels": ["A"], "answer": "A"}"#,
                "\"choices\" has 2 entries but \"labels\" has 1",
            ),
            (
                TaskKind::Arithmetic,
                r#"{"id": "a", "question": "q", "choices": ["x"], "labels": ["A"], "answer": "A"}"#,
                "a question needs 2 to 26 choices, found 1",
            ),
            (
                TaskKind::Gsm8k,
                r#"{"id": "a", "question": "q", "solution": "1 + 2 = 3\n#### 3", "answer": "three"}"#,
                "answer \"three\" is not a number",
            ),
            (
                TaskKind::Gsm8k,
                r#"{"id": "a", "question": "q", "solution": "2 + 2 = 4\n#### 4", "answer": "3"}"#,
                "the solution's final number (4) differs from answer \"3\"",
            ),
        ];
        for (task, line, message) in cases {
            assert_eq!(
                parse(task, line).unwrap_err().to_string(),
                message,
                "{line}"
            );
        }
    }

    #[test]
    fn calculator_annotations_are_removed_and_unclosed_ones_kept() {
        assert_eq!(
            without_calculator_annotations("9 * 2 = $<<9*2=18>>18 and <<open"),
            "9 * 2 = $18 and <<open"
        );
    }
}
