//! Local emulations of the APIs behind the built-in connectors, each an axum
//! server on 127.0.0.1 that records every request and can return queued
//! faults (429s, errors) in place of its own responses.
//!
//! - `stripe`: ferry's own Stripe-compatible API (the one `ferry demo`
//!   serves) behind the recorder.
//! - `close`: leads, opportunities, activities and custom fields with
//!   `_skip`/`_limit`, a maximum `_skip`, date filters and 429s.
//! - `posthog`: events with `next` URLs, persons, groups and the query API.

#![allow(dead_code)]

pub mod close;
pub mod posthog;
pub mod stripe;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// One request as the emulation received it.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Query pairs, decoded, in order.
    pub query: Vec<(String, String)>,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn json_body(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn params(&self, name: &str) -> Vec<&str> {
        self.query
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

/// A canned response the next matching request receives instead of the
/// emulation's own.
#[derive(Debug, Clone)]
pub struct Fault {
    /// Requests whose path starts with this.
    pub path_prefix: String,
    pub status: StatusCode,
    pub headers: Vec<(&'static str, String)>,
    pub body: Value,
}

/// What every emulation shares: the request log and the fault queue.
#[derive(Clone, Default)]
pub struct Harness {
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    pub faults: Arc<Mutex<VecDeque<Fault>>>,
}

impl Harness {
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn requests_to(&self, prefix: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|request| request.path.starts_with(prefix))
            .collect()
    }

    pub fn clear(&self) {
        self.requests.lock().unwrap().clear();
    }

    pub fn fail_next(&self, fault: Fault) {
        self.faults.lock().unwrap().push_back(fault);
    }

    /// Serves `router` on 127.0.0.1 behind the recorder and returns its URL.
    pub async fn serve(&self, router: Router) -> String {
        let app = router.layer(middleware::from_fn_with_state(self.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        format!("http://{address}")
    }
}

async fn record(State(harness): State<Harness>, request: Request<Body>, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let request = Request::from_parts(parts, Body::from(body.clone()));
    let uri = request.uri().clone();
    let query = uri
        .query()
        .map(|text| {
            url::form_urlencoded::parse(text.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    harness.requests.lock().unwrap().push(Recorded {
        method: request.method().to_string(),
        path: uri.path().to_string(),
        query,
        headers: request.headers().clone(),
        body: body.to_vec(),
    });

    let fault = {
        let mut faults = harness.faults.lock().unwrap();
        let position = faults
            .iter()
            .position(|fault| uri.path().starts_with(&fault.path_prefix));
        position.and_then(|index| faults.remove(index))
    };
    match fault {
        Some(fault) => {
            let mut response = (fault.status, axum::Json(fault.body)).into_response();
            for (name, value) in fault.headers {
                response
                    .headers_mut()
                    .insert(name, HeaderValue::from_str(&value).unwrap());
            }
            response
        }
        None => next.run(request).await,
    }
}

/// A config folder with one flow of a built-in connector writing to a
/// DuckDB file in the same temporary folder.
pub struct FlowDir {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub db: PathBuf,
}

impl FlowDir {
    /// Writes flow `name` of `connector`; `extra` is YAML appended to the
    /// flow (entities, schema, ...). Config values are written as given.
    pub fn new(name: &str, connector: &str, config: &[(&str, &str)], extra: &str) -> FlowDir {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("ferry.d");
        std::fs::create_dir(&folder).unwrap();
        let db = dir.path().join("test.duckdb");
        let mut flow =
            format!("kind: Flow\nname: {name}\nsource:\n  connector: {connector}\n  config:\n");
        for (key, value) in config {
            flow.push_str(&format!(
                "    {key}: {}\n",
                serde_json::to_string(value).unwrap()
            ));
        }
        flow.push_str(&format!("destination: \"duckdb://{}\"\n", db.display()));
        flow.push_str(extra);
        std::fs::write(folder.join("flow.yaml"), flow).unwrap();
        FlowDir {
            dir,
            config: folder,
            db,
        }
    }

    pub fn flow(&self, name: &str) -> Arc<ferry::spec::plan::Flow> {
        let loaded = match ferry::spec::load_with_env(&self.config, &|_| None) {
            Ok(loaded) => loaded,
            Err(problems) => {
                let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
                panic!("config does not load:\n{}", lines.join("\n"));
            }
        };
        loaded.catalog.flows[name].clone()
    }

    pub fn db(&self) -> &Path {
        &self.db
    }
}

/// Runs every entity of the flow once and fails the test when one failed.
pub async fn sync_ok(flow: &Arc<ferry::spec::plan::Flow>) -> ferry::sync::FlowReport {
    let report = sync(flow, &ferry::sync::RunOptions::default()).await;
    for run in &report.runs {
        if let Some(error) = &run.error {
            panic!("{}/{} failed: {}", report.flow, run.entity, error.message);
        }
    }
    report
}

pub async fn sync(
    flow: &Arc<ferry::spec::plan::Flow>,
    options: &ferry::sync::RunOptions,
) -> ferry::sync::FlowReport {
    ferry::sync::run_flow(flow.clone(), &[], options).await
}
