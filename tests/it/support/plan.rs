//! Plan values built directly in Rust, with defaults a test overrides.

use std::sync::Arc;
use std::time::Duration;

use ferry::jsonpath::JsonPath;
use ferry::spec::plan::{
    AuthPlan, ChunkPlan, Connector, DestinationUrl, Entity, FieldsPlan, Flow, HttpMethod, HttpPlan,
    Order, Origin, Pagination, Param, ParamLocation, RecordsPlan, RequestPlan, RetryPolicy,
    SyncMode,
};
use ferry::template::{Template, TemplateValue};
use indexmap::IndexMap;
use serde_json::{Map, Value};

/// Retries fast enough for tests: three attempts, millisecond backoff.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        max_wait: Duration::from_secs(5),
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    }
}

pub fn template(source: &str) -> Template {
    Template::compile(source).unwrap()
}

pub fn jsonpath(source: &str) -> JsonPath {
    JsonPath::compile(source).unwrap()
}

pub fn query(name: &str) -> Param {
    Param {
        location: ParamLocation::Query,
        name: name.to_string(),
    }
}

pub fn placed(location: ParamLocation, name: &str) -> Param {
    Param {
        location,
        name: name.to_string(),
    }
}

/// Builds a connector with no auth, fast retries and a 5 second timeout.
pub fn connector(base_url: &str) -> Connector {
    Connector {
        name: "test_api".to_string(),
        version: None,
        description: None,
        origin: Origin::BuiltIn,
        config: IndexMap::new(),
        http: HttpPlan {
            base_url: template(base_url),
            headers: Vec::new(),
            params: Vec::new(),
            auth: AuthPlan::None,
            rate_limit: None,
            retry: fast_retry(),
            timeout: Duration::from_secs(5),
            allow_cross_host: false,
        },
        check: None,
        entities: IndexMap::new(),
        templates: IndexMap::new(),
        webhooks: None,
    }
}

/// Builds a GET entity reading `$.data[*]` with primary key `id` and no pagination.
pub fn entity(name: &str, path: &str) -> Entity {
    Entity {
        name: name.to_string(),
        description: None,
        request: RequestPlan {
            method: HttpMethod::Get,
            path: template(path),
            params: Vec::new(),
            headers: Vec::new(),
            body: None,
        },
        graphql: None,
        records: RecordsPlan::Path(jsonpath("$.data[*]")),
        primary_key: vec!["id".to_string()],
        pagination: Pagination::None,
        incremental: None,
        order: Order::Ascending,
        fields: FieldsPlan::default(),
        parent: None,
        changes: None,
        on_status: IndexMap::new(),
        chunk: ChunkPlan::default(),
        max_pages: 1_000_000,
        partial_ok: false,
        mode: None,
        parameters: Map::new(),
        templated_parameters: Vec::new(),
        steps: Vec::new(),
        fingerprint: String::new(),
    }
}

pub fn param(name: &str, value: Value) -> (String, TemplateValue) {
    (name.to_string(), TemplateValue::compile(&value).unwrap())
}

pub fn header(name: &str, value: &str) -> (String, Template) {
    (name.to_string(), template(value))
}

/// Builds a flow of `connector` selecting `entity`, with `config` as its values.
pub fn test_flow(connector: Connector, entity: &Arc<Entity>, config: Value) -> Arc<Flow> {
    let Value::Object(config) = config else {
        panic!("config must be a JSON object");
    };
    Arc::new(Flow {
        name: "test_flow".to_string(),
        description: None,
        origin: Origin::BuiltIn,
        connector: Arc::new(connector),
        config,
        destination: DestinationUrl::DuckDb {
            path: ":memory:".to_string(),
        },
        schema: "test_api".to_string(),
        entities: vec![entity.clone()],
        trigger: None,
        mode: SyncMode::Incremental,
        deleted_rows: None,
        webhook: None,
        alert_url: None,
        secrets: Vec::new(),
    })
}
