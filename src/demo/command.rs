//! `ferry demo`: a local Stripe-compatible API, a full load and an
//! incremental run into a DuckDB file, with no account and no network.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use tokio_util::sync::CancellationToken;

use super::data;
use super::stripe_api::{self, StripeStore};
use crate::sync::{FlowReport, RunOptions, run_flow};

/// The key the local API accepts; it only ever travels over loopback.
pub const DEMO_API_KEY: &str = "sk_test_ferry_demo";

/// The Stripe entities the demo data fills.
pub const DEMO_ENTITIES: [&str; 4] = ["customers", "subscriptions", "invoices", "charges"];

/// Seed of the generated data: every demo shows the same rows.
const SEED: u64 = 20_240_101;

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// DuckDB file to write.
    pub db: PathBuf,
    /// Customers to generate; subscriptions, invoices and charges follow from them.
    pub customers: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            db: PathBuf::from("./ferry-demo.duckdb"),
            customers: 1_500,
        }
    }
}

/// What the demo did, for the caller and for tests.
#[derive(Debug)]
pub struct DemoSummary {
    pub api_url: String,
    pub first_run: FlowReport,
    pub second_run: FlowReport,
    /// `(table, rows)` after the first run.
    pub tables: Vec<(String, u64)>,
}

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error(transparent)]
    Data(#[from] data::DataError),
    #[error("cannot start the local Stripe-compatible API on 127.0.0.1: {0}")]
    Server(std::io::Error),
    #[error("the built-in stripe connector does not load: {0}")]
    Spec(String),
    #[error("{0}")]
    Run(String),
    #[error("cannot read {path}: {message}")]
    Database { path: String, message: String },
}

/// Runs the demo, printing its progress to `out`.
pub async fn run(options: &DemoOptions, out: &mut dyn Write) -> Result<DemoSummary, DemoError> {
    let dataset = data::generate(SEED, options.customers)?;
    let mut store = StripeStore::new();
    store.load("customers", dataset.customers);
    store.load("subscriptions", dataset.subscriptions);
    store.load("invoices", dataset.invoices);
    store.load("charges", dataset.charges);
    let store = Arc::new(RwLock::new(store));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(DemoError::Server)?;
    let address = listener.local_addr().map_err(DemoError::Server)?;
    let api_url = format!("http://{address}");
    let stop = CancellationToken::new();
    let server = tokio::spawn(serve(listener, store.clone(), stop.clone()));
    tracing::info!(url = %api_url, "demo Stripe API started");

    let result = sync_twice(options, &api_url, out).await;
    stop.cancel();
    if let Err(error) = server.await {
        tracing::warn!(error = %error, "demo Stripe API task ended abnormally");
    }
    tracing::info!(url = %api_url, "demo Stripe API stopped");
    result
}

async fn serve(
    listener: tokio::net::TcpListener,
    store: stripe_api::SharedStore,
    stop: CancellationToken,
) {
    let app = stripe_api::router(store, DEMO_API_KEY);
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(stop.cancelled_owned())
        .await;
    if let Err(error) = served {
        tracing::warn!(error = %error, "demo Stripe API failed");
    }
}

async fn sync_twice(
    options: &DemoOptions,
    api_url: &str,
    out: &mut dyn Write,
) -> Result<DemoSummary, DemoError> {
    let flow = Arc::new(demo_flow(&options.db, api_url)?);
    let db = options.db.display().to_string();
    let _ = writeln!(
        out,
        "ferry demo: a local Stripe-compatible API at {api_url} serves {} generated customers \
         with their subscriptions, invoices and charges\n",
        options.customers
    );

    let _ = writeln!(out, "first run: full load into {db}");
    let full = RunOptions {
        full: true,
        ..RunOptions::default()
    };
    let first_run = run_flow(flow.clone(), &[], &full).await;
    print_report(out, &first_run);
    failed_entities(&first_run)?;

    let tables = count_rows(&options.db, &flow.schema).await?;
    let _ = writeln!(out, "\ntables:");
    for (table, rows) in &tables {
        let _ = writeln!(out, "  {table:<24} {rows:>7} rows");
    }

    let _ = writeln!(
        out,
        "\nsecond run: incremental; each entity reads Stripe's change feed (/v1/events) from where the first run ended"
    );
    let second_run = run_flow(flow.clone(), &[], &RunOptions::default()).await;
    print_report(out, &second_run);
    failed_entities(&second_run)?;
    let fetched: u64 = second_run.runs.iter().map(|run| run.records).sum();
    let _ = writeln!(
        out,
        "  {fetched} new or changed records: nothing was fetched again"
    );

    let _ = writeln!(out, "\ntry a query (DuckDB CLI, or any DuckDB client):");
    let _ = writeln!(
        out,
        "  duckdb {db} \"select status, count(*) as invoices, sum(amount_paid) / 100 as paid \
         from stripe.invoices group by status order by invoices desc\""
    );
    let _ = writeln!(
        out,
        "  duckdb {db} \"select date_trunc('month', created) as month, count(*) as signups \
         from stripe.customers group by month order by month\""
    );
    Ok(DemoSummary {
        api_url: api_url.to_string(),
        first_run,
        second_run,
        tables,
    })
}

/// The flow `ferry sync -s stripe` would build against the local API.
fn demo_flow(db: &Path, api_url: &str) -> Result<crate::spec::plan::Flow, DemoError> {
    let describe = |diagnostics: Vec<crate::spec::Diagnostic>| {
        let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        DemoError::Spec(lines.join("; "))
    };
    let loaded = crate::spec::load_builtin().map_err(describe)?;
    let destination = format!("duckdb://{}", db.display());
    let settings = vec![
        ("api_key".to_string(), DEMO_API_KEY.to_string()),
        ("base_url".to_string(), api_url.to_string()),
    ];
    let entities: Vec<String> = DEMO_ENTITIES.iter().map(|name| name.to_string()).collect();
    crate::spec::adhoc_flow(
        &loaded.catalog,
        "stripe",
        Some(&destination),
        &settings,
        &entities,
        &|_| None,
    )
    .map_err(describe)
}

fn print_report(out: &mut dyn Write, report: &FlowReport) {
    for run in &report.runs {
        let outcome = match &run.error {
            None => "ok".to_string(),
            Some(error) => format!("failed: {}", error.message),
        };
        let _ = writeln!(
            out,
            "  {:<24} {:>7} records  {:>4} requests  {:>5.2} s  {outcome}",
            format!("{}.{}", report.flow, run.entity),
            run.records,
            run.requests,
            run.duration_seconds
        );
    }
}

fn failed_entities(report: &FlowReport) -> Result<(), DemoError> {
    if report.succeeded() {
        return Ok(());
    }
    let failed: Vec<String> = report
        .runs
        .iter()
        .filter_map(|run| {
            run.error
                .as_ref()
                .map(|error| format!("{}: {}", run.entity, error.message))
        })
        .collect();
    Err(DemoError::Run(format!(
        "the demo sync failed: {}",
        failed.join("; ")
    )))
}

/// Counts the rows of each demo table, reading the DuckDB file directly.
async fn count_rows(db: &Path, schema: &str) -> Result<Vec<(String, u64)>, DemoError> {
    let path = db.display().to_string();
    let schema = schema.to_string();
    let display = db.display().to_string();
    let counted = tokio::task::spawn_blocking(move || -> Result<Vec<(String, u64)>, String> {
        // A second `Connection::open` of the file fails in this process, so
        // the destination's shared database handle is used instead.
        let destination = crate::destination::duckdb::DuckDbDestination::open(&path)
            .map_err(|error| error.to_string())?;
        let connection = destination
            .connection()
            .map_err(|error| error.to_string())?;
        let mut tables = Vec::new();
        for entity in DEMO_ENTITIES {
            let sql = format!("select count(*) from \"{schema}\".\"{entity}\"");
            let rows: i64 = connection
                .query_row(&sql, [], |row| row.get(0))
                .map_err(|error| format!("{sql}: {error}"))?;
            tables.push((format!("{schema}.{entity}"), rows.max(0) as u64));
        }
        Ok(tables)
    })
    .await
    .map_err(|error| error.to_string())
    .and_then(|result| result);
    counted.map_err(|message| DemoError::Database {
        path: display,
        message,
    })
}
