//! The destination contract, as tests any backend must pass.
//!
//! Each contract test is a function over a [`Backend`]: a way to open
//! destination values on one fresh database, to run SQL against it, and
//! the type names it reports. The DuckDB backend runs them on files in
//! temporary directories. The PostgreSQL backend runs them in a fresh
//! database on the server in `FERRY_TEST_POSTGRES_URL`. Both pass the
//! same list of names to the `contract_tests!` macro.
//!
//! SQL in these tests casts every value to VARCHAR and quotes every
//! identifier, which DuckDB and PostgreSQL read alike. Where the two
//! spell a value differently as text (`1.0` and `1`, JSON with and
//! without spaces), tests compare the values, not the spellings.

use std::collections::BTreeMap;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use ferry::destination::columns::ExactNumber;
use ferry::destination::duckdb::DuckDbDestination;
use ferry::destination::postgres::PostgresDestination;
use ferry::destination::{
    Chunk, ColumnInfo, Destination, DestinationError, EntityTarget, RunOutcome, RunRecord,
    RunStatus, TableRef,
};
use ferry::engine::Record;
use ferry::spec::plan::FieldType;
use indexmap::IndexMap;
use serde_json::{Value, json};

/// Logical column types, for the backend to name.
#[derive(Debug, Clone, Copy)]
pub enum Sql {
    Boolean,
    BigInt,
    HugeInt,
    Double,
    Decimal(u32),
    Text,
    Json,
    Timestamp,
    Date,
}

/// A database the contract runs against.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Opens a new destination value on this backend's database.
    async fn open(&self) -> Box<dyn Destination>;
    /// Runs a query whose columns are all text; NULL is `None`.
    async fn query(&self, sql: &str) -> Vec<Vec<Option<String>>>;
    /// Runs statements that return no rows.
    async fn execute(&self, sql: &str);
    /// Names a logical type as `Destination::columns` reports it.
    fn sql_type(&self, sql: Sql) -> String;
    /// Tells whether quoted names that differ only by case are one name.
    fn names_fold_case(&self) -> bool;
}

// ---------------------------------------------------------------------------
// DuckDB backend

pub struct DuckDbBackend {
    path: String,
    /// Keeps the database open so queries share it with the destinations.
    reader: DuckDbDestination,
    _dir: tempfile::TempDir,
}

impl DuckDbBackend {
    pub fn new() -> DuckDbBackend {
        let dir = tempfile::tempdir().unwrap();
        let path = dir
            .path()
            .join("contract.duckdb")
            .to_string_lossy()
            .into_owned();
        let reader = DuckDbDestination::open(&path).unwrap();
        DuckDbBackend {
            path,
            reader,
            _dir: dir,
        }
    }
}

#[async_trait]
impl Backend for DuckDbBackend {
    async fn open(&self) -> Box<dyn Destination> {
        Box::new(DuckDbDestination::open(&self.path).unwrap())
    }

    async fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let connection = self.reader.connection().unwrap();
        let mut statement = connection.prepare(sql).unwrap();
        let mut rows = statement.query([]).unwrap();
        let mut out = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            let count = row.as_ref().column_count();
            let cells = (0..count).map(|index| row.get::<_, Option<String>>(index).unwrap());
            out.push(cells.collect());
        }
        out
    }

    async fn execute(&self, sql: &str) {
        self.reader
            .connection()
            .unwrap()
            .execute_batch(sql)
            .unwrap();
    }

    fn sql_type(&self, sql: Sql) -> String {
        match sql {
            Sql::Boolean => "BOOLEAN".into(),
            Sql::BigInt => "BIGINT".into(),
            Sql::HugeInt => "HUGEINT".into(),
            Sql::Double => "DOUBLE".into(),
            Sql::Decimal(scale) => format!("DECIMAL(38,{scale})"),
            Sql::Text => "VARCHAR".into(),
            Sql::Json => "JSON".into(),
            Sql::Timestamp => "TIMESTAMP WITH TIME ZONE".into(),
            Sql::Date => "DATE".into(),
        }
    }

    fn names_fold_case(&self) -> bool {
        true
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL backend

pub struct PostgresBackend {
    database: crate::support::postgres::TestDatabase,
}

impl PostgresBackend {
    /// Creates a fresh database; `None` when no server is configured.
    pub async fn start() -> Option<PostgresBackend> {
        let database = crate::support::postgres::TestDatabase::create().await?;
        Some(PostgresBackend { database })
    }
}

#[async_trait]
impl Backend for PostgresBackend {
    async fn open(&self) -> Box<dyn Destination> {
        let url = self.database.url();
        Box::new(PostgresDestination::open(&url).await.unwrap())
    }

    async fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        self.database.query(sql).await
    }

    async fn execute(&self, sql: &str) {
        self.database.execute(sql).await
    }

    fn sql_type(&self, sql: Sql) -> String {
        match sql {
            Sql::Boolean => "boolean".into(),
            Sql::BigInt => "bigint".into(),
            // Integers beyond 64 bits and decimals of any scale are
            // unconstrained NUMERIC.
            Sql::HugeInt | Sql::Decimal(_) => "numeric".into(),
            Sql::Double => "double precision".into(),
            Sql::Text => "text".into(),
            Sql::Json => "jsonb".into(),
            Sql::Timestamp => "timestamp with time zone".into(),
            Sql::Date => "date".into(),
        }
    }

    fn names_fold_case(&self) -> bool {
        false
    }
}

macro_rules! contract_tests {
    ($module:ident, $backend:expr, [$($name:ident),* $(,)?]) => {
        mod $module {
            $(
                #[tokio::test]
                async fn $name() {
                    // `None`: the backend's database is not available, and
                    // the backend printed why.
                    let Some(backend) = $backend else { return };
                    super::$name(&backend).await;
                }
            )*
        }
    };
}

/// Instantiates every contract test for one backend, so each backend runs
/// the same list.
macro_rules! every_contract_test {
    ($module:ident, $backend:expr) => {
        contract_tests!(
            $module,
            $backend,
            [
                first_chunk_creates_typed_table,
                upsert_replaces_whole_row,
                duplicate_keys_last_wins,
                repeated_key_in_new_table,
                repeated_key_in_full_refresh,
                nul_keys_in_new_table,
                deletions_in_new_table,
                key_widens_in_new_table,
                new_column_in_new_table,
                declared_types_in_new_table,
                zero_keys_in_new_table,
                append_only_keeps_every_record,
                new_field_adds_column,
                integer_widens_to_double,
                integer_widens_to_decimal,
                integer_widens_to_hugeint,
                integer_beyond_128_bits_is_exact,
                mixed_scalars_widen_to_text,
                scalars_widen_to_json,
                key_column_widens,
                declared_time_types,
                bad_timestamp_keeps_value_as_text,
                declared_decimal_and_string,
                hostile_field_names,
                unicode_values,
                state_commits_with_chunk,
                failing_chunk_leaves_nothing,
                missing_key_is_rejected,
                full_refresh_swaps_staging,
                full_refresh_resume_keeps_staging,
                full_refresh_without_rows_empties_table,
                mark_unseen_rows_deleted,
                deletions_mark_rows,
                runs_are_recorded,
                second_destination_sees_writes,
                entities_write_concurrently,
            ]
        );
    };
}

every_contract_test!(duckdb, Some(super::DuckDbBackend::new()));
every_contract_test!(postgres, super::PostgresBackend::start().await);

// ---------------------------------------------------------------------------
// Helpers

pub fn target(schema: &str, table: &str, primary_key: &[&str]) -> EntityTarget {
    EntityTarget {
        flow: "flow".into(),
        entity: table.into(),
        table: TableRef {
            schema: schema.into(),
            table: table.into(),
        },
        primary_key: primary_key.iter().map(|field| field.to_string()).collect(),
        declared_types: IndexMap::new(),
        full_refresh: false,
        resuming: false,
    }
}

pub fn run(run_id: &str, target: &EntityTarget, started_at: DateTime<Utc>) -> RunRecord {
    RunRecord {
        run_id: run_id.into(),
        flow: target.flow.clone(),
        entity: target.entity.clone(),
        started_at,
        finished_at: None,
        status: "running".into(),
        records: 0,
        error: None,
    }
}

/// Parses records from JSON text, so numbers keep their source digits.
pub fn records(text: &str) -> Vec<Record> {
    let values: Vec<Value> = serde_json::from_str(text).unwrap();
    values
        .into_iter()
        .map(|value| value.as_object().unwrap().clone())
        .collect()
}

pub fn chunk(records_json: &str, state: Value) -> Chunk {
    Chunk {
        records: records(records_json),
        deletions: Vec::new(),
        state,
    }
}

pub fn succeeded(records: u64, state: Value) -> RunOutcome {
    RunOutcome {
        status: RunStatus::Succeeded,
        records,
        error: None,
        state,
        mark_unseen_before: None,
    }
}

/// Begins a run, writes each chunk, and finishes it successfully.
pub async fn sync(destination: &mut dyn Destination, target: &EntityTarget, chunks: &[&str]) {
    let run_id = uuid::Uuid::new_v4().to_string();
    destination
        .begin_run(target, &run(&run_id, target, Utc::now()))
        .await
        .unwrap();
    let mut count = 0;
    for (index, records_json) in chunks.iter().enumerate() {
        let chunk = chunk(records_json, json!({ "chunk": index }));
        count += chunk.records.len() as u64;
        destination
            .write_chunk(target, &run_id, chunk)
            .await
            .unwrap();
    }
    let outcome = succeeded(count, json!({ "done": true }));
    destination
        .finish_run(target, &run_id, outcome)
        .await
        .unwrap();
}

fn text(value: &str) -> Option<String> {
    Some(value.to_string())
}

fn parse_json(cell: Option<&str>) -> Value {
    let cell = cell.expect("a JSON value, not NULL");
    serde_json::from_str(cell).unwrap_or_else(|error| panic!("{cell}: {error}"))
}

/// Spells numbers by value without an exponent (`1.0`, `1` and `1E0`
/// alike), so backends that print numbers differently compare equal.
fn numbers(values: &[Option<String>]) -> Vec<String> {
    values
        .iter()
        .map(|value| {
            let value = value.as_deref().expect("a number, not NULL");
            ExactNumber::parse(value)
                .unwrap_or_else(|| panic!("{value} is not a number"))
                .plain_text()
        })
        .collect()
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

fn row(cells: &[Option<&str>]) -> Vec<Option<String>> {
    cells.iter().map(|cell| cell.map(str::to_string)).collect()
}

fn column(field: &str, column: &str, sql_type: String) -> ColumnInfo {
    ColumnInfo {
        field: field.into(),
        column: column.into(),
        sql_type,
    }
}

/// Lists the two metadata columns that follow the first chunk's columns.
fn metadata_columns(backend: &dyn Backend) -> Vec<ColumnInfo> {
    vec![
        column("", "_ferry_synced_at", backend.sql_type(Sql::Timestamp)),
        column("", "_ferry_deleted_at", backend.sql_type(Sql::Timestamp)),
    ]
}

async fn columns(
    destination: &mut dyn Destination,
    target: &EntityTarget,
) -> Vec<(String, String, String)> {
    let infos = destination.columns(&target.table).await.unwrap();
    infos
        .into_iter()
        .map(|info| (info.field, info.column, info.sql_type))
        .collect()
}

fn triples(backend: &dyn Backend, expected: &[(&str, &str, Sql)]) -> Vec<(String, String, String)> {
    let mut all: Vec<(String, String, String)> = expected
        .iter()
        .map(|(field, column, sql)| {
            (
                field.to_string(),
                column.to_string(),
                backend.sql_type(*sql),
            )
        })
        .collect();
    for info in metadata_columns(backend) {
        all.push((info.field, info.column, info.sql_type));
    }
    all
}

/// Reads the columns `_ferry.columns` records for a table, as field → (column, type).
async fn tracked(
    backend: &dyn Backend,
    schema: &str,
    table: &str,
) -> BTreeMap<String, (String, String)> {
    let sql = format!(
        "SELECT field, \"column\", \"type\" FROM \"_ferry\".\"columns\" \
         WHERE \"schema\" = '{schema}' AND \"table\" = '{table}'"
    );
    backend
        .query(&sql)
        .await
        .into_iter()
        .map(|row| {
            let mut cells = row.into_iter().map(Option::unwrap);
            let field = cells.next().unwrap();
            (field, (cells.next().unwrap(), cells.next().unwrap()))
        })
        .collect()
}

async fn count_rows(backend: &dyn Backend, table: &str) -> usize {
    let rows = backend
        .query(&format!("SELECT CAST(count(*) AS VARCHAR) FROM {table}"))
        .await;
    rows[0][0].as_deref().unwrap().parse().unwrap()
}

async fn table_exists(backend: &dyn Backend, schema: &str, table: &str) -> bool {
    let sql = format!(
        "SELECT CAST(count(*) AS VARCHAR) FROM information_schema.tables \
         WHERE table_schema = '{schema}' AND table_name = '{table}'"
    );
    backend.query(&sql).await[0][0].as_deref() == Some("1")
}

// ---------------------------------------------------------------------------
// Tables, types and upserts

async fn first_chunk_creates_typed_table(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("shop", "items", &["id"]);
    sync(
        destination.as_mut(),
        &target,
        &[r#"[
            {"id": 1, "name": "lamp", "price": 19.99, "active": true,
             "tags": ["a", "b"], "meta": {"k": 1}, "never": null},
            {"id": 2, "name": "desk", "price": 250.5, "active": false,
             "tags": [], "meta": {}, "never": null}
        ]"#],
    )
    .await;

    let expected = triples(
        backend,
        &[
            ("id", "id", Sql::BigInt),
            ("name", "name", Sql::Text),
            ("price", "price", Sql::Double),
            ("active", "active", Sql::Boolean),
            ("tags", "tags", Sql::Json),
            ("meta", "meta", Sql::Json),
        ],
    );
    assert_eq!(columns(destination.as_mut(), &target).await, expected);

    let rows = backend
        .query(
            r#"SELECT CAST("id" AS VARCHAR), "name", CAST("price" AS VARCHAR),
                      CAST("active" AS VARCHAR), CAST("_ferry_deleted_at" AS VARCHAR)
               FROM "shop"."items" ORDER BY "id""#,
        )
        .await;
    assert_eq!(
        rows,
        [
            row(&[Some("1"), Some("lamp"), Some("19.99"), Some("true"), None]),
            row(&[Some("2"), Some("desk"), Some("250.5"), Some("false"), None]),
        ]
    );
    let nested = backend
        .query(r#"SELECT CAST("tags" AS VARCHAR), CAST("meta" AS VARCHAR) FROM "shop"."items" ORDER BY "id""#)
        .await;
    let nested: Vec<Vec<Value>> = nested
        .iter()
        .map(|row| row.iter().map(|cell| parse_json(cell.as_deref())).collect())
        .collect();
    assert_eq!(
        nested,
        [
            vec![json!(["a", "b"]), json!({"k": 1})],
            vec![json!([]), json!({})]
        ]
    );

    let synced = backend
        .query(r#"SELECT DISTINCT CAST("_ferry_synced_at" AS VARCHAR) FROM "shop"."items""#)
        .await;
    assert_eq!(synced.len(), 1, "one commit time for the chunk: {synced:?}");
    assert!(synced[0][0].is_some());

    let recorded = tracked(backend, "shop", "items").await;
    let fields: Vec<&String> = recorded.keys().collect();
    assert_eq!(fields, ["active", "id", "meta", "name", "price", "tags"]);
    assert_eq!(
        recorded["price"],
        ("price".to_string(), backend.sql_type(Sql::Double))
    );
}

async fn upsert_replaces_whole_row(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("shop", "items", &["id"]);
    sync(
        destination.as_mut(),
        &target,
        &[r#"[{"id": 1, "name": "a", "note": "x"}, {"id": 2, "name": "b", "note": "y"}]"#],
    )
    .await;
    let before = backend
        .query(r#"SELECT CAST("_ferry_synced_at" AS VARCHAR) FROM "shop"."items" WHERE "id" = 2"#)
        .await;

    sync(
        destination.as_mut(),
        &target,
        &[r#"[{"id": 1, "name": "c"}]"#],
    )
    .await;

    let rows = backend
        .query(r#"SELECT CAST("id" AS VARCHAR), "name", "note" FROM "shop"."items" ORDER BY "id""#)
        .await;
    assert_eq!(
        rows,
        [
            row(&[Some("1"), Some("c"), None]),
            row(&[Some("2"), Some("b"), Some("y")])
        ]
    );
    let after = backend
        .query(r#"SELECT CAST("_ferry_synced_at" AS VARCHAR) FROM "shop"."items" WHERE "id" = 2"#)
        .await;
    assert_eq!(
        before, after,
        "a row the chunk did not touch keeps its sync time"
    );
}

async fn duplicate_keys_last_wins(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("shop", "items", &["id", "region"]);
    sync(
        destination.as_mut(),
        &target,
        &[r#"[
            {"id": 1, "region": "eu", "name": "first"},
            {"id": 1, "region": "us", "name": "other"},
            {"id": 1, "region": "eu", "name": "second"},
            {"id": 1, "region": "eu", "name": "last"}
        ]"#],
    )
    .await;
    let rows = backend
        .query(r#"SELECT CAST("id" AS VARCHAR), "region", "name" FROM "shop"."items" ORDER BY "region""#)
        .await;
    assert_eq!(
        rows,
        [
            row(&[Some("1"), Some("eu"), Some("last")]),
            row(&[Some("1"), Some("us"), Some("other")])
        ]
    );
}

/// A run appends to a table it created without upserts until a chunk
/// repeats a key from an earlier chunk. That chunk and the rest still
/// replace the earlier rows.
async fn repeated_key_in_new_table(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("shop", "items", &["id"]);
    sync(
        destination.as_mut(),
        &target,
        &[
            r#"[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]"#,
            r#"[{"id": 3, "name": "c"}]"#,
            r#"[{"id": 2, "name": "b2"}, {"id": 4, "name": "d"}, {"id": 4, "name": "d2"}]"#,
            r#"[{"id": 1, "name": "a2"}, {"id": 5, "name": "e"}]"#,
        ],
    )
    .await;
    let rows = backend
        .query(r#"SELECT CAST("id" AS VARCHAR), "name" FROM "shop"."items" ORDER BY "id""#)
        .await;
    assert_eq!(
        rows,
        [
            row(&[Some("1"), Some("a2")]),
            row(&[Some("2"), Some("b2")]),
            row(&[Some("3"), Some("c")]),
            row(&[Some("4"), Some("d2")]),
            row(&[Some("5"), Some("e")]),
        ]
    );
    let later = backend
        .query(
            r#"SELECT CAST(COUNT(*) AS VARCHAR) FROM "shop"."items" AS two, "shop"."items" AS three
               WHERE two."id" = 2 AND three."id" = 3 AND two."_ferry_synced_at" > three."_ferry_synced_at""#,
        )
        .await;
    assert_eq!(
        later,
        [row(&[Some("1")])],
        "the rewritten row has the later sync time"
    );
    let state = destination.read_state("flow", "items").await.unwrap();
    assert_eq!(state, Some(json!({ "done": true })));
}

/// The same in a full refresh, whose staging table the run creates.
async fn repeated_key_in_full_refresh(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let mut target = target("shop", "items", &["id"]);
    sync(
        destination.as_mut(),
        &target,
        &[r#"[{"id": 9, "name": "old"}]"#],
    )
    .await;
    target.full_refresh = true;
    sync(
        destination.as_mut(),
        &target,
        &[
            r#"[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]"#,
            r#"[{"id": 2, "name": "b2"}]"#,
            r#"[{"id": 3, "name": "c"}]"#,
        ],
    )
    .await;
    let rows = backend
        .query(r#"SELECT CAST("id" AS VARCHAR), "name" FROM "shop"."items" ORDER BY "id""#)
        .await;
    assert_eq!(
        rows,
        [
            row(&[Some("1"), Some("a")]),
            row(&[Some("2"), Some("b2")]),
            row(&[Some("3"), Some("c")]),
        ]
    );
}

/// Keys that differ only after a NUL stay distinct rows; PostgreSQL
/// stores NUL as U+FFFD, so there `a` + NUL and `a` + U+FFFD are one key.
async fn nul_keys_in_new_table(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("n", "items", &["id"]);
    sync(
        destination.as_mut(),
        &target,
        &[
            r#"[{"id": "a", "v": 1}, {"id": "a\u0000", "v": 2}, {"id": "a\u0000b", "v": 3}]"#,
            r#"[{"id": "a\u0000", "v": 4}]"#,
        ],
    )
    .await;
    let rows = backend
        .query(r#"SELECT CAST("v" AS VARCHAR) FROM "n"."items" ORDER BY "v""#)
        .await;
    assert_eq!(
        rows,
        [row(&[Some("1")]), row(&[Some("3")]), row(&[Some("4")])]
    );
}

/// Deletions in the chunks of a run that created the table.
async fn deletions_in_new_table(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("d", "fresh", &["id"]);
    destination
        .begin_run(&target, &run("r1", &target, Utc::now()))
        .await
        .unwrap();
    let first = Chunk {
        records: records(r#"[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]"#),
        deletions: records(r#"[{"id": 1}, {"id": 3}]"#),
        state: json!({"page": 1}),
    };
    destination.write_chunk(&target, "r1", first).await.unwrap();
    let second = Chunk {
        records: records(r#"[{"id": 3, "name": "c"}, {"id": 4, "name": "d"}]"#),
        deletions: records(r#"[{"id": 2}]"#),
        state: json!({"page": 2}),
    };
    destination
        .write_chunk(&target, "r1", second)
        .await
        .unwrap();
    let third = chunk(r#"[{"id": 5, "name": "e"}]"#, json!({"page": 3}));
    destination.write_chunk(&target, "r1", third).await.unwrap();
    destination
        .finish_run(&target, "r1", succeeded(5, json!({"done": true})))
        .await
        .unwrap();
    let rows = backend
        .query(
            r#"SELECT CAST("id" AS VARCHAR), "name", CAST("_ferry_deleted_at" IS NOT NULL AS VARCHAR)
               FROM "d"."fresh" ORDER BY "id""#,
        )
        .await;
    assert_eq!(
        rows,
        [
            row(&[Some("1"), Some("a"), Some("true")]),
            row(&[Some("2"), Some("b"), Some("true")]),
            row(&[Some("3"), Some("c"), Some("false")]),
            row(&[Some("4"), Some("d"), Some("false")]),
            row(&[Some("5"), Some("e"), Some("false")]),
        ]
    );
}

/// A run that created the table widens its key column in a later chunk,
/// then repeats keys in the new spelling.
async fn key_widens_in_new_table(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("w", "fresh", &["id"]);
    sync(
        destination.as_mut(),
        &target,
        &[
            r#"[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]"#,
            r#"[{"id": "x", "v": "c"}, {"id": "1", "v": "d"}]"#,
            r#"[{"id": "2", "v": "e"}, {"id": "y", "v": "f"}]"#,
        ],
    )
    .await;
    let rows = backend
        .query(r#"SELECT "id", "v" FROM "w"."fresh" ORDER BY "id""#)
        .await;
    assert_eq!(
        rows,
        [
            row(&[Some("1"), Some("d")]),
            row(&[Some("2"), Some("e")]),
            row(&[Some("x"), Some("c")]),
            row(&[Some("y"), Some("f")]),
        ]
    );
}

/// A later chunk adds a column and repeats a key.
async fn new_column_in_new_table(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("c", "fresh", &["id"]);
    sync(
        destination.as_mut(),
        &target,
        &[
            r#"[{"id": 1}]"#,
            r#"[{"id": 2, "n": "x", "f": "1"}]"#,
            r#"[{"id": 3, "f": "2.5"}, {"id": 1, "n": "y", "b": true}]"#,
        ],
    )
    .await;
    let rows = backend
        .query(
            r#"SELECT CAST("id" AS VARCHAR), "n", CAST("f" AS VARCHAR), CAST("b" AS VARCHAR)
               FROM "c"."fresh" ORDER BY "id""#,
        )
        .await;
    assert_eq!(
        rows,
        [
            row(&[Some("1"), Some("y"), None, Some("true")]),
            row(&[Some("2"), Some("x"), Some("1"), None]),
            row(&[Some("3"), None, Some("2.5"), None]),
        ]
    );
}

/// Declared timestamps, dates and decimals through the path that appends
/// into a new table, with a key repeated in another spelling.
async fn declared_types_in_new_table(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let mut target = target("t", "fresh", &["at"]);
    for (field, field_type) in [
        ("at", FieldType::TimestampIso),
        ("day", FieldType::Date),
        ("amount", FieldType::Decimal),
        ("unix", FieldType::TimestampUnixMs),
    ] {
        target.declared_types.insert(field.into(), field_type);
    }
    sync(
        destination.as_mut(),
        &target,
        &[
            r#"[{"at": "2024-01-01T00:00:00Z", "day": "2024-02-29", "amount": "1.50", "unix": 1700000000123},
                {"at": "2024-01-02T00:00:00.5Z", "day": "0001-01-01", "amount": 2, "unix": "0"}]"#,
            r#"[{"at": "2024-01-01T02:00:00+02:00", "day": "9999-12-31", "amount": "-0.25", "unix": 1}]"#,
        ],
    )
    .await;
    let rows = backend
        .query(
            r#"SELECT CAST(CAST("at" AS TIMESTAMP) AS VARCHAR), CAST("day" AS VARCHAR),
                      CAST("amount" AS VARCHAR), CAST(CAST("unix" AS TIMESTAMP) AS VARCHAR)
               FROM "t"."fresh" ORDER BY "at""#,
        )
        .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0][1].as_deref(), Some("9999-12-31"), "{rows:?}");
    assert_eq!(numbers(&[rows[0][2].clone()]), strings(&["-0.25"]));
    assert_eq!(rows[1][1].as_deref(), Some("0001-01-01"), "{rows:?}");
}

/// Keys that the database finds equal though spelled apart (`0` and
/// `-0`, `0.0` and `-0.0`) in the first chunk and a later one.
async fn zero_keys_in_new_table(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let integers = target("z", "integers", &["id"]);
    sync(
        destination.as_mut(),
        &integers,
        &[
            r#"[{"id": 0, "v": 1}, {"id": -0, "v": 2}]"#,
            r#"[{"id": -0, "v": 3}, {"id": 5, "v": 4}]"#,
        ],
    )
    .await;
    let rows = backend
        .query(r#"SELECT CAST("id" AS VARCHAR), CAST("v" AS VARCHAR) FROM "z"."integers" ORDER BY "id""#)
        .await;
    assert_eq!(
        rows,
        [row(&[Some("0"), Some("3")]), row(&[Some("5"), Some("4")])]
    );

    let doubles = target("z", "doubles", &["id"]);
    sync(
        destination.as_mut(),
        &doubles,
        &[
            r#"[{"id": 0.0, "v": 1}, {"id": -0.0, "v": 2}, {"id": 1.5, "v": 3}]"#,
            r#"[{"id": -0.0, "v": 4}]"#,
        ],
    )
    .await;
    let rows = backend
        .query(r#"SELECT CAST("v" AS VARCHAR) FROM "z"."doubles" ORDER BY "v""#)
        .await;
    assert_eq!(rows, [row(&[Some("3")]), row(&[Some("4")])]);
}

async fn append_only_keeps_every_record(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("log", "events", &[]);
    let records = r#"[{"kind": "click", "n": 1}, {"kind": "click", "n": 1}]"#;
    sync(destination.as_mut(), &target, &[records, records]).await;
    assert_eq!(count_rows(backend, r#""log"."events""#).await, 4);
    let rows = backend
        .query(r#"SELECT DISTINCT "kind", CAST("n" AS VARCHAR) FROM "log"."events""#)
        .await;
    assert_eq!(rows, [row(&[Some("click"), Some("1")])]);
}

async fn new_field_adds_column(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("shop", "items", &["id"]);
    sync(
        destination.as_mut(),
        &target,
        &[r#"[{"id": 1, "name": "a"}]"#],
    )
    .await;
    sync(
        destination.as_mut(),
        &target,
        &[r#"[{"id": 2, "name": "b", "color": "red"}]"#],
    )
    .await;

    let mut expected = triples(
        backend,
        &[("id", "id", Sql::BigInt), ("name", "name", Sql::Text)],
    );
    expected.push(("color".into(), "color".into(), backend.sql_type(Sql::Text)));
    assert_eq!(columns(destination.as_mut(), &target).await, expected);

    let rows = backend
        .query(r#"SELECT CAST("id" AS VARCHAR), "color" FROM "shop"."items" ORDER BY "id""#)
        .await;
    assert_eq!(
        rows,
        [row(&[Some("1"), None]), row(&[Some("2"), Some("red")])]
    );
}

/// Writes each chunk in its own run into table `w.<table>` and returns
/// the type of column `v` and its values as text, in key order.
async fn widen(
    backend: &dyn Backend,
    table: &str,
    chunks: &[&str],
    declared: &[(&str, FieldType)],
) -> (String, Vec<Option<String>>) {
    let mut destination = backend.open().await;
    let mut target = target("w", table, &["id"]);
    for (field, field_type) in declared {
        target.declared_types.insert(field.to_string(), *field_type);
    }
    for records in chunks {
        sync(destination.as_mut(), &target, &[records]).await;
    }
    let infos = destination.columns(&target.table).await.unwrap();
    let value_type = infos
        .iter()
        .find(|info| info.field == "v")
        .unwrap()
        .sql_type
        .clone();
    let sql = format!(r#"SELECT CAST("v" AS VARCHAR) FROM "w"."{table}" ORDER BY "id""#);
    let rows = backend.query(&sql).await;
    (
        value_type,
        rows.into_iter().map(|mut row| row.remove(0)).collect(),
    )
}

async fn integer_widens_to_double(backend: &dyn Backend) {
    let (sql_type, values) = widen(
        backend,
        "t1",
        &[
            r#"[{"id": 1, "v": 1}, {"id": 2, "v": 9007199254740992}]"#,
            r#"[{"id": 3, "v": 2.5}]"#,
        ],
        &[],
    )
    .await;
    assert_eq!(sql_type, backend.sql_type(Sql::Double));
    assert_eq!(numbers(&values), strings(&["1", "9007199254740992", "2.5"]));
}

async fn integer_widens_to_decimal(backend: &dyn Backend) {
    // 2^53 + 1 has no double, so the column needs a decimal for it and 1.25.
    let (sql_type, values) = widen(
        backend,
        "t2",
        &[
            r#"[{"id": 1, "v": 1.25}]"#,
            r#"[{"id": 2, "v": 9007199254740993}]"#,
        ],
        &[],
    )
    .await;
    assert_eq!(sql_type, backend.sql_type(Sql::Decimal(2)));
    assert_eq!(numbers(&values), strings(&["1.25", "9007199254740993"]));

    let (sql_type, values) = widen(
        backend,
        "t3",
        &[r#"[{"id": 1, "v": 9007199254740993}, {"id": 2, "v": 0.5}]"#],
        &[],
    )
    .await;
    assert_eq!(sql_type, backend.sql_type(Sql::Decimal(1)));
    assert_eq!(numbers(&values), strings(&["9007199254740993", "0.5"]));
}

async fn integer_widens_to_hugeint(backend: &dyn Backend) {
    let (sql_type, values) = widen(
        backend,
        "t4",
        &[
            r#"[{"id": 1, "v": -9223372036854775808}]"#,
            r#"[{"id": 2, "v": 170141183460469231731687303715884105727}]"#,
        ],
        &[],
    )
    .await;
    assert_eq!(sql_type, backend.sql_type(Sql::HugeInt));
    assert_eq!(
        values,
        [
            text("-9223372036854775808"),
            text("170141183460469231731687303715884105727")
        ]
    );
}

async fn integer_beyond_128_bits_is_exact(backend: &dyn Backend) {
    let (_, values) = widen(
        backend,
        "t5",
        &[
            r#"[{"id": 1, "v": 1}]"#,
            r#"[{"id": 2, "v": 1701411834604692317316873037158841057280}]"#,
        ],
        &[],
    )
    .await;
    assert_eq!(
        values,
        [text("1"), text("1701411834604692317316873037158841057280")]
    );
}

async fn mixed_scalars_widen_to_text(backend: &dyn Backend) {
    let (sql_type, values) = widen(
        backend,
        "t6",
        &[
            r#"[{"id": 1, "v": 12}]"#,
            r#"[{"id": 2, "v": "twelve"}, {"id": 3, "v": true}]"#,
        ],
        &[],
    )
    .await;
    assert_eq!(sql_type, backend.sql_type(Sql::Text));
    assert_eq!(values, [text("12"), text("twelve"), text("true")]);
}

async fn scalars_widen_to_json(backend: &dyn Backend) {
    let (sql_type, values) = widen(
        backend,
        "t7",
        &[
            r#"[{"id": 1, "v": "x"}, {"id": 2, "v": 5}]"#,
            r#"[{"id": 3, "v": {"a": [1, 2]}}, {"id": 4, "v": 12345678901234567890123}]"#,
        ],
        &[],
    )
    .await;
    assert_eq!(sql_type, backend.sql_type(Sql::Json));
    let parsed: Vec<Value> = values
        .iter()
        .map(|value| serde_json::from_str(value.as_deref().unwrap()).unwrap())
        .collect();
    let big: Value = serde_json::from_str("12345678901234567890123").unwrap();
    assert_eq!(parsed, [json!("x"), json!("5"), json!({"a": [1, 2]}), big]);
}

async fn key_column_widens(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("w", "keys", &["id"]);
    sync(destination.as_mut(), &target, &[r#"[{"id": 1, "v": "a"}]"#]).await;
    sync(
        destination.as_mut(),
        &target,
        &[r#"[{"id": "x-2", "v": "b"}]"#],
    )
    .await;
    sync(
        destination.as_mut(),
        &target,
        &[r#"[{"id": "1", "v": "c"}]"#],
    )
    .await;

    let expected = triples(backend, &[("id", "id", Sql::Text), ("v", "v", Sql::Text)]);
    assert_eq!(columns(destination.as_mut(), &target).await, expected);
    let rows = backend
        .query(r#"SELECT "id", "v" FROM "w"."keys" ORDER BY "id""#)
        .await;
    assert_eq!(
        rows,
        [row(&[Some("1"), Some("c")]), row(&[Some("x-2"), Some("b")])]
    );
}

async fn declared_time_types(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let mut target = target("t", "times", &["id"]);
    for (field, field_type) in [
        ("iso", FieldType::TimestampIso),
        ("unix", FieldType::TimestampUnix),
        ("ms", FieldType::TimestampUnixMs),
        ("day", FieldType::Date),
    ] {
        target.declared_types.insert(field.into(), field_type);
    }
    sync(
        destination.as_mut(),
        &target,
        &[r#"[
            {"id": 1, "iso": "2024-03-01T14:30:00+02:00", "unix": 1700000000,
             "ms": 1700000000123, "day": "2024-02-29"},
            {"id": 2, "iso": "2024-03-01T12:30:00.5Z", "unix": "1700000000.25",
             "ms": "0", "day": null}
        ]"#],
    )
    .await;

    let expected = triples(
        backend,
        &[
            ("id", "id", Sql::BigInt),
            ("iso", "iso", Sql::Timestamp),
            ("unix", "unix", Sql::Timestamp),
            ("ms", "ms", Sql::Timestamp),
            ("day", "day", Sql::Date),
        ],
    );
    assert_eq!(columns(destination.as_mut(), &target).await, expected);
    let rows = backend
        .query(
            r#"SELECT CAST("iso" AS VARCHAR), CAST("unix" AS VARCHAR), CAST("ms" AS VARCHAR),
                      CAST("day" AS VARCHAR) FROM "t"."times" ORDER BY "id""#,
        )
        .await;
    assert_eq!(
        rows,
        [
            row(&[
                Some("2024-03-01 12:30:00+00"),
                Some("2023-11-14 22:13:20+00"),
                Some("2023-11-14 22:13:20.123+00"),
                Some("2024-02-29"),
            ]),
            row(&[
                Some("2024-03-01 12:30:00.5+00"),
                Some("2023-11-14 22:13:20.25+00"),
                Some("1970-01-01 00:00:00+00"),
                None,
            ]),
        ]
    );
}

async fn bad_timestamp_keeps_value_as_text(backend: &dyn Backend) {
    let (sql_type, values) = widen(
        backend,
        "t8",
        &[
            r#"[{"id": 1, "v": "2024-01-01T00:00:00Z"}]"#,
            r#"[{"id": 2, "v": "not a time"}]"#,
        ],
        &[("v", FieldType::TimestampIso)],
    )
    .await;
    assert_eq!(sql_type, backend.sql_type(Sql::Text));
    assert_eq!(values, [text("2024-01-01 00:00:00+00"), text("not a time")]);
}

async fn declared_decimal_and_string(backend: &dyn Backend) {
    let (sql_type, values) = widen(
        backend,
        "t9",
        &[r#"[{"id": 1, "v": "10.50"}, {"id": 2, "v": 3}, {"id": 3, "v": 1e-3}]"#],
        &[("v", FieldType::Decimal)],
    )
    .await;
    assert_eq!(sql_type, backend.sql_type(Sql::Decimal(3)));
    assert_eq!(numbers(&values), strings(&["10.5", "3", "0.001"]));

    let (sql_type, values) = widen(
        backend,
        "t10",
        &[r#"[{"id": 1, "v": 7}, {"id": 2, "v": {"a": 1}}]"#],
        &[("v", FieldType::String)],
    )
    .await;
    assert_eq!(sql_type, backend.sql_type(Sql::Text));
    assert_eq!(values, [text("7"), text(r#"{"a":1}"#)]);
}

async fn hostile_field_names(backend: &dyn Backend) {
    // Where quoted names ignore case, `amount` collides with `Amount`.
    let amount = if backend.names_fold_case() {
        "amount_cf38d95c"
    } else {
        "amount"
    };
    let mut destination = backend.open().await;
    let target = target("weird schema", "select", &["a b"]);
    sync(
        destination.as_mut(),
        &target,
        &[
            r#"[{"a b": 1, "select": "s", "x\"y": "q", "a.b": "d", "🦀": "crab",
               "Amount": 10, "amount": 20, "_ferry_synced_at": "mine"}]"#,
        ],
    )
    .await;

    let expected = triples(
        backend,
        &[
            ("a b", "a b", Sql::BigInt),
            ("select", "select", Sql::Text),
            ("x\"y", "x\"y", Sql::Text),
            ("a.b", "a.b", Sql::Text),
            ("🦀", "🦀", Sql::Text),
            ("Amount", "Amount", Sql::BigInt),
            ("amount", amount, Sql::BigInt),
            ("_ferry_synced_at", "_ferry_synced_at_9f64812d", Sql::Text),
        ],
    );
    // Metadata columns come right after the first chunk's fields.
    let mut expected_order = expected[..8].to_vec();
    expected_order.extend(expected[8..].iter().cloned());
    assert_eq!(columns(destination.as_mut(), &target).await, expected_order);

    let sql = format!(
        r#"SELECT CAST("a b" AS VARCHAR), "select", "x""y", "a.b", "🦀",
                  CAST("Amount" AS VARCHAR), CAST("{amount}" AS VARCHAR),
                  "_ferry_synced_at_9f64812d"
           FROM "weird schema"."select""#
    );
    let rows = backend.query(&sql).await;
    assert_eq!(
        rows,
        [row(&[
            Some("1"),
            Some("s"),
            Some("q"),
            Some("d"),
            Some("crab"),
            Some("10"),
            Some("20"),
            Some("mine")
        ])]
    );

    let recorded = tracked(backend, "weird schema", "select").await;
    assert_eq!(recorded.len(), 8);
    assert_eq!(recorded["amount"].0, amount);
    assert_eq!(recorded["Amount"].0, "Amount");
    assert_eq!(recorded["_ferry_synced_at"].0, "_ferry_synced_at_9f64812d");
    assert_eq!(recorded["x\"y"].0, "x\"y");
}

async fn unicode_values(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("u", "texts", &["id"]);
    let values = [
        "日本語のテキスト",
        "emoji 🦀👩‍👩‍👧",
        "e\u{301} combining",
        "שלום RTL",
        "quote ' and \" and \\",
        "line\nbreak\ttab",
    ];
    let records: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(id, value)| json!({"id": id, "v": value, "nested": {"v": value}}))
        .collect();
    let records_json = serde_json::to_string(&records).unwrap();
    sync(destination.as_mut(), &target, &[&records_json]).await;

    let rows = backend
        .query(r#"SELECT "v", CAST("nested" AS VARCHAR) FROM "u"."texts" ORDER BY "id""#)
        .await;
    for (row, value) in rows.iter().zip(values) {
        assert_eq!(row[0].as_deref(), Some(value));
        let nested: Value = serde_json::from_str(row[1].as_deref().unwrap()).unwrap();
        assert_eq!(nested, json!({ "v": value }));
    }
    assert_eq!(rows.len(), values.len());
}

// ---------------------------------------------------------------------------
// State and atomicity

async fn state_commits_with_chunk(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("s", "items", &["id"]);
    assert_eq!(destination.read_state("flow", "items").await.unwrap(), None);

    destination
        .begin_run(&target, &run("r1", &target, Utc::now()))
        .await
        .unwrap();
    let state = json!({"cursor": "2024-01-01T00:00:00Z", "big": 12345678901234567890_u64});
    let chunk = chunk(r#"[{"id": 1}]"#, state.clone());
    destination.write_chunk(&target, "r1", chunk).await.unwrap();
    assert_eq!(
        destination.read_state("flow", "items").await.unwrap(),
        Some(state.clone())
    );

    let listed = destination.list_state(Some("flow")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].entity, "items");
    assert_eq!(listed[0].state, state);
    assert!(
        destination
            .list_state(Some("other"))
            .await
            .unwrap()
            .is_empty()
    );

    let manual = json!({"cursor": "2020-01-01"});
    destination
        .write_state("flow", "items", Some(&manual))
        .await
        .unwrap();
    assert_eq!(
        destination.read_state("flow", "items").await.unwrap(),
        Some(manual)
    );
    destination
        .write_state("flow", "items", None)
        .await
        .unwrap();
    assert_eq!(destination.read_state("flow", "items").await.unwrap(), None);
}

async fn failing_chunk_leaves_nothing(backend: &dyn Backend) {
    // The table exists with a CHECK constraint, so the failure comes from
    // the row statement itself, after columns were added in the same
    // transaction.
    backend
        .execute(
            r#"CREATE SCHEMA "f";
               CREATE TABLE "f"."items" (
                   "id" BIGINT PRIMARY KEY CHECK ("id" < 100),
                   "_ferry_synced_at" TIMESTAMP WITH TIME ZONE NOT NULL,
                   "_ferry_deleted_at" TIMESTAMP WITH TIME ZONE)"#,
        )
        .await;
    let mut destination = backend.open().await;
    let target = target("f", "items", &["id"]);
    destination
        .begin_run(&target, &run("r1", &target, Utc::now()))
        .await
        .unwrap();
    let first = chunk(r#"[{"id": 1}]"#, json!({"page": 1}));
    destination.write_chunk(&target, "r1", first).await.unwrap();

    let failing = chunk(
        r#"[{"id": 2, "name": "new"}, {"id": 200, "name": "bad"}]"#,
        json!({"page": 2}),
    );
    let error = destination
        .write_chunk(&target, "r1", failing)
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, DestinationError::Write(_)), "{error:?}");
    assert!(message.contains("upsert failed for f.items"), "{message}");
    assert!(message.contains("rolled back"), "{message}");

    let rows = backend
        .query(r#"SELECT CAST("id" AS VARCHAR) FROM "f"."items""#)
        .await;
    assert_eq!(rows, [row(&[Some("1")])]);
    let names: Vec<String> = columns(destination.as_mut(), &target)
        .await
        .into_iter()
        .map(|c| c.1)
        .collect();
    assert_eq!(
        names,
        ["id", "_ferry_synced_at", "_ferry_deleted_at"],
        "the added column was rolled back"
    );
    assert_eq!(
        destination.read_state("flow", "items").await.unwrap(),
        Some(json!({"page": 1}))
    );
    let runs = destination.list_runs(Some("flow"), 10).await.unwrap();
    assert_eq!(runs[0].records, 1);

    // The destination stays usable after the rollback.
    let retry = chunk(r#"[{"id": 2, "name": "new"}]"#, json!({"page": 2}));
    destination.write_chunk(&target, "r1", retry).await.unwrap();
    assert_eq!(count_rows(backend, r#""f"."items""#).await, 2);
}

async fn missing_key_is_rejected(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("s", "items", &["id"]);
    destination
        .begin_run(&target, &run("r1", &target, Utc::now()))
        .await
        .unwrap();
    let bad = chunk(
        r#"[{"id": 1}, {"name": "secret-value"}]"#,
        json!({"page": 1}),
    );
    let message = destination
        .write_chunk(&target, "r1", bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("record 1 of the chunk for s.items"),
        "{message}"
    );
    assert!(message.contains("\"id\""), "{message}");
    assert!(
        !message.contains("secret-value"),
        "values stay out of messages: {message}"
    );
    assert!(!table_exists(backend, "s", "items").await);
    assert_eq!(destination.read_state("flow", "items").await.unwrap(), None);
}

// ---------------------------------------------------------------------------
// Full refresh and deletions

async fn full_refresh_swaps_staging(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let plain = target("fr", "items", &["id"]);
    sync(
        destination.as_mut(),
        &plain,
        &[r#"[{"id": 1, "old": true}, {"id": 2, "old": true}, {"id": 3, "old": true}]"#],
    )
    .await;

    let mut full = plain.clone();
    full.full_refresh = true;
    destination
        .begin_run(&full, &run("r2", &full, Utc::now()))
        .await
        .unwrap();
    let chunk = chunk(
        r#"[{"id": 2, "name": "b"}, {"id": 3, "name": "c"}]"#,
        json!({}),
    );
    destination.write_chunk(&full, "r2", chunk).await.unwrap();

    assert_eq!(
        count_rows(backend, r#""fr"."items""#).await,
        3,
        "the table is untouched until the swap"
    );
    assert_eq!(
        count_rows(backend, r#""fr"."items__ferry_staging""#).await,
        2
    );

    destination
        .finish_run(&full, "r2", succeeded(2, json!({"done": 1})))
        .await
        .unwrap();
    assert!(!table_exists(backend, "fr", "items__ferry_staging").await);
    let rows = backend
        .query(r#"SELECT CAST("id" AS VARCHAR), "name" FROM "fr"."items" ORDER BY "id""#)
        .await;
    assert_eq!(
        rows,
        [row(&[Some("2"), Some("b")]), row(&[Some("3"), Some("c")])]
    );
    let expected = triples(
        backend,
        &[("id", "id", Sql::BigInt), ("name", "name", Sql::Text)],
    );
    assert_eq!(columns(destination.as_mut(), &plain).await, expected);
    let recorded = tracked(backend, "fr", "items").await;
    assert_eq!(recorded.keys().collect::<Vec<_>>(), ["id", "name"]);
    assert!(
        tracked(backend, "fr", "items__ferry_staging")
            .await
            .is_empty()
    );
    assert_eq!(
        destination.read_state("flow", "items").await.unwrap(),
        Some(json!({"done": 1}))
    );
}

async fn full_refresh_resume_keeps_staging(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let mut full = target("fr", "items", &["id"]);
    full.full_refresh = true;
    destination
        .begin_run(&full, &run("r1", &full, Utc::now()))
        .await
        .unwrap();
    destination
        .write_chunk(&full, "r1", chunk(r#"[{"id": 1}]"#, json!({"page": 2})))
        .await
        .unwrap();
    let failed = RunOutcome {
        status: RunStatus::Failed,
        records: 1,
        error: Some("HTTP 503".into()),
        state: json!({"page": 2}),
        mark_unseen_before: None,
    };
    destination.finish_run(&full, "r1", failed).await.unwrap();
    assert!(
        !table_exists(backend, "fr", "items").await,
        "a failed full refresh swaps nothing"
    );
    assert_eq!(
        count_rows(backend, r#""fr"."items__ferry_staging""#).await,
        1
    );

    let mut resumed = full.clone();
    resumed.resuming = true;
    destination
        .begin_run(&resumed, &run("r2", &resumed, Utc::now()))
        .await
        .unwrap();
    destination
        .write_chunk(&resumed, "r2", chunk(r#"[{"id": 2}]"#, json!({})))
        .await
        .unwrap();
    destination
        .finish_run(&resumed, "r2", succeeded(1, json!({})))
        .await
        .unwrap();
    let rows = backend
        .query(r#"SELECT CAST("id" AS VARCHAR) FROM "fr"."items" ORDER BY "id""#)
        .await;
    assert_eq!(rows, [row(&[Some("1")]), row(&[Some("2")])]);

    // A fresh (not resuming) full refresh starts its staging table again.
    destination
        .begin_run(&full, &run("r3", &full, Utc::now()))
        .await
        .unwrap();
    destination
        .write_chunk(&full, "r3", chunk(r#"[{"id": 9}]"#, json!({})))
        .await
        .unwrap();
    destination
        .begin_run(&full, &run("r4", &full, Utc::now()))
        .await
        .unwrap();
    assert!(!table_exists(backend, "fr", "items__ferry_staging").await);
}

async fn full_refresh_without_rows_empties_table(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let plain = target("fr", "items", &["id"]);
    sync(destination.as_mut(), &plain, &[r#"[{"id": 1}]"#]).await;
    let mut full = plain.clone();
    full.full_refresh = true;
    sync(destination.as_mut(), &full, &[]).await;
    assert_eq!(count_rows(backend, r#""fr"."items""#).await, 0);
}

async fn mark_unseen_rows_deleted(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("m", "items", &["id"]);
    sync(
        destination.as_mut(),
        &target,
        &[r#"[{"id": 1}, {"id": 2}]"#],
    )
    .await;

    let started = Utc::now();
    destination
        .begin_run(&target, &run("r2", &target, started))
        .await
        .unwrap();
    destination
        .write_chunk(&target, "r2", chunk(r#"[{"id": 2}]"#, json!({})))
        .await
        .unwrap();
    let outcome = RunOutcome {
        mark_unseen_before: Some(started),
        ..succeeded(1, json!({}))
    };
    destination
        .finish_run(&target, "r2", outcome)
        .await
        .unwrap();

    let rows = backend
        .query(
            r#"SELECT CAST("id" AS VARCHAR), CAST("_ferry_deleted_at" IS NOT NULL AS VARCHAR)
               FROM "m"."items" ORDER BY "id""#,
        )
        .await;
    assert_eq!(
        rows,
        [
            row(&[Some("1"), Some("true")]),
            row(&[Some("2"), Some("false")])
        ]
    );
}

async fn deletions_mark_rows(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("d", "items", &["id"]);
    sync(
        destination.as_mut(),
        &target,
        &[r#"[{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]"#],
    )
    .await;

    destination
        .begin_run(&target, &run("r2", &target, Utc::now()))
        .await
        .unwrap();
    let deleting = Chunk {
        records: Vec::new(),
        deletions: records(r#"[{"id": 1, "name": "ignored"}, {"id": 3}, {"id": 3}]"#),
        state: json!({}),
    };
    destination
        .write_chunk(&target, "r2", deleting)
        .await
        .unwrap();
    let rows = backend
        .query(
            r#"SELECT CAST("id" AS VARCHAR), "name", CAST("_ferry_deleted_at" IS NOT NULL AS VARCHAR)
               FROM "d"."items" ORDER BY "id""#,
        )
        .await;
    assert_eq!(
        rows,
        [
            row(&[Some("1"), Some("a"), Some("true")]),
            row(&[Some("2"), Some("b"), Some("false")]),
            row(&[Some("3"), None, Some("true")]),
        ]
    );

    destination
        .write_chunk(
            &target,
            "r2",
            chunk(r#"[{"id": 1, "name": "back"}]"#, json!({})),
        )
        .await
        .unwrap();
    let rows = backend
        .query(r#"SELECT "name", CAST("_ferry_deleted_at" IS NULL AS VARCHAR) FROM "d"."items" WHERE "id" = 1"#)
        .await;
    assert_eq!(
        rows,
        [row(&[Some("back"), Some("true")])],
        "an upsert clears the deletion mark"
    );
}

async fn runs_are_recorded(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let target = target("r", "items", &["id"]);
    let start = Utc::now() - Duration::seconds(10);
    destination
        .begin_run(&target, &run("r1", &target, start))
        .await
        .unwrap();
    destination
        .write_chunk(&target, "r1", chunk(r#"[{"id": 1}, {"id": 2}]"#, json!({})))
        .await
        .unwrap();

    destination
        .begin_run(&target, &run("r2", &target, start + Duration::seconds(1)))
        .await
        .unwrap();
    destination
        .write_chunk(&target, "r2", chunk(r#"[{"id": 3}]"#, json!({})))
        .await
        .unwrap();
    destination
        .write_chunk(&target, "r2", chunk(r#"[{"id": 4}]"#, json!({})))
        .await
        .unwrap();
    let runs = destination.list_runs(Some("flow"), 10).await.unwrap();
    let summary: Vec<(&str, &str, u64)> = runs
        .iter()
        .map(|run| (run.run_id.as_str(), run.status.as_str(), run.records))
        .collect();
    assert_eq!(summary, [("r2", "running", 2), ("r1", "interrupted", 2)]);

    let failed = RunOutcome {
        status: RunStatus::Failed,
        records: 2,
        error: Some("pagination loop".into()),
        state: json!({}),
        mark_unseen_before: None,
    };
    destination.finish_run(&target, "r2", failed).await.unwrap();
    let runs = destination.list_runs(None, 1).await.unwrap();
    assert_eq!(runs.len(), 1);
    let last = &runs[0];
    assert_eq!(last.run_id, "r2");
    assert_eq!(last.status, "failed");
    assert_eq!(last.error.as_deref(), Some("pagination loop"));
    assert_eq!(
        last.started_at.timestamp_micros(),
        (start + Duration::seconds(1)).timestamp_micros()
    );
    assert!(
        last.finished_at
            .is_some_and(|finished| finished >= last.started_at)
    );
    assert!(
        destination
            .list_runs(Some("other"), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn second_destination_sees_writes(backend: &dyn Backend) {
    let mut first = backend.open().await;
    let mut second = backend.open().await;
    let target = target("two", "items", &["id"]);
    sync(first.as_mut(), &target, &[r#"[{"id": 1}]"#]).await;
    sync(second.as_mut(), &target, &[r#"[{"id": 2}]"#]).await;
    drop(first);
    let state = second.read_state("flow", "items").await.unwrap();
    assert_eq!(state, Some(json!({"done": true})));
    assert_eq!(count_rows(backend, r#""two"."items""#).await, 2);
}

async fn entities_write_concurrently(backend: &dyn Backend) {
    // Two entities of one flow, each with its own destination value, create
    // tables in one new schema and commit chunks at the same time.
    let mut handles = Vec::new();
    for entity in ["customers", "invoices", "charges"] {
        let mut destination = backend.open().await;
        let target = target("conc", entity, &["id"]);
        handles.push(async move {
            for round in 0..5 {
                let records = format!(r#"[{{"id": {round}, "round{round}": {round}}}]"#);
                sync(destination.as_mut(), &target, &[&records]).await;
            }
        });
    }
    futures::future::join_all(handles).await;

    for entity in ["customers", "invoices", "charges"] {
        assert_eq!(
            count_rows(backend, &format!(r#""conc"."{entity}""#)).await,
            5
        );
    }
}

// ---------------------------------------------------------------------------
// DuckDB files

#[tokio::test]
async fn duckdb_file_reopens_after_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("reopen.duckdb")
        .to_string_lossy()
        .into_owned();
    let target = target("s", "items", &["id"]);
    {
        let mut destination = DuckDbDestination::open(&path).unwrap();
        sync(&mut destination, &target, &[r#"[{"id": 1}]"#]).await;
    }
    let mut reopened = DuckDbDestination::open(&path).unwrap();
    let state = reopened.read_state("flow", "items").await.unwrap();
    assert_eq!(state, Some(json!({"done": true})));
    let connection = reopened.connection().unwrap();
    let count: i64 = connection
        .query_row(r#"SELECT count(*) FROM "s"."items""#, [], |row| row.get(0))
        .unwrap();
    assert_eq!(count, 1);
}

#[tokio::test]
async fn duckdb_schema_named_like_file() {
    // DuckDB names the catalog after the file, so "stripe"."charges" would
    // be ambiguous in stripe.duckdb without the catalog in front.
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("stripe.duckdb")
        .to_string_lossy()
        .into_owned();
    let mut destination = DuckDbDestination::open(&path).unwrap();
    let mut full = target("stripe", "charges", &["id"]);
    sync(&mut destination, &full, &[r#"[{"id": 1, "n": 1}]"#]).await;
    sync(&mut destination, &full, &[r#"[{"id": "x", "n": 2.5}]"#]).await;
    full.full_refresh = true;
    sync(&mut destination, &full, &[r#"[{"id": "y"}]"#]).await;

    let connection = destination.connection().unwrap();
    let id: String = connection
        .query_row(
            r#"SELECT "id" FROM "stripe"."stripe"."charges""#,
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(id, "y");
}

#[tokio::test]
async fn duckdb_keeps_nul_in_strings() {
    // DuckDB stores NUL inside VARCHAR and JSON (PostgreSQL does not).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nul.duckdb").to_string_lossy().into_owned();
    let mut destination = DuckDbDestination::open(&path).unwrap();
    let target = target("s", "items", &["id"]);
    sync(
        &mut destination,
        &target,
        &[r#"[{"id": 1, "v": "a\u0000b", "j": {"k": "\u0000"}}]"#],
    )
    .await;

    let connection = destination.connection().unwrap();
    let (text, json_text): (String, String) = connection
        .query_row(
            r#"SELECT "v", CAST("j" AS VARCHAR) FROM "s"."items""#,
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!(text, "a\0b");
    let parsed: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(parsed, json!({"k": "\u{0}"}));
}

#[tokio::test]
async fn duckdb_missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let path = missing.join("x.duckdb").to_string_lossy().into_owned();
    let error = DuckDbDestination::open(&path).err().unwrap();
    assert!(matches!(error, DestinationError::Connect(_)), "{error:?}");
    assert!(
        error.to_string().contains(&*missing.to_string_lossy()),
        "{error}"
    );
    assert!(!missing.exists());
}

/// Holds a DuckDB file open for `duckdb_file_locked_by_other_process`,
/// which runs this test binary again with `FERRY_TEST_HOLD_DUCKDB` set.
#[test]
#[ignore = "helper process for duckdb_file_locked_by_other_process"]
fn hold_duckdb_file() {
    use std::io::{BufRead, Write};
    let Ok(path) = std::env::var("FERRY_TEST_HOLD_DUCKDB") else {
        return;
    };
    let _destination = DuckDbDestination::open(&path).unwrap();
    println!("holding");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).unwrap();
}

#[tokio::test]
async fn duckdb_file_locked_by_other_process() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("locked.duckdb")
        .to_string_lossy()
        .into_owned();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "destination::hold_duckdb_file",
            "--ignored",
            "--nocapture",
        ])
        .env("FERRY_TEST_HOLD_DUCKDB", &path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = lines.find(|line| line.as_ref().is_ok_and(|line| line.contains("holding")));
    assert!(ready.is_some(), "the helper process did not open the file");

    let error = DuckDbDestination::open(&path).err().unwrap();
    drop(child.stdin.take());
    child.wait().unwrap();
    assert!(matches!(error, DestinationError::Locked(_)), "{error:?}");
    assert!(error.to_string().contains("lock"), "{error}");
}

/// Upsert throughput on 100,000 records of 20 fields, in chunks of 5,000,
/// twice (inserts, then updates). Run with
/// `cargo test --test it -- --ignored --nocapture duckdb_bulk_throughput`.
#[tokio::test]
#[ignore = "benchmark; prints records per second"]
async fn duckdb_bulk_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("throughput.duckdb")
        .to_string_lossy()
        .into_owned();
    let mut destination = DuckDbDestination::open(&path).unwrap();
    let target = target("bench", "charges", &["id"]);
    let total = 100_000;
    let chunk_size = 5_000;

    for pass in ["insert", "update"] {
        destination
            .begin_run(&target, &run(pass, &target, Utc::now()))
            .await
            .unwrap();
        // Records are built before the clock starts, so only writing is timed.
        let chunks: Vec<Chunk> = (0..total)
            .step_by(chunk_size)
            .map(|first| Chunk {
                records: (first..first + chunk_size).map(bench_record).collect(),
                deletions: Vec::new(),
                state: json!({ "offset": first }),
            })
            .collect();
        let started = Instant::now();
        for chunk in chunks {
            destination.write_chunk(&target, pass, chunk).await.unwrap();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{pass}: {total} records in {seconds:.2} s, {:.0} records/s",
            total as f64 / seconds
        );
    }
    let connection = destination.connection().unwrap();
    let count: i64 = connection
        .query_row(r#"SELECT count(*) FROM "bench"."charges""#, [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(count, total as i64);
}

pub fn bench_record(index: usize) -> Record {
    let value = json!({
        "id": format!("ch_{index:08}"),
        "object": "charge",
        "amount": index * 100,
        "amount_captured": index * 100,
        "amount_refunded": 0,
        "application_fee_amount": null,
        "balance_transaction": format!("txn_{index:08}"),
        "captured": true,
        "created": 1_700_000_000 + index,
        "currency": "usd",
        "customer": format!("cus_{:06}", index % 5000),
        "description": "Subscription update",
        "disputed": false,
        "livemode": false,
        "paid": true,
        "receipt_url": format!("https://pay.example/receipts/{index}"),
        "refunded": false,
        "status": "succeeded",
        "metadata": {"order": index, "source": "bench"},
        "billing_details": {"address": {"country": "US", "postal_code": "94107"}, "name": null}
    });
    value.as_object().unwrap().clone()
}

/// Runs in a child process, because DuckDB's memory limit is read once per
/// process: fills a keyed table until its index outgrows an 8 MB limit,
/// then prints the error of a chunk written through ferry.
#[tokio::test]
#[ignore = "helper process for duckdb_memory_limit_error_names_setting"]
async fn fill_duckdb_memory() {
    let Ok(path) = std::env::var("FERRY_TEST_FILL_DUCKDB") else {
        return;
    };
    let mut destination = DuckDbDestination::open(&path).unwrap();
    let target = target("m", "items", &["id"]);
    sync(&mut destination, &target, &[r#"[{"id": "first"}]"#]).await;
    let connection = destination.connection().unwrap();
    for start in (0..2_000_000).step_by(5_000) {
        let sql = format!(
            r#"INSERT INTO "m"."items" SELECT 'cus_' || md5(CAST(i AS VARCHAR)), now(), NULL
               FROM range({start}, {}) r(i)"#,
            start + 5_000
        );
        if connection.execute_batch(&sql).is_err() {
            break;
        }
    }
    let begun = destination
        .begin_run(&target, &run("r2", &target, Utc::now()))
        .await;
    let written = match begun {
        Ok(()) => {
            let next = chunk(r#"[{"id": "next"}]"#, json!({}));
            destination.write_chunk(&target, "r2", next).await
        }
        Err(error) => Err(error),
    };
    println!("written: {written:?}");
}

#[tokio::test]
async fn duckdb_memory_limit_error_names_setting() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("full.duckdb")
        .to_string_lossy()
        .into_owned();
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "destination::fill_duckdb_memory",
            "--ignored",
            "--nocapture",
        ])
        .env("FERRY_TEST_FILL_DUCKDB", &path)
        .env("FERRY_DUCKDB_MEMORY_LIMIT", "8MB")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let written = stdout
        .lines()
        .find(|line| line.starts_with("written: "))
        .unwrap_or_else(|| panic!("the helper printed no result: {stdout}"));
    assert!(written.contains("Err("), "{written}");
    assert!(
        written.contains("FERRY_DUCKDB_MEMORY_LIMIT"),
        "the error names the setting to raise: {written}"
    );
}
