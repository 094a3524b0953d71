//! `${…}` expansion in flow files.
//!
//! - `${VAR}`: the environment variable; an error when it is not set.
//! - `${VAR:-default}`: the default when VAR is unset or empty.
//! - `${file:PATH}`: the file's content without one trailing newline (Docker
//!   and Kubernetes secrets); a relative PATH is read from the folder of the
//!   flow file.
//! - `$$`: a literal `$`. A `$` before anything else stays as it is.
//!
//! Connector files are never expanded: their `{{config.*}}` templates are
//! how values reach them.

use std::path::{Path, PathBuf};

use super::EnvLookup;

/// Where expansion reads from.
pub struct Expander<'a> {
    pub env: EnvLookup<'a>,
    /// Folder that relative `${file:…}` paths are read from.
    pub base_dir: Option<PathBuf>,
}

/// A failed expansion; the message names the variable or file, never a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    #[error(
        "environment variable {name} is not set (used by {field}); set it, or write ${{{name}:-DEFAULT}} to give a default"
    )]
    MissingVariable { name: String, field: String },
    #[error("cannot read {path} for ${{file:…}} in {field}: {reason}")]
    File {
        path: String,
        field: String,
        reason: String,
    },
    #[error("unclosed \"${{\" in {field}; close it with \"}}\", or write $$ for a literal $")]
    Unclosed { field: String },
    #[error(
        "invalid variable name \"{name}\" in {field}; names are letters, digits and _, not starting with a digit"
    )]
    InvalidName { name: String, field: String },
}

/// A string after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expanded {
    pub text: String,
    /// True when the text contained a `${…}` expression, so its type came
    /// from the environment rather than from YAML.
    pub substituted: bool,
}

impl Expander<'_> {
    /// Expands `text`, the value of `field` (named in errors).
    pub fn expand(&self, text: &str, field: &str) -> Result<Expanded, ExpandError> {
        let mut output = String::with_capacity(text.len());
        let mut substituted = false;
        let mut rest = text;
        while let Some(dollar) = rest.find('$') {
            output.push_str(&rest[..dollar]);
            let after = &rest[dollar + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                output.push('$');
                rest = tail;
            } else if let Some(body) = after.strip_prefix('{') {
                let close = body.find('}').ok_or_else(|| ExpandError::Unclosed {
                    field: field.to_string(),
                })?;
                output.push_str(&self.expression(&body[..close], field)?);
                substituted = true;
                rest = &body[close + 1..];
            } else {
                output.push('$');
                rest = after;
            }
        }
        output.push_str(rest);
        Ok(Expanded {
            text: output,
            substituted,
        })
    }

    /// Evaluates what is between `${` and `}`.
    fn expression(&self, expression: &str, field: &str) -> Result<String, ExpandError> {
        if let Some(path) = expression.strip_prefix("file:") {
            return self.read_file(path, field);
        }
        let (name, default) = match expression.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (expression, None),
        };
        if !is_variable_name(name) {
            return Err(ExpandError::InvalidName {
                name: name.to_string(),
                field: field.to_string(),
            });
        }
        match ((self.env)(name), default) {
            (Some(value), Some(default)) if value.is_empty() => Ok(default.to_string()),
            (Some(value), _) => Ok(value),
            (None, Some(default)) => Ok(default.to_string()),
            (None, None) => Err(ExpandError::MissingVariable {
                name: name.to_string(),
                field: field.to_string(),
            }),
        }
    }

    fn read_file(&self, path: &str, field: &str) -> Result<String, ExpandError> {
        let full = match &self.base_dir {
            Some(base) if Path::new(path).is_relative() => base.join(path),
            _ => PathBuf::from(path),
        };
        let mut content = std::fs::read_to_string(&full).map_err(|error| ExpandError::File {
            path: full.display().to_string(),
            field: field.to_string(),
            reason: error.to_string(),
        })?;
        if content.ends_with('\n') {
            content.pop();
            if content.ends_with('\r') {
                content.pop();
            }
        }
        Ok(content)
    }
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphabetic() || first == '_' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("tok_123".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    fn expander() -> Expander<'static> {
        Expander {
            env: &lookup,
            base_dir: None,
        }
    }

    fn expand(text: &str) -> Result<String, ExpandError> {
        expander()
            .expand(text, "source.config.key")
            .map(|expanded| expanded.text)
    }

    #[test]
    fn variable_is_replaced() {
        assert_eq!(expand("Bearer ${TOKEN}").unwrap(), "Bearer tok_123");
    }

    #[test]
    fn default_applies_when_unset_or_empty() {
        assert_eq!(expand("${UNSET:-fallback}").unwrap(), "fallback");
        assert_eq!(expand("${EMPTY:-fallback}").unwrap(), "fallback");
        assert_eq!(expand("${TOKEN:-fallback}").unwrap(), "tok_123");
        assert_eq!(expand("${UNSET:-}").unwrap(), "");
    }

    #[test]
    fn missing_variable_names_it_and_field() {
        let error = expand("${UNSET}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "environment variable UNSET is not set (used by source.config.key); set it, or write ${UNSET:-DEFAULT} to give a default"
        );
    }

    #[test]
    fn double_dollar_is_literal() {
        assert_eq!(expand("a$$b$$${TOKEN}").unwrap(), "a$b$tok_123");
        assert_eq!(expand("cost: $5").unwrap(), "cost: $5");
    }

    #[test]
    fn substitution_is_reported() {
        let plain = expander().expand("a$$b", "f").unwrap();
        assert!(!plain.substituted);
        let expanded = expander().expand("${TOKEN}", "f").unwrap();
        assert!(expanded.substituted);
    }

    #[test]
    fn unclosed_expression_is_an_error() {
        assert_eq!(
            expand("${TOKEN").unwrap_err(),
            ExpandError::Unclosed {
                field: "source.config.key".to_string()
            }
        );
    }

    #[test]
    fn invalid_name_is_an_error() {
        let error = expand("${1A}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid variable name \"1A\" in source.config.key; names are letters, digits and _, not starting with a digit"
        );
    }

    #[test]
    fn file_is_read_without_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("key"), "secret-value\n\n").unwrap();
        let expander = Expander {
            env: &lookup,
            base_dir: Some(dir.path().to_path_buf()),
        };
        let expanded = expander.expand("${file:key}", "f").unwrap();
        assert_eq!(expanded.text, "secret-value\n");
    }

    #[test]
    fn missing_file_names_path() {
        let error = expand("${file:/nonexistent/ferry/key}").unwrap_err();
        assert_eq!(
            error.to_string(),
            "cannot read /nonexistent/ferry/key for ${file:…} in source.config.key: No such file or directory (os error 2)"
        );
    }
}
