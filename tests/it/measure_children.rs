//! Timings of child entities, run by hand and printed, not asserted:
//! `cargo test --test it measure_ -- --ignored --nocapture`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ferry::destination::duckdb::DuckDbDestination;
use ferry::destination::{
    Chunk, Destination, EntityTarget, RowPosition, RowQuery, RunOutcome, RunRecord, RunStatus,
    TableRef,
};
use ferry::sync::{Outcome, RunOptions, run_flow};
use indexmap::IndexMap;
use serde_json::json;

use crate::support::github::{Github, TOKEN, issues};

const EXAMPLE: &str = include_str!("../../examples/github/connector.yaml");

/// Syncs 200 issues and their comments from the emulation, each comments
/// request delayed 20 ms, at several `parent.concurrency` values.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, run by hand"]
async fn measure_parent_concurrency() {
    for concurrency in [1, 4, 16] {
        let github = Github::start(issues(200)).await;
        github.with(|state| state.comments_delay = Duration::from_millis(20));
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ferry.d");
        std::fs::create_dir(&config).unwrap();
        let connector = EXAMPLE
            .replace("requests_per_second: 1\n", "requests_per_second: 100000\n")
            .replace("concurrency: 4", &format!("concurrency: {concurrency}"));
        std::fs::write(config.join("github.yaml"), connector).unwrap();
        let flow = format!(
            "kind: Flow\nname: test\nsource:\n  connector: github\n  config:\n    token: \"{TOKEN}\"\n    owner: octo\n    repo: hello\n    base_url: \"{}\"\ndestination: \"duckdb://{}\"\nentities: [issues, comments]\n",
            github.url,
            dir.path().join("test.duckdb").display()
        );
        std::fs::write(config.join("flow.yaml"), flow).unwrap();
        let loaded = ferry::spec::load_with_env(&config, &|_| None).unwrap();
        let flow = loaded.catalog.flows["test"].clone();

        let started = Instant::now();
        let report = run_flow(Arc::clone(&flow), &[], &RunOptions::default()).await;
        let elapsed = started.elapsed();

        for run in &report.runs {
            assert_eq!(run.outcome, Outcome::Succeeded, "{run:?}");
        }
        let comments = report
            .runs
            .iter()
            .find(|run| run.entity == "comments")
            .unwrap();
        println!(
            "concurrency {concurrency:>2}: flow {:.2} s, comments run {:.2} s, {} requests, {} records",
            elapsed.as_secs_f64(),
            comments.duration_seconds,
            comments.requests,
            comments.records
        );
    }
}

/// Pages through 100,000 parent rows of a DuckDB table 2,000 at a time, as
/// a child entity does.
#[tokio::test]
#[ignore = "a measurement, run by hand"]
async fn measure_parent_row_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("rows.duckdb")
        .to_string_lossy()
        .into_owned();
    let mut destination = DuckDbDestination::open(&path).unwrap();
    let target = EntityTarget {
        flow: "flow".into(),
        entity: "issues".into(),
        table: TableRef {
            schema: "api".into(),
            table: "issues".into(),
        },
        primary_key: vec!["id".into()],
        declared_types: IndexMap::new(),
        full_refresh: false,
        resuming: false,
    };
    let run = RunRecord {
        run_id: "r1".into(),
        flow: "flow".into(),
        entity: "issues".into(),
        started_at: Utc::now(),
        finished_at: None,
        status: "running".into(),
        records: 0,
        error: None,
    };
    destination.begin_run(&target, &run).await.unwrap();
    let written = Instant::now();
    for chunk in 0..20 {
        let records = (0..5_000)
            .map(|index| {
                let id = chunk * 5_000 + index;
                json!({"id": id, "number": id, "title": format!("issue {id}"), "labels": ["a", "b"]})
                    .as_object()
                    .unwrap()
                    .clone()
            })
            .collect();
        let chunk = Chunk {
            records,
            deletions: Vec::new(),
            state: json!({}),
        };
        destination.write_chunk(&target, "r1", chunk).await.unwrap();
    }
    let outcome = RunOutcome {
        status: RunStatus::Succeeded,
        records: 100_000,
        error: None,
        state: json!({}),
        mark_unseen_before: None,
    };
    destination
        .finish_run(&target, "r1", outcome)
        .await
        .unwrap();
    let write_seconds = written.elapsed().as_secs_f64();

    let started = Instant::now();
    let mut query = RowQuery {
        table: target.table.clone(),
        key: vec!["id".into()],
        fields: Some(vec!["number".into()]),
        after: None,
        limit: 2_000,
    };
    let mut total = 0;
    loop {
        let rows = destination.read_rows(&query).await.unwrap();
        let Some(last) = rows.last() else { break };
        total += rows.len();
        query.after = Some(RowPosition {
            synced_at: last.synced_at,
            key: last.key.clone(),
        });
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(total, 100_000);
    println!(
        "wrote 100000 rows in {write_seconds:.2} s; read them 2000 at a time in {elapsed:.2} s ({:.0} rows/s)",
        total as f64 / elapsed
    );
}
