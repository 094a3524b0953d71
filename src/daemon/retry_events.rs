//! Counts the engine's HTTP retries and 429s from its retry log events.
//!
//! The engine logs every retry with fixed fields (`flow`, `entity`,
//! `attempt`, `delay_ms`, and `status` when a response arrived). This
//! layer receives those events at any log filter, and bumps
//! `ferry_http_retries_total` and `ferry_http_throttled_total`, so the
//! counters and the log lines come from the same place.

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// A `tracing` layer that feeds the daemon's metrics; a no-op until the
/// daemon installs its metrics.
pub struct RetryCounter;

#[derive(Default)]
struct RetryFields {
    flow: Option<String>,
    entity: Option<String>,
    status: Option<u64>,
    attempt: bool,
    delay: bool,
}

impl Visit for RetryFields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "status" => self.status = Some(value),
            "attempt" => self.attempt = true,
            "delay_ms" => self.delay = true,
            _ => {}
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.record_u64(field, value.max(0) as u64);
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "flow" => self.flow = Some(value.to_string()),
            "entity" => self.entity = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "flow" | "entity" => {
                let text = format!("{value:?}");
                let text = text.trim_matches('"').to_string();
                if field.name() == "flow" {
                    self.flow = Some(text);
                } else {
                    self.entity = Some(text);
                }
            }
            "attempt" => self.attempt = true,
            "delay_ms" => self.delay = true,
            _ => {}
        }
    }
}

impl<S: Subscriber> Layer<S> for RetryCounter {
    fn on_event(&self, event: &Event<'_>, _context: Context<'_, S>) {
        if !event.metadata().target().starts_with("ferry::engine") {
            return;
        }
        let Some(metrics) = super::metrics::global() else {
            return;
        };
        let mut fields = RetryFields::default();
        event.record(&mut fields);
        if !(fields.attempt && fields.delay) {
            return;
        }
        let flow = fields.flow.unwrap_or_default();
        let entity = fields.entity.unwrap_or_default();
        metrics.record_http_retry(&flow, &entity, fields.status);
    }
}
