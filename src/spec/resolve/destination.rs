//! Destination URLs: `duckdb://PATH`, `postgres://…` and `postgresql://…`.

use std::path::{Component, Path, PathBuf};

use crate::redact;
use crate::spec::plan::DestinationUrl;

pub const DEFAULT_DESTINATION: &str = "duckdb://./ferry.duckdb";

/// A parsed destination and the secrets its URL holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedDestination {
    pub url: DestinationUrl,
    /// The password, as written and percent-decoded, when the URL has one.
    pub secrets: Vec<String>,
}

/// Parses a destination URL. Errors never show a password.
pub fn parse(text: &str) -> Result<ParsedDestination, String> {
    if let Some(path) = text.strip_prefix("duckdb://") {
        if path.trim().is_empty() {
            return Err(
                "duckdb:// needs a file path after it, like duckdb://./ferry.duckdb".to_string(),
            );
        }
        return Ok(ParsedDestination {
            url: DestinationUrl::DuckDb {
                path: path.to_string(),
            },
            secrets: Vec::new(),
        });
    }
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        return parse_postgres(text);
    }
    Err(format!(
        "unsupported destination \"{}\"; use duckdb://PATH (duckdb://./ferry.duckdb, or duckdb:///var/lib/ferry/ferry.duckdb for an absolute path), postgres://USER@HOST/DATABASE or postgresql://USER@HOST/DATABASE",
        redact::url_without_password(text)
    ))
}

fn parse_postgres(text: &str) -> Result<ParsedDestination, String> {
    let parsed = url::Url::parse(text).map_err(|error| {
        format!(
            "invalid PostgreSQL URL \"{}\" ({error}); write it like postgres://USER:PASSWORD@HOST:5432/DATABASE",
            redact::url_without_password(text)
        )
    })?;
    let mut secrets = Vec::new();
    if let Some(password) = parsed.password() {
        secrets.push(password.to_string());
        let decoded = percent_decode(password);
        if decoded != password {
            secrets.push(decoded);
        }
    }
    for (key, value) in parsed.query_pairs() {
        if key.eq_ignore_ascii_case("password") && !value.is_empty() {
            secrets.push(value.into_owned());
        }
    }
    Ok(ParsedDestination {
        url: DestinationUrl::Postgres {
            url: text.to_string(),
        },
        secrets,
    })
}

/// Decodes `%XX` escapes; invalid escapes stay as written.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes[i] == b'%'
            && i + 2 < bytes.len()
            && bytes[i + 1].is_ascii_hexdigit()
            && bytes[i + 2].is_ascii_hexdigit();
        if escaped {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or_default();
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                decoded.push(byte);
                i += 3;
                continue;
            }
        }
        decoded.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// The database a destination writes to, compared to find two flows that
/// write the same table.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Database {
    /// A DuckDB file, as an absolute path with `.` and `..` removed.
    DuckDb(PathBuf),
    Postgres {
        host: String,
        port: u16,
        database: String,
    },
}

impl Database {
    /// DuckDB compares identifiers without regard to case; PostgreSQL keeps
    /// quoted identifiers apart.
    pub fn table_key(&self, schema: &str, table: &str) -> String {
        match self {
            Database::DuckDb(_) => format!("{}.{}", schema.to_lowercase(), table.to_lowercase()),
            Database::Postgres { .. } => format!("{schema}.{table}"),
        }
    }
}

/// Identifies the database of `url`; `None` for an in-memory DuckDB, which
/// no two flows share.
pub fn database(url: &DestinationUrl) -> Option<Database> {
    match url {
        DestinationUrl::DuckDb { path } if path == ":memory:" => None,
        DestinationUrl::DuckDb { path } => Some(Database::DuckDb(normalize(Path::new(path)))),
        DestinationUrl::Postgres { url } => {
            let parsed = url::Url::parse(url).ok()?;
            let query_host = parsed
                .query_pairs()
                .find(|(key, _)| key == "host")
                .map(|(_, value)| value.into_owned());
            let host = parsed
                .host_str()
                .filter(|host| !host.is_empty())
                .map(str::to_string)
                .or(query_host)
                .unwrap_or_else(|| "localhost".to_string())
                .to_lowercase();
            let database = parsed.path().trim_start_matches('/').to_string();
            // libpq connects to the database named like the user when none is given.
            let database = if database.is_empty() {
                parsed.username().to_string()
            } else {
                database
            };
            Some(Database::Postgres {
                host,
                port: parsed.port().unwrap_or(5432),
                database,
            })
        }
    }
}

/// Makes a path absolute against the working directory and removes `.` and
/// `..` without touching the file system (the file may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut normalized = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normalized.pop();
            }
            other => normalized.push(other),
        }
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duckdb_path_is_kept_as_written() {
        let parsed = parse("duckdb://./warehouse.duckdb").unwrap();
        assert_eq!(
            parsed.url,
            DestinationUrl::DuckDb {
                path: "./warehouse.duckdb".to_string()
            }
        );
        let absolute = parse("duckdb:///var/lib/ferry/x.duckdb").unwrap();
        assert_eq!(
            absolute.url,
            DestinationUrl::DuckDb {
                path: "/var/lib/ferry/x.duckdb".to_string()
            }
        );
    }

    #[test]
    fn empty_duckdb_path_is_rejected() {
        assert_eq!(
            parse("duckdb://").unwrap_err(),
            "duckdb:// needs a file path after it, like duckdb://./ferry.duckdb"
        );
    }

    #[test]
    fn postgres_password_is_a_secret() {
        let parsed = parse("postgresql://ferry:p%40ss@db.internal:5433/app").unwrap();
        assert_eq!(
            parsed.secrets,
            vec!["p%40ss".to_string(), "p@ss".to_string()]
        );
    }

    #[test]
    fn unknown_scheme_lists_accepted_forms() {
        let error = parse("mysql://root:hunter22@db/app").unwrap_err();
        assert!(
            error.starts_with(
                "unsupported destination \"mysql://root:***@db/app\"; use duckdb://PATH"
            ),
            "{error}"
        );
        assert!(!error.contains("hunter22"));
    }

    #[test]
    fn relative_and_dotted_duckdb_paths_match() {
        let first = database(&parse("duckdb://./x.duckdb").unwrap().url);
        let second = database(&parse("duckdb://sub/../x.duckdb").unwrap().url);
        assert_eq!(first, second);
    }

    #[test]
    fn postgres_default_port_matches_explicit() {
        let first = database(&parse("postgres://a@DB.internal/app").unwrap().url);
        let second = database(&parse("postgres://b:pw@db.internal:5432/app").unwrap().url);
        assert_eq!(first, second);
    }
}
