//! Change feeds of connectors written as YAML, against a loopback server,
//! into a DuckDB file: what each feed run writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry::spec::plan::Flow;
use serde_json::json;
use wiremock::MockServer;

use crate::emulator::sync_ok;
use crate::support::{duck, json as json_response, requests, serve};

/// A folder with connector `shop` (entity `customers` with the given
/// settings) and flow `shop` writing to a DuckDB file beside it.
struct ShopDir {
    dir: tempfile::TempDir,
    db: PathBuf,
}

impl ShopDir {
    fn new(server: &MockServer, customers: &str) -> ShopDir {
        let dir = tempfile::tempdir().unwrap();
        let connector = format!(
            "kind: Connector\nname: shop\nconfig: {{ base_url: {{ type: string }} }}\n\
             http: {{ base_url: \"{{{{config.base_url}}}}\" }}\nentities:\n  customers:\n{customers}"
        );
        std::fs::write(dir.path().join("shop.yaml"), connector).unwrap();
        let db = dir.path().join("test.duckdb");
        let flow = format!(
            "kind: Flow\nname: shop\nsource:\n  connector: shop\n  config: {{ base_url: \"{}\" }}\n\
             destination: \"duckdb://{}\"\n",
            server.uri(),
            db.display()
        );
        std::fs::write(dir.path().join("flow.yaml"), flow).unwrap();
        ShopDir { dir, db }
    }

    fn flow(&self) -> Arc<Flow> {
        let loaded = ferry::spec::load_with_env(self.dir.path(), &|_| None).unwrap();
        loaded.catalog.flows["shop"].clone()
    }

    fn db(&self) -> &Path {
        &self.db
    }
}

#[tokio::test]
async fn descending_feed_keeps_newest_renamed_key() {
    // The feed lists newest first: c1's first change is its latest state.
    let server = serve(vec![
        (
            "/customers",
            json_response(json!({"data": [
                {"id": "c1", "name": "one"},
                {"id": "c2", "name": "two"}
            ]})),
        ),
        (
            "/events",
            json_response(json!({"data": [
                {"created": 30, "object": {"id": "c1", "name": "one, newest"}},
                {"created": 20, "object": {"id": "c2", "name": "two, new"}},
                {"created": 10, "object": {"id": "c1", "name": "one, old"}}
            ]})),
        ),
    ])
    .await;
    let shop = ShopDir::new(
        &server,
        r#"    path: /customers
    records: "$.data[*]"
    primary_key: [id]
    fields: { rename: { id: customer_id } }
    changes:
      path: /events
      records: "$.data[*]"
      object: "$.object"
      cursor_field: created
      order: descending
"#,
    );
    let flow = shop.flow();

    sync_ok(&flow).await;
    let report = sync_ok(&flow).await;

    assert_eq!(
        requests(&server).await,
        vec!["GET /customers", "GET /events"]
    );
    assert_eq!(report.runs[0].records, 2);
    let rows = duck::query(
        shop.db(),
        "select customer_id, name from shop.customers order by customer_id",
    );
    assert_eq!(
        rows,
        vec![vec!["c1", "one, newest"], vec!["c2", "two, new"]]
    );
}
