//! `ferry demo`: the generated data reaches every table, and the second,
//! incremental run reads only the change feed and brings nothing.

use ferry::demo::{DEMO_ENTITIES, DemoOptions, data};
use ferry::sync::Outcome;

use crate::support::duck;

#[tokio::test]
async fn demo_loads_tables_then_reads_feed() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("demo.duckdb");
    let options = DemoOptions {
        db: db.clone(),
        customers: 120,
    };
    let mut output = Vec::new();
    let summary = ferry::demo::run(&options, &mut output).await.unwrap();
    let output = String::from_utf8(output).unwrap();

    // The demo's seed is fixed, so the same generation gives the expected counts.
    let expected = data::generate(20_240_101, 120).unwrap();
    let counts = [
        ("stripe.customers", expected.customers.len() as u64),
        ("stripe.subscriptions", expected.subscriptions.len() as u64),
        ("stripe.invoices", expected.invoices.len() as u64),
        ("stripe.charges", expected.charges.len() as u64),
    ];
    let tables: Vec<(String, u64)> = counts
        .iter()
        .map(|(table, rows)| (table.to_string(), *rows))
        .collect();
    assert_eq!(summary.tables, tables);
    assert_eq!(expected.customers.len(), 120);

    for run in &summary.first_run.runs {
        assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.entity);
    }
    assert_eq!(summary.second_run.runs.len(), DEMO_ENTITIES.len());
    for run in &summary.second_run.runs {
        assert_eq!(run.outcome, Outcome::Succeeded, "{}", run.entity);
        assert_eq!(run.records, 0, "{}", run.entity);
        assert_eq!(run.requests, 1, "{}: one read of /v1/events", run.entity);
    }

    let statuses = duck::query(
        &db,
        "select count(*) filter (where status = 'paid'), count(*) filter (where status = 'open') from stripe.invoices",
    );
    let paid = expected
        .invoices
        .iter()
        .filter(|invoice| invoice["status"] == "paid")
        .count();
    assert_eq!(statuses[0][0], paid.to_string());
    assert_eq!(statuses[0][1], (expected.invoices.len() - paid).to_string());

    assert!(output.contains("stripe.customers"), "{output}");
    assert!(output.contains("0 new or changed records"), "{output}");
    assert!(output.contains("select status, count(*)"), "{output}");
}
