//! Records out of responses: paths, column rows, BigQuery rows, field
//! rules and primary key checks.

use std::sync::Arc;

use ferry::engine::{FetchErrorKind, Position, output_field_name};
use ferry::spec::plan::{FieldType, FieldsPlan, RecordsPlan, SchemaSource, TimestampUnit};
use indexmap::IndexMap;
use serde_json::{Value, json};

use crate::support::plan::{connector, entity, jsonpath, test_flow};
use crate::support::{json as json_response, run, serve};

async fn extract(
    records: RecordsPlan,
    primary_key: &[&str],
    fields: FieldsPlan,
    body: Value,
) -> crate::support::Outcome {
    let server = serve(vec![("/rows", json_response(body))]).await;
    let mut rows = entity("rows", "/rows");
    rows.records = records;
    rows.primary_key = primary_key.iter().map(|key| key.to_string()).collect();
    rows.fields = fields;
    let rows = Arc::new(rows);
    let flow = test_flow(connector(&server.uri()), &rows, json!({}));
    run(&flow, &rows, Position::default()).await
}

#[tokio::test]
async fn columns_are_zipped_with_rows() {
    let outcome = extract(
        RecordsPlan::Columns {
            rows: jsonpath("$.results"),
            columns: jsonpath("$.columns"),
        },
        &["day"],
        FieldsPlan::default(),
        json!({"columns": ["day", "n"], "results": [["2024-01-01", 3], ["2024-01-02", 5]]}),
    )
    .await;

    outcome.assert_ok();
    assert_eq!(
        outcome.records(),
        vec![
            json!({"day": "2024-01-01", "n": 3}),
            json!({"day": "2024-01-02", "n": 5})
        ]
    );
}

#[tokio::test]
async fn bigquery_rows_are_typed() {
    let outcome = extract(
        RecordsPlan::Schema {
            rows: jsonpath("$.rows"),
            schema: SchemaSource::Response(jsonpath("$.schema")),
            timestamp_unit: TimestampUnit::Seconds,
        },
        &["id"],
        FieldsPlan::default(),
        json!({
            "schema": {"fields": [
                {"name": "id", "type": "INTEGER"},
                {"name": "active", "type": "BOOLEAN"},
                {"name": "created", "type": "TIMESTAMP"}
            ]},
            "rows": [{"f": [{"v": "7"}, {"v": "false"}, {"v": "1.7E9"}]}]
        }),
    )
    .await;

    outcome.assert_ok();
    assert_eq!(
        outcome.records(),
        vec![json!({"id": 7, "active": false, "created": "2023-11-14T22:13:20Z"})]
    );
    let declared: Vec<_> = outcome.pages[0].field_types.iter().collect();
    assert_eq!(
        declared,
        vec![(&"created".to_string(), &FieldType::TimestampIso)]
    );
}

#[tokio::test]
async fn bigquery_without_rows_is_empty() {
    let outcome = extract(
        RecordsPlan::Schema {
            rows: jsonpath("$.rows"),
            schema: SchemaSource::Response(jsonpath("$.schema")),
            timestamp_unit: TimestampUnit::Seconds,
        },
        &["id"],
        FieldsPlan::default(),
        json!({"jobComplete": true, "totalRows": "0"}),
    )
    .await;

    outcome.assert_ok();
    assert_eq!(outcome.records(), Vec::<Value>::new());
}

#[tokio::test]
async fn scalars_are_wrapped_as_value() {
    let outcome = extract(
        RecordsPlan::Path(jsonpath("$.data[*]")),
        &["value"],
        FieldsPlan::default(),
        json!({"data": ["a", 2]}),
    )
    .await;

    outcome.assert_ok();
    assert_eq!(
        outcome.records(),
        vec![json!({"value": "a"}), json!({"value": 2})]
    );
}

#[tokio::test]
async fn field_rules_apply_after_key_check() {
    let fields = FieldsPlan {
        include: vec!["id".into(), "name".into(), "updated".into()],
        exclude: vec!["name".into()],
        rename: IndexMap::from([("id".to_string(), "customer_id".to_string())]),
        types: IndexMap::new(),
        names: None,
    };
    assert_eq!(output_field_name(&fields, "id"), "customer_id");
    let outcome = extract(
        RecordsPlan::Path(jsonpath("$.data")),
        &["id"],
        fields,
        json!({"data": [{"id": 1, "name": "Ann", "email": "a@x", "updated": 5}]}),
    )
    .await;

    outcome.assert_ok();
    assert_eq!(
        outcome.records(),
        vec![json!({"customer_id": 1, "updated": 5})]
    );
}

#[tokio::test]
async fn missing_or_null_key_fails_with_position() {
    for (record, state) in [
        (json!({"name": "x"}), "missing"),
        (json!({"id": null}), "null"),
    ] {
        let outcome = extract(
            RecordsPlan::Path(jsonpath("$.data[*]")),
            &["id"],
            FieldsPlan::default(),
            json!({"data": [{"id": 1}, record]}),
        )
        .await;

        let error = outcome.error();
        assert_eq!(error.kind, FetchErrorKind::MissingKey);
        assert!(error.message.contains("entity rows"), "{error}");
        assert!(error.message.contains("record 1 of page 1"), "{error}");
        assert!(error.message.contains("\"id\""), "{error}");
        assert!(error.message.contains(state), "{error}");
        assert!(outcome.pages.is_empty());
    }
}

#[tokio::test]
async fn composite_key_and_append_only() {
    let outcome = extract(
        RecordsPlan::Path(jsonpath("$.data[*]")),
        &["account", "id"],
        FieldsPlan::default(),
        json!({"data": [{"account": "a", "id": 1}, {"account": "b"}]}),
    )
    .await;
    assert_eq!(outcome.error().kind, FetchErrorKind::MissingKey);

    let outcome = extract(
        RecordsPlan::Path(jsonpath("$.data[*]")),
        &[],
        FieldsPlan::default(),
        json!({"data": [{"n": 1}, {"n": null}]}),
    )
    .await;
    outcome.assert_ok();
    assert_eq!(outcome.records().len(), 2);
}
