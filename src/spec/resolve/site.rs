//! Where a part of a document is, so a problem can be reported there.

use std::sync::Arc;

use crate::spec::diagnostic::Diagnostic;
use crate::spec::yaml::index::{Position, PositionIndex};

/// A place in one document: a file, its position index and a path prefix
/// (`entities.issues`) that relative paths are joined to.
#[derive(Debug, Clone)]
pub struct Site {
    pub file: Arc<str>,
    pub index: Arc<PositionIndex>,
    pub prefix: Vec<String>,
}

impl Site {
    pub fn new(file: Arc<str>, index: Arc<PositionIndex>) -> Site {
        Site {
            file,
            index,
            prefix: Vec::new(),
        }
    }

    /// Returns a site for the part at `relative` below this one.
    pub fn child(&self, relative: &[&str]) -> Site {
        Site {
            file: self.file.clone(),
            index: self.index.clone(),
            prefix: self.path(relative),
        }
    }

    pub fn path(&self, relative: &[&str]) -> Vec<String> {
        let mut path = self.prefix.clone();
        path.extend(relative.iter().map(|segment| segment.to_string()));
        path
    }

    /// Returns the dotted path of `relative` for messages, such as
    /// `entities.issues.path`.
    pub fn dotted(&self, relative: &[&str]) -> String {
        self.path(relative).join(".")
    }

    /// Builds a diagnostic at `at`. Without a position (a site with an empty
    /// index, such as the command line) it has no line or column.
    fn diagnostic(&self, at: Option<Position>, message: String) -> Diagnostic {
        let at = at.unwrap_or(Position { line: 0, column: 0 });
        Diagnostic {
            path: self.file.to_string(),
            line: at.line,
            column: at.column,
            message,
        }
    }

    /// Builds a problem located at the key of `relative` (or its nearest
    /// ancestor).
    pub fn key(&self, relative: &[&str], message: impl Into<String>) -> Diagnostic {
        let at = self.index.key_position(&self.path(relative));
        self.diagnostic(at, message.into())
    }

    /// Builds a problem located at the value of `relative` (or its nearest
    /// ancestor's key).
    pub fn value(&self, relative: &[&str], message: impl Into<String>) -> Diagnostic {
        let at = self.index.value_position(&self.path(relative));
        self.diagnostic(at, message.into())
    }
}

/// Where an entity's fields are: in a connector document, or, for an
/// entity a flow makes from a connector template, split between the flow
/// (the fields it overrides) and the template (the rest).
#[derive(Debug, Clone)]
pub enum EntitySite {
    Plain(Site),
    Instance {
        /// The flow's `entities.NAME` entry.
        flow: Site,
        template: String,
        /// Entity fields the flow sets itself.
        overrides: Vec<String>,
    },
}

impl EntitySite {
    /// Places `relative`: at the flow's own key for an overridden field, else
    /// at the flow's entry with a note naming the template's field.
    fn place(&self, relative: &[&str]) -> (Site, Vec<String>, Option<String>) {
        match self {
            EntitySite::Plain(site) => (site.clone(), owned(relative), None),
            EntitySite::Instance {
                flow,
                template,
                overrides,
            } => {
                let overridden = relative
                    .first()
                    .is_some_and(|field| overrides.iter().any(|name| name == field));
                if overridden || relative.is_empty() {
                    (flow.clone(), owned(relative), None)
                } else {
                    let note = format!(" (in {} of template \"{template}\")", relative.join("."));
                    (flow.clone(), Vec::new(), Some(note))
                }
            }
        }
    }

    pub fn key(&self, relative: &[&str], message: impl Into<String>) -> Diagnostic {
        let (site, path, note) = self.place(relative);
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        site.key(&path, message.into() + note.as_deref().unwrap_or_default())
    }

    pub fn value(&self, relative: &[&str], message: impl Into<String>) -> Diagnostic {
        let (site, path, note) = self.place(relative);
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        site.value(&path, message.into() + note.as_deref().unwrap_or_default())
    }

    /// Builds a problem located at the flow's value for a template parameter.
    pub fn parameter(&self, name: &str, message: impl Into<String>) -> Diagnostic {
        match self {
            EntitySite::Plain(site) => site.value(&["parameters", name], message),
            EntitySite::Instance { flow, .. } => flow.value(&[name], message),
        }
    }

    /// Returns the dotted path of `relative` inside the entity, for messages.
    pub fn dotted(&self, relative: &[&str]) -> String {
        match self {
            EntitySite::Plain(site) => site.dotted(relative),
            EntitySite::Instance { flow, .. } => flow.dotted(relative),
        }
    }
}

fn owned(relative: &[&str]) -> Vec<String> {
    relative.iter().map(|segment| segment.to_string()).collect()
}
