//! `Destination::read_rows`, the parent rows of child entities, as
//! contract tests any backend must pass: (`_ferry_synced_at`, key) order,
//! positions, deleted rows, and values read back exactly.

use chrono::Utc;
use ferry::destination::{
    Chunk, Destination, EntityTarget, RowPosition, RowQuery, RunOutcome, RunRecord, RunStatus,
    StoredRow, TableRef,
};
use ferry::engine::Record;
use indexmap::IndexMap;
use serde_json::{Value, json};

use crate::destination::Backend;

macro_rules! row_contract_tests {
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

/// Instantiates every row test for one backend, so each backend runs the
/// same list.
macro_rules! every_row_contract_test {
    ($module:ident, $backend:expr) => {
        row_contract_tests!(
            $module,
            $backend,
            [
                rows_come_in_synced_then_key_order,
                rewritten_row_moves_to_the_end,
                rows_after_a_position,
                deleted_rows_are_left_out,
                values_read_back_exactly,
                composite_keys_compare_per_column,
                missing_table_has_no_rows,
                unknown_field_is_an_error,
            ]
        );
    };
}

every_row_contract_test!(duckdb, Some(crate::destination::DuckDbBackend::new()));
every_row_contract_test!(postgres, crate::destination::PostgresBackend::start().await);

fn target(table: &str, primary_key: &[&str]) -> EntityTarget {
    EntityTarget {
        flow: "flow".into(),
        entity: table.into(),
        table: TableRef {
            schema: "api".into(),
            table: table.into(),
        },
        primary_key: primary_key.iter().map(|field| field.to_string()).collect(),
        declared_types: IndexMap::new(),
        full_refresh: false,
        resuming: false,
    }
}

fn records(values: Value) -> Vec<Record> {
    let Value::Array(items) = values else {
        panic!("records must be a JSON array");
    };
    items
        .into_iter()
        .map(|item| match item {
            Value::Object(record) => record,
            other => panic!("record {other} is not an object"),
        })
        .collect()
}

/// Writes one run of one chunk: `upserts`, then `deletions` marked deleted.
async fn write(
    destination: &mut dyn Destination,
    target: &EntityTarget,
    upserts: Value,
    deletions: Value,
) {
    let run_id = uuid::Uuid::new_v4().to_string();
    let run = RunRecord {
        run_id: run_id.clone(),
        flow: target.flow.clone(),
        entity: target.entity.clone(),
        started_at: Utc::now(),
        finished_at: None,
        status: "running".into(),
        records: 0,
        error: None,
    };
    destination.begin_run(target, &run).await.unwrap();
    let chunk = Chunk {
        records: records(upserts),
        deletions: records(deletions),
        state: json!({}),
    };
    destination
        .write_chunk(target, &run_id, chunk)
        .await
        .unwrap();
    let outcome = RunOutcome {
        status: RunStatus::Succeeded,
        records: 0,
        error: None,
        state: json!({}),
        mark_unseen_before: None,
    };
    destination
        .finish_run(target, &run_id, outcome)
        .await
        .unwrap();
    // Later writes get a later `_ferry_synced_at`, even on a fast clock.
    tokio::time::sleep(std::time::Duration::from_millis(2)).await;
}

fn query(table: &str, key: &[&str], fields: Option<&[&str]>) -> RowQuery {
    RowQuery {
        table: TableRef {
            schema: "api".into(),
            table: table.into(),
        },
        key: key.iter().map(|field| field.to_string()).collect(),
        fields: fields.map(|fields| fields.iter().map(|field| field.to_string()).collect()),
        after: None,
        limit: 100,
    }
}

fn keys(rows: &[StoredRow]) -> Vec<Vec<Value>> {
    rows.iter().map(|row| row.key.clone()).collect()
}

fn position(row: &StoredRow) -> RowPosition {
    RowPosition {
        synced_at: row.synced_at,
        key: row.key.clone(),
    }
}

async fn rows_come_in_synced_then_key_order(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let issues = target("issues", &["id"]);
    write(
        destination.as_mut(),
        &issues,
        json!([{"id": 3, "title": "c"}, {"id": 1, "title": "a"}, {"id": 2, "title": "b"}]),
        json!([]),
    )
    .await;
    write(
        destination.as_mut(),
        &issues,
        json!([{"id": 0, "title": "z"}]),
        json!([]),
    )
    .await;

    let rows = destination
        .read_rows(&query("issues", &["id"], Some(&["title"])))
        .await
        .unwrap();

    assert_eq!(
        keys(&rows),
        vec![
            vec![json!(1)],
            vec![json!(2)],
            vec![json!(3)],
            vec![json!(0)]
        ]
    );
    assert_eq!(rows[0].fields, records(json!([{"title": "a"}]))[0]);
    assert_eq!(rows[0].synced_at, rows[2].synced_at);
    assert!(rows[3].synced_at > rows[2].synced_at);
}

async fn rewritten_row_moves_to_the_end(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let issues = target("issues", &["id"]);
    write(
        destination.as_mut(),
        &issues,
        json!([{"id": 1, "title": "a"}, {"id": 2, "title": "b"}, {"id": 3, "title": "c"}]),
        json!([]),
    )
    .await;
    write(
        destination.as_mut(),
        &issues,
        json!([{"id": 1, "title": "a again"}]),
        json!([]),
    )
    .await;

    let rows = destination
        .read_rows(&query("issues", &["id"], Some(&["title"])))
        .await
        .unwrap();

    assert_eq!(
        keys(&rows),
        vec![vec![json!(2)], vec![json!(3)], vec![json!(1)]]
    );
    assert_eq!(rows[2].fields["title"], json!("a again"));
}

async fn rows_after_a_position(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let issues = target("issues", &["id"]);
    write(
        destination.as_mut(),
        &issues,
        json!([{"id": 1}, {"id": 2}, {"id": 3}]),
        json!([]),
    )
    .await;
    write(destination.as_mut(), &issues, json!([{"id": 0}]), json!([])).await;
    let all = destination
        .read_rows(&query("issues", &["id"], Some(&[])))
        .await
        .unwrap();

    let mut after_first = query("issues", &["id"], Some(&[]));
    after_first.after = Some(position(&all[0]));
    let rows = destination.read_rows(&after_first).await.unwrap();
    assert_eq!(
        keys(&rows),
        vec![vec![json!(2)], vec![json!(3)], vec![json!(0)]]
    );
    assert!(rows[0].fields.is_empty());

    let mut one = after_first.clone();
    one.limit = 1;
    let rows = destination.read_rows(&one).await.unwrap();
    assert_eq!(keys(&rows), vec![vec![json!(2)]]);

    let mut after_last_of_chunk = query("issues", &["id"], Some(&[]));
    after_last_of_chunk.after = Some(position(&all[2]));
    let rows = destination.read_rows(&after_last_of_chunk).await.unwrap();
    assert_eq!(keys(&rows), vec![vec![json!(0)]]);

    let mut after_everything = query("issues", &["id"], Some(&[]));
    after_everything.after = Some(position(&all[3]));
    let rows = destination.read_rows(&after_everything).await.unwrap();
    assert!(rows.is_empty());
}

async fn deleted_rows_are_left_out(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let issues = target("issues", &["id"]);
    write(
        destination.as_mut(),
        &issues,
        json!([{"id": 1}, {"id": 2}, {"id": 3}]),
        json!([]),
    )
    .await;
    write(destination.as_mut(), &issues, json!([]), json!([{"id": 2}])).await;

    let rows = destination
        .read_rows(&query("issues", &["id"], Some(&[])))
        .await
        .unwrap();

    assert_eq!(keys(&rows), vec![vec![json!(1)], vec![json!(3)]]);
}

async fn values_read_back_exactly(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let invoices = target("invoices", &["id"]);
    let written = json!({
        "id": "in_1",
        "lines": {"object": "list", "data": [{"id": "il_1", "amount": 1000}], "has_more": true},
        "tags": ["a", "b"],
        "big": 123456789012345678901234567890_u128,
        "ratio": 0.5,
        "paid": true,
        "memo": null
    });
    // A field that is only ever null gets no column, so another record
    // gives `memo` one. The NULL cell of the first then reads as null.
    let other = json!({"id": "in_2", "memo": "paid by check"});
    write(
        destination.as_mut(),
        &invoices,
        Value::Array(vec![written.clone(), other]),
        json!([]),
    )
    .await;

    let rows = destination
        .read_rows(&query("invoices", &["id"], None))
        .await
        .unwrap();

    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].key, vec![json!("in_1")]);
    assert_eq!(Value::Object(rows[0].fields.clone()), written);
    assert_eq!(rows[1].fields["memo"], json!("paid by check"));
    assert_eq!(rows[1].fields["lines"], Value::Null);
}

async fn composite_keys_compare_per_column(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let issues = target("repo_issues", &["repo", "number"]);
    write(
        destination.as_mut(),
        &issues,
        json!([
            {"repo": "b", "number": 1},
            {"repo": "a", "number": 10},
            {"repo": "a", "number": 9},
            {"repo": "a", "number": 100}
        ]),
        json!([]),
    )
    .await;
    let all = destination
        .read_rows(&query("repo_issues", &["repo", "number"], Some(&[])))
        .await
        .unwrap();
    assert_eq!(
        keys(&all),
        vec![
            vec![json!("a"), json!(9)],
            vec![json!("a"), json!(10)],
            vec![json!("a"), json!(100)],
            vec![json!("b"), json!(1)],
        ]
    );

    let mut after = query("repo_issues", &["repo", "number"], Some(&[]));
    after.after = Some(position(&all[1]));
    let rows = destination.read_rows(&after).await.unwrap();
    assert_eq!(
        keys(&rows),
        vec![vec![json!("a"), json!(100)], vec![json!("b"), json!(1)]]
    );
}

async fn missing_table_has_no_rows(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let rows = destination
        .read_rows(&query("never_synced", &["id"], Some(&["title"])))
        .await
        .unwrap();
    assert!(rows.is_empty());
}

async fn unknown_field_is_an_error(backend: &dyn Backend) {
    let mut destination = backend.open().await;
    let issues = target("issues", &["id"]);
    write(
        destination.as_mut(),
        &issues,
        json!([{"id": 1, "title": "a"}]),
        json!([]),
    )
    .await;

    let error = destination
        .read_rows(&query("issues", &["id"], Some(&["titel"])))
        .await
        .unwrap_err()
        .to_string();

    assert!(
        error.contains("table api.issues has no column for field \"titel\"; its fields: id, title"),
        "{error}"
    );
}
