//! Raw documents: the file format as serde reads it.
//!
//! These types mirror the YAML one to one and reject unknown fields, so a
//! misspelt key is an error rather than a silent default. Nothing here is
//! checked beyond its shape: templates, JSONPaths, URLs, cron expressions and
//! cross references are resolved in `resolve`, which turns these documents
//! into the plan that the rest of ferry runs. The JSON Schemas in `schema/`
//! are generated from these types.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The `kind` of a document, read before the document itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Kind {
    Connector,
    Flow,
}

/// A `kind: Connector` document: how to talk to one HTTP API.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConnector {
    /// Always `Connector`.
    pub kind: Kind,
    /// Name that flows use in `source.connector`.
    pub name: String,
    pub version: Option<String>,
    pub description: Option<String>,
    /// Values a flow passes in, checked before a run.
    #[serde(default)]
    pub config: IndexMap<String, RawConfigField>,
    pub http: RawHttp,
    /// The request `ferry check-connection` sends.
    pub check: Option<RawCheck>,
    /// Entities this connector can sync, by name.
    pub entities: IndexMap<String, RawEntity>,
    /// Entity shapes that flows instantiate with their own parameters.
    #[serde(default)]
    pub templates: IndexMap<String, RawEntity>,
    /// How the API's webhook events map to entities.
    pub webhooks: Option<RawWebhooks>,
}

/// One key of a connector's `config`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawConfigField {
    #[serde(rename = "type", default)]
    pub value_type: ConfigType,
    /// A secret value never appears in logs, errors or `--json` output.
    #[serde(default)]
    pub secret: bool,
    /// Used when the flow does not set the key; a key without a default is required.
    pub default: Option<Value>,
    /// Set to false to make a key without a default optional.
    pub required: Option<bool>,
    pub description: Option<String>,
    /// The only values allowed.
    #[serde(rename = "enum")]
    pub allowed: Option<Vec<Value>>,
    /// A regular expression that a string value must match as a whole.
    pub pattern: Option<String>,
    /// Only for template parameters: the flow's value is itself a template,
    /// rendered for each request, so a query can read `{{state.cursor}}`.
    #[serde(default)]
    pub templated: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConfigType {
    #[default]
    String,
    Integer,
    Number,
    Boolean,
    Object,
    Array,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Template; every entity path is joined to it with exactly one slash.
    pub base_url: String,
    /// Headers sent with every request (templates).
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// Query parameters sent with every request (templates).
    #[serde(default)]
    pub params: IndexMap<String, Value>,
    pub auth: Option<RawAuth>,
    pub rate_limit: Option<RawRateLimit>,
    pub retry: Option<RawRetry>,
    /// Time allowed for one whole request, body included. Default 30.
    pub timeout_seconds: Option<f64>,
    /// Let `next_url` and `link_header` follow URLs on another origin.
    #[serde(default)]
    pub allow_cross_host: bool,
    /// Largest response body read, in MiB after gzip decoding; a larger
    /// one fails the run. Default 128.
    pub max_response_mb: Option<u64>,
}

/// Authentication, chosen by `type`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawAuth {
    None,
    Bearer {
        token: String,
    },
    ApiKey {
        /// `header` (default) or `query`.
        #[serde(rename = "in", default)]
        location: ApiKeyLocation,
        name: String,
        value: String,
    },
    Basic {
        username: String,
        /// May be empty: Close sends the API key as the username and no password.
        #[serde(default)]
        password: String,
    },
    /// An access token for the client itself (RFC 6749 section 4.4),
    /// renewed shortly before it expires.
    Oauth2ClientCredentials {
        token_url: String,
        client_id: String,
        client_secret: String,
        #[serde(default)]
        scopes: Vec<String>,
        /// Extra form fields for the token request.
        #[serde(default)]
        extra: IndexMap<String, String>,
        /// How the client id and secret are sent: `body` (default) or `basic`.
        #[serde(default)]
        client_auth: ClientAuth,
    },
    /// An access token from a refresh token (RFC 6749 section 6). When the
    /// provider returns a new refresh token, ferry keeps using the newest
    /// one and saves it in `_ferry.state`, so rotation survives restarts.
    Oauth2RefreshToken {
        token_url: String,
        client_id: String,
        client_secret: String,
        refresh_token: String,
        #[serde(default)]
        scopes: Vec<String>,
        #[serde(default)]
        extra: IndexMap<String, String>,
        /// How the client id and secret are sent: `body` (default) or `basic`.
        #[serde(default)]
        client_auth: ClientAuth,
    },
    /// A Google service account: an RS256 assertion signed with the key
    /// file's private key, exchanged for an access token (RFC 7523).
    JwtServiceAccount {
        /// The service-account key file's JSON.
        service_account: String,
        #[serde(default)]
        scopes: Vec<String>,
        /// Defaults to the key file's `token_uri`, else Google's token endpoint.
        token_url: Option<String>,
        /// Account to impersonate (domain-wide delegation).
        subject: Option<String>,
    },
}

/// How an OAuth 2.0 client sends its id and secret to the token endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_id` and `client_secret` form fields (`client_secret_post`).
    #[default]
    Body,
    /// An `Authorization: Basic` header (`client_secret_basic`).
    Basic,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApiKeyLocation {
    #[default]
    Header,
    Query,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRateLimit {
    /// Shared by every run that uses the same credentials.
    pub requests_per_second: f64,
    /// Requests allowed at once before the rate applies. Default 1.
    pub burst: Option<u32>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRetry {
    /// Every attempt counts, the first included; 1 means no retry. Default 6.
    pub max_attempts: Option<u32>,
    /// Cap on a server's `Retry-After`. Default 300.
    pub max_wait_seconds: Option<f64>,
    /// First backoff delay, doubled after each attempt. Default 1.
    pub initial_backoff_seconds: Option<f64>,
    /// Cap on one backoff delay. Default 60.
    pub max_backoff_seconds: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    pub path: String,
    #[serde(default)]
    pub method: Option<HttpMethod>,
    #[serde(default)]
    pub params: IndexMap<String, Value>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    pub body: Option<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    Post,
}

/// One entity: a request sequence whose records fill one table.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawEntity {
    pub description: Option<String>,
    /// Template joined to `http.base_url`. Required unless `graphql` is set,
    /// or `parent.embedded` is set without pagination. A GraphQL entity
    /// posts to `http.base_url` itself unless it sets a path.
    pub path: Option<String>,
    /// GET by default, POST when a `body` is set.
    pub method: Option<HttpMethod>,
    /// Query parameters: templates, or lists of templates for repeated keys.
    #[serde(default)]
    pub params: IndexMap<String, Value>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// A JSON body: any YAML value whose strings are templates.
    pub body: Option<Value>,
    pub graphql: Option<RawGraphql>,
    /// Where the records are in a response body.
    pub records: Option<RawRecords>,
    /// Fields that identify a record; `[]` declares an append-only entity.
    pub primary_key: Option<PrimaryKey>,
    pub pagination: Option<RawPagination>,
    pub incremental: Option<RawIncremental>,
    /// `ascending` (default) or `descending`: the order the API returns records in.
    pub order: Option<Order>,
    pub fields: Option<RawFields>,
    pub parent: Option<RawParent>,
    pub changes: Option<RawChanges>,
    /// What to do with a status code: `ignore`, `empty_page` or `fail`.
    #[serde(default)]
    pub on_status: IndexMap<String, StatusAction>,
    pub chunk: Option<RawChunk>,
    /// Ends the run with an error when reached. Default 1,000,000.
    pub max_pages: Option<u64>,
    /// Keep `data` from a GraphQL response that also has `errors`; the
    /// errors are logged and counted instead of failing the page.
    #[serde(default)]
    pub partial_ok: bool,
    /// `full_refresh` replaces the table on each run. A flow's `mode: full_refresh`
    /// overrides this, and a flow's `mode: incremental` does not.
    pub mode: Option<SyncMode>,
    /// Only in `templates`: the parameters a flow passes, read as `{{entity.<name>}}`,
    /// with the same form as connector config keys.
    #[serde(default)]
    pub parameters: IndexMap<String, RawConfigField>,
    /// Requests sent in order before the first page request of each request
    /// sequence (each window, each parent), such as a schema lookup or a job
    /// to create and wait for. Later templates read their outputs as
    /// `{{steps.<step>.<output>}}`, and a resumed run reuses them.
    #[serde(default)]
    pub steps: Vec<RawStep>,
}

/// A request whose response values feed the entity's later requests.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// Read as `{{steps.<name>.<output>}}`.
    pub name: String,
    /// Template joined to `http.base_url`.
    pub path: String,
    /// GET by default, POST when a `body` is set.
    pub method: Option<HttpMethod>,
    #[serde(default)]
    pub params: IndexMap<String, Value>,
    #[serde(default)]
    pub headers: IndexMap<String, String>,
    /// A JSON body: any YAML value whose strings are templates.
    pub body: Option<Value>,
    /// Output name → JSONPath into the response; each must find a value.
    #[serde(default)]
    pub outputs: IndexMap<String, String>,
    /// JSONPath to a value that is true once the step is complete. Until it
    /// is, the request is sent again every `poll_interval_seconds`.
    pub until: Option<String>,
    /// Seconds between polls while `until` is not true. Default 1.
    pub poll_interval_seconds: Option<f64>,
    /// Seconds of polling after which the run fails. Default 3600.
    pub poll_timeout_seconds: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum PrimaryKey {
    One(String),
    Many(Vec<String>),
}

impl PrimaryKey {
    pub fn fields(&self) -> Vec<String> {
        match self {
            PrimaryKey::One(field) => vec![field.clone()],
            PrimaryKey::Many(fields) => fields.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGraphql {
    pub query: String,
    /// Any YAML value whose strings are templates; single expressions keep their JSON type.
    #[serde(default)]
    pub variables: Option<Value>,
    pub operation_name: Option<String>,
}

/// Where records are: a JSONPath, or rows to zip with column names or a schema.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RawRecords {
    Path(String),
    Rows(RawRows),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawRows {
    /// JSONPath to the row arrays.
    pub rows: String,
    /// JSONPath to the column names (PostHog's query API).
    pub columns: Option<String>,
    /// BigQuery table schema (`{"fields": [...]}`): a JSONPath into the
    /// response, or a template that reads a step's output, such as
    /// `{{steps.table.schema}}`.
    pub schema: Option<String>,
    /// TIMESTAMP cells with `schema`: `seconds` (the API's default, a
    /// decimal string) or `microseconds` (an integer string, as with
    /// `formatOptions.useInt64Timestamp=true`). Default `seconds`.
    pub timestamp_unit: Option<TimestampUnit>,
}

/// How BigQuery rows encode TIMESTAMP cells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimestampUnit {
    #[default]
    Seconds,
    Microseconds,
}

/// Pagination, chosen by `type`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawPagination {
    /// One request, no pages.
    None,
    Cursor {
        /// JSONPath to the next cursor in the response.
        cursor: String,
        param: RawParam,
        /// JSONPath to a boolean; false ends the entity.
        has_more: Option<String>,
    },
    NextUrl {
        /// JSONPath to the next URL in the response.
        path: String,
    },
    LinkHeader,
    Offset {
        offset_param: RawParam,
        limit_param: RawParam,
        limit: u64,
        has_more: Option<String>,
        #[serde(default)]
        stop_on_short_page: bool,
        /// First offset. Default 0.
        start: Option<u64>,
    },
    PageNumber {
        param: RawParam,
        /// First page number. Default 1.
        start: Option<u64>,
        /// JSONPath to the number of pages.
        total_pages: Option<String>,
        #[serde(default)]
        stop_on_short_page: bool,
        /// Records in a full page, for `stop_on_short_page`.
        page_size: Option<u64>,
        /// Parameter that receives `page_size` on every request.
        page_size_param: Option<RawParam>,
    },
    /// GraphQL Relay connections: `endCursor` until `hasNextPage` is false.
    Relay {
        /// JSONPath to the `pageInfo` object.
        page_info: String,
        /// Variable that receives `endCursor`. Default `after`.
        variable: Option<String>,
    },
}

/// Where a value goes in a request: a query parameter name, or `{in, name}`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RawParam {
    Query(String),
    Placed(RawPlacedParam),
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawPlacedParam {
    #[serde(rename = "in")]
    pub location: ParamLocation,
    /// For `body`, a dotted path into the JSON body.
    pub name: String,
}

/// Where a placed value goes. A bare name means `query` for a REST entity
/// and `variables` for a GraphQL entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamLocation {
    Query,
    Body,
    Header,
    /// A GraphQL variable; a dotted name reaches into an input object.
    Variables,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIncremental {
    /// Field of each record whose maximum the state keeps.
    pub cursor_field: String,
    /// Request parameter that receives the saved cursor minus the lookback.
    pub param: Option<RawParam>,
    /// Cursor of the first run.
    pub start: Option<Value>,
    #[serde(default)]
    pub lookback_seconds: u64,
    pub window: Option<RawWindow>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    /// Length of one window: `7d`, `12h`, `30m`.
    pub step: String,
    pub start_param: Option<RawParam>,
    pub end_param: Option<RawParam>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Order {
    #[default]
    Ascending,
    Descending,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFields {
    /// Keep only these fields.
    #[serde(default)]
    pub include: Vec<String>,
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Field name in the record → column name.
    #[serde(default)]
    pub rename: IndexMap<String, String>,
    #[serde(default)]
    pub types: IndexMap<String, FieldType>,
    /// Readable names for fields named by id, looked up in another entity's records.
    pub names: Option<RawFieldNames>,
}

/// Renames fields `<prefix><id>` to `<prefix><name>`, with the id → name
/// pairs read from another entity of the connector at the start of each run
/// (Close's `custom.cf_<id>` fields and its custom-field lists).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFieldNames {
    /// Entity whose records hold the ids and names; fetched in full, never stored by this lookup.
    pub from: String,
    /// Field of those records that holds the id.
    pub id: String,
    /// Field of those records that holds the readable name.
    pub name: String,
    /// Text before the id in the renamed fields, kept before the name.
    #[serde(default)]
    pub prefix: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    TimestampIso,
    TimestampUnix,
    TimestampUnixMs,
    Date,
    Decimal,
    Json,
    String,
}

/// The entity whose rows drive a child entity: one request sequence per
/// parent row, read from the parent's table.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawParent {
    pub entity: String,
    /// Columns of the parent's table available as `{{parent.<field>}}` and
    /// copied onto child records as `<parent>_<field>`.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Parents whose requests run at once. Default 1.
    pub concurrency: Option<u32>,
    /// JSONPath inside each parent row to a value read as the child's first
    /// response (Stripe's `$.lines` list inside an invoice): its records need
    /// no request, and the child's pagination fetches the rest when the
    /// embedded list is truncated.
    pub embedded: Option<String>,
    /// `changed` (default): parents written since the child's last completed
    /// run; `all`: every parent row on every run.
    pub scope: Option<ParentScope>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParentScope {
    #[default]
    Changed,
    All,
}

/// A change feed: a second request used once the entity has state, whose
/// records carry changed objects (Stripe's `/v1/events`).
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawChanges {
    pub path: String,
    #[serde(default)]
    pub params: IndexMap<String, Value>,
    pub records: String,
    /// JSONPath inside each change record to the changed object.
    pub object: String,
    /// Field of each change record that orders the feed; the state keeps its maximum.
    pub cursor_field: String,
    /// Request parameter that receives the saved feed cursor.
    pub param: Option<RawParam>,
    /// How a change record marks a deletion.
    pub deleted: Option<RawDeletionMarker>,
    /// Older state needs a full reload, because the feed forgets older changes.
    pub max_age_seconds: Option<u64>,
    pub pagination: Option<RawPagination>,
    pub order: Option<Order>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawDeletionMarker {
    /// JSONPath inside each change record.
    pub path: String,
    /// Values at `path` that mean deleted; `*` globs allowed. Empty: any true value.
    #[serde(default)]
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusAction {
    Ignore,
    EmptyPage,
    Fail,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawChunk {
    pub records: Option<u64>,
    pub seconds: Option<f64>,
}

/// How webhook events reach entity tables.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWebhooks {
    pub signature: RawSignature,
    /// JSONPath to the event id, used to drop redeliveries.
    pub id: String,
    /// JSONPath to the event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// JSONPath to the changed object.
    pub object: String,
    /// JSONPath to the time the event happened, so a late event never overwrites a newer row.
    pub occurred_at: Option<String>,
    /// Event types (`*` globs) mapped to entities, first match wins.
    pub routes: Vec<RawWebhookRoute>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawWebhookRoute {
    pub events: Vec<String>,
    pub entity: Option<String>,
    /// The object was deleted: set `_ferry_deleted_at` on its row.
    #[serde(default)]
    pub delete: bool,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum RawSignature {
    /// `Stripe-Signature: t=<unix>,v1=<hex>` over `"<t>.<body>"`.
    Stripe { tolerance_seconds: Option<u64> },
    /// Close: HMAC-SHA256 over timestamp and body with a hex-decoded key.
    Close { tolerance_seconds: Option<u64> },
    /// HMAC of the raw body in one header.
    Hmac {
        header: String,
        #[serde(default)]
        algorithm: HmacAlgorithm,
        #[serde(default)]
        encoding: SignatureEncoding,
        /// Text before the signature in the header, such as `sha256=`.
        prefix: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HmacAlgorithm {
    #[default]
    Sha256,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    Base64,
}

/// A `kind: Flow` document: which connector, with which values, into which
/// destination, and when.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFlow {
    /// Always `Flow`.
    pub kind: Kind,
    pub name: String,
    pub description: Option<String>,
    pub source: RawSource,
    /// `duckdb://PATH` or `postgres://…`. Default `duckdb://./ferry.duckdb`.
    pub destination: Option<String>,
    /// Database schema for the tables. Default: the connector's name.
    pub schema: Option<String>,
    /// Default: every entity of the connector.
    pub entities: Option<RawFlowEntities>,
    /// Cron: 5 fields (minute first) or 6 (seconds first).
    pub schedule: Option<String>,
    /// A fixed interval instead of cron: `15m`, `1h`.
    pub every: Option<String>,
    /// IANA name for `schedule`. Default UTC.
    pub timezone: Option<String>,
    /// `incremental` (default) or `full_refresh`, which applies to every
    /// entity, even one whose own `mode` is `incremental`.
    pub mode: Option<SyncMode>,
    /// With `full_refresh`: `mark` keeps the table and sets `_ferry_deleted_at` on rows a completed run did not see.
    pub deleted_rows: Option<DeletedRows>,
    pub webhook: Option<RawFlowWebhook>,
    pub alert: Option<RawAlert>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub connector: String,
    /// Values for the connector's `config`; strings expand `${VAR}`, `${VAR:-default}` and `${file:PATH}`.
    #[serde(default)]
    pub config: IndexMap<String, Value>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum RawFlowEntities {
    List(Vec<String>),
    /// Entity name → `{}` or `{template: NAME, ...parameters}`.
    Map(IndexMap<String, IndexMap<String, Value>>),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    #[default]
    Incremental,
    FullRefresh,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeletedRows {
    Delete,
    Mark,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawFlowWebhook {
    /// Signing secret; several (during a rotation) as a list.
    pub secret: SecretList,
    /// `upsert` (default) writes each event's object; `trigger` starts an incremental run.
    pub action: Option<WebhookAction>,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum SecretList {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookAction {
    Upsert,
    Trigger,
}

#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAlert {
    /// URL that receives a JSON POST when the flow fails after its retries and when it recovers.
    pub url: String,
}
