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
}

impl TaskKind {
    pub const ALL: [TaskKind; 6] = [
        TaskKind::Sst2,
        TaskKind::Rte,
        TaskKind::Boolq,
        TaskKind::Arithmetic,
        TaskKind::ArcEasy,
        TaskKind::Gsm8k,
    ];

    /// The name used in recipes, on the command line and as the dataset folder.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Sst2 => "sst2",
            TaskKind::Rte => "rte",
            TaskKind::Boolq => "boolq",
            TaskKind::Arithmetic => "arithmetic",
            TaskKind::ArcEasy => "arc_easy",
            TaskKind::Gsm8k => "gsm8k",
        }
    }

    /// Whether the model generates free text (graded by exact match on the final number)
    /// instead of picking one of the example's choices.
    pub fn is_generation(self) -> bool {
        self == TaskKind::Gsm8k
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
            "unknown task \"mnli\"; expected one of sst2, rte, boolq, arithmetic, arc_easy, gsm8k"
        );
    }

    #[test]
    fn only_gsm8k_is_generation() {
        let generation: Vec<_> = TaskKind::ALL
            .into_iter()
            .filter(|task| task.is_generation())
            .collect();
        assert_eq!(generation, [TaskKind::Gsm8k]);
    }
}
