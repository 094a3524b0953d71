//! Column names for record fields.
//!
//! A field keeps its name as the column name whenever the backend can
//! store it, because identifiers are always quoted. A name changes only
//! when it is empty, contains NUL, is longer than the backend allows, or
//! collides with an existing column under the backend's comparison rule.
//! Then it gets a suffix taken from the SHA-256 of the field name, so a
//! field that needs a new name always gets the same one.

use sha2::{Digest, Sha256};

/// Metadata columns every entity table has.
pub const SYNCED_AT: &str = "_ferry_synced_at";
pub const DELETED_AT: &str = "_ferry_deleted_at";

/// Hex digits of the hash in a suffix; more are used only when the short
/// form collides too.
const SUFFIX_HEX_DIGITS: usize = 8;

/// A backend's identifier rules: comparison and length limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamingRules {
    /// DuckDB: quoted names that differ only in ASCII case are the same
    /// column (`A`/`a` collide in DuckDB 2.0, `Ä`/`ä` do not).
    pub case_insensitive: bool,
    /// PostgreSQL: names longer than this (63 bytes) are truncated.
    pub max_bytes: Option<usize>,
}

/// Quotes an identifier for DuckDB and PostgreSQL, which share the syntax.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Names new columns for `fields`, given the names a table already has.
/// Returns `(field, column)` pairs in the order of `fields`.
///
/// Fields are named in byte order of their names, so when two new fields
/// collide the one that sorts first keeps its name. A column that already
/// exists keeps its name, so across chunks the first field seen keeps it.
pub fn assign_column_names(
    existing: &[String],
    fields: &[String],
    rules: NamingRules,
) -> Vec<(String, String)> {
    let mut taken: Vec<String> = existing.iter().map(|name| rules.comparable(name)).collect();
    let mut sorted: Vec<&String> = fields.iter().collect();
    sorted.sort();

    let mut named = Vec::with_capacity(fields.len());
    for field in sorted {
        let column = column_name(field, &taken, rules);
        taken.push(rules.comparable(&column));
        named.push((field.clone(), column));
    }

    named.sort_by_key(|(field, _)| fields.iter().position(|f| f == field));
    named
}

impl NamingRules {
    fn comparable(&self, name: &str) -> String {
        if self.case_insensitive {
            name.to_ascii_lowercase()
        } else {
            name.to_string()
        }
    }

    fn fits(&self, name: &str) -> bool {
        self.max_bytes.is_none_or(|max| name.len() <= max)
    }
}

fn column_name(field: &str, taken: &[String], rules: NamingRules) -> String {
    let storable = !field.is_empty() && !field.contains('\0') && rules.fits(field);
    if storable && !taken.contains(&rules.comparable(field)) {
        return field.to_string();
    }

    let hash = hex::encode(Sha256::digest(field.as_bytes()));
    let base = field.replace('\0', "");
    let mut digits = SUFFIX_HEX_DIGITS;
    loop {
        let candidate = with_suffix(&base, &hash[..digits], rules);
        if !taken.contains(&rules.comparable(&candidate)) || digits == hash.len() {
            return candidate;
        }
        digits += 1;
    }
}

/// `base_suffix`, with `base` cut at a character boundary to fit the limit.
fn with_suffix(base: &str, suffix: &str, rules: NamingRules) -> String {
    let room = rules
        .max_bytes
        .map_or(usize::MAX, |max| max.saturating_sub(suffix.len() + 1));
    let mut end = base.len().min(room);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    let base = &base[..end];
    if base.is_empty() {
        format!("_{suffix}")
    } else {
        format!("{base}_{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DUCKDB: NamingRules = NamingRules {
        case_insensitive: true,
        max_bytes: None,
    };
    const POSTGRES: NamingRules = NamingRules {
        case_insensitive: false,
        max_bytes: Some(63),
    };

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    fn columns(existing: &[&str], fields: &[&str], rules: NamingRules) -> Vec<String> {
        let named = assign_column_names(&strings(existing), &strings(fields), rules);
        named.into_iter().map(|(_, column)| column).collect()
    }

    #[test]
    fn hostile_names_kept() {
        let fields = ["a b", "select", "x\"y", "a.b", "🦀", "Ä", "ä"];
        assert_eq!(columns(&[], &fields, DUCKDB), strings(&fields));
    }

    #[test]
    fn case_collision_order_independent() {
        let forward = columns(&[], &["amount", "Amount"], DUCKDB);
        let backward = columns(&[], &["Amount", "amount"], DUCKDB);
        assert_eq!(forward, ["amount_cf38d95c", "Amount"]);
        assert_eq!(backward, ["Amount", "amount_cf38d95c"]);
        assert_eq!(
            columns(&[], &["amount", "Amount"], POSTGRES),
            ["amount", "Amount"]
        );
    }

    #[test]
    fn metadata_collision_renamed() {
        let existing = [SYNCED_AT, DELETED_AT];
        let renamed = columns(&existing, &["_FERRY_SYNCED_AT"], DUCKDB);
        assert_eq!(renamed, ["_FERRY_SYNCED_AT_8c771ee3"]);
    }

    #[test]
    fn existing_column_keeps_name() {
        assert_eq!(
            columns(&["amount"], &["Amount"], DUCKDB),
            ["Amount_49e96d7c"]
        );
    }

    #[test]
    fn unstorable_names_hashed() {
        assert_eq!(columns(&[], &[""], DUCKDB), ["_e3b0c442"]);
        assert_eq!(columns(&[], &["a\0b"], DUCKDB), ["ab_59b271ae"]);
    }

    #[test]
    fn long_names_truncated() {
        let long = "é".repeat(40);
        let named = columns(&[], &[&long], POSTGRES);
        assert!(named[0].len() <= 63, "{}", named[0]);
        assert!(named[0].starts_with("éé"));
        let again = columns(&[], &[&long], POSTGRES);
        assert_eq!(named, again);
    }

    #[test]
    fn suffix_collision_lengthens_hash() {
        let first = columns(&["amount"], &["Amount"], DUCKDB)[0].clone();
        let lengthened = columns(&["amount", &first], &["Amount"], DUCKDB);
        assert_eq!(lengthened, ["Amount_49e96d7cd"]);
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("x\"y"), "\"x\"\"y\"");
        assert_eq!(quote_ident("select"), "\"select\"");
    }
}
