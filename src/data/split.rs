//! Deterministic train / validation / test splits of one dataset file.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::names::impl_named_variant;

/// The seed of the default split, so that every run without a recipe override agrees.
pub const DEFAULT_SPLIT_SEED: u64 = 1234;

/// Discriminants index the array returned by [`split_indices`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train = 0,
    Validation = 1,
    Test = 2,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Validation, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Validation => "validation",
            Split::Test => "test",
        }
    }
}

impl_named_variant!(Split, "split");

/// Shares of the rows in each split: positive, summing to 1. Validated on construction and on
/// deserialisation, so a held `SplitRatios` is always usable.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "UncheckedRatios")]
pub struct SplitRatios {
    train: f64,
    validation: f64,
    test: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UncheckedRatios {
    train: f64,
    validation: f64,
    test: f64,
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum InvalidRatios {
    #[error("split ratio {split} must be positive, is {value}")]
    NotPositive { split: Split, value: f64 },
    #[error("split ratios must sum to 1, sum to {sum}")]
    BadSum { sum: f64 },
}

impl SplitRatios {
    const SUM_TOLERANCE: f64 = 1e-6;

    pub fn new(train: f64, validation: f64, test: f64) -> Result<SplitRatios, InvalidRatios> {
        let ratios = SplitRatios {
            train,
            validation,
            test,
        };
        for split in Split::ALL {
            let value = ratios.get(split);
            if value.is_nan() || value <= 0.0 {
                return Err(InvalidRatios::NotPositive { split, value });
            }
        }
        let sum = train + validation + test;
        if (sum - 1.0).abs() > Self::SUM_TOLERANCE {
            return Err(InvalidRatios::BadSum { sum });
        }
        Ok(ratios)
    }

    pub fn get(&self, split: Split) -> f64 {
        match split {
            Split::Train => self.train,
            Split::Validation => self.validation,
            Split::Test => self.test,
        }
    }
}

impl Default for SplitRatios {
    fn default() -> Self {
        SplitRatios {
            train: 0.7,
            validation: 0.1,
            test: 0.2,
        }
    }
}

impl TryFrom<UncheckedRatios> for SplitRatios {
    type Error = InvalidRatios;

    fn try_from(unchecked: UncheckedRatios) -> Result<Self, Self::Error> {
        SplitRatios::new(unchecked.train, unchecked.validation, unchecked.test)
    }
}

/// Row indices `0..n` of each split, indexed by `Split as usize`, each in ascending order.
///
/// The rows are shuffled by a ChaCha8 generator seeded with `seed`, then cut into contiguous runs
/// of `round(n * train)` and `round(n * validation)` rows (clamped to `n`); test takes the rest.
/// The same `n`, seed and ratios always give the same splits; they are disjoint and cover `0..n`.
pub fn split_indices(n: usize, seed: u64, ratios: &SplitRatios) -> [Vec<usize>; 3] {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let share = |ratio: f64| (n as f64 * ratio).round() as usize;
    let train_end = share(ratios.train).min(n);
    let validation_end = (train_end + share(ratios.validation)).min(n);
    let sorted = |rows: &[usize]| {
        let mut rows = rows.to_vec();
        rows.sort_unstable();
        rows
    };
    [
        sorted(&order[..train_end]),
        sorted(&order[train_end..validation_end]),
        sorted(&order[validation_end..]),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_split_error_lists_the_splits() {
        assert_eq!(
            "dev".parse::<Split>().unwrap_err().to_string(),
            "unknown split \"dev\"; expected one of train, validation, test"
        );
    }

    #[test]
    fn ratios_must_be_positive_and_sum_to_one() {
        assert!(SplitRatios::new(0.8, 0.1, 0.1).is_ok());
        assert!(SplitRatios::new(0.8, 0.1, 0.1 + 5e-7).is_ok());
        assert!(matches!(
            SplitRatios::new(0.9, 0.0, 0.1),
            Err(InvalidRatios::NotPositive {
                split: Split::Validation,
                ..
            })
        ));
        assert!(SplitRatios::new(f64::NAN, 0.5, 0.5).is_err());
        assert!(matches!(
            SplitRatios::new(0.7, 0.1, 0.3),
            Err(InvalidRatios::BadSum { .. })
        ));
        let default = SplitRatios::default();
        assert_eq!(
            SplitRatios::new(default.train, default.validation, default.test),
            Ok(default)
        );
    }

    #[test]
    fn deserialising_ratios_validates_them() {
        let ok: SplitRatios =
            serde_json::from_str(r#"{"train": 0.6, "validation": 0.2, "test": 0.2}"#).unwrap();
        assert_eq!(ok.get(Split::Train), 0.6);
        let err = serde_json::from_str::<SplitRatios>(
            r#"{"train": 0.6, "validation": 0.2, "test": 0.3}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("must sum to 1"), "{err}");
    }

    #[test]
    fn splits_are_disjoint_covering_and_sized_by_the_ratios() {
        for n in [0, 1, 2, 7, 220, 700, 2800] {
            let splits = split_indices(n, DEFAULT_SPLIT_SEED, &SplitRatios::default());
            let mut all: Vec<usize> = splits.concat();
            all.sort_unstable();
            assert_eq!(all, (0..n).collect::<Vec<_>>(), "n = {n}");
            for rows in &splits {
                assert!(rows.is_sorted());
            }
        }
        let [train, validation, test] = split_indices(700, 1, &SplitRatios::default());
        assert_eq!((train.len(), validation.len(), test.len()), (490, 70, 140));
    }

    #[test]
    fn splits_depend_only_on_the_seed() {
        let ratios = SplitRatios::default();
        assert_eq!(
            split_indices(500, 7, &ratios),
            split_indices(500, 7, &ratios)
        );
        assert_ne!(
            split_indices(500, 7, &ratios),
            split_indices(500, 8, &ratios)
        );
    }

    #[test]
    fn the_default_split_is_pinned() {
        // Guards against silent changes of the generator or shuffle across dependency updates.
        let [train, validation, test] =
            split_indices(10, DEFAULT_SPLIT_SEED, &SplitRatios::default());
        assert_eq!(
            (train, validation, test),
            (vec![1, 2, 3, 5, 6, 7, 8], vec![9], vec![0, 4])
        );
    }
}
