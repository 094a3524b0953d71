//! The upsert clause both backends write the same way.

use super::columns::{DELETED_AT, SYNCED_AT, quote_ident};

/// Returns ` ON CONFLICT (keys) DO UPDATE SET …` for quoted column `names`
/// and the indexes of the key columns among them: a written row replaces
/// every field, takes the new sync time, and is no longer deleted.
pub(crate) fn on_conflict_update(names: &[String], keys: &[usize]) -> String {
    let key_names: Vec<&str> = keys.iter().map(|&key| names[key].as_str()).collect();
    let updates: Vec<String> = names
        .iter()
        .enumerate()
        .filter(|(index, _)| !keys.contains(index))
        .map(|(_, name)| format!("{name} = excluded.{name}"))
        .chain([
            format!("{0} = excluded.{0}", quote_ident(SYNCED_AT)),
            format!("{} = NULL", quote_ident(DELETED_AT)),
        ])
        .collect();
    format!(
        " ON CONFLICT ({}) DO UPDATE SET {}",
        key_names.join(", "),
        updates.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn updates_every_field_but_the_key() {
        let names = vec!["\"id\"".to_string(), "\"name\"".to_string()];
        assert_eq!(
            on_conflict_update(&names, &[0]),
            " ON CONFLICT (\"id\") DO UPDATE SET \"name\" = excluded.\"name\", \
             \"_ferry_synced_at\" = excluded.\"_ferry_synced_at\", \"_ferry_deleted_at\" = NULL"
        );
    }
}
