//! The tasks marill knows, by name.

use serde::{Deserialize, Serialize};

use super::names::impl_named_variant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Sst2,
    Rte,
    Boolq,
    Arithmetic,
    ArcEasy,
    Gsm8k,
    /// `arithmetic`'s rows asked as free-form questions ("Calculate 5 + 91 =" → "96").
    #[serde(rename = "arithmetic-gen")]
    ArithmeticGen,
    /// OpenAI's HumanEval: a Python function's signature and docstring, its body generated
    /// and graded pass@1 by running the problem's tests (only behind `--execute-code`).
    #[serde(rename = "humaneval")]
    HumanEval,
}

impl TaskKind {
    pub const ALL: [TaskKind; 8] = [
        TaskKind::Sst2,
        TaskKind::Rte,
        TaskKind::Boolq,
        TaskKind::Arithmetic,
        TaskKind::ArcEasy,
        TaskKind::Gsm8k,
        TaskKind::ArithmeticGen,
        TaskKind::HumanEval,
    ];

    /// The name used in recipes and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::ArithmeticGen => "arithmetic-gen",
            TaskKind::Sst2 => "sst2",
            TaskKind::Rte => "rte",
            TaskKind::Boolq => "boolq",
            TaskKind::Arithmetic => "arithmetic",
            TaskKind::ArcEasy => "arc_easy",
            TaskKind::Gsm8k => "gsm8k",
            TaskKind::HumanEval => "humaneval",
        }
    }

    /// The folder of the task's rows under the datasets root: a task may ask another's rows.
    pub fn dataset(self) -> &'static str {
        match self {
            TaskKind::ArithmeticGen => TaskKind::Arithmetic.name(),
            other => other.name(),
        }
    }

    /// Whether answers are graded by running them (which needs `--execute-code`).
    pub fn is_graded_by_execution(self) -> bool {
        self == TaskKind::HumanEval
    }

    /// Whether the model generates free text (graded by exact match on the final number, or
    /// by running it) instead of picking one of the example's choices.
    pub fn is_generation(self) -> bool {
        matches!(
            self,
            TaskKind::Gsm8k | TaskKind::ArithmeticGen | TaskKind::HumanEval
        )
    }
}

impl_named_variant!(TaskKind, "task");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_task_error_lists_the_known_tasks() {
        let err = "mnli".parse::<TaskKind>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown task \"mnli\"; expected one of sst2, rte, boolq, arithmetic, arc_easy, gsm8k, arithmetic-gen, humaneval"
        );
    }

    #[test]
    fn gsm8k_and_arithmetic_gen_are_the_generation_tasks() {
        let generation: Vec<_> = TaskKind::ALL
            .into_iter()
            .filter(|task| task.is_generation())
            .collect();
        assert_eq!(
            generation,
            [
                TaskKind::Gsm8k,
                TaskKind::ArithmeticGen,
                TaskKind::HumanEval
            ]
        );
        assert_eq!(TaskKind::ArithmeticGen.dataset(), "arithmetic");
    }
}
