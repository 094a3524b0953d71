//! Prometheus metrics of the daemon, served as OpenMetrics text on `/metrics`.
//!
//! Each counter is bumped in the same place that logs the event it counts,
//! so a log line and its counter come from one code path. Label values are
//! flow and entity names and outcomes, never record values or secrets.

use std::sync::{Arc, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::sync::{FlowReport, Outcome, RunReport};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EntityLabels {
    pub flow: String,
    pub entity: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    pub flow: String,
    pub entity: String,
    /// `succeeded`, `failed`, `interrupted` or `skipped_locked`.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub flow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabels {
    pub flow: String,
    /// `applied`, `duplicate`, `stale`, `ignored`, `triggered`, `rejected`,
    /// `invalid` or `failed`.
    pub outcome: String,
}

/// Every metric the daemon exports, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    pub runs: Family<RunLabels, Counter>,
    pub records: Family<EntityLabels, Counter>,
    pub pages: Family<EntityLabels, Counter>,
    pub requests: Family<EntityLabels, Counter>,
    pub http_retries: Family<EntityLabels, Counter>,
    pub http_throttled: Family<EntityLabels, Counter>,
    pub run_duration: Family<EntityLabels, Histogram, fn() -> Histogram>,
    pub run_retries: Family<FlowLabels, Counter>,
    pub skipped_ticks: Family<FlowLabels, Counter>,
    pub reloads: Family<OutcomeLabels, Counter>,
    pub webhook_events: Family<WebhookLabels, Counter>,
    pub alerts: Family<OutcomeLabels, Counter>,
    pub runs_in_progress: Gauge,
    pub flows: Gauge,
}

/// Buckets for run durations from 0.1 s to 0.1 × 3^10 s (about 1.6 hours).
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 3.0, 11))
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let metrics = Metrics {
            runs: Family::default(),
            records: Family::default(),
            pages: Family::default(),
            requests: Family::default(),
            http_retries: Family::default(),
            http_throttled: Family::default(),
            run_duration: Family::new_with_constructor(duration_histogram),
            run_retries: Family::default(),
            skipped_ticks: Family::default(),
            reloads: Family::default(),
            webhook_events: Family::default(),
            alerts: Family::default(),
            runs_in_progress: Gauge::default(),
            flows: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("ferry_runs", "Entity runs by outcome", metrics.runs.clone());
        registry.register(
            "ferry_records",
            "Records written to destination tables",
            metrics.records.clone(),
        );
        registry.register("ferry_pages", "Response pages read", metrics.pages.clone());
        registry.register(
            "ferry_requests",
            "HTTP requests sent, retries included",
            metrics.requests.clone(),
        );
        registry.register(
            "ferry_http_retries",
            "HTTP requests retried after a 408, 429, 5xx or network error",
            metrics.http_retries.clone(),
        );
        registry.register(
            "ferry_http_throttled",
            "HTTP 429 Too Many Requests responses",
            metrics.http_throttled.clone(),
        );
        registry.register(
            "ferry_run_duration_seconds",
            "Duration of entity runs",
            metrics.run_duration.clone(),
        );
        registry.register(
            "ferry_run_retries",
            "Flow runs started again after a failure",
            metrics.run_retries.clone(),
        );
        registry.register(
            "ferry_scheduled_runs_skipped",
            "Scheduled runs skipped because the previous run was still going",
            metrics.skipped_ticks.clone(),
        );
        registry.register(
            "ferry_reloads",
            "Config folder reloads by outcome",
            metrics.reloads.clone(),
        );
        registry.register(
            "ferry_webhook_events",
            "Webhook requests by outcome",
            metrics.webhook_events.clone(),
        );
        registry.register(
            "ferry_alerts",
            "Alert webhook deliveries by outcome",
            metrics.alerts.clone(),
        );
        registry.register(
            "ferry_runs_in_progress",
            "Entity runs holding a run slot now",
            metrics.runs_in_progress.clone(),
        );
        registry.register(
            "ferry_flows",
            "Flows in the applied config",
            metrics.flows.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// Encodes every metric as OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// Counts the entity runs of a finished flow run.
    pub fn record_flow(&self, report: &FlowReport) {
        for run in &report.runs {
            self.record_run(run, outcome_label(run));
        }
    }

    /// Counts one entity run with the given outcome label.
    pub fn record_run(&self, run: &RunReport, outcome: &str) {
        let entity = EntityLabels {
            flow: run.flow.clone(),
            entity: run.entity.clone(),
        };
        self.runs
            .get_or_create(&RunLabels {
                flow: run.flow.clone(),
                entity: run.entity.clone(),
                outcome: outcome.to_string(),
            })
            .inc();
        self.records.get_or_create(&entity).inc_by(run.records);
        self.pages.get_or_create(&entity).inc_by(run.pages);
        self.requests.get_or_create(&entity).inc_by(run.requests);
        self.run_duration
            .get_or_create(&entity)
            .observe(run.duration_seconds);
    }

    pub fn record_reload(&self, outcome: &str) {
        self.reloads
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn record_webhook(&self, flow: &str, outcome: &str) {
        self.webhook_events
            .get_or_create(&WebhookLabels {
                flow: flow.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    /// Counts a retried HTTP request, read from the engine's retry log event.
    pub fn record_http_retry(&self, flow: &str, entity: &str, status: Option<u64>) {
        let labels = EntityLabels {
            flow: flow.to_string(),
            entity: entity.to_string(),
        };
        self.http_retries.get_or_create(&labels).inc();
        if status == Some(429) {
            self.http_throttled.get_or_create(&labels).inc();
        }
    }
}

/// Returns the `outcome` label of a run report.
pub fn outcome_label(run: &RunReport) -> &'static str {
    match run.outcome {
        Outcome::Succeeded => "succeeded",
        Outcome::Failed => "failed",
        Outcome::Interrupted => "interrupted",
    }
}

/// The daemon's metrics, for the log layer that counts the engine's retries.
/// Set once when `ferry run` starts; other commands leave it empty.
static GLOBAL: OnceLock<Arc<Metrics>> = OnceLock::new();

/// Makes `metrics` the target of the retry-counting log layer.
pub fn install_global(metrics: Arc<Metrics>) {
    let _ = GLOBAL.set(metrics);
}

pub fn global() -> Option<&'static Arc<Metrics>> {
    GLOBAL.get()
}
