//! The resolved plan: connectors, entities and flows after every template,
//! JSONPath, URL, duration and cron expression in them has been checked.
//!
//! Code past `spec` reads only these types. Anything that can be wrong in a
//! file is caught while building them, so a plan that exists can run.

use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use crate::jsonpath::JsonPath;
use crate::template::{Template, TemplateValue};

pub use super::raw::{
    ApiKeyLocation, ClientAuth, ConfigType, DeletedRows, FieldType, HmacAlgorithm, HttpMethod,
    Order, ParamLocation, ParentScope, SignatureEncoding, StatusAction, SyncMode, TimestampUnit,
    WebhookAction,
};

/// Every connector and flow of a config folder, built-in connectors included.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub connectors: IndexMap<String, Arc<Connector>>,
    pub flows: IndexMap<String, Arc<Flow>>,
}

/// Where a document came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    BuiltIn,
    File {
        path: String,
        line: usize,
    },
    /// `ferry sync -s CONNECTOR …`: a flow made from command-line options.
    CommandLine,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::BuiltIn => write!(f, "built-in"),
            Origin::File { path, line } => write!(f, "{path}:{line}"),
            Origin::CommandLine => write!(f, "the command line"),
        }
    }
}

#[derive(Debug)]
pub struct Connector {
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    pub origin: Origin,
    pub config: IndexMap<String, ConfigField>,
    pub http: HttpPlan,
    pub check: Option<RequestPlan>,
    pub entities: IndexMap<String, Arc<Entity>>,
    /// Entity shapes a flow completes with parameters, by template name.
    pub templates: IndexMap<String, Arc<EntityTemplate>>,
    pub webhooks: Option<WebhookPlan>,
}

#[derive(Debug, Clone)]
pub struct ConfigField {
    pub value_type: ConfigType,
    pub secret: bool,
    pub default: Option<Value>,
    pub required: bool,
    pub description: Option<String>,
    pub allowed: Option<Vec<Value>>,
    /// Anchored: a string value must match it as a whole.
    pub pattern: Option<regex::Regex>,
    /// A template parameter whose value is rendered for each request.
    pub templated: bool,
}

#[derive(Debug, Clone)]
pub struct HttpPlan {
    pub base_url: Template,
    pub headers: Vec<(String, Template)>,
    pub params: Vec<(String, TemplateValue)>,
    pub auth: AuthPlan,
    pub rate_limit: Option<RateLimit>,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    pub allow_cross_host: bool,
}

#[derive(Debug, Clone)]
pub enum AuthPlan {
    None,
    Bearer {
        token: Template,
    },
    ApiKey {
        location: ApiKeyLocation,
        name: String,
        value: Template,
    },
    Basic {
        username: Template,
        password: Template,
    },
    OAuth2ClientCredentials {
        token_url: Template,
        client_id: Template,
        client_secret: Template,
        scopes: Vec<String>,
        extra: Vec<(String, Template)>,
        client_auth: ClientAuth,
    },
    OAuth2RefreshToken {
        token_url: Template,
        client_id: Template,
        client_secret: Template,
        refresh_token: Template,
        scopes: Vec<String>,
        extra: Vec<(String, Template)>,
        client_auth: ClientAuth,
    },
    JwtServiceAccount {
        service_account: Template,
        scopes: Vec<String>,
        token_url: Option<Template>,
        subject: Option<Template>,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    pub requests_per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Every attempt, the first included.
    pub max_attempts: u32,
    pub max_wait: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            max_wait: Duration::from_secs(300),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

/// One request shape: method, path, parameters, headers and body.
#[derive(Debug, Clone)]
pub struct RequestPlan {
    pub method: HttpMethod,
    pub path: Template,
    /// Each value renders to a scalar or to a list of scalars (a repeated key).
    pub params: Vec<(String, TemplateValue)>,
    pub headers: Vec<(String, Template)>,
    pub body: Option<TemplateValue>,
}

#[derive(Debug, Clone)]
pub struct GraphqlPlan {
    pub query: String,
    pub variables: Option<TemplateValue>,
    pub operation_name: Option<String>,
}

/// An entity: the requests and rules that fill one table.
#[derive(Debug, Clone)]
pub struct Entity {
    pub name: String,
    pub description: Option<String>,
    pub request: RequestPlan,
    pub graphql: Option<GraphqlPlan>,
    pub records: RecordsPlan,
    /// Empty for an append-only entity.
    pub primary_key: Vec<String>,
    pub pagination: Pagination,
    pub incremental: Option<Incremental>,
    pub order: Order,
    pub fields: FieldsPlan,
    pub parent: Option<ParentPlan>,
    pub changes: Option<ChangeFeed>,
    pub on_status: IndexMap<u16, StatusAction>,
    pub chunk: ChunkPlan,
    pub max_pages: u64,
    pub partial_ok: bool,
    pub mode: Option<SyncMode>,
    /// Values of a template's parameters, read as `{{entity.*}}`.
    pub parameters: serde_json::Map<String, Value>,
    /// Parameters declared `templated`, rendered for each request into
    /// `{{entity.<name>}}` in place of their text.
    pub templated_parameters: Vec<(String, Template)>,
    /// Requests sent before the first page request of each request sequence.
    pub steps: Vec<Step>,
    /// A digest of everything that shapes the request sequence: a saved
    /// resume position is used only while it matches.
    pub fingerprint: String,
}

/// A request whose response values later templates read as
/// `{{steps.<name>.<output>}}`.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub request: RequestPlan,
    pub outputs: Vec<(String, JsonPath)>,
    /// Send the request again until this finds `true`.
    pub until: Option<JsonPath>,
    pub poll_interval: Duration,
    pub poll_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct EntityTemplate {
    pub name: String,
    pub description: Option<String>,
    pub parameters: IndexMap<String, ConfigField>,
    /// The raw entity, resolved again for each flow that uses the template.
    pub raw: super::raw::RawEntity,
}

#[derive(Debug, Clone)]
pub enum RecordsPlan {
    Path(JsonPath),
    /// Row arrays zipped with column names.
    Columns {
        rows: JsonPath,
        columns: JsonPath,
    },
    /// BigQuery `{"f":[{"v":…}]}` rows decoded with a table schema.
    Schema {
        rows: JsonPath,
        schema: SchemaSource,
        timestamp_unit: TimestampUnit,
    },
}

/// Where a table schema comes from.
#[derive(Debug, Clone)]
pub enum SchemaSource {
    /// A JSONPath into each response.
    Response(JsonPath),
    /// A template, such as `{{steps.table.schema}}`, whose value is the schema.
    Template(Template),
}

#[derive(Debug, Clone)]
pub enum Pagination {
    None,
    Cursor {
        cursor: JsonPath,
        param: Param,
        has_more: Option<JsonPath>,
    },
    NextUrl {
        path: JsonPath,
    },
    LinkHeader,
    Offset {
        offset_param: Param,
        limit_param: Param,
        limit: u64,
        start: u64,
        has_more: Option<JsonPath>,
        stop_on_short_page: bool,
    },
    PageNumber {
        param: Param,
        start: u64,
        total_pages: Option<JsonPath>,
        stop_on_short_page: bool,
        page_size: Option<u64>,
        page_size_param: Option<Param>,
    },
    Relay {
        page_info: JsonPath,
        /// The variable that receives `endCursor`.
        variable: Param,
    },
}

/// Where a value goes in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub location: ParamLocation,
    /// For `Body`, a dotted path into the JSON body.
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct Incremental {
    pub cursor_field: String,
    pub param: Option<Param>,
    pub start: Option<Value>,
    pub lookback: Duration,
    pub window: Option<Window>,
}

#[derive(Debug, Clone)]
pub struct Window {
    pub step: Duration,
    pub start_param: Option<Param>,
    pub end_param: Option<Param>,
}

#[derive(Debug, Clone, Default)]
pub struct FieldsPlan {
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    pub rename: IndexMap<String, String>,
    pub types: IndexMap<String, FieldType>,
    pub names: Option<FieldNames>,
}

/// Fields named `<prefix><id>` renamed `<prefix><name>`, with the pairs
/// read from another entity's records at the start of each run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldNames {
    /// Entity of the same connector whose records hold the pairs.
    pub from: String,
    /// Field of those records holding the id.
    pub id: String,
    /// Field of those records holding the readable name.
    pub name: String,
    pub prefix: String,
}

impl FieldsPlan {
    pub fn is_identity(&self) -> bool {
        self.include.is_empty()
            && self.exclude.is_empty()
            && self.rename.is_empty()
            && self.names.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct ParentPlan {
    pub entity: String,
    /// Columns of the parent's table that templates read and child records get.
    pub fields: Vec<String>,
    /// Parents whose request sequences run at once, at least 1.
    pub concurrency: u32,
    /// Path inside a parent row to the child's first response.
    pub embedded: Option<JsonPath>,
    pub scope: ParentScope,
}

#[derive(Debug, Clone)]
pub struct ChangeFeed {
    pub request: RequestPlan,
    pub records: JsonPath,
    pub object: JsonPath,
    pub cursor_field: String,
    pub param: Option<Param>,
    pub deleted: Option<DeletionMarker>,
    pub max_age: Option<Duration>,
    pub pagination: Pagination,
    pub order: Order,
}

#[derive(Debug, Clone)]
pub struct DeletionMarker {
    pub path: JsonPath,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct ChunkPlan {
    pub records: u64,
    pub seconds: f64,
}

impl Default for ChunkPlan {
    fn default() -> Self {
        ChunkPlan {
            records: 5_000,
            seconds: 1.0,
        }
    }
}

#[derive(Debug, Clone)]
pub struct WebhookPlan {
    pub signature: SignatureScheme,
    pub id: JsonPath,
    pub event_type: JsonPath,
    pub object: JsonPath,
    pub occurred_at: Option<JsonPath>,
    pub routes: Vec<WebhookRoute>,
}

#[derive(Debug, Clone)]
pub enum SignatureScheme {
    Stripe {
        tolerance: Duration,
    },
    Close {
        tolerance: Duration,
    },
    Hmac {
        header: String,
        algorithm: HmacAlgorithm,
        encoding: SignatureEncoding,
        prefix: Option<String>,
    },
}

#[derive(Debug, Clone)]
pub struct WebhookRoute {
    /// Event type patterns; `*` matches any run of characters.
    pub events: Vec<String>,
    pub entity: Option<String>,
    pub delete: bool,
}

/// A flow: a connector with its values, the entities to sync, where, and when.
#[derive(Debug)]
pub struct Flow {
    pub name: String,
    pub description: Option<String>,
    pub origin: Origin,
    pub connector: Arc<Connector>,
    /// The connector's config after `${…}` expansion, defaults and type checks.
    pub config: serde_json::Map<String, Value>,
    pub destination: DestinationUrl,
    pub schema: String,
    /// The selected entities, parents before their children.
    pub entities: Vec<Arc<Entity>>,
    pub trigger: Option<Trigger>,
    pub mode: SyncMode,
    pub deleted_rows: Option<DeletedRows>,
    pub webhook: Option<FlowWebhook>,
    pub alert_url: Option<String>,
    /// Every secret value this flow holds, for redaction.
    pub secrets: Vec<String>,
}

impl Flow {
    pub fn entity(&self, name: &str) -> Option<&Arc<Entity>> {
        self.entities.iter().find(|entity| entity.name == name)
    }
}

/// When a flow runs by itself.
#[derive(Debug, Clone)]
pub enum Trigger {
    Cron {
        expression: String,
        schedule: Box<cron::Schedule>,
        timezone: chrono_tz::Tz,
    },
    Every(Duration),
}

#[derive(Debug, Clone)]
pub struct FlowWebhook {
    pub secrets: Vec<String>,
    pub action: WebhookAction,
}

/// A destination database, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DestinationUrl {
    /// A DuckDB file path, as written after `duckdb://`.
    DuckDb { path: String },
    /// A PostgreSQL connection URL, password included.
    Postgres { url: String },
}

impl DestinationUrl {
    /// The URL without its password, for messages.
    pub fn display(&self) -> String {
        match self {
            DestinationUrl::DuckDb { path } => format!("duckdb://{path}"),
            DestinationUrl::Postgres { url } => crate::redact::url_without_password(url),
        }
    }
}
