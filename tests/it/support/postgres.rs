//! A fresh database per test, on the server in `FERRY_TEST_POSTGRES_URL`
//! (`scripts/test-postgres.sh` starts one and sets it).
//!
//! Without the variable, PostgreSQL tests return early; the first one
//! prints why to the terminal, past the test harness's output capture.

use std::io::Write;
use std::sync::Once;

use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

pub const URL_VARIABLE: &str = "FERRY_TEST_POSTGRES_URL";
/// The CA that signed the test server's certificate, when it has TLS.
pub const CA_VARIABLE: &str = "FERRY_TEST_POSTGRES_CA";

/// Returns the server URL, or prints the skip reason once and returns `None`.
pub fn server_url() -> Option<String> {
    match std::env::var(URL_VARIABLE) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            static REASON: Once = Once::new();
            REASON.call_once(|| {
                let _ = writeln!(
                    std::io::stderr(),
                    "PostgreSQL tests skipped: {URL_VARIABLE} is not set; scripts/test-postgres.sh starts a server and sets it"
                );
            });
            None
        }
    }
}

/// Replaces the database (the URL's path) and appends `parameters`.
pub fn url_for(server: &str, database: &str, parameters: &str) -> String {
    let mut url = url::Url::parse(server).expect("FERRY_TEST_POSTGRES_URL is a URL");
    url.set_path(&format!("/{database}"));
    url.set_query(None);
    let mut text = url.to_string();
    if !parameters.is_empty() {
        text.push('?');
        text.push_str(parameters);
    }
    text
}

/// A database that exists for one test and is dropped after it.
pub struct TestDatabase {
    pub name: String,
    server: String,
    /// A session on this database, with TimeZone UTC, for assertions.
    client: Client,
}

impl TestDatabase {
    /// Creates a database, or returns `None` (the test is skipped) when no
    /// server is configured.
    pub async fn create() -> Option<TestDatabase> {
        let server = server_url()?;
        let name = format!("ferry_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&server).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("the test role may create databases");
        let client = connect(&url_for(&server, &name, "")).await;
        client.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
        Some(TestDatabase {
            name,
            server,
            client,
        })
    }

    /// Returns the URL of this database without TLS, because most tests
    /// need none and a TLS handshake per connection slows them down.
    pub fn url(&self) -> String {
        self.url_with("sslmode=disable")
    }

    pub fn url_with(&self, parameters: &str) -> String {
        url_for(&self.server, &self.name, parameters)
    }

    /// Runs a query and returns every cell as PostgreSQL's text output;
    /// NULL is `None`.
    pub async fn query(&self, sql: &str) -> Vec<Vec<Option<String>>> {
        let messages = self
            .client
            .simple_query(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error:?}"));
        messages
            .into_iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|index| row.get(index).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    pub async fn execute(&self, sql: &str) {
        self.client
            .batch_execute(sql)
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error:?}"));
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let server = self.server.clone();
        let name = self.name.clone();
        // Drop runs inside the test's runtime, which cannot block on a
        // future, so the statement runs on a thread with its own runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let admin = connect(&server).await;
                let sql = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                if let Err(error) = admin.batch_execute(&sql).await {
                    eprintln!("dropping test database {name} failed: {error}");
                }
            });
        });
        let _ = dropped.join();
    }
}

/// Connects without TLS (the test server accepts both).
pub async fn connect(url: &str) -> Client {
    let url = if url.contains('?') {
        format!("{url}&sslmode=disable")
    } else {
        format!("{url}?sslmode=disable")
    };
    let (client, connection) = tokio_postgres::connect(&url, NoTls)
        .await
        .unwrap_or_else(|error| panic!("connecting to the test server failed: {error}"));
    tokio::spawn(async move {
        let _ = connection.await;
    });
    client
}
