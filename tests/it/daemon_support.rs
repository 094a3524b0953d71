//! Helpers for daemon tests: config files for a small loopback API, a
//! `ferry run` child process, and HTTP calls to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry::spec::plan::Catalog;

/// A connector for the loopback "shop" API: `GET /customers?after=<id>`
/// returns `{"data": [...], "next": "<id>"|null}`; webhooks are signed the
/// way `signature` names (`stripe` or `close`).
pub fn shop_connector(signature: &str) -> String {
    format!(
        r#"kind: Connector
name: shop
config:
  base_url: {{ type: string }}
http:
  base_url: "{{{{config.base_url}}}}"
  retry: {{ max_attempts: 1 }}
entities:
  customers:
    path: /customers
    records: "$.data[*]"
    primary_key: [id]
    pagination: {{ type: cursor, cursor: "$.next", param: after }}
    chunk: {{ records: 2, seconds: 60 }}
  invoices:
    path: /invoices
    records: "$.data[*]"
    primary_key: [id]
webhooks:
  signature: {{ type: {signature} }}
  id: "$.id"
  type: "$.type"
  object: "$.data.object"
  occurred_at: "$.created"
  routes:
    - {{ events: ["customer.deleted"], entity: customers, delete: true }}
    - {{ events: ["customer.*"], entity: customers }}
"#
    )
}

/// Returns a flow of the shop connector into `duckdb://<db>`.
pub fn shop_flow(name: &str, base_url: &str, db: &Path, extra: &str) -> String {
    format!(
        "kind: Flow\nname: {name}\nsource:\n  connector: shop\n  config:\n    base_url: \"{base_url}\"\ndestination: \"duckdb://{}\"\nschema: shop\nentities: [customers]\n{extra}",
        db.display()
    )
}

pub fn write(folder: &Path, name: &str, text: &str) -> PathBuf {
    let path = folder.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// Loads a folder with an empty environment, panicking with the located
/// errors when it is invalid.
pub fn load(folder: &Path) -> Catalog {
    match ferry::spec::load_with_env(folder, &|_| None) {
        Ok(loaded) => loaded.catalog,
        Err(diagnostics) => panic!(
            "config invalid:\n{}",
            diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    }
}

/// Returns a free loopback port (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `ferry run` child process and its collected stderr.
pub struct Daemon {
    pub child: Child,
    pub base: String,
    pub logs: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    /// Starts `ferry run` on `folder` and waits until `/healthz` responds.
    pub fn start(folder: &Path, env: &[(&str, &str)]) -> Daemon {
        let port = free_port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .args(["run", "--config"])
            .arg(folder)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("FERRY_RELOAD_DEBOUNCE_MS", "200")
            .env("FERRY_RETRY_DELAY_SECONDS", "1")
            .env_remove("FERRY_API_TOKEN")
            .env_remove("FERRY_LOG_FORMAT")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start ferry run");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let daemon = Daemon {
            child,
            base: format!("http://127.0.0.1:{port}"),
            logs,
        };
        daemon.wait_for(Duration::from_secs(20), "/healthz answers", || {
            get(&format!("{}/healthz", daemon.base)).is_some_and(|(status, _)| status == 200)
        });
        daemon
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Polls `check` every 50 ms until it holds, or panics with the logs.
    pub fn wait_for(&self, limit: Duration, what: &str, mut check: impl FnMut() -> bool) {
        let started = Instant::now();
        while started.elapsed() < limit {
            if check() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "timed out waiting until {what}; daemon logs:\n{}",
            self.logs()
        );
    }

    pub fn get_json(&self, path: &str) -> serde_json::Value {
        let (status, body) = get(&format!("{}{path}", self.base)).expect("daemon answers");
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap()
    }

    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("daemon did not exit; logs:\n{}", self.logs());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends a blocking GET with a short timeout. Returns status and body, or
/// `None` when nothing responds.
pub fn get(url: &str) -> Option<(u16, String)> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        Some((status, response.text().await.ok()?))
    })
}

/// Flow names in `/flows`, in order.
pub fn flow_names(flows: &serde_json::Value) -> Vec<String> {
    flows["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|flow| flow["name"].as_str().unwrap().to_string())
        .collect()
}

/// The loopback "shop" API: customers in pages of `page_size`, each page
/// sent after `delay`. Every request target is logged.
pub struct ShopApi {
    pub base: String,
    pub state: Arc<ApiState>,
}

pub struct ApiState {
    pub customers: Mutex<Vec<serde_json::Value>>,
    pub page_size: usize,
    pub delay: Mutex<Duration>,
    pub requests: Mutex<Vec<String>>,
    /// Statuses answered (with `Retry-After: 0`) before any data, one per request.
    pub failures: Mutex<std::collections::VecDeque<u16>>,
}

impl ShopApi {
    pub fn start(customers: Vec<serde_json::Value>, page_size: usize, delay: Duration) -> ShopApi {
        let state = Arc::new(ApiState {
            customers: Mutex::new(customers),
            page_size,
            delay: Mutex::new(delay),
            requests: Mutex::new(Vec::new()),
            failures: Mutex::new(Default::default()),
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let served = state.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new()
                    .route("/customers", axum::routing::get(customers_page))
                    .with_state(served);
                axum::serve(listener, app).await.unwrap();
            });
        });
        ShopApi { base, state }
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.requests.lock().unwrap().clone()
    }
}

async fn customers_page(
    axum::extract::State(state): axum::extract::State<Arc<ApiState>>,
    uri: axum::http::Uri,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    state.requests.lock().unwrap().push(uri.to_string());
    let failure = state.failures.lock().unwrap().pop_front();
    if let Some(status) = failure {
        let status = axum::http::StatusCode::from_u16(status).unwrap();
        return (status, [("retry-after", "0")], "try again").into_response();
    }
    let delay = *state.delay.lock().unwrap();
    tokio::time::sleep(delay).await;
    let customers = state.customers.lock().unwrap().clone();
    let start = match query.get("after") {
        Some(after) => customers
            .iter()
            .position(|customer| customer["id"].as_str() == Some(after.as_str()))
            .map_or(customers.len(), |index| index + 1),
        None => 0,
    };
    let page: Vec<serde_json::Value> = customers
        .iter()
        .skip(start)
        .take(state.page_size)
        .cloned()
        .collect();
    let more = start + page.len() < customers.len();
    let next = if more {
        page.last().map(|customer| customer["id"].clone())
    } else {
        None
    };
    axum::Json(serde_json::json!({"data": page, "next": next})).into_response()
}

/// A loopback server that stores every JSON body POSTed to it.
pub struct AlertSink {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl AlertSink {
    pub fn start() -> AlertSink {
        let bodies: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let stored = bodies.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let app = axum::Router::new().route(
                    "/hook",
                    axum::routing::post(move |axum::Json(body): axum::Json<serde_json::Value>| {
                        let stored = stored.clone();
                        async move {
                            stored.lock().unwrap().push(body);
                            "ok"
                        }
                    }),
                );
                axum::serve(listener, app).await.unwrap();
            });
        });
        AlertSink { url, bodies }
    }

    pub fn bodies(&self) -> Vec<serde_json::Value> {
        self.bodies.lock().unwrap().clone()
    }
}

/// `count` customers `c1`, `c2`, … with a name each.
pub fn customers(count: usize) -> Vec<serde_json::Value> {
    (1..=count)
        .map(|n| serde_json::json!({"id": format!("c{n}"), "name": format!("Customer {n}")}))
        .collect()
}

/// Rows of a DuckDB query as JSON text per row (the file is opened
/// read-only, so the daemon must not be writing to it).
pub fn query(db: &Path, sql: &str) -> Vec<Vec<String>> {
    let config = duckdb::Config::default()
        .access_mode(duckdb::AccessMode::ReadOnly)
        .unwrap();
    let connection = duckdb::Connection::open_with_flags(db, config).unwrap();
    let mut statement = connection.prepare(sql).unwrap();
    let columns = statement.column_count();
    let mut rows = statement.query([]).unwrap();
    let mut out = Vec::new();
    while let Some(row) = rows.next().unwrap() {
        let mut values = Vec::new();
        for index in 0..columns {
            let value: duckdb::types::Value = row.get(index).unwrap();
            values.push(match value {
                duckdb::types::Value::Null => "NULL".to_string(),
                duckdb::types::Value::Text(text) => text,
                other => format!("{other:?}"),
            });
        }
        out.push(values);
    }
    out
}

/// POSTs to the daemon: status and body.
pub fn post(url: &str, headers: &[(&str, String)], body: Vec<u8>) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut request = reqwest::Client::new()
            .post(url)
            .timeout(Duration::from_secs(20))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("daemon answers");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    })
}
