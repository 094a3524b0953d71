//! `POST /webhooks/{flow}`: verify, route, then upsert or trigger a run.
//!
//! The order is fixed: the body is read up to the size limit, the
//! signature is checked on those raw bytes with the flow's secrets, and
//! only then is the body parsed. Status codes tell the sender what to do.
//! Everything ferry accepted or chose to ignore (unknown types,
//! redeliveries, late events) gets a 2xx. A bad signature gets 401, an
//! oversized body 413, a signed body that is not JSON 400, and a flow
//! without webhooks 404. A destination that cannot take the write now
//! gets 503, so the sender retries later.
//!
//! - `verify`: signature schemes.
//! - `event`: the event's id, type, object and time; routes.
//! - `apply`: the upsert with redelivery and late-event checks.

pub mod apply;
pub mod event;
pub mod verify;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::metrics::Metrics;
use super::scheduler::{Command, RunReason, RunRequest, Submitted};
use super::writers::DestinationQueue;
use crate::spec::plan::{Catalog, Flow, WebhookAction};
use apply::{Applied, ApplyError};

/// Largest webhook body accepted. Stripe and Close events are a few KB;
/// 1 MiB leaves room for large objects while bounding memory per request.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Maximum wait of a webhook write for a DuckDB file another process has
/// locked; after it the reply is 503.
const DESTINATION_PATIENCE: Duration = Duration::from_secs(5);

pub struct WebhookState {
    pub catalog: watch::Receiver<Arc<Catalog>>,
    pub metrics: Arc<Metrics>,
    pub destinations: Arc<DestinationQueue>,
    /// Run requests to the scheduler. The channel is bounded, and a full
    /// queue gets a 503 reply.
    pub commands: mpsc::Sender<Command>,
    pub shutdown: CancellationToken,
    /// One lock per flow, so this process applies a flow's events one at
    /// a time (the ledger's read and write must not interleave). One
    /// entry per flow that received a webhook.
    pub flow_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl WebhookState {
    fn flow_lock(&self, flow: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self
            .flow_locks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        locks.entry(flow.to_string()).or_default().clone()
    }
}

fn reply(status: StatusCode, outcome: &str, detail: impl Into<String>) -> Response {
    let body = json!({"outcome": outcome, "detail": detail.into()});
    (status, axum::Json(body)).into_response()
}

/// Handles one webhook request.
pub async fn receive(
    state: Arc<WebhookState>,
    flow_name: String,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let body: Bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(_) => {
            let reason = format!("body larger than {MAX_BODY_BYTES} bytes");
            return rejected(&state, &flow_name, StatusCode::PAYLOAD_TOO_LARGE, &reason);
        }
    };

    let flow = state.catalog.borrow().flows.get(&flow_name).cloned();
    let Some(flow) = flow else {
        warn!(flow = %flow_name, reason = "unknown flow", "webhook rejected");
        return reply(
            StatusCode::NOT_FOUND,
            "unknown_flow",
            format!("no flow named {flow_name:?}"),
        );
    };
    let (Some(settings), Some(plan)) = (&flow.webhook, &flow.connector.webhooks) else {
        warn!(flow = %flow_name, reason = "flow has no webhook", "webhook rejected");
        return reply(
            StatusCode::NOT_FOUND,
            "no_webhook",
            format!("flow {flow_name} does not accept webhooks; add webhook.secret to the flow"),
        );
    };

    if let Err(error) = verify::verify(
        &plan.signature,
        &settings.secrets,
        &headers,
        &body,
        SystemTime::now(),
    ) {
        return rejected(
            &state,
            &flow_name,
            StatusCode::UNAUTHORIZED,
            &error.to_string(),
        );
    }

    let parsed: Value = match serde_json::from_slice(&body) {
        Ok(parsed) => parsed,
        Err(error) => {
            warn!(flow = %flow_name, error = %error, "signed webhook body is not JSON");
            state.metrics.record_webhook(&flow_name, "invalid");
            return reply(
                StatusCode::BAD_REQUEST,
                "invalid",
                format!("body is not JSON: {error}"),
            );
        }
    };
    let event = match event::read(plan, &parsed) {
        Ok(event) => event,
        Err(problem) => {
            warn!(flow = %flow_name, problem = %problem, "signed webhook has no usable event");
            state.metrics.record_webhook(&flow_name, "invalid");
            return reply(StatusCode::OK, "invalid", problem);
        }
    };

    let route = event::route(plan, &event.event_type);
    let entity = route
        .and_then(|route| route.entity.as_ref())
        .and_then(|name| flow.entity(name).cloned());
    let Some(route) =
        route.filter(|_| settings.action == WebhookAction::Trigger || entity.is_some())
    else {
        debug!(flow = %flow_name, event_id = %event.id, event_type = %event.event_type, "webhook event type not routed; acknowledged");
        state.metrics.record_webhook(&flow_name, "ignored");
        return reply(
            StatusCode::OK,
            "ignored",
            format!("event type {} is not routed", event.event_type),
        );
    };

    if settings.action == WebhookAction::Trigger {
        return trigger(
            &state,
            &flow,
            entity.map(|entity| entity.name.clone()),
            &event.id,
        )
        .await;
    }
    let Some(entity) = entity else {
        return reply(StatusCode::OK, "ignored", "no entity");
    };
    upsert(&state, &flow, &entity, &event, route.delete).await
}

fn rejected(state: &WebhookState, flow: &str, status: StatusCode, reason: &str) -> Response {
    warn!(flow = %flow, reason = %reason, status = status.as_u16(), "webhook rejected");
    // Only flows in the config get a label, so junk paths cannot grow the metrics.
    if state.catalog.borrow().flows.contains_key(flow) {
        state.metrics.record_webhook(flow, "rejected");
    }
    reply(status, "rejected", reason)
}

async fn trigger(
    state: &WebhookState,
    flow: &Flow,
    entity: Option<String>,
    event_id: &str,
) -> Response {
    let (reply_to, answer) = oneshot::channel();
    let command = Command {
        request: RunRequest {
            flow: flow.name.clone(),
            entities: entity.into_iter().collect(),
            reason: RunReason::Webhook,
        },
        reply: Some(reply_to),
    };
    if state.commands.try_send(command).is_err() {
        warn!(flow = %flow.name, event_id = %event_id, "run queue full; webhook trigger rejected with 503");
        state.metrics.record_webhook(&flow.name, "failed");
        return reply(
            StatusCode::SERVICE_UNAVAILABLE,
            "busy",
            "the run queue is full; retry later",
        );
    }
    let answer = answer.await.unwrap_or(Submitted::UnknownFlow);
    info!(flow = %flow.name, event_id = %event_id, answer = ?answer, "webhook triggered a run");
    state.metrics.record_webhook(&flow.name, "triggered");
    reply(
        StatusCode::ACCEPTED,
        "triggered",
        format!("{answer:?}").to_lowercase(),
    )
}

async fn upsert(
    state: &WebhookState,
    flow: &Flow,
    entity: &crate::spec::plan::Entity,
    event: &event::Event,
    delete: bool,
) -> Response {
    let lock = state.flow_lock(&flow.name);
    let _turn = lock.lock().await;
    let opened = state
        .destinations
        .open_waiting(
            &flow.destination,
            &state.shutdown,
            Some(DESTINATION_PATIENCE),
        )
        .await;
    let mut destination = match opened {
        Ok(destination) => destination,
        Err(open_error) => {
            let message = crate::redact::redact(&open_error.to_string());
            error!(flow = %flow.name, event_id = %event.id, error = %message, "webhook not applied: destination unavailable");
            state.metrics.record_webhook(&flow.name, "failed");
            return reply(StatusCode::SERVICE_UNAVAILABLE, "failed", message);
        }
    };
    let applied = apply::apply(destination.as_mut(), flow, entity, event, delete).await;
    drop(destination);
    let (status, outcome, detail) = match applied {
        Ok(Applied::Written) => (
            StatusCode::OK,
            "applied",
            format!(
                "{} {}",
                entity.name,
                if delete {
                    "row marked deleted"
                } else {
                    "row upserted"
                }
            ),
        ),
        Ok(Applied::Duplicate) => (
            StatusCode::OK,
            "duplicate",
            "event already applied".to_string(),
        ),
        Ok(Applied::Stale) => (
            StatusCode::OK,
            "stale",
            "the row holds a newer event".to_string(),
        ),
        Err(ApplyError::Unusable(problem)) => {
            warn!(flow = %flow.name, event_id = %event.id, problem = %problem, "webhook event not applied");
            (StatusCode::OK, "invalid", problem)
        }
        Err(ApplyError::Destination(write_error)) => {
            let message = crate::redact::redact(&write_error.to_string());
            error!(flow = %flow.name, event_id = %event.id, error = %message, "webhook not applied: write failed");
            (StatusCode::SERVICE_UNAVAILABLE, "failed", message)
        }
    };
    if status.is_success() {
        info!(flow = %flow.name, entity = %entity.name, event_id = %event.id, event_type = %event.event_type, outcome, "webhook event handled");
    }
    state.metrics.record_webhook(&flow.name, outcome);
    reply(status, outcome, detail)
}
