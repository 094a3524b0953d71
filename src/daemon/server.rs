//! The HTTP server: health, readiness, metrics, flow status, manual runs
//! and webhooks.
//!
//! Write endpoints other than webhooks (`POST /flows/{name}/run`) need
//! `Authorization: Bearer $FERRY_API_TOKEN` when the token is set; webhooks
//! are authenticated by their signatures. Without a token the server only
//! binds loopback addresses (see [`check_listen`]).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use subtle::ConstantTimeEq;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::metrics::Metrics;
use super::reload::ConfigHealth;
use super::schedule;
use super::scheduler::{Command, RunReason, RunRequest, Submitted};
use super::status::StatusBoard;
use super::webhooks::{self, WebhookState};
use crate::spec::plan::{Catalog, DestinationUrl};

pub struct AppState {
    pub catalog: watch::Receiver<Arc<Catalog>>,
    pub health: Arc<ConfigHealth>,
    pub metrics: Arc<Metrics>,
    pub status: Arc<StatusBoard>,
    pub commands: mpsc::Sender<Command>,
    pub api_token: Option<String>,
    pub webhooks: Arc<WebhookState>,
    /// The last destination check, reused for a few seconds so probes
    /// do not open a connection each.
    pub readiness: Mutex<Option<(Instant, Vec<String>)>>,
}

/// How long a destination check result is reused by `/readyz`.
const READINESS_TTL: Duration = Duration::from_secs(2);

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/flows", get(flows))
        .route("/flows/{name}/run", post(run_flow))
        .route("/webhooks/{flow}", post(webhook))
        .with_state(state)
}

/// Rejects a non-loopback address when no API token is set, because
/// anyone who can reach the port could then start runs.
pub fn check_listen(addresses: &[SocketAddr], token: Option<&str>) -> Result<(), String> {
    let exposed: Vec<String> = addresses
        .iter()
        .filter(|address| !address.ip().is_loopback())
        .map(ToString::to_string)
        .collect();
    if exposed.is_empty() || token.is_some_and(|token| !token.is_empty()) {
        return Ok(());
    }
    Err(format!(
        "refusing to listen on {} without an API token: set FERRY_API_TOKEN so write endpoints require it, or listen on 127.0.0.1",
        exposed.join(", ")
    ))
}

fn authorized(state: &AppState, headers: &HeaderMap) -> bool {
    let Some(token) = state.api_token.as_deref().filter(|token| !token.is_empty()) else {
        return true;
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .unwrap_or("");
    bool::from(given.as_bytes().ct_eq(token.as_bytes()))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let mut problems = Vec::new();
    if !state.health.loaded() {
        problems.push("no valid config loaded yet".to_string());
        problems.extend(state.health.errors());
    }
    problems.extend(destination_problems(&state).await);
    if problems.is_empty() {
        (StatusCode::OK, axum::Json(json!({"ready": true}))).into_response()
    } else {
        let body = json!({"ready": false, "problems": problems});
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    }
}

/// Checks each destination of the config, reusing a recent result.
async fn destination_problems(state: &AppState) -> Vec<String> {
    {
        let cached = state
            .readiness
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some((at, problems)) = cached.as_ref()
            && at.elapsed() < READINESS_TTL
        {
            return problems.clone();
        }
    }
    let destinations: Vec<DestinationUrl> = {
        let catalog = state.catalog.borrow();
        let mut urls: Vec<DestinationUrl> = Vec::new();
        for flow in catalog.flows.values() {
            if !urls.contains(&flow.destination) {
                urls.push(flow.destination.clone());
            }
        }
        urls
    };
    let mut problems = Vec::new();
    for url in destinations {
        if let Err(problem) = reachable(&url).await {
            problems.push(format!("{}: {problem}", url.display()));
        }
    }
    let mut cached = state
        .readiness
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    *cached = Some((Instant::now(), problems.clone()));
    problems
}

/// Checks a destination. DuckDB: the file's folder exists (a run may have
/// the file itself open). PostgreSQL: `SELECT 1` returns within 5 seconds.
async fn reachable(url: &DestinationUrl) -> Result<(), String> {
    match url {
        DestinationUrl::DuckDb { path } => {
            let path = std::path::Path::new(path);
            let folder = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => std::path::Path::new("."),
            };
            if folder.is_dir() {
                Ok(())
            } else {
                Err(format!("folder {} does not exist", folder.display()))
            }
        }
        DestinationUrl::Postgres { url } => {
            // The destination's own connection code, so the URL's TLS
            // settings (sslmode, sslrootcert) apply here too.
            let check = async {
                crate::destination::postgres::ping(url)
                    .await
                    .map_err(|error| error.to_string())
            };
            tokio::time::timeout(Duration::from_secs(5), check)
                .await
                .unwrap_or_else(|_| Err("no answer within 5s".to_string()))
        }
    }
}

async fn flows(State(state): State<Arc<AppState>>) -> Response {
    let catalog = state.catalog.borrow().clone();
    let list: Vec<serde_json::Value> = catalog
        .flows
        .values()
        .map(|flow| {
            let board = state.status.get(&flow.name);
            let entities: Vec<serde_json::Value> = flow
                .entities
                .iter()
                .map(|entity| {
                    let last = board.entities.get(&entity.name);
                    json!({
                        "name": entity.name,
                        "last_run": last,
                    })
                })
                .collect();
            json!({
                "name": flow.name,
                "connector": flow.connector.name,
                "destination": flow.destination.display(),
                "schedule": flow.trigger.as_ref().map(schedule::describe),
                "next_run": board.next_run,
                "running": board.running,
                "webhook": flow.webhook.is_some(),
                "origin": flow.origin.to_string(),
                "entities": entities,
            })
        })
        .collect();
    axum::Json(json!({
        "config": {
            "loaded": state.health.loaded(),
            "errors": state.health.errors(),
        },
        "flows": list,
    }))
    .into_response()
}

#[derive(Debug, Deserialize)]
struct RunQuery {
    /// Comma-separated entity names.
    entities: Option<String>,
}

async fn run_flow(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Query(query): Query<RunQuery>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&state, &headers) {
        warn!(flow = %name, "run request rejected: missing or wrong bearer token");
        let mut response = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (FERRY_API_TOKEN)",
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let flow = state.catalog.borrow().flows.get(&name).cloned();
    let Some(flow) = flow else {
        return error(StatusCode::NOT_FOUND, format!("no flow named {name:?}"));
    };
    let entities: Vec<String> = query
        .entities
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|entity| !entity.is_empty())
        .map(str::to_string)
        .collect();
    let unknown: Vec<&String> = entities
        .iter()
        .filter(|entity| flow.entity(entity).is_none())
        .collect();
    if !unknown.is_empty() {
        let known: Vec<&str> = flow
            .entities
            .iter()
            .map(|entity| entity.name.as_str())
            .collect();
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "flow {name} has no entity {unknown:?}; its entities: {}",
                known.join(", ")
            ),
        );
    }

    let (reply_to, answer) = oneshot::channel();
    let command = Command {
        request: RunRequest {
            flow: name.clone(),
            entities: entities.clone(),
            reason: RunReason::Manual,
        },
        reply: Some(reply_to),
    };
    if state.commands.send(command).await.is_err() {
        return error(StatusCode::SERVICE_UNAVAILABLE, "ferry is stopping");
    }
    match answer.await {
        Ok(Submitted::Started) => {
            info!(flow = %name, entities = ?entities, "manual run started");
            (
                StatusCode::ACCEPTED,
                axum::Json(json!({"flow": name, "status": "started", "entities": entities})),
            )
                .into_response()
        }
        Ok(Submitted::AlreadyRunning | Submitted::Queued) => error(
            StatusCode::CONFLICT,
            format!("flow {name} is already running; try again when it ends"),
        ),
        Ok(Submitted::UnknownFlow) => {
            error(StatusCode::NOT_FOUND, format!("no flow named {name:?}"))
        }
        Err(_) => error(StatusCode::SERVICE_UNAVAILABLE, "ferry is stopping"),
    }
}

async fn webhook(
    State(state): State<Arc<AppState>>,
    Path(flow): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    webhooks::receive(state.webhooks.clone(), flow, headers, body).await
}
