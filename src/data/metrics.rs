//! Accuracy over choices and exact match of final numbers.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::number::{extract_final_number, normalize_number};

/// Index of the highest score (the first of equal ones); `None` if empty or any score is NaN.
pub fn argmax(scores: &[f32]) -> Option<usize> {
    if scores.iter().any(|score| score.is_nan()) {
        return None;
    }
    scores
        .iter()
        .enumerate()
        .fold(
            None,
            |best: Option<(usize, f32)>, (index, &score)| match best {
                Some((_, best_score)) if best_score >= score => best,
                _ => Some((index, score)),
            },
        )
        .map(|(index, _)| index)
}

/// Whether the final number of `generated` equals `expected`, both normalised.
pub fn exact_match(generated: &str, expected: &str) -> bool {
    match (extract_final_number(generated), normalize_number(expected)) {
        (Some(found), Some(expected)) => found == expected,
        _ => false,
    }
}

/// Counts right answers; used for choice accuracy and for exact match alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accuracy {
    pub correct: usize,
    pub total: usize,
}

impl Accuracy {
    pub fn record(&mut self, correct: bool) {
        self.correct += usize::from(correct);
        self.total += 1;
    }

    /// Adds counts gathered elsewhere (another thread or batch).
    pub fn merge(&mut self, other: Accuracy) {
        self.correct += other.correct;
        self.total += other.total;
    }

    /// The fraction correct; `None` before anything was recorded.
    pub fn value(&self) -> Option<f64> {
        (self.total > 0).then(|| self.correct as f64 / self.total as f64)
    }
}

impl fmt::Display for Accuracy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.value() {
            Some(value) => write!(f, "{value:.4} ({}/{})", self.correct, self.total),
            None => f.write_str("n/a (0 examples)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_picks_the_first_maximum_and_rejects_nan() {
        assert_eq!(argmax(&[0.5, 3.0, -1.0, 3.0]), Some(1));
        assert_eq!(argmax(&[f32::NEG_INFINITY, -7.0]), Some(1));
        assert_eq!(argmax(&[]), None);
        assert_eq!(argmax(&[1.0, f32::NAN]), None);
    }

    #[test]
    fn exact_match_normalises_both_sides() {
        assert!(exact_match("The answer is 2125.", "2,125"));
        assert!(exact_match("#### 18.00", "18"));
        assert!(!exact_match("#### 18", "81"));
        assert!(!exact_match("I do not know", "18"));
    }

    #[test]
    fn accuracy_counts_and_merges() {
        let mut left = Accuracy::default();
        assert_eq!(left.value(), None);
        left.record(true);
        left.record(false);
        let mut right = Accuracy::default();
        right.record(true);
        right.record(true);
        left.merge(right);
        assert_eq!(
            left,
            Accuracy {
                correct: 3,
                total: 4
            }
        );
        assert_eq!(left.value(), Some(0.75));
        assert_eq!(left.to_string(), "0.7500 (3/4)");
    }
}
