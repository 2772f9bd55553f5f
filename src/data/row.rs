//! One JSONL line as a JSON object, with typed field access whose errors name the field.

use serde_json::{Map, Value};
use thiserror::Error;

/// Why a dataset line could not become an example; the loader prefixes `file:line: `.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RowError {
    #[error("not valid JSON (column {column}): {message}")]
    InvalidJson { column: usize, message: String },
    #[error("expected a JSON object, found {found}")]
    NotAnObject { found: &'static str },
    #[error("missing field \"{0}\"")]
    MissingField(&'static str),
    #[error("field \"{field}\" must be {expected}, found {found}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field \"{0}\" is empty")]
    EmptyField(&'static str),
    #[error("{field} \"{value}\" is not one of {allowed}")]
    NotOneOf {
        field: &'static str,
        value: String,
        allowed: String,
    },
    #[error("{field} \"{value}\" is not a number")]
    NotANumber { field: &'static str, value: String },
    #[error("\"choices\" has {choices} entries but \"labels\" has {labels}")]
    ChoicesLabelsMismatch { choices: usize, labels: usize },
    #[error("a question needs 2 to {max} choices, found {found}")]
    ChoiceCount { found: usize, max: usize },
    /// `solution` is the solution's final number, or "none".
    #[error("the solution's final number ({solution}) differs from answer \"{answer}\"")]
    SolutionDisagrees { solution: String, answer: String },
}

pub struct Row(Map<String, Value>);

impl Row {
    pub fn parse(line: &str) -> Result<Row, RowError> {
        match serde_json::from_str(line) {
            Ok(Value::Object(fields)) => Ok(Row(fields)),
            Ok(other) => Err(RowError::NotAnObject {
                found: type_name(&other),
            }),
            Err(err) => Err(invalid_json(&err)),
        }
    }

    /// A non-empty string field.
    pub fn text(&self, field: &'static str) -> Result<&str, RowError> {
        let value = self.0.get(field).ok_or(RowError::MissingField(field))?;
        let text = value.as_str().ok_or(RowError::WrongType {
            field,
            expected: "a string",
            found: type_name(value),
        })?;
        if text.trim().is_empty() {
            return Err(RowError::EmptyField(field));
        }
        Ok(text)
    }

    /// A field that is a list of strings.
    pub fn text_list(&self, field: &'static str) -> Result<Vec<&str>, RowError> {
        let wrong_type = |found| RowError::WrongType {
            field,
            expected: "a list of strings",
            found,
        };
        let value = self.0.get(field).ok_or(RowError::MissingField(field))?;
        let items = value
            .as_array()
            .ok_or_else(|| wrong_type(type_name(value)))?;
        items
            .iter()
            .map(|item| {
                item.as_str()
                    .ok_or_else(|| wrong_type("a list with a non-string"))
            })
            .collect()
    }
}

/// serde_json reports "line 1 column N" for a single line; keep only the column.
fn invalid_json(err: &serde_json::Error) -> RowError {
    let message = err.to_string();
    let position = format!(" at line {} column {}", err.line(), err.column());
    RowError::InvalidJson {
        column: err.column(),
        message: message
            .strip_suffix(&position)
            .unwrap_or(&message)
            .to_owned(),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_json_reports_the_column_once() {
        let err = Row::parse(r#"{"id": "x",}"#).err().unwrap();
        assert_eq!(
            err.to_string(),
            "not valid JSON (column 12): trailing comma"
        );
    }

    #[test]
    fn field_errors_name_the_field_and_the_found_type() {
        let row = Row::parse(r#"{"id": 7, "choices": ["a", 1], "blank": "  "}"#).unwrap();
        assert_eq!(
            row.text("id").unwrap_err().to_string(),
            "field \"id\" must be a string, found a number"
        );
        assert_eq!(
            row.text("label").unwrap_err(),
            RowError::MissingField("label")
        );
        assert_eq!(
            row.text("blank").unwrap_err(),
            RowError::EmptyField("blank")
        );
        assert_eq!(
            row.text_list("choices").unwrap_err().to_string(),
            "field \"choices\" must be a list of strings, found a list with a non-string"
        );
    }

    #[test]
    fn non_object_lines_are_rejected() {
        assert_eq!(
            Row::parse("[1, 2]").err().unwrap(),
            RowError::NotAnObject { found: "a list" }
        );
    }
}
