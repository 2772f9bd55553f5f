//! Fitting a prompt into the model's context by cutting its truncatable part from the end.

use thiserror::Error;

use super::example::Prompt;

/// The prompt does not fit even with its truncatable part removed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("prompt needs {needed} tokens without its truncatable text, over the budget of {budget}")]
pub struct PromptTooLong {
    pub needed: usize,
    pub budget: usize,
}

impl Prompt {
    /// The user message, with `truncatable` cut at the end to its longest word-boundary prefix
    /// for which `count_tokens(message) <= budget`; untouched if the whole message fits.
    ///
    /// `count_tokens` gets a candidate user message and returns the length of everything the
    /// model will see for it (e.g. the chat-formatted prompt, plus the answer when training), so
    /// that `budget` can be the model's `max_len`. It is called O(log words) times and is assumed
    /// to grow with the message (true of BPE tokenisers up to a token at the cut).
    pub fn fit(
        &self,
        budget: usize,
        count_tokens: impl Fn(&str) -> usize,
    ) -> Result<String, PromptTooLong> {
        let message = |cut: usize| {
            [
                self.before.as_str(),
                &self.truncatable[..cut],
                self.after.as_str(),
            ]
            .concat()
        };
        let whole = self.text();
        if count_tokens(&whole) <= budget {
            return Ok(whole);
        }
        let cuts = word_ends(&self.truncatable);
        let needed = count_tokens(&message(0));
        if needed > budget {
            return Err(PromptTooLong { needed, budget });
        }
        // Invariant: cuts[fits] fits; every cut from `too_long` on was not found to fit.
        let (mut fits, mut too_long) = (0, cuts.len());
        while too_long - fits > 1 {
            let middle = (fits + too_long) / 2;
            if count_tokens(&message(cuts[middle])) <= budget {
                fits = middle;
            } else {
                too_long = middle;
            }
        }
        Ok(message(cuts[fits]))
    }
}

/// Byte offsets at which `text` can be cut after a whole word, ascending: 0, then every position
/// where whitespace follows a non-whitespace character (so a cut drops the space after a word).
fn word_ends(text: &str) -> Vec<usize> {
    let mut ends = vec![0];
    let mut previous_is_space = true;
    for (offset, c) in text.char_indices() {
        if c.is_whitespace() && !previous_is_space {
            ends.push(offset);
        }
        previous_is_space = c.is_whitespace();
    }
    ends
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One token per whitespace-separated word: a stand-in for a tokenizer.
    fn words(text: &str) -> usize {
        text.split_whitespace().count()
    }

    fn passage_prompt() -> Prompt {
        Prompt {
            before: "Passage: ".into(),
            truncatable: "one two three four five six".into(),
            after: "\nQuestion: why?".into(),
        }
    }

    #[test]
    fn a_prompt_that_fits_is_unchanged() {
        let prompt = passage_prompt();
        assert_eq!(prompt.fit(9, words).unwrap(), prompt.text());
    }

    #[test]
    fn truncation_cuts_whole_words_from_the_end_and_fits_the_budget() {
        let prompt = passage_prompt();
        for budget in 3..9 {
            let fitted = prompt.fit(budget, words).unwrap();
            assert_eq!(words(&fitted), budget, "{fitted:?}");
            assert!(fitted.starts_with(&prompt.before));
            assert!(fitted.ends_with(&prompt.after));
            let kept = &fitted[prompt.before.len()..fitted.len() - prompt.after.len()];
            assert!(prompt.truncatable.starts_with(kept));
            assert!(!kept.ends_with(' '));
        }
        assert_eq!(
            prompt.fit(5, words).unwrap(),
            "Passage: one two\nQuestion: why?"
        );
    }

    #[test]
    fn cuts_respect_multibyte_characters() {
        let prompt = Prompt {
            before: String::new(),
            truncatable: "café naïve\u{a0}été".into(),
            after: String::new(),
        };
        assert_eq!(word_ends(&prompt.truncatable), [0, 5, 12]);
        assert_eq!(prompt.fit(6, |text| text.chars().count()).unwrap(), "café");
    }

    #[test]
    fn a_prompt_too_long_without_its_truncatable_part_is_an_error() {
        let prompt = passage_prompt();
        assert_eq!(
            prompt.fit(2, words),
            Err(PromptTooLong {
                needed: 3,
                budget: 2
            })
        );
    }

    #[test]
    fn a_prompt_without_truncatable_text_fits_or_fails_whole() {
        let prompt = Prompt::fixed("a b c".into());
        assert_eq!(prompt.fit(3, words).unwrap(), "a b c");
        assert!(prompt.fit(2, words).is_err());
    }
}
