//! Column types inferred from records, and the rules for widening them.

use indexmap::IndexMap;

use crate::engine::Record;
use crate::spec::plan::FieldType;

/// Column names and DuckDB types the records would create, for `ferry preview`.
pub fn preview_columns(
    records: &[Record],
    declared: &IndexMap<String, FieldType>,
) -> Vec<(String, String)> {
    let _ = (records, declared);
    todo!()
}
