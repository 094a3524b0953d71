//! Positions of keys and values in one YAML document, by dotted path.
//!
//! serde reports where an error is with a path (`entities.issues.pagination`)
//! but loses positions inside buffered values such as tagged enums, and the
//! resolver's own checks have no position at all. This index, built from the
//! YAML parser's events, maps every path to the line and column of its key
//! and of its value, so any problem can be located.

use std::collections::HashMap;

/// A 1-based line and column in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    Scalar,
    Mapping,
    Sequence,
    Alias,
}

/// One key/value pair (or sequence item, or the document root).
#[derive(Debug, Clone)]
pub struct Node {
    /// Where the key is; the value's position for sequence items and the root.
    pub key: Position,
    pub value: Position,
    pub kind: NodeKind,
    /// The text of a scalar value.
    pub scalar: Option<String>,
    /// A mapping's keys, in file order.
    pub keys: Vec<String>,
    /// Character offset of the key (or of the value when there is no key).
    pub start: usize,
    /// Character offset of the parser event after the value: the next key,
    /// or the end of the enclosing mapping. `start..end` covers the entry.
    pub end: usize,
}

/// A key that appears twice in one mapping.
#[derive(Debug, Clone)]
pub struct DuplicateKey {
    pub key: String,
    pub position: Position,
    pub first: Position,
}

/// Every node of one document, by path.
#[derive(Debug, Default)]
pub struct PositionIndex {
    nodes: HashMap<String, Node>,
}

/// Joins path segments into the index's key; dots inside a segment are
/// escaped so that a header named `X.Y` stays one segment.
pub fn join<S: AsRef<str>>(segments: &[S]) -> String {
    let mut joined = String::new();
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            joined.push('.');
        }
        for c in segment.as_ref().chars() {
            if c == '.' || c == '\\' {
                joined.push('\\');
            }
            joined.push(c);
        }
    }
    joined
}

impl PositionIndex {
    pub fn get<S: AsRef<str>>(&self, path: &[S]) -> Option<&Node> {
        self.nodes.get(&join(path))
    }

    /// Returns the node at `path`, or at its nearest ancestor that exists.
    pub fn nearest<S: AsRef<str>>(&self, path: &[S]) -> Option<&Node> {
        (0..=path.len())
            .rev()
            .find_map(|len| self.get(&path[..len]))
    }

    /// Returns the position of the key at `path`, or of the nearest
    /// ancestor's key.
    pub fn key_position<S: AsRef<str>>(&self, path: &[S]) -> Option<Position> {
        self.nearest(path).map(|node| node.key)
    }

    /// Returns the position of the value at `path`, or of the nearest
    /// ancestor's key.
    pub fn value_position<S: AsRef<str>>(&self, path: &[S]) -> Option<Position> {
        match self.get(path) {
            Some(node) => Some(node.value),
            None => self.key_position(path),
        }
    }

    /// Returns the text of the scalar at `path`.
    pub fn scalar<S: AsRef<str>>(&self, path: &[S]) -> Option<&str> {
        self.get(path).and_then(|node| node.scalar.as_deref())
    }

    pub fn root(&self) -> Option<&Node> {
        self.nodes.get("")
    }

    /// Returns the paths strictly below `path` whose node passes `keep`,
    /// sorted by position in the file.
    pub fn find_below<S: AsRef<str>>(
        &self,
        path: &[S],
        keep: impl Fn(&[String], &Node) -> bool,
    ) -> Vec<Vec<String>> {
        let mut found: Vec<(Position, Vec<String>)> = self
            .nodes
            .iter()
            .filter_map(|(joined, node)| {
                let segments = split(joined);
                let below = segments.len() > path.len()
                    && segments.iter().zip(path).all(|(a, b)| a == b.as_ref());
                (below && keep(&segments, node)).then_some((node.key, segments))
            })
            .collect();
        found.sort_by_key(|(position, _)| (position.line, position.column));
        found.into_iter().map(|(_, segments)| segments).collect()
    }
}

/// Splits an index key made by [`join`] back into its segments.
fn split(joined: &str) -> Vec<String> {
    if joined.is_empty() {
        return Vec::new();
    }
    let mut segments = vec![String::new()];
    let mut chars = joined.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(escaped) = chars.next() {
                    segments.last_mut().unwrap().push(escaped);
                }
            }
            '.' => segments.push(String::new()),
            other => segments.last_mut().unwrap().push(other),
        }
    }
    segments
}

enum Frame {
    Mapping {
        path: Vec<String>,
        /// The key read last, waiting for its value: text, position, offset.
        pending: Option<(String, Position, usize)>,
        seen: HashMap<String, Position>,
    },
    Sequence {
        path: Vec<String>,
        next: usize,
    },
    /// A complex (non-scalar) mapping key: skipped, with its nesting depth.
    ComplexKey {
        depth: usize,
    },
}

/// The start of a node, as the builder receives it.
pub enum NodeStart {
    Scalar { text: String, empty: bool },
    Mapping,
    Sequence,
    Alias,
}

/// Builds the index of one document from parser events, in order.
#[derive(Default)]
pub struct IndexBuilder {
    index: PositionIndex,
    stack: Vec<Frame>,
    /// Paths whose `end` is the offset of the next event.
    open_ends: Vec<String>,
    pub duplicates: Vec<DuplicateKey>,
}

impl IndexBuilder {
    /// Records the offset of any event: it closes the entries that ended
    /// just before it.
    fn close_open_ends(&mut self, offset: usize) {
        for path in self.open_ends.drain(..) {
            if let Some(node) = self.index.nodes.get_mut(&path) {
                node.end = offset;
            }
        }
    }

    pub fn start(&mut self, start: NodeStart, position: Position, offset: usize) {
        self.close_open_ends(offset);
        if let Some(Frame::ComplexKey { depth }) = self.stack.last_mut() {
            if matches!(start, NodeStart::Mapping | NodeStart::Sequence) {
                *depth += 1;
            }
            return;
        }
        if let Some(Frame::Mapping {
            path,
            pending,
            seen,
        }) = self.stack.last_mut()
            && pending.is_none()
        {
            // A block mapping's start event comes after its first key, so
            // the mapping is placed at that key.
            if seen.is_empty()
                && let Some(node) = self.index.nodes.get_mut(&join(path))
            {
                let earlier =
                    (position.line, position.column) < (node.value.line, node.value.column);
                if earlier {
                    node.value = position;
                    if path.is_empty() {
                        node.key = position;
                    }
                }
            }
            let text = match &start {
                NodeStart::Scalar { text, .. } => text.clone(),
                _ => "?".to_string(),
            };
            if let Some(first) = seen.get(&text) {
                self.duplicates.push(DuplicateKey {
                    key: text.clone(),
                    position,
                    first: *first,
                });
            } else {
                seen.insert(text.clone(), position);
            }
            *pending = Some((text, position, offset));
            if matches!(start, NodeStart::Mapping | NodeStart::Sequence) {
                self.stack.push(Frame::ComplexKey { depth: 1 });
            }
            return;
        }
        self.start_value(start, position, offset);
    }

    fn start_value(&mut self, start: NodeStart, position: Position, offset: usize) {
        let (path, key, start_offset) = match self.stack.last_mut() {
            None => (Vec::new(), position, offset),
            Some(Frame::Mapping { path, pending, .. }) => {
                // `start` only gets here once the key has been read.
                let (text, key, key_offset) = pending
                    .take()
                    .unwrap_or_else(|| ("?".to_string(), position, offset));
                let mut child = path.clone();
                child.push(text);
                (child, key, key_offset)
            }
            Some(Frame::Sequence { path, next }) => {
                let mut child = path.clone();
                child.push(next.to_string());
                *next += 1;
                (child, position, offset)
            }
            Some(Frame::ComplexKey { .. }) => unreachable!("complex keys return early"),
        };
        let (kind, scalar, value) = match &start {
            // An empty value (`records:` and nothing after) has no position
            // of its own: the parser puts it at the next token.
            NodeStart::Scalar { text, empty: true } => (NodeKind::Scalar, Some(text.clone()), key),
            NodeStart::Scalar { text, .. } => (NodeKind::Scalar, Some(text.clone()), position),
            NodeStart::Mapping => (NodeKind::Mapping, None, position),
            NodeStart::Sequence => (NodeKind::Sequence, None, position),
            NodeStart::Alias => (NodeKind::Alias, None, position),
        };
        let joined = join(&path);
        if let Some(Frame::Mapping { path: parent, .. }) = self.stack.last() {
            let parent = join(parent);
            if let (Some(last), Some(parent)) = (path.last(), self.index.nodes.get_mut(&parent)) {
                parent.keys.push(last.clone());
            }
        }
        self.index.nodes.insert(
            joined.clone(),
            Node {
                key,
                value,
                kind,
                scalar,
                keys: Vec::new(),
                start: start_offset,
                end: start_offset,
            },
        );
        match start {
            NodeStart::Mapping => self.stack.push(Frame::Mapping {
                path,
                pending: None,
                seen: HashMap::new(),
            }),
            NodeStart::Sequence => self.stack.push(Frame::Sequence { path, next: 0 }),
            _ => self.open_ends.push(joined),
        }
    }

    /// Handles the end of a mapping or sequence.
    pub fn end(&mut self, offset: usize) {
        self.close_open_ends(offset);
        match self.stack.last_mut() {
            Some(Frame::ComplexKey { depth }) => {
                *depth -= 1;
                if *depth == 0 {
                    self.stack.pop();
                }
            }
            Some(Frame::Mapping { path, .. } | Frame::Sequence { path, .. }) => {
                let joined = join(path);
                self.stack.pop();
                self.open_ends.push(joined);
            }
            None => {}
        }
    }

    /// Finishes the document at `offset` (its end event).
    pub fn finish(mut self, offset: usize) -> (PositionIndex, Vec<DuplicateKey>) {
        self.close_open_ends(offset);
        (self.index, self.duplicates)
    }
}
