//! Records out of a response body: selection, primary key checks, the
//! cursor maximum, the page's identity for loop detection, field rules.
//!
//! `primary_key`, `incremental.cursor_field` and `fields.*` name source
//! fields, so keys and cursors are read before fields are renamed.

use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hasher};

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::incremental::CursorMax;
use super::{FetchError, FetchErrorKind, Record, bigquery};
use crate::spec::plan::{Entity, FieldType, FieldsPlan, RecordsPlan, SchemaSource};

/// Records taken from one response.
#[derive(Debug, Default)]
pub(crate) struct Extracted {
    pub records: Vec<Record>,
    pub cursor_max: Option<Value>,
    /// A hash of the page's primary keys in order (whole records for
    /// append-only entities); `None` for an empty page.
    pub identity: Option<u64>,
    /// Column types the response declares (a BigQuery schema), by output
    /// field name.
    pub field_types: IndexMap<String, FieldType>,
}

/// The record rules of one entity, prepared once per fetch.
#[derive(Debug)]
pub(crate) struct Extractor {
    entity: String,
    records: RecordsPlan,
    primary_key: Vec<String>,
    cursor_field: Option<String>,
    rules: FieldRules,
    /// Parent values set on every record of a child entity, before the
    /// key is checked, so `primary_key` and `fields` may name them.
    parent_fields: Vec<(String, Value)>,
}

impl Extractor {
    pub(crate) fn new(entity: &Entity) -> Extractor {
        Extractor {
            entity: entity.name.clone(),
            records: entity.records.clone(),
            primary_key: entity.primary_key.clone(),
            cursor_field: entity
                .incremental
                .as_ref()
                .map(|incremental| incremental.cursor_field.clone()),
            rules: FieldRules::new(&entity.fields),
            parent_fields: Vec::new(),
        }
    }

    /// Sets the `<parent>_<field>` values every record gets.
    pub(crate) fn set_parent_fields(&mut self, fields: Vec<(String, Value)>) {
        self.parent_fields = fields;
    }

    /// Adds renames found at run time (`fields.names`); a field that
    /// `fields.rename` already renames keeps the spec's name.
    pub(crate) fn add_renames(&mut self, renames: HashMap<String, String>) {
        for (from, to) in renames {
            self.rules.rename.entry(from).or_insert(to);
        }
    }

    /// Checks one record's primary key and applies the field rules, for a
    /// record that did not come from a page of this entity (a change feed's
    /// object). `position` locates it in errors.
    pub(crate) fn shape(&self, record: Record, position: &str) -> Result<Record, FetchError> {
        for field in &self.primary_key {
            if record.get(field).is_none_or(Value::is_null) {
                return Err(FetchError::new(
                    FetchErrorKind::MissingKey,
                    format!(
                        "entity {}: {position} has no primary key field {field:?}; \
                         check changes.object and the entity's primary_key",
                        self.entity
                    ),
                ));
            }
        }
        Ok(self.rules.apply(record))
    }

    /// Moves the records out of `body`. `page` (1-based) locates a record
    /// in errors; `context` renders a schema template.
    pub(crate) fn extract(
        &self,
        body: Value,
        page: u64,
        context: &Value,
    ) -> Result<Extracted, FetchError> {
        let (values, field_types) = self.select(body, context)?;
        let mut extracted = Extracted {
            records: Vec::with_capacity(values.len()),
            field_types: self.rules.rename_keys(field_types),
            ..Extracted::default()
        };
        if values.is_empty() {
            return Ok(extracted);
        }

        let mut identity = DefaultHasher::new();
        let mut cursor_max = CursorMax::default();
        for (index, value) in values.into_iter().enumerate() {
            let mut record = match value {
                Value::Object(map) => map,
                other => {
                    let mut wrapped = Map::with_capacity(1);
                    wrapped.insert("value".to_string(), other);
                    wrapped
                }
            };
            for (name, value) in &self.parent_fields {
                record.insert(name.clone(), value.clone());
            }
            self.hash_identity(&record, page, index, &mut identity)?;
            if let Some(value) = self
                .cursor_field
                .as_ref()
                .and_then(|field| record.get(field))
            {
                cursor_max.observe(value);
            }
            extracted.records.push(self.rules.apply(record));
        }
        extracted.cursor_max = cursor_max.into_value();
        extracted.identity = Some(identity.finish());
        Ok(extracted)
    }

    fn select(
        &self,
        body: Value,
        context: &Value,
    ) -> Result<(Vec<Value>, IndexMap<String, FieldType>), FetchError> {
        match &self.records {
            RecordsPlan::Path(path) => Ok((path.take(body), IndexMap::new())),
            RecordsPlan::Columns { rows, columns } => {
                let names = column_names(columns.find(&body)).map_err(|message| {
                    self.response_error(format!("{}: {message}", columns.source()))
                })?;
                let records = rows
                    .take(body)
                    .into_iter()
                    .enumerate()
                    .map(|(index, row)| {
                        zip_row(&names, row).map_err(|message| {
                            self.response_error(format!("{} row {index}: {message}", rows.source()))
                        })
                    })
                    .collect::<Result<_, _>>()?;
                Ok((records, IndexMap::new()))
            }
            RecordsPlan::Schema {
                rows,
                schema,
                timestamp_unit,
            } => {
                let (found, source) = match schema {
                    SchemaSource::Response(path) => (
                        path.find_one(&body).map(|found| found.cloned()),
                        path.source(),
                    ),
                    SchemaSource::Template(template) => (
                        template
                            .render_value(context)
                            .map(|value| Some(value).filter(|value| !value.is_null()))
                            .map_err(|error| error.0),
                        template.source(),
                    ),
                };
                let schema = match found {
                    Ok(Some(found)) => bigquery::parse_schema(&found, *timestamp_unit),
                    Ok(None) if rows.find(&body).is_empty() => {
                        return Ok((Vec::new(), IndexMap::new()));
                    }
                    Ok(None) => Err("no schema found".to_string()),
                    Err(message) => Err(message),
                }
                .map_err(|message| self.response_error(format!("{source}: {message}")))?;
                let records = rows
                    .take(body)
                    .into_iter()
                    .enumerate()
                    .map(|(index, row)| {
                        schema
                            .decode_row(row)
                            .map(Value::Object)
                            .map_err(|message| {
                                self.response_error(format!(
                                    "{} row {index}: {message}",
                                    rows.source()
                                ))
                            })
                    })
                    .collect::<Result<_, _>>()?;
                Ok((records, schema.field_types()))
            }
        }
    }

    /// Checks the primary key and feeds it (or the whole record, for an
    /// append-only entity) to the page identity hash.
    fn hash_identity(
        &self,
        record: &Record,
        page: u64,
        index: usize,
        identity: &mut DefaultHasher,
    ) -> Result<(), FetchError> {
        if self.primary_key.is_empty() {
            hash_json(identity, record);
            return Ok(());
        }
        for field in &self.primary_key {
            match record.get(field) {
                Some(value) if !value.is_null() => hash_json(identity, value),
                found => {
                    let state = if found.is_some() { "null" } else { "missing" };
                    return Err(FetchError::new(
                        FetchErrorKind::MissingKey,
                        format!(
                            "entity {}: record {index} of page {page} has no primary key field {field:?} ({state}); \
                             check primary_key and the records path, or declare primary_key: [] for an append-only entity",
                            self.entity
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn response_error(&self, message: String) -> FetchError {
        FetchError::new(
            FetchErrorKind::Response,
            format!("entity {}: records: {message}", self.entity),
        )
    }
}

/// Feeds a value's JSON text to the hasher, with a separator so that
/// consecutive values cannot run together.
fn hash_json<T: serde::Serialize + ?Sized>(hasher: &mut DefaultHasher, value: &T) {
    struct HashWriter<'a>(&'a mut DefaultHasher);
    impl std::io::Write for HashWriter<'_> {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.write(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    // Writing to a hasher cannot fail, and serde_json fails only on
    // non-string map keys, which a `Value` never has.
    let _ = serde_json::to_writer(HashWriter(hasher), value);
    hasher.write_u8(0x1e);
}

fn column_names(found: Vec<&Value>) -> Result<Vec<String>, String> {
    let items: Vec<&Value> = match found.as_slice() {
        [Value::Array(items)] => items.iter().collect(),
        _ => found,
    };
    if items.is_empty() {
        return Err("no column names found".into());
    }
    items
        .into_iter()
        .map(|item| match item {
            Value::String(name) => Ok(name.clone()),
            other => Err(format!("column name {other} is not a string")),
        })
        .collect()
}

fn zip_row(names: &[String], row: Value) -> Result<Value, String> {
    let Value::Array(cells) = row else {
        return Err(format!("a row is {row}, expected a list of values"));
    };
    if cells.len() != names.len() {
        return Err(format!(
            "the row has {} values but there are {} columns",
            cells.len(),
            names.len()
        ));
    }
    let mut record = Map::with_capacity(names.len());
    for (name, cell) in names.iter().zip(cells) {
        record.insert(name.clone(), cell);
    }
    Ok(Value::Object(record))
}

/// `fields.include`, `exclude` and `rename`, applied to top-level fields.
#[derive(Debug, Default)]
struct FieldRules {
    include: Option<HashSet<String>>,
    exclude: HashSet<String>,
    rename: HashMap<String, String>,
}

impl FieldRules {
    fn new(fields: &FieldsPlan) -> FieldRules {
        FieldRules {
            include: (!fields.include.is_empty()).then(|| fields.include.iter().cloned().collect()),
            exclude: fields.exclude.iter().cloned().collect(),
            rename: fields
                .rename
                .iter()
                .map(|(from, to)| (from.clone(), to.clone()))
                .collect(),
        }
    }

    /// Applies `exclude`, `include` and `rename` to declared column types.
    fn rename_keys(&self, types: IndexMap<String, FieldType>) -> IndexMap<String, FieldType> {
        types
            .into_iter()
            .filter(|(name, _)| self.keeps(name))
            .map(|(name, kind)| match self.rename.get(&name) {
                Some(renamed) => (renamed.clone(), kind),
                None => (name, kind),
            })
            .collect()
    }

    fn keeps(&self, name: &str) -> bool {
        self.include
            .as_ref()
            .is_none_or(|include| include.contains(name))
            && !self.exclude.contains(name)
    }

    fn apply(&self, mut record: Record) -> Record {
        if self.include.is_some() || !self.exclude.is_empty() {
            record.retain(|name, _| self.keeps(name));
        }
        if self.rename.is_empty() || !record.keys().any(|name| self.rename.contains_key(name)) {
            return record;
        }
        // Rebuilt rather than renamed in place, to keep the field order.
        record
            .into_iter()
            .map(|(name, value)| match self.rename.get(&name) {
                Some(renamed) => (renamed.clone(), value),
                None => (name, value),
            })
            .collect()
    }
}

/// Returns the name a source field has in output records (after
/// `fields.rename`), for the destination's key and cursor columns.
pub fn output_field_name<'a>(fields: &'a FieldsPlan, source: &'a str) -> &'a str {
    fields.rename.get(source).map_or(source, String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use indexmap::IndexMap;
    use serde_json::json;

    #[test]
    fn rules_include_exclude_rename_keep_order() {
        let fields = FieldsPlan {
            include: vec![],
            exclude: vec!["secret".into()],
            rename: IndexMap::from([("id".to_string(), "external_id".to_string())]),
            types: IndexMap::new(),
            names: None,
        };
        let rules = FieldRules::new(&fields);
        let record = json!({"a": 1, "id": 2, "secret": 3, "z": 4});
        let Value::Object(record) = record else {
            unreachable!()
        };
        let output = rules.apply(record);
        assert_eq!(
            output.keys().collect::<Vec<_>>(),
            vec!["a", "external_id", "z"]
        );
        assert_eq!(output_field_name(&fields, "id"), "external_id");
        assert_eq!(output_field_name(&fields, "a"), "a");
    }

    #[test]
    fn columns_zip_rows() {
        let names = column_names(vec![&json!(["day", "n"])]).unwrap();
        let row = zip_row(&names, json!(["2024-01-01", 3])).unwrap();
        assert_eq!(row, json!({"day": "2024-01-01", "n": 3}));
        assert!(zip_row(&names, json!([1])).is_err());
    }
}
