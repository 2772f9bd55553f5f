//! Finding and normalising the final number of a GSM8K answer.

/// Markers after which a worked solution states its answer, most explicit first.
const ANSWER_MARKERS: [&str; 3] = ["####", "answer is", "answer:"];

/// The final numeric answer in a generated text, normalised (see [`normalize_number`]).
///
/// The first number after the last `####` wins (the GSM8K format); failing that, the first number
/// after the last "answer is" / "answer:" (any case); failing that, the last number in the text.
/// `"#### 18"`, `"$1,234.50"` and `"so the answer is 18."` give `"18"`, `"1234.5"` and `"18"`.
pub fn extract_final_number(text: &str) -> Option<String> {
    // ASCII lowercasing keeps byte offsets valid for `text`.
    let lower = text.to_ascii_lowercase();
    let after_marker = ANSWER_MARKERS.iter().find_map(|marker| {
        let start = lower.rfind(marker)? + marker.len();
        numbers(&text[start..]).into_iter().next()
    });
    let number = after_marker.or_else(|| numbers(text).pop())?;
    Some(canonical(number))
}

/// A number written on its own (surrounding whitespace allowed) in canonical form: no thousands
/// commas, no trailing fractional zeros or point, no leading zeros, no negative zero.
/// `"1,234.50"` → `"1234.5"`, `"18.0"` → `"18"`; `None` if `written` is not exactly one number.
pub fn normalize_number(written: &str) -> Option<String> {
    let written = written.trim();
    match numbers(written).as_slice() {
        [number] if *number == written => Some(canonical(number)),
        _ => None,
    }
}

/// The numbers in `text` in order, as written: an optional minus sign (not after a letter or
/// digit, so "3-4" is two positive numbers), digits with optional thousands commas, and an
/// optional fraction. A trailing sentence period is not part of a number.
fn numbers(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let digits_from = |at: usize| {
        bytes[at.min(bytes.len())..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let mut found = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        if !bytes[at].is_ascii_digit() {
            at += 1;
            continue;
        }
        let negative =
            at >= 1 && bytes[at - 1] == b'-' && (at < 2 || !bytes[at - 2].is_ascii_alphanumeric());
        let start = if negative { at - 1 } else { at };
        let mut end = at + digits_from(at);
        while end < bytes.len() && bytes[end] == b',' && digits_from(end + 1) == 3 {
            end += 4;
        }
        if end < bytes.len() && bytes[end] == b'.' && digits_from(end + 1) > 0 {
            end += 1 + digits_from(end + 1);
        }
        found.push(&text[start..end]);
        at = end;
    }
    found
}

/// Canonical form of a number as matched by [`numbers`].
fn canonical(number: &str) -> String {
    let (negative, magnitude) = match number.strip_prefix('-') {
        Some(magnitude) => (true, magnitude),
        None => (false, number),
    };
    let magnitude = magnitude.replace(',', "");
    let (integer, fraction) = magnitude.split_once('.').unwrap_or((&magnitude, ""));
    let integer = match integer.trim_start_matches('0') {
        "" => "0",
        digits => digits,
    };
    let fraction = fraction.trim_end_matches('0');
    let mut canonical = String::new();
    if negative && (integer != "0" || !fraction.is_empty()) {
        canonical.push('-');
    }
    canonical.push_str(integer);
    if !fraction.is_empty() {
        canonical.push('.');
        canonical.push_str(fraction);
    }
    canonical
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extracts_the_final_number() {
        let cases = [
            // The GSM8K marker; it wins over numbers written after it.
            ("She makes 9 * 2 = $18 every day.\n#### 18", Some("18")),
            ("#### 1,450,000", Some("1450000")),
            ("#### 5 apples, not 7", Some("5")),
            // "answer is" / "answer:" in any case.
            ("3 + 15 = 18, so the answer is 18.", Some("18")),
            ("The Answer is $1,234.50 in total, 3 days", Some("1234.5")),
            ("Answer: -7", Some("-7")),
            // Otherwise the last number, also when a marker has no number after it.
            ("2 bolts plus 1 bolt make 3.", Some("3")),
            ("It costs $12.00", Some("12")),
            ("It is 4. ####", Some("4")),
            ("no digits here", None),
        ];
        for (text, expected) in cases {
            assert_eq!(extract_final_number(text).as_deref(), expected, "{text:?}");
        }
    }

    #[test]
    fn minus_signs_and_commas_need_context() {
        assert_eq!(numbers("3-4 is -1"), ["3", "4", "-1"]);
        assert_eq!(
            numbers("1,2345 and 1, 234 and 12,345."),
            ["1", "2345", "1", "234", "12,345"]
        );
        assert_eq!(numbers("x-5 and 2.5.3"), ["5", "2.5", "3"]);
    }

    #[test]
    fn normalises_commas_zeros_and_signs() {
        let cases = [
            ("2,125", "2125"),
            (" 18.0 ", "18"),
            ("0.50", "0.5"),
            ("007", "7"),
            ("-0.0", "0"),
            ("-3", "-3"),
        ];
        for (written, canonical) in cases {
            assert_eq!(
                normalize_number(written).as_deref(),
                Some(canonical),
                "{written:?}"
            );
        }
    }

    #[test]
    fn normalize_rejects_anything_but_one_number() {
        for written in ["", "abc", "18 apples", "$18", "1 2", "18."] {
            assert_eq!(normalize_number(written), None, "{written:?}");
        }
    }
}
