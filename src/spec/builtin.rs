//! Built-in connectors, compiled into the binary.
//!
//! Each is a connector file under `specs/` at the root of the repository,
//! listed here by name. They load like files in the config folder, with
//! diagnostics located at `<built-in>/NAME.yaml`, and a file in the folder
//! that defines a connector of the same name replaces the built-in one.

use super::diagnostic::Diagnostic;
use super::yaml::{self, Document};

/// `(name, YAML text)` of every built-in connector. Add one as
/// `("stripe", include_str!("../../specs/stripe.yaml"))`.
pub const BUILT_IN: &[(&str, &str)] = &[
    ("stripe", include_str!("../../specs/stripe.yaml")),
    ("close", include_str!("../../specs/close.yaml")),
    ("posthog", include_str!("../../specs/posthog.yaml")),
    ("bigquery", include_str!("../../specs/bigquery.yaml")),
];

/// Returns the path that diagnostics show for a built-in connector.
pub fn path_of(name: &str) -> String {
    format!("<built-in>/{name}.yaml")
}

/// Parses every built-in connector's documents.
pub(crate) fn documents(problems: &mut Vec<Diagnostic>) -> Vec<Document> {
    let mut documents = Vec::new();
    for (name, text) in BUILT_IN {
        let (parsed, found) = yaml::parse_source(&path_of(name), text);
        documents.extend(parsed);
        problems.extend(found);
    }
    documents
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::yaml::Body;

    #[test]
    fn every_built_in_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let loaded = crate::spec::load_with_env(dir.path(), &|_| None);
        let loaded = match loaded {
            Ok(loaded) => loaded,
            Err(problems) => {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                panic!("built-in connectors have problems:\n{}", lines.join("\n"));
            }
        };
        for (name, _) in BUILT_IN {
            assert!(
                loaded.catalog.connectors.contains_key(*name),
                "built-in connector {name} is missing from the catalog"
            );
        }
    }

    #[test]
    fn built_in_names_match_entries() {
        for (name, text) in BUILT_IN {
            let (documents, problems) = yaml::parse_source(&path_of(name), text);
            assert!(problems.is_empty(), "{name}: {problems:?}");
            assert_eq!(documents.len(), 1, "{name} must hold one document");
            match &documents[0].body {
                Body::Connector(parsed) => assert_eq!(parsed.name.as_deref(), Some(*name)),
                Body::Flow(_) => panic!("{name} is a flow, not a connector"),
            }
        }
    }
}
