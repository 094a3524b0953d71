//! Engines: turn an entity's plan into a stream of pages of records.
//!
//! The sync loop hands an engine a [`Position`] (where to start: the
//! beginning, or a saved resume position) and a channel. The engine sends
//! one [`Page`] per response, each carrying the position of the request that
//! follows it, so the writer can commit a chunk together with the exact
//! place to resume from. A fetch that fails for good returns a
//! [`FetchError`]; the pages sent before it are still committed.
//!
//! - `fetch`: the page loop of one entity, and the connection check.
//! - `client`: one reqwest client per flow run: TLS roots, proxies,
//!   timeouts, the shared rate limit (`rate_limit`), and retries with
//!   backoff and `Retry-After` (`retry`).
//! - `auth`: credentials for each request; `token` fetches and renews
//!   OAuth 2.0 access tokens, `service_account` signs Google's JWT
//!   assertions.
//! - `request`: templates rendered into concrete requests.
//! - `pagination`: the next request after each page (`link` reads RFC 8288
//!   `Link` headers).
//! - `extract`: records out of a response body (`bigquery` decodes typed
//!   rows), field rules, primary keys.
//! - `incremental`: where a run starts, lookback, windows, cursor maxima.
//! - `graphql`: GraphQL request bodies, `errors` and rate limits in 200s.
//! - `children`: child entities, one request sequence per parent row,
//!   several parents at once, pages delivered in parent order.
//! - `steps`: requests sent before an entity's first page request, whose
//!   outputs later requests read.

mod auth;
mod bigquery;
mod changes;
mod children;
mod client;
mod extract;
mod fetch;
mod graphql;
mod incremental;
mod link;
mod names;
mod pagination;
mod rate_limit;
mod request;
mod retry;
mod service_account;
mod steps;
mod token;

pub use changes::{feed_entity, fetch_changes, glob_matches};
pub use client::HttpClient;
pub use extract::output_field_name;
pub use fetch::{FetchContext, check_connection, fetch, fetch_first_page};
pub use incremental::{
    compare_cursors, first_window, initial_position, max_cursor, next_window, subtract_lookback,
    time_in_form_of,
};
pub use token::{SavedRefreshToken, TokenStore};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One record: a JSON object, fields in source order.
pub type Record = serde_json::Map<String, Value>;

/// Where an entity's request sequence stands: enough to send the next
/// request again after a crash.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Position {
    /// The incremental value this run sends (saved cursor minus lookback),
    /// fixed for the whole run so a resumed run sends the same filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Value>,
    /// The time window being read, when the entity uses windows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowPosition>,
    /// The parent record being read, for child entities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentPosition>,
    /// Outputs of the entity's steps finished in this request sequence, by
    /// step name; a resumed run reuses them instead of sending the steps again.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub steps: serde_json::Map<String, Value>,
    /// The page request within the window and parent.
    #[serde(default)]
    pub page: PageToken,
}

/// The request to send within one request sequence.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum PageToken {
    /// The first request, with no pagination parameter.
    #[default]
    Start,
    /// The cursor (or relay `endCursor`) value to send.
    Cursor(String),
    /// A URL taken from a response, sent as it is.
    Url(String),
    Offset(u64),
    Page(u64),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowPosition {
    /// Start of the current window, in the cursor's own form.
    pub start: Value,
    /// End of the current window (exclusive).
    pub end: Value,
    /// End of the whole range, fixed when the run started.
    pub until: Value,
}

/// A place in a child entity's parent list.
///
/// Parents are read from the parent's table in (`_ferry_synced_at`, primary
/// key) order. A parent row written again moves to the end of that order,
/// so a list that changes between a crash and the resume neither skips a
/// parent nor repeats an unchanged one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParentPosition {
    /// When the parent row was written (`_ferry_synced_at`).
    pub synced_at: DateTime<Utc>,
    /// The parent's primary key values, in `primary_key` order.
    pub key: Vec<Value>,
    /// The `parent.fields` values that this parent's requests render with;
    /// empty once `done`.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: Record,
    /// Every request of this parent was read: continue after it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub done: bool,
}

impl ParentPosition {
    /// Returns the position just after this parent.
    pub fn finished(&self) -> ParentPosition {
        ParentPosition {
            synced_at: self.synced_at,
            key: self.key.clone(),
            fields: Record::new(),
            done: true,
        }
    }
}

/// One row of a parent entity's table.
#[derive(Debug, Clone, PartialEq)]
pub struct ParentRow {
    pub synced_at: DateTime<Utc>,
    /// Primary key values, in `primary_key` order.
    pub key: Vec<Value>,
    /// The requested columns by field name: `parent.fields`, and the
    /// column that `parent.embedded` starts in.
    pub fields: Record,
}

/// Where a child entity's parent rows come from (the destination, in a
/// sync run).
#[async_trait::async_trait]
pub trait ParentSource: Send + Sync {
    /// Returns up to `limit` parent rows strictly after `after` in
    /// (`synced_at`, key) order, rows marked deleted left out.
    async fn parents_after(
        &self,
        after: Option<&ParentPosition>,
        limit: usize,
    ) -> Result<Vec<ParentRow>, FetchError>;
}

/// One response's worth of records.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub records: Vec<Record>,
    /// Records whose rows are marked deleted (change feeds).
    pub deletions: Vec<Record>,
    /// Position of the next request; `None` when the entity is complete.
    pub next: Option<Position>,
    /// Maximum of the incremental cursor field among these records.
    pub cursor_max: Option<Value>,
    /// Requests sent for this page, retries included.
    pub requests: u32,
    /// Bytes of response body read for this page.
    pub bytes: u64,
    /// GraphQL errors kept with the data under `partial_ok: true`.
    pub graphql_errors: u32,
    /// Column types the response declares for its records' fields (a
    /// BigQuery schema); the entity's own `fields.types` win over them.
    pub field_types: indexmap::IndexMap<String, crate::spec::plan::FieldType>,
}

/// Why a fetch stopped early; each kind maps to one retry decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchErrorKind {
    /// The same cursor, URL or page came back, or a page repeated the last one.
    PaginationLoop,
    /// A URL from a response points at another origin.
    CrossHost,
    /// `max_pages` reached.
    MaxPages,
    /// A status that is not retried, or retries that ran out.
    Http,
    /// Connection failures and timeouts that outlasted the retries.
    Network,
    /// A body that is not JSON, or records not where the spec says.
    Response,
    /// A record without its primary key.
    MissingKey,
    /// GraphQL `errors` in a response.
    Graphql,
    /// Credentials rejected or a token exchange failed.
    Auth,
    /// A template or parameter that could not be rendered with this data.
    Template,
    /// A child entity's parent rows could not be read from the destination.
    Parents,
}

#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct FetchError {
    pub kind: FetchErrorKind,
    pub message: String,
}

impl FetchError {
    pub fn new(kind: FetchErrorKind, message: impl Into<String>) -> FetchError {
        FetchError {
            kind,
            message: message.into(),
        }
    }
}
