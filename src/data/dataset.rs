//! A task's dataset as found under the datasets root: `<root>/<task>/data.jsonl`.

use std::path::{Path, PathBuf};

use super::example::Example;
use super::jsonl::load_jsonl;
use super::split::{Split, SplitRatios, split_indices};
use super::task::TaskKind;

#[derive(Debug, Clone)]
pub struct Dataset {
    pub task: TaskKind,
    /// All rows of the file, in file order.
    pub examples: Vec<Example>,
}

impl Dataset {
    /// Where `task`'s rows live under `root` (the repository's `datasets` folder).
    pub fn path(root: &Path, task: TaskKind) -> PathBuf {
        root.join(task.dataset()).join("data.jsonl")
    }

    pub fn load(root: &Path, task: TaskKind) -> anyhow::Result<Dataset> {
        Ok(Dataset {
            task,
            examples: load_jsonl(&Dataset::path(root, task), task)?,
        })
    }

    /// The examples of one split (see [`split_indices`]), in file order.
    pub fn split(&self, split: Split, seed: u64, ratios: &SplitRatios) -> Vec<&Example> {
        split_indices(self.examples.len(), seed, ratios)[split as usize]
            .iter()
            .map(|&index| &self.examples[index])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::data::{Answer, DEFAULT_SPLIT_SEED};

    fn datasets_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("datasets")
    }

    #[test]
    fn every_shipped_dataset_loads_completely() {
        let expected_rows = [
            (TaskKind::Sst2, 700),
            (TaskKind::Rte, 220),
            (TaskKind::Boolq, 2800),
            (TaskKind::Arithmetic, 2500),
            (TaskKind::ArcEasy, 470),
            (TaskKind::Gsm8k, 1100),
            (TaskKind::ArithmeticGen, 2500),
            (TaskKind::HumanEval, 164),
        ];
        for (task, rows) in expected_rows {
            let dataset = Dataset::load(&datasets_root(), task).unwrap();
            assert_eq!(dataset.examples.len(), rows, "{task}");
            for example in &dataset.examples {
                match example.answer {
                    Answer::Choice(index) => assert!(index < example.choices.len()),
                    Answer::Text { .. } | Answer::Program { .. } => {
                        assert!(task.is_generation())
                    }
                }
            }
        }
    }

    #[test]
    fn arc_easy_has_three_to_five_lettered_choices() {
        let dataset = Dataset::load(&datasets_root(), TaskKind::ArcEasy).unwrap();
        let mut counts: Vec<usize> = dataset
            .examples
            .iter()
            .map(|example| example.choices.len())
            .collect();
        counts.sort_unstable();
        counts.dedup();
        assert!(
            counts.iter().all(|count| (3..=5).contains(count)),
            "{counts:?}"
        );
        assert!(counts.contains(&4) && counts.contains(&5));
    }

    #[test]
    fn splits_of_a_dataset_partition_its_examples() {
        let dataset = Dataset::load(&datasets_root(), TaskKind::Rte).unwrap();
        let ratios = SplitRatios::default();
        let sizes = Split::ALL.map(|split| dataset.split(split, DEFAULT_SPLIT_SEED, &ratios).len());
        assert_eq!(sizes, [154, 22, 44]);
        let mut ids: Vec<&str> = Split::ALL
            .iter()
            .flat_map(|&split| dataset.split(split, DEFAULT_SPLIT_SEED, &ratios))
            .map(|example| example.id.as_str())
            .collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), dataset.examples.len());
    }

    #[test]
    fn loading_an_unknown_root_names_the_missing_file() {
        let err = Dataset::load(Path::new("/nonexistent"), TaskKind::Boolq).unwrap_err();
        assert_eq!(
            err.to_string(),
            "/nonexistent/boolq/data.jsonl: file not found"
        );
    }
}
