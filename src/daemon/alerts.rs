//! Alert webhooks: a JSON POST when a flow fails after its retries, and
//! one when it recovers; at most one failure alert per failure streak.
//!
//! The body carries a Slack-compatible `text` field and the details as
//! fields of their own:
//!
//! ```json
//! {"text": "ferry: flow billing failed: invoices: HTTP 500 … (run 0190…)",
//!  "status": "failed", "flow": "billing",
//!  "failures": [{"entity": "invoices", "kind": "http", "error": "…", "run_id": "0190…"}]}
//! ```
//!
//! Streaks are kept in memory: after a restart, a flow that still fails
//! alerts once more. The alert URL itself is treated as a secret (Slack's
//! contain a token) and never logged.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::json;
use tracing::{info, warn};

use super::metrics::{Metrics, OutcomeLabels};
use crate::sync::RunReport;

/// Attempts per alert; the alert is dropped (and logged) after the last.
const ATTEMPTS: u32 = 3;
const TIMEOUT: Duration = Duration::from_secs(10);

pub struct Alerts {
    client: reqwest::Client,
    /// Used for flows that name no `alert.url` of their own.
    default_url: Option<String>,
    /// Flows in a failure streak whose alert was sent.
    failing: Mutex<HashSet<String>>,
    metrics: Arc<Metrics>,
}

impl Alerts {
    pub fn new(default_url: Option<String>, metrics: Arc<Metrics>) -> Alerts {
        if let Some(url) = &default_url {
            crate::redact::register(url);
        }
        Alerts {
            client: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .build()
                .unwrap_or_default(),
            default_url,
            failing: Mutex::new(HashSet::new()),
            metrics,
        }
    }

    /// Alerts that `flow` failed after its retries, unless its streak was
    /// already alerted.
    pub fn failed(self: &Arc<Self>, flow: &str, url: Option<&str>, failures: &[RunReport]) {
        let first = {
            let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
            failing.insert(flow.to_string())
        };
        if !first {
            return;
        }
        let lines: Vec<String> = failures
            .iter()
            .map(|run| {
                let error = run
                    .error
                    .as_ref()
                    .map(|error| error.message.as_str())
                    .unwrap_or("unknown error");
                format!("{}: {} (run {})", run.entity, error, run.run_id)
            })
            .collect();
        let body = json!({
            "text": crate::redact::redact(&format!("ferry: flow {flow} failed: {}", lines.join("; "))),
            "status": "failed",
            "flow": flow,
            "failures": failures.iter().map(|run| json!({
                "entity": run.entity,
                "kind": run.error.as_ref().map(|error| error.kind.clone()),
                "error": run.error.as_ref().map(|error| crate::redact::redact(&error.message)),
                "run_id": run.run_id,
            })).collect::<Vec<_>>(),
        });
        self.send(flow, url, body);
    }

    /// Alerts that `flow` recovered, if its failure was alerted.
    pub fn succeeded(self: &Arc<Self>, flow: &str, url: Option<&str>, runs: &[RunReport]) {
        let was_failing = {
            let mut failing = self.failing.lock().unwrap_or_else(PoisonError::into_inner);
            failing.remove(flow)
        };
        if !was_failing {
            return;
        }
        let run_ids: Vec<&str> = runs.iter().map(|run| run.run_id.as_str()).collect();
        let body = json!({
            "text": format!("ferry: flow {flow} recovered"),
            "status": "recovered",
            "flow": flow,
            "run_ids": run_ids,
        });
        self.send(flow, url, body);
    }

    fn send(self: &Arc<Self>, flow: &str, url: Option<&str>, body: serde_json::Value) {
        let Some(url) = url.map(str::to_string).or_else(|| self.default_url.clone()) else {
            return;
        };
        let alerts = self.clone();
        let flow = flow.to_string();
        // Delivery runs on its own task so a slow alert endpoint never
        // delays the next run; it ends after `ATTEMPTS` tries.
        tokio::spawn(async move {
            let status = body["status"].as_str().unwrap_or_default().to_string();
            for attempt in 1..=ATTEMPTS {
                let sent = alerts.client.post(&url).json(&body).send().await;
                let error = match sent {
                    Ok(response) if response.status().is_success() => {
                        info!(flow = %flow, status = %status, "alert sent");
                        alerts.count("sent");
                        return;
                    }
                    Ok(response) => format!("HTTP {}", response.status()),
                    Err(error) => crate::redact::redact(&error.without_url().to_string()),
                };
                warn!(flow = %flow, status = %status, attempt, error = %error, "alert delivery failed");
                tokio::time::sleep(Duration::from_secs(u64::from(attempt) * 2)).await;
            }
            alerts.count("failed");
        });
    }

    fn count(&self, outcome: &str) {
        self.metrics
            .alerts
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_string(),
            })
            .inc();
    }
}
