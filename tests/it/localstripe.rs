//! The built-in Stripe connector against localstripe (PyPI), a stateful
//! fake Stripe server written by others: objects created through its API
//! must all reach the tables, and an update must arrive with the next
//! incremental run.
//!
//! localstripe is installed into a virtual environment under the cargo
//! target directory by `tests/localstripe/setup.sh`. When Python, pip or the
//! package is not available the test prints why and passes without running.
//!
//! Where localstripe differs from the real API (version 1.15.10):
//! - lists are oldest first, where Stripe lists newest first;
//! - `/v1/events` accepts one `type` but not `types[]`, and lists oldest
//!   first too. A small proxy in front of it answers a `types[]` request
//!   with one localstripe request per type, merged newest first, as Stripe
//!   would answer; the connector is not changed for it;
//! - its events carry `api_version` 2017-08-15 object shapes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::emulator::{FlowDir, sync_ok};
use crate::support::duck;

const API_KEY: &str = "sk_test_localstripe_0001";

/// Kills the localstripe process when the test ends, however it ends.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Returns the venv's Python with localstripe importable, installing it
/// first when needed; `Err` gives the reason it is not available.
fn localstripe_python() -> Result<PathBuf, String> {
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("localstripe-venv");
    let python = venv.join("bin").join("python");
    let importable = |python: &Path| {
        Command::new(python)
            .args(["-c", "import localstripe"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    };
    if importable(&python) {
        return Ok(python);
    }
    let setup = repository().join("tests/localstripe/setup.sh");
    let output = Command::new("bash")
        .arg(&setup)
        .arg(&venv)
        .output()
        .map_err(|error| format!("cannot run {}: {error}", setup.display()))?;
    if !output.status.success() {
        return Err(format!(
            "installing localstripe failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    if importable(&python) {
        Ok(python)
    } else {
        Err("localstripe installed but does not import".to_string())
    }
}

fn start_localstripe(python: &Path) -> Server {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(python)
        .arg(repository().join("tests/localstripe/serve.py"))
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("localstripe starts");
    let server = Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "localstripe did not start listening on port {port}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server
}

/// POSTs a form to localstripe and returns the object it created or changed.
async fn post(client: &reqwest::Client, url: &str, path: &str, form: &[(&str, &str)]) -> Value {
    let body: String = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let response = client
        .post(format!("{url}{path}"))
        .bearer_auth(API_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let object: Value = response.json().await.unwrap();
    assert!(status.is_success(), "POST {path}: {status}: {object}");
    object
}

#[derive(Clone)]
struct Proxy {
    target: String,
    client: reqwest::Client,
}

/// Forwards GETs to localstripe; answers `/v1/events?types[]=…` the way
/// Stripe does (see the module docs).
async fn forward(
    State(proxy): State<Proxy>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
) -> Response {
    let pairs: Vec<(String, String)> = uri
        .query()
        .map(|text| {
            url::form_urlencoded::parse(text.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let types: Vec<&str> = pairs
        .iter()
        .filter(|(key, _)| key == "types[]")
        .map(|(_, value)| value.as_str())
        .collect();
    if uri.path() != "/v1/events" || types.is_empty() {
        return get(&proxy, uri.path(), &pairs, &headers).await;
    }
    if pairs.iter().any(|(key, _)| key == "starting_after") {
        return (
            StatusCode::NOT_IMPLEMENTED,
            "the test proxy reads one page of events",
        )
            .into_response();
    }
    let limit: usize = pairs
        .iter()
        .find(|(key, _)| key == "limit")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(10);
    let mut merged: Vec<Value> = Vec::new();
    for event_type in types {
        let mut query: Vec<(String, String)> = pairs
            .iter()
            .filter(|(key, _)| key != "types[]")
            .cloned()
            .collect();
        query.push(("type".to_string(), event_type.to_string()));
        let response = proxy
            .client
            .get(format!("{}/v1/events", proxy.target))
            .query(&query)
            .headers(headers.clone())
            .send()
            .await
            .unwrap();
        let page: Value = response.json().await.unwrap();
        // localstripe lists oldest first: reversed, newer events of one
        // second come first after the stable sort below.
        let mut data = page["data"].as_array().cloned().unwrap_or_default();
        data.reverse();
        merged.extend(data);
    }
    merged.sort_by_key(|event| std::cmp::Reverse(event["created"].as_i64()));
    let has_more = merged.len() > limit;
    merged.truncate(limit);
    axum::Json(json!({"object": "list", "url": "/v1/events", "has_more": has_more, "data": merged}))
        .into_response()
}

async fn get(
    proxy: &Proxy,
    path: &str,
    pairs: &[(String, String)],
    headers: &HeaderMap,
) -> Response {
    let response = proxy
        .client
        .get(format!("{}{path}", proxy.target))
        .query(pairs)
        .headers(headers.clone())
        .send()
        .await
        .unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let body = response.bytes().await.unwrap();
    (status, [("content-type", "application/json")], body).into_response()
}

async fn start_proxy(target: &str) -> String {
    let proxy = Proxy {
        target: target.to_string(),
        client: reqwest::Client::new(),
    };
    let router = Router::new().fallback(forward).with_state(proxy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{address}")
}

fn ids(db: &Path, table: &str) -> Vec<String> {
    duck::query(db, &format!("select id from stripe.{table} order by id"))
        .into_iter()
        .map(|row| row[0].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localstripe_objects_reach_tables() {
    let python = match tokio::task::spawn_blocking(localstripe_python)
        .await
        .unwrap()
    {
        Ok(python) => python,
        Err(reason) => {
            eprintln!("skipping the localstripe test: {reason}");
            return;
        }
    };
    let server = start_localstripe(&python);
    let client = reqwest::Client::new();
    let url = server.url.clone();

    let product = post(&client, &url, "/v1/products", &[("name", "Team plan")]).await;
    let plan = post(
        &client,
        &url,
        "/v1/plans",
        &[
            ("product", product["id"].as_str().unwrap()),
            ("amount", "4900"),
            ("currency", "usd"),
            ("interval", "month"),
        ],
    )
    .await;
    let mut customers = Vec::new();
    let mut subscriptions = Vec::new();
    for number in 0..3 {
        let email = format!("person{number}@example.com");
        let customer = post(&client, &url, "/v1/customers", &[("email", email.as_str())]).await;
        let customer_id = customer["id"].as_str().unwrap().to_string();
        let subscription = post(
            &client,
            &url,
            "/v1/subscriptions",
            &[
                ("customer", customer_id.as_str()),
                ("items[0][plan]", plan["id"].as_str().unwrap()),
                ("trial_period_days", "14"),
            ],
        )
        .await;
        subscriptions.push(subscription["id"].as_str().unwrap().to_string());
        customers.push(customer_id);
    }
    // An invoice item, then an invoice that collects it, per customer.
    let mut invoices = Vec::new();
    for customer in &customers {
        post(
            &client,
            &url,
            "/v1/invoiceitems",
            &[
                ("customer", customer.as_str()),
                ("amount", "1500"),
                ("currency", "usd"),
                ("description", "Onboarding"),
            ],
        )
        .await;
        let invoice = post(
            &client,
            &url,
            "/v1/invoices",
            &[("customer", customer.as_str())],
        )
        .await;
        invoices.push(invoice["id"].as_str().unwrap().to_string());
    }

    let proxy = start_proxy(&url).await;
    let config = [("api_key", API_KEY), ("base_url", proxy.as_str())];
    let dir = FlowDir::new(
        "billing",
        "stripe",
        &config,
        "entities: [customers, subscriptions, invoices]\n",
    );
    let flow = dir.flow("billing");
    sync_ok(&flow).await;

    customers.sort();
    subscriptions.sort();
    invoices.sort();
    assert_eq!(ids(dir.db(), "customers"), customers);
    assert_eq!(ids(dir.db(), "subscriptions"), subscriptions);
    assert_eq!(ids(dir.db(), "invoices"), invoices);

    // Events carry whole seconds: the update must be later than the
    // creation events the feed also reads again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let changed = &customers[1];
    post(
        &client,
        &url,
        &format!("/v1/customers/{changed}"),
        &[("email", "changed@example.com")],
    )
    .await;
    let report = sync_ok(&flow).await;
    assert!(report.runs.iter().all(|run| run.requests >= 1));

    let emails = duck::query(
        dir.db(),
        &format!("select email from stripe.customers where id = '{changed}'"),
    );
    assert_eq!(emails, vec![vec!["changed@example.com"]]);
    let others = duck::query(
        dir.db(),
        "select count(*) from stripe.customers where email like 'person%@example.com'",
    );
    assert_eq!(others, vec![vec!["2"]]);
    drop(server);
}
