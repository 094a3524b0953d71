//! YAML files into raw documents: the only module that touches YAML parsers.
//!
//! Each file is read twice. First yaml-rust2's event parser builds a
//! [`PositionIndex`] per document, with every key's and value's line and
//! column, and reads `kind`. Then serde_yaml deserializes the document into
//! [`RawConnector`] or [`RawFlow`].
//!
//! serde stops at a document's first error. When that error lies inside one
//! entity, template or config key of a connector, the entry is blanked out
//! of the text, which keeps every other position, and the document is read
//! again. So the problems of every entry are reported at once.

pub mod errors;
pub mod index;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::diagnostic::Diagnostic;
use super::raw::{RawConnector, RawFlow};
use super::suggest;
use errors::SerdeProblem;
use index::{IndexBuilder, NodeKind, NodeStart, Position, PositionIndex};

/// One document of a file, deserialized as far as it could be.
#[derive(Debug)]
pub struct Document {
    /// The file, as shown in messages.
    pub file: Arc<str>,
    pub index: Arc<PositionIndex>,
    /// Line of the document's first key.
    pub line: usize,
    pub body: Body,
}

#[derive(Debug)]
pub enum Body {
    Connector(Box<Parsed<RawConnector>>),
    Flow(Box<Parsed<RawFlow>>),
}

/// A deserialized document, or the known parts of a document with errors.
#[derive(Debug)]
pub struct Parsed<T> {
    /// `None` when the document did not match the format (its errors are
    /// already reported).
    pub raw: Option<T>,
    /// The `name` as written, known even when `raw` is `None`.
    pub name: Option<String>,
    /// Entries left out of `raw` because of their errors, as
    /// `(section, key)`: `("entities", "issues")`.
    pub pruned: Vec<(String, String)>,
}

impl<T> Parsed<T> {
    /// Returns what is known of a document left unread because of earlier
    /// problems.
    fn unread(name: Option<String>) -> Parsed<T> {
        Parsed {
            raw: None,
            name,
            pruned: Vec::new(),
        }
    }
}

/// Lists every `*.yaml` and `*.yml` file under `dir`, recursively, sorted.
/// Hidden files and folders are skipped: `.git`, editor lock files, and the
/// `..data` folder behind a Kubernetes ConfigMap's links to its files.
pub fn discover(dir: &Path) -> (Vec<PathBuf>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut problems = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    // Folders already listed, so a symbolic link that loops is read once.
    let mut visited = std::collections::HashSet::new();
    while let Some(folder) = pending.pop() {
        let canonical = std::fs::canonicalize(&folder).unwrap_or_else(|_| folder.clone());
        if !visited.insert(canonical) {
            continue;
        }
        let entries = match std::fs::read_dir(&folder) {
            Ok(entries) => entries,
            Err(error) => {
                problems.push(file_problem(
                    &folder,
                    format!("cannot read folder: {error}"),
                ));
                continue;
            }
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            if hidden {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if is_yaml(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    (files, problems)
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|extension| extension.to_str()),
        Some("yaml" | "yml")
    )
}

fn file_problem(path: &Path, message: String) -> Diagnostic {
    Diagnostic {
        path: path.display().to_string(),
        line: 0,
        column: 0,
        message,
    }
}

/// Reads one file's documents; problems found on the way are returned
/// alongside whatever could be read.
pub fn read_file(path: &Path) -> (Vec<Document>, Vec<Diagnostic>) {
    match std::fs::read(path) {
        Err(error) => (
            Vec::new(),
            vec![file_problem(path, format!("cannot read file: {error}"))],
        ),
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => parse_source(&path.display().to_string(), &text),
            Err(_) => (
                Vec::new(),
                vec![file_problem(path, "file is not valid UTF-8".to_string())],
            ),
        },
    }
}

/// A document as the event parser saw it.
struct Scanned {
    index: PositionIndex,
    duplicates: Vec<index::DuplicateKey>,
}

/// Parses the documents of `text`, shown in messages as `file`.
pub fn parse_source(file: &str, text: &str) -> (Vec<Document>, Vec<Diagnostic>) {
    let file: Arc<str> = Arc::from(file);
    let mut problems = Vec::new();
    let scanned = scan(text, &file, &mut problems);
    let mut documents = Vec::new();
    for (ordinal, scanned) in scanned.into_iter().enumerate() {
        if let Some(document) = read_document(&file, text, ordinal, scanned, &mut problems) {
            documents.push(document);
        }
    }
    (documents, problems)
}

fn position(marker: &Marker) -> Position {
    Position {
        line: marker.line(),
        column: marker.col() + 1,
    }
}

/// Runs the event parser over the whole file: one index per document. A
/// syntax error ends the scan; the documents before it are kept.
fn scan(text: &str, file: &Arc<str>, problems: &mut Vec<Diagnostic>) -> Vec<Scanned> {
    let mut parser = Parser::new_from_str(text);
    let mut documents = Vec::new();
    let mut builder: Option<IndexBuilder> = None;
    loop {
        let (event, marker) = match parser.next_token() {
            Ok(next) => next,
            Err(error) => {
                let at = position(error.marker());
                problems.push(Diagnostic {
                    path: file.to_string(),
                    line: at.line,
                    column: at.column,
                    message: format!("invalid YAML: {}", error.info()),
                });
                break;
            }
        };
        let at = position(&marker);
        let offset = marker.index();
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => builder = Some(IndexBuilder::default()),
            Event::DocumentEnd => {
                if let Some(done) = builder.take() {
                    let (index, duplicates) = done.finish(offset);
                    documents.push(Scanned { index, duplicates });
                }
            }
            Event::Scalar(text, style, ..) => {
                let empty = style == TScalarStyle::Plain && text.is_empty();
                if let Some(builder) = builder.as_mut() {
                    builder.start(NodeStart::Scalar { text, empty }, at, offset);
                }
            }
            Event::MappingStart(..) => {
                if let Some(builder) = builder.as_mut() {
                    builder.start(NodeStart::Mapping, at, offset);
                }
            }
            Event::SequenceStart(..) => {
                if let Some(builder) = builder.as_mut() {
                    builder.start(NodeStart::Sequence, at, offset);
                }
            }
            Event::Alias(_) => {
                if let Some(builder) = builder.as_mut() {
                    builder.start(NodeStart::Alias, at, offset);
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                if let Some(builder) = builder.as_mut() {
                    builder.end(offset);
                }
            }
            Event::StreamStart | Event::Nothing => {}
        }
    }
    documents
}

/// True for a document with nothing in it (only comments, or `---` alone).
fn is_empty_document(index: &PositionIndex) -> bool {
    match index.root() {
        None => true,
        Some(root) => {
            root.kind == NodeKind::Scalar
                && matches!(
                    root.scalar.as_deref(),
                    Some("" | "~" | "null" | "Null" | "NULL")
                )
        }
    }
}

fn read_document(
    file: &Arc<str>,
    text: &str,
    ordinal: usize,
    scanned: Scanned,
    problems: &mut Vec<Diagnostic>,
) -> Option<Document> {
    let index = Arc::new(scanned.index);
    if is_empty_document(&index) {
        return None;
    }
    let root = index.root()?;
    let line = root.value.line;
    let locate = |at: Position, message: String| Diagnostic {
        path: file.to_string(),
        line: at.line,
        column: at.column,
        message,
    };
    if root.kind != NodeKind::Mapping {
        problems.push(locate(
            root.value,
            "a document must be a mapping that starts with kind: Connector or kind: Flow"
                .to_string(),
        ));
        return None;
    }
    let kind = match index.get(&["kind"]) {
        None => {
            problems.push(locate(
                root.value,
                "missing field \"kind\"; add kind: Connector or kind: Flow".to_string(),
            ));
            return None;
        }
        Some(node) => match node.scalar.as_deref() {
            Some(kind @ ("Connector" | "Flow")) => kind.to_string(),
            other => {
                let written = other.unwrap_or_default();
                let hint = suggest::hint(written, &["Connector", "Flow"], "kinds");
                problems.push(locate(
                    node.value,
                    format!("unknown kind \"{written}\"{hint}"),
                ));
                return None;
            }
        },
    };
    let name = index.scalar(&["name"]).map(str::to_string);
    let subject = match &name {
        Some(name) => format!("{} \"{name}\"", kind.to_lowercase()),
        None => format!("the {}", kind.to_lowercase()),
    };

    let duplicated = !scanned.duplicates.is_empty();
    for duplicate in &scanned.duplicates {
        problems.push(locate(
            duplicate.position,
            format!(
                "duplicate key \"{}\"; it is already set at line {}",
                duplicate.key, duplicate.first.line
            ),
        ));
    }

    let reader = DocumentReader {
        file,
        text,
        ordinal,
        index: &index,
        subject: &subject,
    };
    // serde would report a duplicated struct field a second time, and keep
    // the last of a duplicated map key silently, so the document is not
    // deserialized at all.
    let body = match (kind == "Connector", duplicated) {
        (true, false) => Body::Connector(Box::new(Parsed {
            name,
            ..reader.read_connector(problems)
        })),
        (false, false) => Body::Flow(Box::new(Parsed {
            name,
            ..reader.read_flow(problems)
        })),
        (true, true) => Body::Connector(Box::new(Parsed::unread(name))),
        (false, true) => Body::Flow(Box::new(Parsed::unread(name))),
    };
    Some(Document {
        file: file.clone(),
        index: index.clone(),
        line,
        body,
    })
}

struct DocumentReader<'a> {
    file: &'a Arc<str>,
    text: &'a str,
    ordinal: usize,
    index: &'a PositionIndex,
    subject: &'a str,
}

/// Sections of a connector whose entries are left out one by one when
/// they do not deserialize, so the others are still checked.
const PRUNABLE_SECTIONS: &[&str] = &["entities", "templates", "config"];

impl DocumentReader<'_> {
    fn deserialize<T: for<'de> Deserialize<'de>>(&self, text: &str) -> Result<T, SerdeProblem> {
        let Some(document) = serde_yaml::Deserializer::from_str(text).nth(self.ordinal) else {
            return Err(SerdeProblem {
                path: Vec::new(),
                message: "document could not be read".to_string(),
                location: None,
            });
        };
        T::deserialize(document).map_err(|error| SerdeProblem::from_error(&error))
    }

    fn report(&self, problem: &SerdeProblem, problems: &mut Vec<Diagnostic>) {
        let (at, message) = errors::describe(problem, self.index, self.subject);
        problems.push(Diagnostic {
            path: self.file.to_string(),
            line: at.line,
            column: at.column,
            message,
        });
    }

    fn read_flow(&self, problems: &mut Vec<Diagnostic>) -> Parsed<RawFlow> {
        let raw = match self.deserialize::<RawFlow>(self.text) {
            Ok(raw) => Some(raw),
            Err(problem) => {
                self.report(&problem, problems);
                None
            }
        };
        Parsed {
            raw,
            name: None,
            pruned: Vec::new(),
        }
    }

    fn read_connector(&self, problems: &mut Vec<Diagnostic>) -> Parsed<RawConnector> {
        let mut text = self.text.to_string();
        let mut pruned: Vec<(String, String)> = Vec::new();
        loop {
            let problem = match self.deserialize::<RawConnector>(&text) {
                Ok(raw) => {
                    return Parsed {
                        raw: Some(raw),
                        name: None,
                        pruned,
                    };
                }
                Err(problem) => problem,
            };
            self.report(&problem, problems);
            let Some(entry) = self.prunable_entry(&problem.path, &pruned) else {
                break;
            };
            let node = self.index.get(&[entry.0.as_str(), entry.1.as_str()]);
            let Some(node) = node else { break };
            text = blank(&text, node.start, node.end);
            pruned.push(entry);
        }
        Parsed {
            raw: None,
            name: None,
            pruned,
        }
    }

    /// Returns the `(section, key)` entry that contains `path`, when leaving it out
    /// keeps the document readable: not already left out, and not the last
    /// entry of its section (an emptied section would read as null).
    fn prunable_entry(
        &self,
        path: &[String],
        pruned: &[(String, String)],
    ) -> Option<(String, String)> {
        let [section, key, ..] = path else {
            return None;
        };
        if !PRUNABLE_SECTIONS.contains(&section.as_str()) {
            return None;
        }
        let entry = (section.clone(), key.clone());
        if pruned.contains(&entry) {
            return None;
        }
        let siblings = self.index.get(&[section.as_str()])?.keys.len();
        let pruned_siblings = pruned.iter().filter(|(s, _)| s == section).count();
        if pruned_siblings + 1 >= siblings {
            return None;
        }
        Some(entry)
    }
}

/// Replaces the characters in `start..end` (character offsets) with
/// spaces, keeping line breaks, so every other position stays the same.
fn blank(text: &str, start: usize, end: usize) -> String {
    text.chars()
        .enumerate()
        .map(|(i, c)| {
            if (start..end).contains(&i) && c != '\n' && c != '\r' {
                ' '
            } else {
                c
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNECTOR: &str = "kind: Connector
name: demo
http:
  base_url: https://api.example.com
entities:
  items:
    path: /items
    records: \"$.data[*]\"
    primary_key: [id]
    pagination: { type: cursor, cursor: \"$.next\", param: after }
";

    fn position(line: usize, column: usize) -> Position {
        Position { line, column }
    }

    fn parse(text: &str) -> (Vec<Document>, Vec<String>) {
        let (documents, problems) = parse_source("f.yaml", text);
        (
            documents,
            problems.iter().map(ToString::to_string).collect(),
        )
    }

    #[test]
    fn index_has_key_and_value_positions() {
        let (documents, problems) = parse(CONNECTOR);
        assert!(problems.is_empty(), "{problems:?}");
        let index = &documents[0].index;
        let node = index.get(&["entities", "items", "path"]).unwrap();
        assert_eq!(node.key, position(7, 5));
        assert_eq!(node.value, position(7, 11));
        assert_eq!(node.scalar.as_deref(), Some("/items"));
        let cursor = index
            .get(&["entities", "items", "pagination", "cursor"])
            .unwrap();
        assert_eq!(cursor.key, position(10, 33));
        let key = index
            .get(&["entities", "items", "primary_key", "0"])
            .unwrap();
        assert_eq!(key.value, position(9, 19));
        let items = index.get(&["entities", "items"]).unwrap();
        assert_eq!(
            items.keys,
            vec!["path", "records", "primary_key", "pagination"]
        );
    }

    #[test]
    fn missing_path_falls_back_to_ancestor() {
        let (documents, _) = parse(CONNECTOR);
        let index = &documents[0].index;
        assert_eq!(
            index.key_position(&["entities", "items", "fields", "include"]),
            Some(position(6, 3))
        );
    }

    #[test]
    fn empty_value_is_located_at_its_key() {
        let (documents, _) = parse("kind: Flow\nname:\nsource: { connector: x }\n");
        let node = documents[0].index.get(&["name"]).unwrap();
        assert_eq!(node.value, position(2, 1));
    }

    #[test]
    fn documents_keep_their_order_around_empty_ones() {
        let flow = "kind: Flow\nname: a\nsource: { connector: demo }\n";
        let text =
            format!("# leading comment\n---\n---\n{CONNECTOR}---\n# nothing\n---\n{flow}...\n");
        let (documents, problems) = parse(&text);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(documents.len(), 2);
        assert!(matches!(&documents[0].body, Body::Connector(parsed) if parsed.raw.is_some()));
        match &documents[1].body {
            Body::Flow(parsed) => assert_eq!(parsed.raw.as_ref().unwrap().name, "a"),
            Body::Connector(_) => panic!("second document is a flow"),
        }
        assert_eq!(documents[1].line, 17);
    }

    #[test]
    fn serde_location_is_absolute_in_later_documents() {
        let broken = CONNECTOR.replace("    records:", "    recods:");
        let text = format!("{CONNECTOR}---\n{CONNECTOR}---\n{broken}");
        let (_, problems) = parse(&text);
        assert_eq!(
            problems,
            vec![
                "f.yaml:30:5: unknown field \"recods\" in entity \"items\"; did you mean \"records\"?"
            ]
        );
    }

    #[test]
    fn tagged_enum_errors_name_their_key() {
        let pagination =
            "    pagination:\n      type: cursor\n      cursor: \"$.next\"\n      parm: after\n";
        let text = CONNECTOR.replace(
            "    pagination: { type: cursor, cursor: \"$.next\", param: after }\n",
            pagination,
        );
        let (_, problems) = parse(&text);
        assert_eq!(
            problems,
            vec![
                "f.yaml:13:7: unknown field \"parm\" in entities.items.pagination; did you mean \"param\"?"
            ]
        );

        let offset = "    pagination: { type: offset, offset_param: offset, limit_param: limit, limit: \"three\" }\n";
        let text = CONNECTOR.replace(
            "    pagination: { type: cursor, cursor: \"$.next\", param: after }\n",
            offset,
        );
        let (_, problems) = parse(&text);
        assert_eq!(
            problems,
            vec![
                "f.yaml:10:82: entities.items.pagination.limit must be a non-negative integer, found \"three\""
            ]
        );

        let auth =
            "  base_url: https://api.example.com\n  auth:\n    type: bearer\n    tokn: abc\n";
        let text = CONNECTOR.replace("  base_url: https://api.example.com\n", auth);
        let (_, problems) = parse(&text);
        assert_eq!(
            problems,
            vec!["f.yaml:7:5: unknown field \"tokn\" in http.auth; did you mean \"token\"?"]
        );
    }

    #[test]
    fn serde_yaml_location_counts_from_file_start() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Pair {
            c: u8,
            d: u8,
        }
        let text = "c: 1\nd: 2\n---\nc: 1\nd: 2\n---\nc: 3\nd: x\n";
        let third = serde_yaml::Deserializer::from_str(text).nth(2).unwrap();
        let error = Pair::deserialize(third).unwrap_err();
        let location = error.location().unwrap();
        assert_eq!((location.line(), location.column()), (8, 4));
    }

    #[test]
    fn broken_entry_is_pruned() {
        let text = CONNECTOR.replace(
            "entities:\n",
            "entities:\n  broken:\n    path: /x\n    bogus: 1\n",
        );
        let (documents, problems) = parse(&text);
        assert_eq!(
            problems,
            vec![
                "f.yaml:8:5: unknown field \"bogus\" in entity \"broken\"; expected one of: description, path, method, params, headers, body, graphql, records, primary_key, pagination, incremental, order, fields, parent, changes, on_status, chunk, max_pages, partial_ok, mode, parameters, steps"
            ]
        );
        let Body::Connector(parsed) = &documents[0].body else {
            panic!("expected a connector");
        };
        let raw = parsed.raw.as_ref().unwrap();
        assert_eq!(raw.entities.keys().collect::<Vec<_>>(), vec!["items"]);
        assert_eq!(
            parsed.pruned,
            vec![("entities".to_string(), "broken".to_string())]
        );
    }

    #[test]
    fn flow_style_entry_is_pruned() {
        let text = "kind: Connector\nname: d\nhttp: { base_url: \"https://x\" }\nentities: { a: { path: /a, bad: 1 }, b: { path: /b, records: $, primary_key: [] } }\n";
        let (documents, problems) = parse(text);
        assert_eq!(problems.len(), 1, "{problems:?}");
        let Body::Connector(parsed) = &documents[0].body else {
            panic!("expected a connector");
        };
        assert_eq!(parsed.raw.as_ref().unwrap().entities.len(), 1);
    }

    #[test]
    fn root_must_be_a_mapping() {
        let (documents, problems) = parse("- kind: Flow\n");
        assert!(documents.is_empty());
        assert_eq!(
            problems,
            vec![
                "f.yaml:1:1: a document must be a mapping that starts with kind: Connector or kind: Flow"
            ]
        );
    }

    #[test]
    fn blank_keeps_line_breaks() {
        assert_eq!(blank("ab\ncd\nef", 1, 7), "a \n  \n f");
    }
}
