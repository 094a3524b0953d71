//! Two `ferry run` processes on one PostgreSQL database with the same
//! flows: an entity runs on one replica at a time (the PostgreSQL
//! destination's advisory lock), and killing a replica mid-run leaves the
//! other to finish the table.
//!
//! It runs in a database of its own on the server named by
//! `FERRY_TEST_POSTGRES_URL`, and returns early without one.

use std::time::Duration;

use crate::daemon_support::{Daemon, ShopApi, customers, shop_connector, write};

fn rows(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        client.query(sql, &[]).await.unwrap()
    })
}

#[test]
fn replicas_share_entities_and_survive_a_kill() {
    // The runtime keeps the test database's session alive for the test.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let Some(database) = runtime.block_on(crate::support::postgres::TestDatabase::create()) else {
        return;
    };
    let url = database.url();
    let schema = format!("replicas_{}", std::process::id());
    let api = ShopApi::start(customers(8), 2, Duration::from_millis(400));
    let folder = tempfile::tempdir().unwrap();
    write(folder.path(), "shop.yaml", &shop_connector("stripe"));
    write(
        folder.path(),
        "a.yaml",
        &format!(
            "kind: Flow\nname: a\nsource:\n  connector: shop\n  config:\n    base_url: \"{}\"\ndestination: \"{url}\"\nschema: {schema}\nentities: [customers]\nevery: 2s\n",
            api.base
        ),
    );

    let mut first = Daemon::start(folder.path(), &[]);
    let second = Daemon::start(folder.path(), &[]);
    first.wait_for(Duration::from_secs(30), "a run is fetching pages", || {
        api.requests().len() >= 2
    });
    // Kill the first replica while a run fetches pages. If it held the
    // entity's lock, the lock goes with its connection.
    first.child.kill().unwrap();
    let _ = first.child.wait();

    second.wait_for(Duration::from_secs(60), "a later run succeeds", || {
        rows(
            &url,
            "SELECT count(*) FROM _ferry.runs WHERE flow = 'a' AND status = 'succeeded'",
        )[0]
        .get::<_, i64>(0)
            >= 1
    });
    drop(second);

    let ids: Vec<String> = rows(
        &url,
        &format!("SELECT id FROM {schema}.customers ORDER BY id"),
    )
    .iter()
    .map(|row| row.get(0))
    .collect();
    let mut expected: Vec<String> = (1..=8).map(|n| format!("c{n}")).collect();
    expected.sort();
    assert_eq!(ids, expected);

    // No two runs of the entity overlapped in time.
    let runs = rows(
        &url,
        "SELECT started_at, finished_at FROM _ferry.runs WHERE flow = 'a' \
         AND finished_at IS NOT NULL ORDER BY started_at",
    );
    for pair in runs.windows(2) {
        let finished: chrono::DateTime<chrono::Utc> = pair[0].get(1);
        let next_started: chrono::DateTime<chrono::Utc> = pair[1].get(0);
        assert!(
            finished <= next_started,
            "runs overlap: {finished} > {next_started}"
        );
    }
}
