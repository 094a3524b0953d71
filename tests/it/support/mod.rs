//! Shared helpers: plan builders, a fetch harness, and loopback API servers
//! that respond from a table of exact request targets.

#![allow(dead_code)]

pub mod api;
pub mod bigquery;
pub mod duck;
pub mod github;
pub mod graphql_server;
pub mod oauth;
pub mod plan;
pub mod postgres;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use ferry::engine::{
    FetchContext, FetchError, HttpClient, Page, ParentPosition, ParentRow, ParentSource, Position,
    fetch,
};
use ferry::spec::plan::{Entity, Flow};
use serde_json::Value;
use tokio::sync::mpsc;
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// Returns the run time every test fetch uses.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 20, 0, 0, 0).unwrap()
}

/// Everything one fetch produced.
pub struct Outcome {
    pub pages: Vec<Page>,
    pub result: Result<(), FetchError>,
}

impl Outcome {
    pub fn records(&self) -> Vec<Value> {
        self.pages
            .iter()
            .flat_map(|page| page.records.iter().cloned().map(Value::Object))
            .collect()
    }

    pub fn ids(&self) -> Vec<Value> {
        self.pages
            .iter()
            .flat_map(|page| page.records.iter().map(|record| record["id"].clone()))
            .collect()
    }

    pub fn nexts(&self) -> Vec<Option<Position>> {
        self.pages.iter().map(|page| page.next.clone()).collect()
    }

    pub fn error(&self) -> &FetchError {
        match &self.result {
            Err(error) => error,
            Ok(()) => panic!("the fetch succeeded, an error was expected"),
        }
    }

    pub fn assert_ok(&self) {
        if let Err(error) = &self.result {
            panic!("fetch failed: {error}");
        }
    }
}

/// Runs a whole fetch of `entity` from `start` and collects its pages.
pub async fn run(flow: &Arc<Flow>, entity: &Arc<Entity>, start: Position) -> Outcome {
    let client = Arc::new(HttpClient::new(flow).expect("client builds"));
    run_with(flow, entity, client, start).await
}

pub async fn run_with(
    flow: &Arc<Flow>,
    entity: &Arc<Entity>,
    client: Arc<HttpClient>,
    start: Position,
) -> Outcome {
    run_context(
        FetchContext {
            flow: flow.clone(),
            entity: entity.clone(),
            client,
            now: now(),
            parents: None,
        },
        start,
    )
    .await
}

/// Runs a whole fetch of a child entity whose parent rows come from `parents`.
pub async fn run_children(
    flow: &Arc<Flow>,
    entity: &Arc<Entity>,
    parents: Arc<dyn ParentSource>,
    start: Position,
) -> Outcome {
    let client = Arc::new(HttpClient::new(flow).expect("client builds"));
    run_context(
        FetchContext {
            flow: flow.clone(),
            entity: entity.clone(),
            client,
            now: now(),
            parents: Some(parents),
        },
        start,
    )
    .await
}

async fn run_context(context: FetchContext, start: Position) -> Outcome {
    let (sender, mut receiver) = mpsc::channel(4);
    let task = tokio::spawn(fetch(context, start, sender));
    let mut pages = Vec::new();
    while let Some(page) = receiver.recv().await {
        pages.push(page);
    }
    let result = task.await.expect("fetch task does not panic");
    Outcome { pages, result }
}

/// Starts a server that responds to each exact `path?query` target from
/// `routes`, and with 404 `no route` to anything else, so an unexpected
/// request fails the test.
pub async fn serve(routes: Vec<(&str, ResponseTemplate)>) -> MockServer {
    let server = MockServer::start().await;
    mount(&server, routes).await;
    server
}

pub async fn mount(server: &MockServer, routes: Vec<(&str, ResponseTemplate)>) {
    let routes: Vec<(String, ResponseTemplate)> = routes
        .into_iter()
        .map(|(target, response)| (target.to_string(), response))
        .collect();
    Mock::given(any())
        .respond_with(move |request: &Request| {
            let target = target(request);
            routes
                .iter()
                .find(|(route, _)| *route == target)
                .map(|(_, response)| response.clone())
                .unwrap_or_else(|| {
                    ResponseTemplate::new(404).set_body_string(format!("no route for {target}"))
                })
        })
        .mount(server)
        .await;
}

/// `path?query` of a received request, as sent.
pub fn target(request: &Request) -> String {
    match request.url.query() {
        Some(query) => format!("{}?{}", request.url.path(), query),
        None => request.url.path().to_string(),
    }
}

/// Returns every request the server received, as `METHOD path?query`, in order.
pub async fn requests(server: &MockServer) -> Vec<String> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .iter()
        .map(|request| format!("{} {}", request.method, target(request)))
        .collect()
}

pub async fn received(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

pub fn json(body: Value) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(body)
}

/// A responder that returns each response in turn, repeating the last one.
pub struct Sequence {
    responses: Vec<ResponseTemplate>,
    next: AtomicUsize,
}

impl Sequence {
    pub fn new(responses: Vec<ResponseTemplate>) -> Sequence {
        Sequence {
            responses,
            next: AtomicUsize::new(0),
        }
    }
}

impl Respond for Sequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let index = self.next.fetch_add(1, Ordering::SeqCst);
        self.responses[index.min(self.responses.len() - 1)].clone()
    }
}

/// Starts a server that responds to every request from `responses` in turn.
pub async fn serve_sequence(responses: Vec<ResponseTemplate>) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(Sequence::new(responses))
        .mount(&server)
        .await;
    server
}

/// Parent rows held in memory, in (`synced_at`, key) order, that record
/// every `after` position they were asked for.
pub struct MemoryParents {
    rows: Vec<ParentRow>,
    pub asked: std::sync::Mutex<Vec<Option<ParentPosition>>>,
}

impl MemoryParents {
    /// Parents with integer keys 1, 2, … and the given fields, all synced
    /// one second apart from `now()`.
    pub fn numbered(fields: Vec<Value>) -> MemoryParents {
        let rows = fields
            .into_iter()
            .enumerate()
            .map(|(i, fields)| {
                let Value::Object(fields) = fields else {
                    panic!("parent fields must be JSON objects");
                };
                ParentRow {
                    synced_at: now() + chrono::Duration::seconds(i as i64),
                    key: vec![Value::from(i as u64 + 1)],
                    fields,
                }
            })
            .collect();
        MemoryParents {
            rows,
            asked: std::sync::Mutex::new(Vec::new()),
        }
    }

    pub fn row(&self, index: usize) -> &ParentRow {
        &self.rows[index]
    }
}

#[async_trait::async_trait]
impl ParentSource for MemoryParents {
    async fn parents_after(
        &self,
        after: Option<&ParentPosition>,
        limit: usize,
    ) -> Result<Vec<ParentRow>, FetchError> {
        self.asked.lock().unwrap().push(after.cloned());
        let rows = self
            .rows
            .iter()
            .filter(|row| match after {
                None => true,
                Some(after) => {
                    row.synced_at > after.synced_at
                        || (row.synced_at == after.synced_at
                            && row.key[0].as_u64() > after.key[0].as_u64())
                }
            })
            .take(limit)
            .cloned()
            .collect();
        Ok(rows)
    }
}
