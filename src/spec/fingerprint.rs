//! Entity fingerprints: a saved resume position is only reused while the
//! entity's request sequence is the one that produced it.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::raw::RawEntity;

/// Returns the hex SHA-256 of a canonical JSON (keys sorted, no spaces) of
/// the entity's definition, the connector's `http.base_url` template text
/// and, for an entity made from a template, the flow's parameter values.
/// The entity's `description` is left out: it does not change a request.
pub fn fingerprint(entity: &RawEntity, base_url: &str, parameters: &Map<String, Value>) -> String {
    let mut definition = serde_json::to_value(entity).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut definition {
        map.remove("description");
    }
    let mut document = Map::new();
    document.insert("base_url".to_string(), Value::String(base_url.to_string()));
    document.insert("entity".to_string(), definition);
    document.insert("parameters".to_string(), Value::Object(parameters.clone()));
    let canonical = canonical(&Value::Object(document)).to_string();
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// Returns `value` with every object's keys in sorted order.
fn canonical(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut sorted = Map::with_capacity(map.len());
            for key in keys {
                sorted.insert(key.clone(), canonical(&map[key]));
            }
            Value::Object(sorted)
        }
        Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::raw::PrimaryKey;

    fn entity() -> RawEntity {
        RawEntity {
            path: Some("/issues".to_string()),
            primary_key: Some(PrimaryKey::One("id".to_string())),
            ..RawEntity::default()
        }
    }

    #[test]
    fn same_definition_same_fingerprint() {
        let first = fingerprint(&entity(), "https://api", &Map::new());
        let second = fingerprint(&entity(), "https://api", &Map::new());
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
    }

    #[test]
    fn base_url_changes_fingerprint() {
        let first = fingerprint(&entity(), "https://api", &Map::new());
        let second = fingerprint(&entity(), "https://other", &Map::new());
        assert_ne!(first, second);
    }

    #[test]
    fn description_does_not_change_fingerprint() {
        let mut described = entity();
        described.description = Some("Issues".to_string());
        assert_eq!(
            fingerprint(&entity(), "https://api", &Map::new()),
            fingerprint(&described, "https://api", &Map::new())
        );
    }

    #[test]
    fn key_order_does_not_matter() {
        let mut first = entity();
        first.params.insert("a".to_string(), Value::from(1));
        first.params.insert("b".to_string(), Value::from(2));
        let mut second = entity();
        second.params.insert("b".to_string(), Value::from(2));
        second.params.insert("a".to_string(), Value::from(1));
        assert_eq!(
            fingerprint(&first, "https://api", &Map::new()),
            fingerprint(&second, "https://api", &Map::new())
        );
    }
}
