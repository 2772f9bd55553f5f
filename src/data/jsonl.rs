//! Loading a task's JSONL file, with errors that point at `file:line`.

use std::collections::HashMap;
use std::fs;
use std::io::ErrorKind;
use std::path::Path;

use anyhow::bail;

use super::example::Example;
use super::task::TaskKind;
use super::templates::parse_line;

/// Every example of `path`, one JSON object a line (blank lines are skipped; a leading UTF-8
/// byte-order mark, which Windows editors write, is ignored).
///
/// Errors are one line: `path: file not found`, `path: no examples (the file is empty)`, or
/// `path:line: problem` for a bad row or an id seen on an earlier line.
pub fn load_jsonl(path: &Path, task: TaskKind) -> anyhow::Result<Vec<Example>> {
    let shown = path.display();
    let text = match fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == ErrorKind::NotFound => bail!("{shown}: file not found"),
        Err(err) => bail!("{shown}: cannot read: {err}"),
    };
    // serde_json rejects the BOM as a stray character, so a valid file would fail on line 1.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut examples = Vec::new();
    let mut first_line_of_id = HashMap::new();
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let example = match parse_line(task, line) {
            Ok(example) => example,
            Err(err) => bail!("{shown}:{line_number}: {err}"),
        };
        if let Some(first) = first_line_of_id.insert(example.id.clone(), line_number) {
            bail!(
                "{shown}:{line_number}: duplicate id \"{}\" (first on line {first})",
                example.id
            );
        }
        examples.push(example);
    }
    if examples.is_empty() {
        bail!("{shown}: no examples (the file is empty)");
    }
    Ok(examples)
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::Write;

    use tempfile::NamedTempFile;

    const GOOD: &str = r#"{"id": "a", "sentence": "fine", "label": "positive"}"#;

    /// Loads `lines` as an SST-2 file; returns the error message with the temp path as `FILE`.
    fn load_error(lines: &[&str]) -> String {
        let mut file = NamedTempFile::new().unwrap();
        for line in lines {
            writeln!(file, "{line}").unwrap();
        }
        let err = load_jsonl(file.path(), TaskKind::Sst2).unwrap_err();
        err.to_string()
            .replace(&file.path().display().to_string(), "FILE")
    }

    #[test]
    fn loads_rows_and_skips_blank_lines() {
        let mut file = NamedTempFile::new().unwrap();
        let negative = r#"{"id": "b", "sentence": "bad", "label": "negative"}"#;
        write!(file, "{GOOD}\n\n{negative}\r\n").unwrap();
        let examples = load_jsonl(file.path(), TaskKind::Sst2).unwrap();
        let ids: Vec<_> = examples.iter().map(|example| example.id.as_str()).collect();
        assert_eq!(ids, ["a", "b"]);
    }

    #[test]
    fn a_leading_byte_order_mark_is_ignored() {
        let mut file = NamedTempFile::new().unwrap();
        writeln!(file, "\u{feff}{GOOD}").unwrap();
        let examples = load_jsonl(file.path(), TaskKind::Sst2).unwrap();
        assert_eq!(examples.len(), 1);
        assert_eq!(examples[0].id, "a");
    }

    #[test]
    fn bad_lines_are_named_by_file_and_line() {
        assert_eq!(
            load_error(&[GOOD, "", "{not json"]),
            "FILE:3: not valid JSON (column 2): key must be a string"
        );
        assert_eq!(
            load_error(&[r#"{"id": "a", "sentence": "fine"}"#]),
            "FILE:1: missing field \"label\""
        );
        assert_eq!(
            load_error(&[
                GOOD,
                r#"{"id": "b", "sentence": "so so", "label": "maybe"}"#
            ]),
            "FILE:2: label \"maybe\" is not one of negative, positive"
        );
        assert_eq!(
            load_error(&[GOOD, GOOD]),
            "FILE:2: duplicate id \"a\" (first on line 1)"
        );
    }

    #[test]
    fn empty_and_missing_files_are_errors() {
        assert_eq!(load_error(&[]), "FILE: no examples (the file is empty)");
        assert_eq!(
            load_error(&["", "  "]),
            "FILE: no examples (the file is empty)"
        );
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("data.jsonl");
        let err = load_jsonl(&missing, TaskKind::Sst2).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: file not found", missing.display())
        );
    }
}
