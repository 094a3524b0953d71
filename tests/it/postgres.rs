//! The PostgreSQL destination beyond the shared contract: values and
//! names PostgreSQL rejects or changes, connections and TLS, run locks,
//! and a session killed in the middle of a chunk.
//!
//! Each test makes its own database on the server in
//! `FERRY_TEST_POSTGRES_URL` and returns early without one.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use ferry::destination::postgres::PostgresDestination;
use ferry::destination::{Destination, DestinationError, EntityTarget};
use serde_json::{Value, json};

use crate::destination::{chunk, run, succeeded, sync, target};
use crate::support::postgres::{CA_VARIABLE, TestDatabase, connect, server_url, url_for};

async fn open(database: &TestDatabase) -> PostgresDestination {
    PostgresDestination::open(&database.url()).await.unwrap()
}

fn cell(rows: &[Vec<Option<String>>]) -> Option<String> {
    rows[0][0].clone()
}

fn json_cell(value: &Option<String>) -> Value {
    serde_json::from_str(value.as_deref().expect("a JSON value")).unwrap()
}

/// Collects log lines written while it is the thread's default subscriber.
#[derive(Clone, Default)]
struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    /// Captures this thread's logs until the guard is dropped; the tests
    /// run on a current-thread runtime, so the destination logs here.
    fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let buffer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || buffer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    fn lines(&self) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().map(str::to_string).collect()
    }
}

// ---------------------------------------------------------------------------
// Values PostgreSQL rejects or changes

#[tokio::test]
async fn nul_becomes_replacement_character() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let logs = LogBuffer::default();
    let _capture = logs.capture();
    let mut destination = open(&database).await;
    let target = target("s", "items", &["id"]);
    destination
        .begin_run(&target, &run("r1", &target, Utc::now()))
        .await
        .unwrap();
    let state = json!({"cursor": "a\u{0}b"});
    let written = chunk(
        r#"[{"id": 1, "v": "a\u0000b", "j": {"k\u0000": ["x\u0000"]}, "n\u0000me": "f"},
            {"id": 2, "v": "plain", "j": {"k": "\u0000"}},
            {"id": 3, "v": "c\u0000"}]"#,
        state.clone(),
    );
    destination
        .write_chunk(&target, "r1", written)
        .await
        .unwrap();

    let sql = format!(
        r#"SELECT "v", "j"::text, "n{}me" FROM "s"."items" ORDER BY "id""#,
        '\u{FFFD}'
    );
    let rows = database.query(&sql).await;
    assert_eq!(rows.len(), 3, "every record is kept");
    let texts: Vec<Option<&str>> = rows.iter().map(|row| row[0].as_deref()).collect();
    assert_eq!(
        texts,
        [Some("a\u{FFFD}b"), Some("plain"), Some("c\u{FFFD}")]
    );
    assert_eq!(json_cell(&rows[0][1]), json!({"k\u{FFFD}": ["x\u{FFFD}"]}));
    assert_eq!(json_cell(&rows[1][1]), json!({"k": "\u{FFFD}"}));
    assert_eq!(rows[2][1], None);
    assert_eq!(
        rows[0][2].as_deref(),
        Some("f"),
        "the field name lost its NUL too"
    );

    // The state is json, not jsonb, so it keeps U+0000 exactly.
    assert_eq!(
        destination.read_state("flow", "items").await.unwrap(),
        Some(state)
    );

    let lines = logs.lines();
    let warning = |column: &str| {
        lines
            .iter()
            .find(|line| {
                line.contains("replaced U+0000") && line.contains(&format!("column={column} "))
            })
            .cloned()
            .unwrap_or_else(|| panic!("no warning for column {column}: {lines:#?}"))
    };
    assert!(warning("v").contains("values=2"), "{}", warning("v"));
    assert!(warning("j").contains("values=2"), "{}", warning("j"));
    assert!(
        lines.iter().any(|line| line.contains("in field names")),
        "{lines:#?}"
    );
    assert!(
        lines.iter().all(|line| !line.contains("plain")),
        "values stay out of logs: {lines:#?}"
    );
}

#[tokio::test]
async fn integers_beyond_64_bits_are_exact_numeric() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut destination = open(&database).await;
    let target = target("s", "big", &["id"]);
    sync(
        &mut destination,
        &target,
        &[
            r#"[{"id": 18446744073709551616, "v": -170141183460469231731687303715884105729},
              {"id": 1, "v": 9223372036854775807}]"#,
        ],
    )
    .await;
    sync(
        &mut destination,
        &target,
        &[r#"[{"id": 18446744073709551616, "v": 123456789012345678901234567890123456789012}]"#],
    )
    .await;

    let types = database
        .query(r#"SELECT pg_typeof("id")::text, pg_typeof("v")::text FROM "s"."big" LIMIT 1"#)
        .await;
    assert_eq!(
        types[0],
        [Some("numeric".to_string()), Some("numeric".to_string())]
    );
    let rows = database
        .query(r#"SELECT "id"::text, "v"::text FROM "s"."big" ORDER BY "id""#)
        .await;
    assert_eq!(
        rows,
        [
            vec![Some("1".into()), Some("9223372036854775807".into())],
            vec![
                Some("18446744073709551616".into()),
                Some("123456789012345678901234567890123456789012".into())
            ],
        ]
    );
}

#[tokio::test]
async fn numbers_beyond_numeric_are_kept() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut destination = open(&database).await;
    let target = target("s", "huge", &["id"]);
    sync(
        &mut destination,
        &target,
        &[r#"[{"id": 1, "tiny": 1e-20000, "j": {"big": 1e200000, "ok": 1.5}}]"#],
    )
    .await;

    let infos = destination.columns(&target.table).await.unwrap();
    let tiny = infos.iter().find(|info| info.field == "tiny").unwrap();
    assert_eq!(
        tiny.sql_type, "text",
        "a NUMERIC cannot hold 20,000 decimals"
    );
    let rows = database
        .query(r#"SELECT "tiny", "j"::text FROM "s"."huge""#)
        .await;
    assert_eq!(rows[0][0].as_deref(), Some("1e-20000"));
    assert_eq!(
        json_cell(&rows[0][1]),
        json!({"big": "1e+200000", "ok": 1.5})
    );
}

#[tokio::test]
async fn long_names_are_shortened_and_recorded() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut destination = open(&database).await;
    let target = target("s", "long", &["id"]);
    let first = "x".repeat(70);
    let second = format!("{first}y");
    let accented = "é".repeat(40);
    let records_json = |offset: i64| {
        json!([{"id": offset, first.as_str(): offset + 1, second.as_str(): offset + 2, accented.as_str(): offset + 3}])
            .to_string()
    };
    sync(&mut destination, &target, &[&records_json(0)]).await;
    sync(&mut destination, &target, &[&records_json(10)]).await;

    let infos = destination.columns(&target.table).await.unwrap();
    let column_of = |field: &str| {
        infos
            .iter()
            .find(|info| info.field == field)
            .unwrap_or_else(|| panic!("no column for a field of {} bytes: {infos:#?}", field.len()))
            .column
            .clone()
    };
    let names = [column_of(&first), column_of(&second), column_of(&accented)];
    for name in &names {
        assert!(name.len() <= 63, "{name} is {} bytes", name.len());
    }
    assert_ne!(names[0], names[1], "fields sharing 63 bytes stay apart");
    assert!(names[0].starts_with("xxxxxxxx"), "{}", names[0]);
    assert!(names[2].starts_with("éé"), "{}", names[2]);
    assert_eq!(
        infos.len(),
        6,
        "the second chunk added no columns: {infos:#?}"
    );

    let sql = format!(
        r#"SELECT "id"::text, "{}"::text, "{}"::text, "{}"::text FROM "s"."long" ORDER BY "id""#,
        names[0], names[1], names[2]
    );
    let rows = database.query(&sql).await;
    let text = |value: &str| Some(value.to_string());
    assert_eq!(
        rows,
        [
            vec![text("0"), text("1"), text("2"), text("3")],
            vec![text("10"), text("11"), text("12"), text("13")],
        ]
    );

    let recorded = database
        .query(
            r#"SELECT field, "column" FROM _ferry.columns WHERE "table" = 'long' ORDER BY field"#,
        )
        .await;
    let recorded: Vec<(String, String)> = recorded
        .into_iter()
        .map(|row| (row[0].clone().unwrap(), row[1].clone().unwrap()))
        .collect();
    assert!(
        recorded.contains(&(first.clone(), names[0].clone())),
        "{recorded:?}"
    );
    assert!(
        recorded.contains(&(second.clone(), names[1].clone())),
        "{recorded:?}"
    );
    assert!(
        recorded.contains(&(accented.clone(), names[2].clone())),
        "{recorded:?}"
    );
}

#[tokio::test]
async fn hostile_names_and_case_stay_apart() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut destination = open(&database).await;
    let target = target("Sales \"EU\"", "order", &["from"]);
    sync(
        &mut destination,
        &target,
        &[r#"[{"from": "a", "user": 1, "Group By": true, "ключ": "k",
               "Amount": 1, "amount": 2, "AMOUNT": 3, "semi;colon": "s"}]"#],
    )
    .await;

    let infos = destination.columns(&target.table).await.unwrap();
    let columns: Vec<&str> = infos.iter().map(|info| info.column.as_str()).collect();
    assert_eq!(
        columns,
        [
            "from",
            "user",
            "Group By",
            "ключ",
            "Amount",
            "amount",
            "AMOUNT",
            "semi;colon",
            "_ferry_synced_at",
            "_ferry_deleted_at"
        ]
    );
    let rows = database
        .query(
            r#"SELECT "from", "user"::text, "Group By"::text, "ключ", "Amount"::text,
                      "amount"::text, "AMOUNT"::text, "semi;colon"
               FROM "Sales ""EU"""."order""#,
        )
        .await;
    let expected: Vec<Option<String>> = ["a", "1", "true", "k", "1", "2", "3", "s"]
        .iter()
        .map(|value| Some(value.to_string()))
        .collect();
    assert_eq!(rows, [expected]);
}

#[tokio::test]
async fn long_table_name_is_rejected() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut destination = open(&database).await;
    let target = target("s", &"t".repeat(64), &["id"]);
    let error = destination
        .begin_run(&target, &run("r1", &target, Utc::now()))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, DestinationError::Write(_)), "{error:?}");
    assert!(
        message.contains("is 64 bytes long and PostgreSQL keeps 63"),
        "{message}"
    );
    assert!(message.contains("shorten the entity name"), "{message}");
}

#[tokio::test]
async fn long_entity_gets_short_staging_table() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut destination = open(&database).await;
    let name = "e".repeat(60);
    let mut full = target("s", &name, &["id"]);
    full.full_refresh = true;
    sync(&mut destination, &full, &[r#"[{"id": 1}]"#]).await;
    sync(&mut destination, &full, &[r#"[{"id": 2}]"#]).await;

    let sql = format!(r#"SELECT "id"::text FROM "s"."{name}""#);
    assert_eq!(database.query(&sql).await, [vec![Some("2".to_string())]]);
    let tables = database
        .query("SELECT count(*)::text FROM pg_tables WHERE schemaname = 's'")
        .await;
    assert_eq!(
        cell(&tables).as_deref(),
        Some("1"),
        "no staging table is left"
    );
    let keys = database
        .query("SELECT conname::text FROM pg_constraint WHERE contype = 'p' AND connamespace = 's'::regnamespace")
        .await;
    let key = cell(&keys).unwrap();
    assert!(key.len() <= 63, "{key}");
    assert!(key.starts_with(&name[..40]), "{key}");
    assert!(key.ends_with("_pkey"), "{key}");
}

// ---------------------------------------------------------------------------
// Connections

async fn open_error(url: &str) -> DestinationError {
    match PostgresDestination::open(url).await {
        Ok(_) => panic!("{url} opened"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn wrong_password_is_explained() {
    let Some(server) = server_url() else {
        return;
    };
    let mut url = url::Url::parse(&url_for(&server, "postgres", "sslmode=disable")).unwrap();
    url.set_password(Some("not-the-password-41")).unwrap();
    let error = open_error(url.as_str()).await;
    let message = error.to_string();
    assert!(matches!(error, DestinationError::Connect(_)), "{error:?}");
    assert!(
        message.contains("password authentication failed for user"),
        "{message}"
    );
    assert!(message.contains(":***@127.0.0.1"), "{message}");
    assert!(!message.contains("not-the-password-41"), "{message}");
}

#[tokio::test]
async fn unknown_host_is_explained() {
    // A DNS label longer than 63 bytes fails in the resolver library
    // itself, so the test sends no query to any name server.
    let host = format!("{}.invalid", "h".repeat(70));
    let url = format!("postgres://ferry:secret-pw-7@{host}:5432/app?sslmode=disable");
    let error = open_error(&url).await;
    let message = error.to_string();
    assert!(matches!(error, DestinationError::Connect(_)), "{error:?}");
    assert!(
        message.contains(&format!("cannot resolve host \"{host}\"")),
        "{message}"
    );
    assert!(message.starts_with("postgres://ferry:***@"), "{message}");
    assert!(!message.contains("secret-pw-7"), "{message}");
}

#[tokio::test]
async fn refused_connection_is_explained() {
    // A port just bound and released has no listener.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("postgres://ferry:secret-pw-7@127.0.0.1:{port}/app?sslmode=disable");
    let message = open_error(&url).await.to_string();
    assert!(
        message.contains(&format!("connection refused by 127.0.0.1:{port}")),
        "{message}"
    );
    assert!(!message.contains("secret-pw-7"), "{message}");
}

#[tokio::test]
async fn missing_database_is_explained() {
    let Some(server) = server_url() else {
        return;
    };
    let url = url_for(&server, "ferry_no_such_database", "sslmode=disable");
    let error = open_error(&url).await;
    let message = error.to_string();
    assert!(matches!(error, DestinationError::Connect(_)), "{error:?}");
    assert!(
        message.contains("database \"ferry_no_such_database\" does not exist"),
        "{message}"
    );
    assert!(message.contains("CREATE DATABASE"), "{message}");
    assert!(message.contains(":***@"), "{message}");
}

/// URL parameters reach the server decoded as libpq decodes them: `%20`
/// is a space and `+` stays a plus. A form decoder would send
/// `-c+statement_timeout=4321`, which the server rejects.
#[tokio::test]
async fn url_parameters_decode_as_libpq_does() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let url = database.url_with(
        "sslmode=disable&application_name=sync%20a+b&options=-c%20statement_timeout%3D4321",
    );
    let opened = PostgresDestination::open(&url).await;
    assert!(opened.is_ok(), "{:?}", opened.err());

    let sql = format!(
        "SELECT application_name FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        database.name
    );
    let names = database.query(&sql).await;
    assert_eq!(names, [vec![Some("sync a+b".to_string())]]);
}

/// Returns whether each of the database's ferry sessions uses TLS, as
/// `pg_stat_ssl` reports it.
async fn ferry_sessions_encrypted(database: &TestDatabase) -> Vec<bool> {
    let sql = format!(
        "SELECT s.ssl::text FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) \
         WHERE a.datname = '{}' AND a.application_name = 'ferry'",
        database.name
    );
    let rows = database.query(&sql).await;
    rows.iter()
        .map(|row| row[0].as_deref() == Some("true"))
        .collect()
}

/// Returns the CA file of the test server, or prints why TLS tests are
/// skipped and returns `None`.
fn test_ca() -> Option<String> {
    match std::env::var(CA_VARIABLE) {
        Ok(path) if !path.is_empty() => Some(path),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "TLS test skipped: {CA_VARIABLE} is not set (the test server has no TLS)"
            );
            None
        }
    }
}

#[tokio::test]
async fn tls_modes_connect_as_libpq_does() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let Some(ca) = test_ca() else {
        return;
    };
    let cases = [
        ("sslmode=disable".to_string(), false),
        (String::new(), true),
        ("sslmode=prefer".to_string(), true),
        ("sslmode=require".to_string(), true),
        (format!("sslmode=verify-ca&sslrootcert={ca}"), true),
        (format!("sslmode=verify-full&sslrootcert={ca}"), true),
    ];
    for (parameters, encrypted) in cases {
        let url = database.url_with(&parameters);
        let destination = PostgresDestination::open(&url)
            .await
            .unwrap_or_else(|error| panic!("{parameters}: {error}"));
        assert_eq!(
            ferry_sessions_encrypted(&database).await,
            [encrypted],
            "{parameters}"
        );
        drop(destination);
        wait_for_sessions(&database, 0).await;
    }
}

#[tokio::test]
async fn tls_verification_failures_are_explained() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let Some(ca) = test_ca() else {
        return;
    };
    // The test CA is in no system store.
    let message = open_error(&database.url_with("sslmode=verify-full"))
        .await
        .to_string();
    assert!(
        message.contains("TLS certificate was not accepted"),
        "{message}"
    );
    assert!(message.contains("sslmode=require"), "{message}");
    assert!(
        !message.contains(&password_of(&database.url())),
        "{message}"
    );

    // The certificate names localhost and 127.0.0.1, not other.example.
    // With hostaddr, the client reaches the test server without a name lookup.
    let mut url = url::Url::parse(&database.url_with("")).unwrap();
    url.set_host(Some("other.example")).unwrap();
    let wrong_name =
        |mode: &str| format!("{url}?hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={ca}");
    let message = open_error(&wrong_name("verify-full")).await.to_string();
    assert!(
        message.contains("TLS certificate was not accepted"),
        "{message}"
    );
    let destination = PostgresDestination::open(&wrong_name("verify-ca"))
        .await
        .expect("verify-ca checks the chain, not the name");
    assert_eq!(ferry_sessions_encrypted(&database).await, [true]);
    drop(destination);
}

fn password_of(url: &str) -> String {
    url::Url::parse(url)
        .unwrap()
        .password()
        .unwrap_or_default()
        .to_string()
}

/// Waits until the database has `count` ferry sessions: a dropped client
/// closes its session a moment later.
async fn wait_for_sessions(database: &TestDatabase, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let sessions = ferry_sessions_encrypted(database).await.len();
        if sessions == count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sessions} ferry sessions, expected {count}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Run locks

#[tokio::test]
async fn running_entity_is_locked_elsewhere() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut first = open(&database).await;
    let mut second = open(&database).await;
    let target = target("s", "items", &["id"]);
    first
        .begin_run(&target, &run("r1", &target, Utc::now()))
        .await
        .unwrap();

    let started = Instant::now();
    let error = second
        .begin_run(&target, &run("r2", &target, Utc::now()))
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a held lock is reported at once"
    );
    let message = error.to_string();
    assert!(matches!(error, DestinationError::Locked(_)), "{error:?}");
    assert!(
        message.contains("flow/items is already running elsewhere"),
        "{message}"
    );
    assert!(message.contains("application \"ferry\""), "{message}");
    let runs = second.list_runs(Some("flow"), 10).await.unwrap();
    assert_eq!(runs.len(), 1, "the refused run left no row: {runs:?}");

    // Another entity of the flow is not blocked.
    let other = crate::destination::target("s", "others", &["id"]);
    second
        .begin_run(&other, &run("r3", &other, Utc::now()))
        .await
        .unwrap();

    first
        .write_chunk(&target, "r1", chunk(r#"[{"id": 1}]"#, json!({})))
        .await
        .unwrap();
    first
        .finish_run(&target, "r1", succeeded(1, json!({})))
        .await
        .unwrap();
    second
        .begin_run(&target, &run("r4", &target, Utc::now()))
        .await
        .expect("finish_run released the lock");
}

#[tokio::test]
async fn lock_ends_with_its_session() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let target = target("s", "items", &["id"]);
    let mut first = open(&database).await;
    first
        .begin_run(&target, &run("r1", &target, Utc::now()))
        .await
        .unwrap();
    drop(first);
    wait_for_sessions(&database, 0).await;

    let mut second = open(&database).await;
    second
        .begin_run(&target, &run("r2", &target, Utc::now()))
        .await
        .expect("a process that ends releases its locks");
}

#[tokio::test]
async fn lost_lock_session_is_replaced() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let target = target("s", "items", &["id"]);
    let mut destination = open(&database).await;
    destination
        .begin_run(&target, &run("r1", &target, Utc::now()))
        .await
        .unwrap();
    // End every ferry session: the lock session and the write session.
    let sql = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = '{}' AND application_name = 'ferry'",
        database.name
    );
    database.query(&sql).await;
    wait_for_sessions(&database, 0).await;

    destination
        .write_chunk(&target, "r1", chunk(r#"[{"id": 1}]"#, json!({"page": 1})))
        .await
        .expect("the destination connects again and takes the lock again");
    let mut other = open(&database).await;
    let error = other
        .begin_run(&target, &run("r2", &target, Utc::now()))
        .await
        .unwrap_err();
    assert!(matches!(error, DestinationError::Locked(_)), "{error:?}");
}

/// A run whose lock session ended while another process started the
/// entity writes nothing more: the other run marked it `interrupted` and
/// owns the staging table, the table and the state from then on.
#[tokio::test]
async fn run_overtaken_after_lost_lock_stops() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut target = target("s", "items", &["id"]);
    target.full_refresh = true;
    let mut first = open(&database).await;
    sync(&mut first, &target, &[r#"[{"id": 1}, {"id": 2}]"#]).await;
    first
        .begin_run(&target, &run("r1", &target, Utc::now()))
        .await
        .unwrap();
    first
        .write_chunk(&target, "r1", chunk(r#"[{"id": 3}]"#, json!({"page": 1})))
        .await
        .unwrap();

    // End the session that holds the run lock, and only that one.
    let sql = "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' \
               AND objsubid = 1 AND granted \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())";
    database.query(sql).await;
    wait_for_sessions(&database, 1).await;

    let mut second = open(&database).await;
    second
        .begin_run(&target, &run("r2", &target, Utc::now()))
        .await
        .unwrap();
    second
        .write_chunk(&target, "r2", chunk(r#"[{"id": 4}]"#, json!({"page": 2})))
        .await
        .unwrap();

    let error = first
        .write_chunk(&target, "r1", chunk(r#"[{"id": 5}]"#, json!({"page": 3})))
        .await
        .unwrap_err();
    assert!(matches!(error, DestinationError::Locked(_)), "{error:?}");
    let error = first
        .finish_run(&target, "r1", succeeded(2, json!({"done": "r1"})))
        .await
        .unwrap_err();
    assert!(matches!(error, DestinationError::Locked(_)), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("flow/items"), "{message}");
    assert!(
        message.contains("run r1 is marked interrupted"),
        "{message}"
    );

    let ids = |rows: Vec<Vec<Option<String>>>| -> Vec<String> {
        rows.into_iter()
            .map(|row| row[0].clone().unwrap())
            .collect()
    };
    let live = database
        .query(r#"SELECT "id"::text FROM "s"."items" ORDER BY "id""#)
        .await;
    assert_eq!(ids(live), ["1", "2"], "the live table is not swapped");
    let staging = database
        .query(r#"SELECT "id"::text FROM "s"."items__ferry_staging" ORDER BY "id""#)
        .await;
    assert_eq!(ids(staging), ["4"], "the second run's staging table");
    assert_eq!(
        first.read_state("flow", "items").await.unwrap(),
        Some(json!({"page": 2}))
    );

    second
        .finish_run(&target, "r2", succeeded(1, json!({"done": "r2"})))
        .await
        .unwrap();
    let live = database
        .query(r#"SELECT "id"::text FROM "s"."items" ORDER BY "id""#)
        .await;
    assert_eq!(ids(live), ["4"]);
    let runs = second.list_runs(Some("flow"), 10).await.unwrap();
    let statuses: Vec<(&str, &str)> = runs
        .iter()
        .map(|run| (run.run_id.as_str(), run.status.as_str()))
        .filter(|(run_id, _)| run_id.starts_with('r'))
        .collect();
    assert_eq!(statuses, [("r2", "succeeded"), ("r1", "interrupted")]);
}

// ---------------------------------------------------------------------------
// A chunk cut off halfway

/// A session killed while its chunk waits to save its state, after the
/// chunk added a column and upserted its rows in the same transaction.
/// Nothing of the chunk remains, and the next run completes the table
/// exactly.
#[tokio::test]
async fn killed_session_leaves_no_chunk() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let target = target("s", "items", &["id"]);
    let mut destination = open(&database).await;
    destination
        .begin_run(&target, &run("r1", &target, Utc::now()))
        .await
        .unwrap();
    let first = r#"[{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]"#;
    let second = r#"[{"id": 2, "v": "b2"}, {"id": 3, "v": "c"}, {"id": 4, "v": "d", "extra": 1}]"#;
    destination
        .write_chunk(&target, "r1", chunk(first, json!({"page": 1})))
        .await
        .unwrap();

    // Holding the state row makes the chunk wait after its upsert.
    let mut blocker = connect(&database.url()).await;
    let holding = blocker.transaction().await.unwrap();
    holding
        .batch_execute(
            "SELECT 1 FROM _ferry.state WHERE flow = 'flow' AND entity = 'items' FOR UPDATE",
        )
        .await
        .unwrap();

    let killer = async {
        let waiting = format!(
            "SELECT pid::text FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name = 'ferry' AND wait_event_type = 'Lock'",
            database.name
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        let pid = loop {
            if let Some(pid) = database.query(&waiting).await.first() {
                break pid[0].clone().unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "the chunk never waited for the state row"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        database
            .query(&format!("SELECT pg_terminate_backend({pid})"))
            .await;
    };
    let writing = destination.write_chunk(&target, "r1", chunk(second, json!({"page": 2})));
    let (written, ()) = tokio::join!(writing, killer);
    holding.rollback().await.unwrap();
    let error = written.unwrap_err();
    assert!(matches!(error, DestinationError::Write(_)), "{error:?}");
    assert!(error.to_string().contains("rolled back"), "{error}");

    let rows = database
        .query(r#"SELECT "id"::text, "v" FROM "s"."items" ORDER BY "id""#)
        .await;
    let pair = |id: &str, v: &str| vec![Some(id.to_string()), Some(v.to_string())];
    assert_eq!(rows, [pair("1", "a"), pair("2", "b")]);
    let columns = database
        .query("SELECT count(*)::text FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'extra'")
        .await;
    assert_eq!(
        cell(&columns).as_deref(),
        Some("0"),
        "the added column was rolled back"
    );

    // The same destination connects again; the run resumes from page 1.
    let state = destination.read_state("flow", "items").await.unwrap();
    assert_eq!(state, Some(json!({"page": 1})));
    destination
        .begin_run(&target, &run("r2", &target, Utc::now()))
        .await
        .unwrap();
    destination
        .write_chunk(&target, "r2", chunk(second, json!({"page": 2})))
        .await
        .unwrap();
    destination
        .finish_run(&target, "r2", succeeded(3, json!({"done": true})))
        .await
        .unwrap();
    let rows = database
        .query(r#"SELECT "id"::text, "v", "extra"::text FROM "s"."items" ORDER BY "id""#)
        .await;
    let row = |id: &str, v: &str, extra: Option<&str>| {
        vec![
            Some(id.to_string()),
            Some(v.to_string()),
            extra.map(str::to_string),
        ]
    };
    assert_eq!(
        rows,
        [
            row("1", "a", None),
            row("2", "b2", None),
            row("3", "c", None),
            row("4", "d", Some("1"))
        ]
    );
    let runs = destination.list_runs(Some("flow"), 10).await.unwrap();
    let summary: Vec<(&str, &str, u64)> = runs
        .iter()
        .map(|run| (run.run_id.as_str(), run.status.as_str(), run.records))
        .collect();
    assert_eq!(summary, [("r2", "succeeded", 3), ("r1", "interrupted", 2)]);
}

// ---------------------------------------------------------------------------
// Two processes

/// Writes a config folder whose flow syncs the test API into `destination`.
fn flow_folder(api_url: &str, destination: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let connector = r#"kind: Connector
name: testapi
config:
  base_url: { type: string }
http:
  base_url: "{{config.base_url}}"
  retry: { max_attempts: 1 }
entities:
  items:
    path: /items
    params: { limit: "5" }
    records: "$.data"
    primary_key: [id]
    pagination: { type: cursor, cursor: "$.next", param: cursor }
"#;
    std::fs::write(dir.path().join("connector.yaml"), connector).unwrap();
    let flow = format!(
        "kind: Flow\nname: shop\nsource:\n  connector: testapi\n  config:\n    base_url: \"{api_url}\"\ndestination: \"{destination}\"\n"
    );
    std::fs::write(dir.path().join("flow.yaml"), flow).unwrap();
    dir
}

fn ferry_sync(folder: &std::path::Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(["sync", "shop", "--config"])
        .arg(folder)
        .env("RUST_LOG", "warn")
        .env_remove("FERRY_LOG_FORMAT")
        .env_remove("FERRY_CONFIG")
        .kill_on_drop(true);
    command
}

#[tokio::test]
async fn concurrent_sync_processes_take_turns() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let api = crate::support::api::Api::start(crate::support::api::records(30)).await;
    // Six pages of five records, slow enough that the second process
    // starts while the first one runs.
    api.with(|state| state.page_delay = Duration::from_millis(300));
    let folder = flow_folder(&api.url, &database.url());

    let first = ferry_sync(folder.path()).output();
    let second = async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while api.requests().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the first process sent no request"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let started = Instant::now();
        let output = ferry_sync(folder.path()).output().await.unwrap();
        (output, started.elapsed())
    };
    let (first, (second, waited)) = tokio::join!(first, second);
    let first = first.unwrap();

    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert_eq!(
        first.status.code(),
        Some(0),
        "first: {}{}",
        text(&first.stdout),
        text(&first.stderr)
    );
    let second_output = format!("{}{}", text(&second.stdout), text(&second.stderr));
    assert_eq!(second.status.code(), Some(1), "second: {second_output}");
    assert!(
        second_output.contains("shop/items is already running elsewhere"),
        "{second_output}"
    );
    assert!(
        waited < Duration::from_millis(1500),
        "the second process waited {waited:?} instead of reporting the lock"
    );

    let rows = database
        .query(r#"SELECT count(*)::text, count(DISTINCT "id")::text, sum("amount")::text FROM "testapi"."items""#)
        .await;
    let expected_sum: i64 = (1..=30).map(|id| id * 100).sum();
    assert_eq!(
        rows[0],
        [
            Some("30".to_string()),
            Some("30".to_string()),
            Some(expected_sum.to_string())
        ]
    );
    let runs = database
        .query("SELECT status FROM _ferry.runs WHERE flow = 'shop' ORDER BY started_at")
        .await;
    assert_eq!(runs, [vec![Some("succeeded".to_string())]]);
}

/// A chunk the database rejects is fetched again by the next run: the
/// failed run saves the state of its last committed chunk, not a position
/// or cursor past the rejected records.
#[tokio::test]
async fn rejected_chunk_is_fetched_again() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let api = crate::support::api::Api::start(crate::support::api::records(10)).await;
    let folder = flow_folder(&api.url, &database.url());
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let count_sql = r#"SELECT count(*)::text FROM "testapi"."items""#;

    let first = ferry_sync(folder.path()).output().await.unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", text(&first.stderr));
    assert_eq!(
        cell(&database.query(count_sql).await).as_deref(),
        Some("10")
    );

    // Records 20 to 30 break the constraint, so their chunk is rolled back.
    database
        .execute(r#"ALTER TABLE "testapi"."items" ADD CONSTRAINT small CHECK ("amount" < 2000)"#)
        .await;
    api.with(|state| state.records = crate::support::api::records(30));
    let rejected = ferry_sync(folder.path()).output().await.unwrap();
    let output = text(&rejected.stderr);
    assert_eq!(rejected.status.code(), Some(1), "{output}");
    assert!(output.contains("check constraint \"small\""), "{output}");

    database
        .execute(r#"ALTER TABLE "testapi"."items" DROP CONSTRAINT small"#)
        .await;
    let repaired = ferry_sync(folder.path()).output().await.unwrap();
    assert_eq!(
        repaired.status.code(),
        Some(0),
        "{}",
        text(&repaired.stderr)
    );
    assert_eq!(
        cell(&database.query(count_sql).await).as_deref(),
        Some("30"),
        "the rejected records were fetched again"
    );
    let statuses = database
        .query("SELECT status FROM _ferry.runs WHERE flow = 'shop' ORDER BY started_at")
        .await;
    let statuses: Vec<Option<&str>> = statuses.iter().map(|row| row[0].as_deref()).collect();
    assert_eq!(
        statuses,
        [Some("succeeded"), Some("failed"), Some("succeeded")]
    );
}

/// Opens destinations whose first `begin_run` lets a `ferry sync` process
/// run the whole flow first, in the gap between a run reading its state
/// and taking its lock.
struct OtherRunFirst {
    folder: std::path::PathBuf,
}

#[async_trait::async_trait]
impl ferry::sync::Destinations for OtherRunFirst {
    async fn open(
        &self,
        url: &ferry::spec::plan::DestinationUrl,
        _shutdown: &tokio_util::sync::CancellationToken,
    ) -> Result<Box<dyn Destination>, DestinationError> {
        Ok(Box::new(OvertakenDestination {
            inner: ferry::destination::open(url).await?,
            folder: Some(self.folder.clone()),
        }))
    }
}

struct OvertakenDestination {
    inner: Box<dyn Destination>,
    /// The config folder the other process syncs, until it has run.
    folder: Option<std::path::PathBuf>,
}

#[async_trait::async_trait]
impl Destination for OvertakenDestination {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn read_state(
        &mut self,
        flow: &str,
        entity: &str,
    ) -> Result<Option<Value>, DestinationError> {
        self.inner.read_state(flow, entity).await
    }

    async fn write_state(
        &mut self,
        flow: &str,
        entity: &str,
        state: Option<&Value>,
    ) -> Result<(), DestinationError> {
        self.inner.write_state(flow, entity, state).await
    }

    async fn list_state(
        &mut self,
        flow: Option<&str>,
    ) -> Result<Vec<ferry::destination::StateRow>, DestinationError> {
        self.inner.list_state(flow).await
    }

    async fn begin_run(
        &mut self,
        target: &EntityTarget,
        run: &ferry::destination::RunRecord,
    ) -> Result<(), DestinationError> {
        if let Some(folder) = self.folder.take() {
            let other = ferry_sync(&folder).output().await.unwrap();
            let stderr = String::from_utf8_lossy(&other.stderr);
            assert_eq!(other.status.code(), Some(0), "{stderr}");
        }
        self.inner.begin_run(target, run).await
    }

    async fn write_chunk(
        &mut self,
        target: &EntityTarget,
        run_id: &str,
        chunk: ferry::destination::Chunk,
    ) -> Result<(), DestinationError> {
        self.inner.write_chunk(target, run_id, chunk).await
    }

    async fn finish_run(
        &mut self,
        target: &EntityTarget,
        run_id: &str,
        outcome: ferry::destination::RunOutcome,
    ) -> Result<(), DestinationError> {
        self.inner.finish_run(target, run_id, outcome).await
    }

    async fn list_runs(
        &mut self,
        flow: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ferry::destination::RunRecord>, DestinationError> {
        self.inner.list_runs(flow, limit).await
    }

    async fn columns(
        &mut self,
        table: &ferry::destination::TableRef,
    ) -> Result<Vec<ferry::destination::ColumnInfo>, DestinationError> {
        self.inner.columns(table).await
    }
}

/// A run plans from the state it read before taking the entity's lock. When
/// another process completed the entity in between, the run plans again
/// from the state it finds under the lock. Planning from the stale resume
/// position would fill a new staging table from the middle of the list and
/// swap it in, losing the records before that position.
#[tokio::test]
async fn stale_resume_after_other_run_starts_over() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let api = crate::support::api::Api::start(crate::support::api::records(20)).await;
    let folder = flow_folder(&api.url, &database.url());
    let flow_file = folder.path().join("flow.yaml");
    let flow_text = std::fs::read_to_string(&flow_file).unwrap();
    std::fs::write(&flow_file, format!("{flow_text}mode: full_refresh\n")).unwrap();
    let environment = |_: &str| None;
    let loaded = ferry::spec::load_with_env(folder.path(), &environment).expect("config loads");
    let flow = loaded.catalog.flows["shop"].clone();
    let options = ferry::sync::RunOptions::default();

    // The first attempt commits the first page and fails at the second,
    // so the state contains a resume position.
    api.with(|state| state.failing_pages = vec![1]);
    let failed = ferry::sync::run_flow(flow.clone(), &[], &options).await;
    assert!(!failed.succeeded(), "{failed:?}");
    api.with(|state| state.failing_pages.clear());

    let destinations = std::sync::Arc::new(OtherRunFirst {
        folder: folder.path().to_path_buf(),
    });
    let report = ferry::sync::run_flow_with(flow, &[], &options, destinations).await;
    assert!(report.succeeded(), "{report:?}");
    assert!(!report.runs[0].resumed, "{report:?}");

    let rows = database
        .query(r#"SELECT count(*)::text, min("id")::text, max("id")::text FROM "testapi"."items""#)
        .await;
    let expected: Vec<Option<String>> = ["20", "1", "20"]
        .iter()
        .map(|text| Some(text.to_string()))
        .collect();
    assert_eq!(rows[0], expected);
}

// ---------------------------------------------------------------------------
// Throughput

/// Upsert throughput on 100,000 records of 20 fields, in chunks of 5,000,
/// twice (inserts, then updates). Run with
/// `scripts/test-postgres.sh cargo test --release --test it -- --ignored --nocapture postgres_bulk_throughput`.
#[tokio::test]
#[ignore = "benchmark; prints records per second"]
async fn postgres_bulk_throughput() {
    let Some(database) = TestDatabase::create().await else {
        return;
    };
    let mut destination = open(&database).await;
    let target: EntityTarget = target("bench", "charges", &["id"]);
    let total = 100_000;
    let chunk_size = 5_000;

    for pass in ["insert", "update"] {
        destination
            .begin_run(&target, &run(pass, &target, Utc::now()))
            .await
            .unwrap();
        // Records are built before the clock starts, so only writing is timed.
        let chunks: Vec<ferry::destination::Chunk> = (0..total)
            .step_by(chunk_size)
            .map(|first| ferry::destination::Chunk {
                records: (first..first + chunk_size)
                    .map(crate::destination::bench_record)
                    .collect(),
                deletions: Vec::new(),
                state: json!({ "offset": first }),
            })
            .collect();
        let started = Instant::now();
        for chunk in chunks {
            destination.write_chunk(&target, pass, chunk).await.unwrap();
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "{pass}: {total} records in {seconds:.2} s, {:.0} records/s",
            total as f64 / seconds
        );
        destination
            .finish_run(&target, pass, succeeded(total as u64, json!({})))
            .await
            .unwrap();
    }
    let rows = database
        .query(r#"SELECT count(*)::text FROM "bench"."charges""#)
        .await;
    assert_eq!(cell(&rows), Some(total.to_string()));
}
