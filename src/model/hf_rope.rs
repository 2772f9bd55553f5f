//! The RoPE base of a Hugging Face `config.json`, in either layout: transformers 4 writes
//! `rope_theta` at the top level (and `rope_scaling` for scaled variants); transformers 5 drops
//! both for `rope_parameters: {"rope_theta": …, "rope_type": "default"}`. The decoder implements
//! only the default, unscaled RoPE: a scaled or unknown kind is refused, never run as the default
//! (the same weights would silently give other scores).

use anyhow::{Result, bail};
use serde::Deserialize;
use serde_json::{Map, Value};

/// transformers' Llama default when a config names no base.
const DEFAULT_ROPE_THETA: f64 = 10_000.0;

/// The RoPE fields of a `config.json` as written (flattened into the whole config's parser).
#[derive(Debug, Deserialize)]
pub struct HfRope {
    rope_theta: Option<Value>,
    rope_parameters: Option<Value>,
    rope_scaling: Option<Value>,
}

impl HfRope {
    /// The RoPE base, or an error naming the field: a RoPE kind other than the default, a
    /// scaling, or two layouts that disagree.
    pub fn theta(&self) -> Result<f64> {
        let mut found: Vec<(String, f64)> = Vec::new();
        if let Some(value) = &self.rope_theta {
            found.push(("rope_theta".into(), positive_number("rope_theta", value)?));
        }
        for (field, value) in [
            ("rope_parameters", &self.rope_parameters),
            ("rope_scaling", &self.rope_scaling),
        ] {
            match value {
                None => {}
                Some(Value::Object(map)) => {
                    if let Some(theta) = default_rope_theta(field, map)? {
                        found.push((format!("{field}.rope_theta"), theta));
                    }
                }
                Some(other) => bail!("{field} must be an object or null, is {other}"),
            }
        }
        match found.as_slice() {
            [] => Ok(DEFAULT_ROPE_THETA),
            [(first, theta), rest @ ..] => {
                if let Some((other, other_theta)) = rest.iter().find(|(_, t)| t != theta) {
                    bail!("{first} {theta} and {other} {other_theta} disagree");
                }
                Ok(*theta)
            }
        }
    }
}

/// Checks that the object `field` describes the default RoPE; its `rope_theta`, if it has one.
fn default_rope_theta(field: &str, map: &Map<String, Value>) -> Result<Option<f64>> {
    // The kind first, so that `{"type": "linear", "factor": 2}` is refused for what it is.
    // transformers called it `type` before `rope_type`.
    for key in ["rope_type", "type"] {
        if let Some(kind) = map.get(key).filter(|kind| *kind != "default") {
            bail!("{field}.{key} {kind} is not supported (only \"default\" RoPE is)");
        }
    }
    let mut theta = None;
    for (key, value) in map {
        match key.as_str() {
            "rope_type" | "type" => {}
            "rope_theta" => theta = Some(positive_number(&format!("{field}.{key}"), value)?),
            _ => bail!("{field}.{key} is not supported (only the default, unscaled RoPE is)"),
        }
    }
    Ok(theta)
}

fn positive_number(field: &str, value: &Value) -> Result<f64> {
    match value.as_f64() {
        Some(x) if x.is_finite() && x > 0.0 => Ok(x),
        _ => bail!("{field} must be a positive number, is {value}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn theta(json: &str) -> Result<f64> {
        serde_json::from_str::<HfRope>(json)?.theta()
    }

    fn error(json: &str) -> String {
        format!("{:#}", theta(json).expect_err("should be refused"))
    }

    #[test]
    fn both_layouts_give_the_base() -> Result<()> {
        assert_eq!(theta(r#"{"rope_theta": 100000.0}"#)?, 100_000.0);
        assert_eq!(
            theta(r#"{"rope_theta": 100000.0, "rope_scaling": null}"#)?,
            100_000.0
        );
        assert_eq!(
            theta(r#"{"rope_parameters": {"rope_theta": 100000.0, "rope_type": "default"}}"#)?,
            100_000.0
        );
        // Both, agreeing (a config saved by one version and edited by another).
        assert_eq!(
            theta(r#"{"rope_theta": 100000, "rope_parameters": {"rope_theta": 100000.0}}"#)?,
            100_000.0
        );
        assert_eq!(theta(r#"{"rope_scaling": {"type": "default"}}"#)?, 10_000.0);
        assert_eq!(theta("{}")?, 10_000.0);
        Ok(())
    }

    #[test]
    fn disagreeing_layouts_are_refused() {
        let message = error(r#"{"rope_theta": 10000, "rope_parameters": {"rope_theta": 100000}}"#);
        assert!(
            message.contains("rope_theta 10000")
                && message.contains("rope_parameters.rope_theta 100000")
                && message.contains("disagree"),
            "{message}"
        );
    }

    #[test]
    fn other_kinds_and_scalings_are_refused_naming_the_field() {
        let cases = [
            (
                r#"{"rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0}}"#,
                "rope_parameters.rope_type \"llama3\" is not supported",
            ),
            (
                r#"{"rope_theta": 10000.0, "rope_scaling": {"type": "linear", "factor": 2.0}}"#,
                "rope_scaling.type \"linear\" is not supported",
            ),
            (
                r#"{"rope_scaling": {"rope_type": "default", "factor": 2.0}}"#,
                "rope_scaling.factor is not supported",
            ),
            (
                r#"{"rope_parameters": {"full_attention": {"rope_theta": 10000.0}}}"#,
                "rope_parameters.full_attention is not supported",
            ),
            (r#"{"rope_scaling": 2.0}"#, "rope_scaling must be an object"),
            (
                r#"{"rope_parameters": {"rope_theta": "1e5"}}"#,
                "rope_parameters.rope_theta must be a positive number",
            ),
            (
                r#"{"rope_theta": 0}"#,
                "rope_theta must be a positive number",
            ),
        ];
        for (json, expected) in cases {
            let message = error(json);
            assert!(message.contains(expected), "{json}: {message}");
        }
    }
}
