//! JSON Schemas of the two document kinds, generated from the raw types.
//!
//! The files in `schema/` at the root of the repository are these schemas,
//! committed so that editors can validate YAML files (example files start
//! with `# yaml-language-server: $schema=...`). A test fails when they are
//! stale; `FERRY_UPDATE_SCHEMA=1 cargo test schema` rewrites them.

use schemars::{JsonSchema, Schema, schema_for};
use serde_json::Value;

use super::raw::{RawConnector, RawFlow};

/// `(file name, pretty JSON with a trailing newline)` for each schema.
pub fn render() -> Vec<(&'static str, String)> {
    vec![
        (
            "connector.schema.json",
            render_one::<RawConnector>(
                "ferry connector",
                "A kind: Connector document: how ferry talks to one HTTP API.",
            ),
        ),
        (
            "flow.schema.json",
            render_one::<RawFlow>(
                "ferry flow",
                "A kind: Flow document: which connector, with which values, into which destination, and when.",
            ),
        ),
    ]
}

fn render_one<T: JsonSchema>(title: &str, description: &str) -> String {
    let mut schema: Schema = schema_for!(T);
    if let Some(object) = schema.as_object_mut() {
        object.insert("title".to_string(), Value::String(title.to_string()));
        object.insert(
            "description".to_string(),
            Value::String(description.to_string()),
        );
    }
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn schema_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schema")
    }

    #[test]
    fn committed_schemas_are_current() {
        let update = std::env::var("FERRY_UPDATE_SCHEMA").is_ok_and(|value| value == "1");
        for (name, generated) in render() {
            let path = schema_dir().join(name);
            if update {
                std::fs::create_dir_all(schema_dir()).unwrap();
                std::fs::write(&path, &generated).unwrap();
                continue;
            }
            let committed = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                committed == generated,
                "schema/{name} is stale or missing; run `FERRY_UPDATE_SCHEMA=1 cargo test schema` and commit the result"
            );
        }
    }

    #[test]
    fn connector_schema_rejects_unknown_fields() {
        let (_, text) = &render()[0];
        let schema: Value = serde_json::from_str(text).unwrap();
        assert_eq!(schema["additionalProperties"], Value::Bool(false));
        assert_eq!(schema["title"], "ferry connector");
    }
}
