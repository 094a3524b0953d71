//! The page loop of one entity (REST or GraphQL): request, response,
//! records, next position, until the entity is complete.
//!
//! Every [`Page`] carries the position of the request that follows it, so
//! "resume from the last page's `next`" sends exactly the request that was
//! not read yet. When the loop stops on an error that a page reveals (a
//! repeated cursor, a next URL on another host), the page is still sent,
//! with `next` pointing at the refused request, and the error follows.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use reqwest::header::HeaderMap;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::Sender;
use url::Url;

use super::children;
use super::client::{Exchange, HttpClient, Origin, PreparedRequest, ThrottleCheck, body_excerpt};
use super::extract::Extractor;
use super::graphql;
use super::incremental::{initial_position, next_window};
use super::pagination::{self, NextStep};
use super::request::{self, Injection, RequestSource};
use super::steps;
use super::{
    FetchError, FetchErrorKind, Page, PageToken, ParentSource, Position, Record, WindowPosition,
};
use crate::spec::plan::{Entity, Flow, Pagination, StatusAction, Step};
use crate::template::iso_time;

/// The inputs of one entity fetch. `now` is fixed for the run, so windows and
/// `{{now}}` agree across every request of it.
#[derive(Clone)]
pub struct FetchContext {
    pub flow: Arc<Flow>,
    pub entity: Arc<Entity>,
    pub client: Arc<HttpClient>,
    pub now: DateTime<Utc>,
    /// The parent rows of a child entity. Without it (previews, connection
    /// checks) a child reads its parent's first page instead.
    pub parents: Option<Arc<dyn ParentSource>>,
}

impl std::fmt::Debug for FetchContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetchContext")
            .field("flow", &self.flow.name)
            .field("entity", &self.entity.name)
            .field("now", &self.now)
            .field("parents", &self.parents.is_some())
            .finish_non_exhaustive()
    }
}

/// Fetches an entity from `start`, sending one [`Page`] per response, in
/// order, until the entity is complete, an error stops it, or the receiver
/// is dropped (which stops it quietly). Pages sent before an error stay
/// valid: commit them and resume from the last one's `next`.
pub async fn fetch(
    ctx: FetchContext,
    start: Position,
    pages: Sender<Page>,
) -> Result<(), FetchError> {
    if ctx.entity.parent.is_some() {
        return children::fetch_children(ctx, start, pages).await;
    }
    let mut reader = EntityReader::new(
        &ctx.flow,
        &ctx.entity,
        &ctx.client,
        ctx.now,
        PageBudget::default(),
    );
    reader.load_field_names().await?;
    tracing::info!(
        flow = %ctx.flow.name,
        entity = %ctx.entity.name,
        start = %describe_position(&start),
        "fetch started"
    );

    let mut totals = Totals::default();
    let result = read_sequence(&mut reader, start, &pages, &mut totals).await;
    match &result {
        Ok(()) => tracing::info!(
            flow = %ctx.flow.name,
            entity = %ctx.entity.name,
            pages = totals.pages,
            records = totals.records,
            requests = totals.requests,
            "fetch finished"
        ),
        Err(error) => tracing::info!(
            flow = %ctx.flow.name,
            entity = %ctx.entity.name,
            pages = totals.pages,
            records = totals.records,
            requests = totals.requests,
            error_kind = ?error.kind,
            "fetch stopped by an error"
        ),
    }
    result
}

/// Counters of a fetch, for logs.
#[derive(Debug, Default)]
pub(crate) struct Totals {
    pub pages: u64,
    pub records: u64,
    pub requests: u64,
}

/// Reads one request sequence from `start` until it is complete, an error
/// stops it, or the receiver is dropped (which stops it quietly).
pub(crate) async fn read_sequence(
    reader: &mut EntityReader<'_>,
    start: Position,
    pages: &Sender<Page>,
    totals: &mut Totals,
) -> Result<(), FetchError> {
    let mut position = start;
    loop {
        let read = reader.read_page(&position).await?;
        let Some(next) = deliver(read, pages, totals).await? else {
            return Ok(());
        };
        position = next;
    }
}

/// Sends a page, then returns its error if it revealed one, else the
/// position to read next: `None` when the sequence is complete or the
/// receiver is gone.
pub(crate) async fn deliver(
    read: PageRead,
    pages: &Sender<Page>,
    totals: &mut Totals,
) -> Result<Option<Position>, FetchError> {
    let PageRead {
        page,
        error,
        from_step,
    } = read;
    if !from_step {
        totals.pages += 1;
    }
    totals.records += page.records.len() as u64;
    totals.requests += u64::from(page.requests);
    let next = page.next.clone();
    if send_page(pages, page).await.is_err() {
        tracing::debug!("page receiver dropped, so the fetch stops");
        return Ok(None);
    }
    match error {
        Some(error) => Err(error),
        None => Ok(next),
    }
}

/// Records that may wait in the page channel, about two default chunks.
/// The channel takes a fixed number of pages, enough to keep fetching
/// while a chunk of 100-record pages commits. With 10,000-record pages
/// (BigQuery's default), as many pages would queue 640,000 records.
const QUEUED_RECORDS: usize = 10_000;

/// Sends a page once few enough pages of this page's size are queued that
/// the queued records stay near [`QUEUED_RECORDS`] (one page at least).
/// Pages of one entity are about the same size, so the queued pages times
/// this page's records estimates the queued records.
async fn send_page(pages: &Sender<Page>, page: Page) -> Result<(), ()> {
    let capacity = pages.max_capacity();
    let queued_allowed = (QUEUED_RECORDS / page.records.len().max(1)).clamp(1, capacity);
    // Waiting for this many free slots means at most `queued_allowed - 1`
    // pages are queued when this one goes in.
    let free_needed = capacity - queued_allowed + 1;
    let mut permits = pages.reserve_many(free_needed).await.map_err(|_| ())?;
    match permits.next() {
        Some(permit) => {
            permit.send(page);
            Ok(())
        }
        None => Err(()),
    }
}

/// Fetches the single page at `start`, for previews and connection checks;
/// the entity's steps run first. A child entity without parent rows uses
/// the first record of its parent's first page as its parent.
pub async fn fetch_first_page(ctx: &FetchContext, start: Position) -> Result<Page, FetchError> {
    if ctx.entity.parent.is_some() {
        return children::first_page(ctx, start).await;
    }
    let mut reader = EntityReader::new(
        &ctx.flow,
        &ctx.entity,
        &ctx.client,
        ctx.now,
        PageBudget::default(),
    );
    reader.load_field_names().await?;
    read_first_page(&mut reader, start).await
}

/// Reads pages from `start` until one is not a step's, and returns it.
pub(crate) async fn read_first_page(
    reader: &mut EntityReader<'_>,
    start: Position,
) -> Result<Page, FetchError> {
    let mut position = start;
    loop {
        let read = reader.read_page(&position).await?;
        match (read.from_step, read.page.next) {
            (true, Some(next)) => position = next,
            (_, next) => return Ok(Page { next, ..read.page }),
        }
    }
}

/// Sends the connector's `check` request, or reads the first page of the
/// flow's first entity when the connector has none.
pub async fn check_connection(flow: &Arc<Flow>) -> Result<(), FetchError> {
    let client = HttpClient::new(flow)?;
    let now = Utc::now();
    let connector = &flow.connector;

    if let Some(plan) = &connector.check {
        let context = template_context(flow, &Map::new(), now);
        let source = RequestSource {
            label: "check",
            plan,
            connector_params: &connector.http.params,
            graphql: None,
        };
        let request = request::build(&client, &source, &context, &[])?;
        let exchange = client.execute(&request, "check", &IndexMap::new()).await?;
        if !exchange.status.is_success() {
            return Err(status_error("check", &client, &request, &exchange));
        }
        return Ok(());
    }

    let entity = flow
        .entities
        .first()
        .or_else(|| connector.entities.values().next())
        .ok_or_else(|| {
            FetchError::new(
                FetchErrorKind::Template,
                format!(
                    "connector {} has no check request and no entities, so there is nothing to send; add a check: path",
                    connector.name
                ),
            )
        })?;
    let ctx = FetchContext {
        flow: flow.clone(),
        entity: entity.clone(),
        client: Arc::new(client),
        now,
        parents: None,
    };
    let start = initial_position(entity, None, now, false);
    fetch_first_page(&ctx, start).await.map(|_| ())
}

/// A page and, when the page revealed one, the error that ends the fetch
/// after it is delivered.
pub(crate) struct PageRead {
    pub(crate) page: Page,
    pub(crate) error: Option<FetchError>,
    /// The "page" is a finished step: no records, its outputs in `next`.
    pub(crate) from_step: bool,
}

/// Pages read in a run, shared by the readers of a child entity's parents
/// so that `max_pages` bounds the whole run.
#[derive(Debug, Clone, Default)]
pub(crate) struct PageBudget(Arc<AtomicU64>);

impl PageBudget {
    /// Takes one page; false when `max_pages` pages were already taken.
    fn take(&self, max_pages: u64) -> bool {
        self.0.fetch_add(1, Ordering::Relaxed) < max_pages
    }
}

/// The cost of a page, for progress counters.
#[derive(Debug, Clone, Copy, Default)]
struct PageCost {
    requests: u32,
    bytes: u64,
}

/// The response a page's records and pagination come from.
struct Response<'r> {
    body: Value,
    headers: &'r HeaderMap,
    /// `GET https://…`, secrets masked, for messages.
    request: String,
    /// The request URL, which relative next URLs resolve against.
    url: &'r Url,
    cost: PageCost,
    graphql_errors: u32,
}

/// Reads an entity page by page and tracks what loop detection needs.
pub(crate) struct EntityReader<'a> {
    flow: &'a Flow,
    entity: &'a Entity,
    client: &'a HttpClient,
    now: DateTime<Utc>,
    extractor: Extractor,
    /// `entity comments` or `entity comments, parent issues [42]`, for messages.
    label: String,
    /// The template context; `state` and `window` follow the position.
    context: Value,
    context_window: Option<WindowPosition>,
    sequence: SequenceGuard,
    budget: PageBudget,
    /// Pages read by this reader, for messages.
    pages_read: u64,
}

/// Loop detection within one request sequence (one window).
#[derive(Default)]
struct SequenceGuard {
    window: Option<WindowPosition>,
    /// Page tokens and request URLs already sent.
    requested: HashSet<PageToken>,
    previous_identity: Option<u64>,
}

impl<'a> EntityReader<'a> {
    pub(crate) fn new(
        flow: &'a Flow,
        entity: &'a Entity,
        client: &'a HttpClient,
        now: DateTime<Utc>,
        budget: PageBudget,
    ) -> EntityReader<'a> {
        EntityReader {
            flow,
            entity,
            client,
            now,
            extractor: Extractor::new(entity),
            label: entity_label(entity),
            context: template_context(flow, &entity.parameters, now),
            context_window: None,
            sequence: SequenceGuard::default(),
            budget,
            pages_read: 0,
        }
    }

    /// Makes this reader read the child requests of one parent: templates
    /// see `fields` as `{{parent.*}}`, and each record gets
    /// `<parent>_<field>` for every field in `parent.fields`.
    pub(crate) fn set_parent(&mut self, key: &[Value], fields: &Record) {
        let Some(plan) = &self.entity.parent else {
            return;
        };
        let copied = plan
            .fields
            .iter()
            .map(|field| {
                let value = fields.get(field).cloned().unwrap_or(Value::Null);
                (format!("{}_{field}", plan.entity), value)
            })
            .collect();
        self.extractor.set_parent_fields(copied);
        self.context["parent"] = Value::Object(fields.clone());
        let key: Vec<String> = key.iter().map(crate::template::value_to_text).collect();
        self.label = format!(
            "entity {}, parent {} [{}]",
            self.entity.name,
            plan.entity,
            key.join(", ")
        );
    }

    /// Adds renames read once for the whole run (`fields.names`), so the
    /// readers of a child's parents do not each look them up.
    pub(crate) fn add_renames(&mut self, renames: std::collections::HashMap<String, String>) {
        self.extractor.add_renames(renames);
    }

    /// Reads the id → name pairs of `fields.names`, when the entity has it,
    /// into the field rules.
    pub(crate) async fn load_field_names(&mut self) -> Result<(), FetchError> {
        let Some(names) = &self.entity.fields.names else {
            return Ok(());
        };
        let renames =
            super::names::lookup(self.flow, &self.entity.name, names, self.client, self.now)
                .await?;
        self.extractor.add_renames(renames);
        Ok(())
    }

    pub(crate) async fn read_page(&mut self, position: &Position) -> Result<PageRead, FetchError> {
        let entity = self.entity;
        self.follow_position(position)?;
        if let Some(step) = steps::pending(entity, &position.steps) {
            return self.read_step(step, position).await;
        }
        if !self.budget.take(entity.max_pages) {
            return Err(FetchError::new(
                FetchErrorKind::MaxPages,
                format!(
                    "entity {}: stopped after max_pages ({}) pages in this run; the records read are kept \
                     and the next run resumes where this one stopped; raise max_pages if the entity really has more pages",
                    entity.name, entity.max_pages
                ),
            ));
        }
        self.pages_read += 1;
        let page_number = self.pages_read;

        let request = self.build_request(position)?;
        self.sequence.requested.insert(position.page.clone());
        self.sequence
            .requested
            .insert(PageToken::Url(request.url.as_str().to_string()));

        let throttled = entity
            .graphql
            .is_some()
            .then_some(graphql::throttle as ThrottleCheck);
        let exchange = self
            .client
            .execute_checked(&request, &entity.name, &entity.on_status, throttled)
            .await
            .map_err(|error| {
                FetchError::new(error.kind, format!("{}: {}", self.label, error.message))
            })?;
        let url = self.client.display_url(&request.url);
        tracing::debug!(
            flow = %self.flow.name,
            entity = %entity.name,
            page = page_number,
            status = exchange.status.as_u16(),
            bytes = exchange.body.len(),
            url = %url,
            "page received"
        );
        let cost = PageCost {
            requests: exchange.attempts,
            bytes: exchange.body.len() as u64,
        };

        match entity.on_status.get(&exchange.status.as_u16()) {
            Some(StatusAction::Ignore) | Some(StatusAction::EmptyPage) => {
                tracing::info!(
                    flow = %self.flow.name,
                    entity = %entity.name,
                    status = exchange.status.as_u16(),
                    url = %url,
                    "status listed in on_status, so this request sequence ends without records"
                );
                return Ok(self.end_of_sequence(position, cost, Vec::new(), None, 0));
            }
            Some(StatusAction::Fail) => {
                return Err(status_error(&self.label, self.client, &request, &exchange));
            }
            None if !exchange.status.is_success() => {
                return Err(status_error(&self.label, self.client, &request, &exchange));
            }
            None => {}
        }

        let described = format!("{} {url}", request.method);
        let body = parse_body(&exchange.body).map_err(|message| {
            FetchError::new(
                FetchErrorKind::Response,
                format!(
                    "{}: {described}: the response is not JSON ({message}); {}",
                    self.label,
                    body_excerpt(&exchange.body)
                ),
            )
        })?;
        let graphql_errors = match entity.graphql {
            Some(_) => self.check_graphql_errors(&body, &described, page_number)?,
            None => 0,
        };
        let response = Response {
            body,
            headers: &exchange.headers,
            request: described,
            url: &request.url,
            cost,
            graphql_errors,
        };
        self.read_response(position, response, page_number)
    }

    /// Reads a parent's embedded value as the first response of its
    /// request sequence: no request is sent, and the entity's pagination
    /// decides whether (and from where) the rest is fetched.
    pub(crate) fn read_embedded(
        &mut self,
        position: &Position,
        body: Value,
    ) -> Result<PageRead, FetchError> {
        self.pages_read += 1;
        let page_number = self.pages_read;
        self.follow_position(position)?;
        // The URL of the first request, which relative next URLs in the
        // embedded value resolve against.
        let request = self.build_request(position)?;
        self.sequence.requested.insert(position.page.clone());
        let headers = HeaderMap::new();
        let response = Response {
            body,
            headers: &headers,
            request: "embedded records".to_string(),
            url: &request.url,
            cost: PageCost::default(),
            graphql_errors: 0,
        };
        let mut read = self.read_response(position, response, page_number)?;

        // An offset continues after the records the parent embedded, which
        // may be fewer or more than `limit`.
        if let Pagination::Offset { start, .. } = &self.entity.pagination
            && let Some(next) = &mut read.page.next
            && matches!(next.page, PageToken::Offset(_))
        {
            next.page = PageToken::Offset(start.saturating_add(read.page.records.len() as u64));
        }
        Ok(read)
    }

    /// Fails the page on GraphQL `errors`, unless `partial_ok` keeps the
    /// data that came with them; returns the number of errors kept.
    fn check_graphql_errors(
        &self,
        body: &Value,
        request: &str,
        page_number: u64,
    ) -> Result<u32, FetchError> {
        let found = graphql::read_errors(body).map_err(|message| {
            FetchError::new(
                FetchErrorKind::Response,
                format!("{}: {request}: {message}", self.label),
            )
        })?;
        if found.errors.is_empty() {
            return Ok(0);
        }
        let count = found.errors.len();
        if self.entity.partial_ok && found.has_data {
            tracing::warn!(
                flow = %self.flow.name,
                entity = %self.entity.name,
                page = page_number,
                errors = count,
                first_errors = %found.describe(),
                "GraphQL response has errors; its data is kept because the entity sets partial_ok"
            );
            return Ok(u32::try_from(count).unwrap_or(u32::MAX));
        }
        let hint = match (self.entity.partial_ok, found.has_data) {
            (true, false) => "the response has no data to keep, so partial_ok does not apply",
            (false, true) => {
                "the response also has data; set partial_ok: true on the entity to keep it and count the errors"
            }
            _ => "check the query, its variables and the credentials",
        };
        Err(FetchError::new(
            FetchErrorKind::Graphql,
            format!(
                "{}: {request}: the GraphQL response has {count} error{}: {}; {hint}",
                self.label,
                if count == 1 { "" } else { "s" },
                found.describe()
            ),
        ))
    }

    /// Extracts a response's records and decides the request after it.
    fn read_response(
        &mut self,
        position: &Position,
        response: Response<'_>,
        page_number: u64,
    ) -> Result<PageRead, FetchError> {
        let entity = self.entity;
        let Response {
            body,
            headers,
            request,
            url,
            cost,
            graphql_errors,
        } = response;
        let signals = pagination::read_signals(&entity.pagination, &body, headers, url)
            .map_err(|message| pagination::signal_error(&self.label, &request, message))?;
        let extracted = self.extractor.extract(body, page_number, &self.context)?;

        if let Some(identity) = extracted.identity {
            if self.sequence.previous_identity == Some(identity) {
                return Err(FetchError::new(
                    FetchErrorKind::PaginationLoop,
                    format!(
                        "{}: pagination loop: page {page_number} ({request}) has the same records as the page before it \
                         (same {} in the same order), so the API is ignoring the pagination parameter; \
                         the records before it are kept; check the entity's pagination settings",
                        self.label,
                        if entity.primary_key.is_empty() {
                            "records"
                        } else {
                            "primary keys"
                        },
                    ),
                ));
            }
            self.sequence.previous_identity = Some(identity);
        }

        let record_count = extracted.records.len();
        let step = pagination::decide(&entity.pagination, &position.page, signals, record_count);
        let (next, error) = match step {
            NextStep::End { ignored_more } => {
                if ignored_more {
                    tracing::warn!(
                        flow = %self.flow.name,
                        entity = %entity.name,
                        page = page_number,
                        request = %request,
                        "page has no records although the API reports more pages; an empty page ends the entity"
                    );
                }
                let mut read = self.end_of_sequence(
                    position,
                    cost,
                    extracted.records,
                    extracted.cursor_max,
                    graphql_errors,
                );
                read.page.field_types = extracted.field_types;
                return Ok(read);
            }
            NextStep::Request(token) => {
                let error = self.check_next(&token, page_number);
                let next = Position {
                    page: token,
                    ..position.clone()
                };
                (next, error)
            }
            NextStep::Stuck(message) => {
                // The saved position stays on this request, so a later run
                // requests it again and gets further once the API is fixed.
                let error = FetchError::new(
                    FetchErrorKind::Response,
                    format!(
                        "{}: {request}: pagination: {message}; the records of this page are kept",
                        self.label
                    ),
                );
                (position.clone(), Some(error))
            }
        };
        Ok(PageRead {
            page: Page {
                records: extracted.records,
                deletions: Vec::new(),
                next: Some(next),
                cursor_max: extracted.cursor_max,
                requests: cost.requests,
                bytes: cost.bytes,
                graphql_errors,
                field_types: extracted.field_types,
            },
            error,
            from_step: false,
        })
    }

    /// Builds the page that ends a request sequence: `next` is the next
    /// window's first request, or `None` when the sequence is complete.
    fn end_of_sequence(
        &self,
        position: &Position,
        cost: PageCost,
        records: Vec<super::Record>,
        cursor_max: Option<Value>,
        graphql_errors: u32,
    ) -> PageRead {
        let step = self
            .entity
            .incremental
            .as_ref()
            .and_then(|incremental| incremental.window.as_ref())
            .map(|window| window.step);
        let next = match (&position.window, step) {
            (Some(window), Some(step)) => next_window(window, step).map(|window| Position {
                since: position.since.clone(),
                window: Some(window),
                parent: position.parent.clone(),
                // Each window is a request sequence of its own, steps included.
                steps: Map::new(),
                page: PageToken::Start,
            }),
            _ => None,
        };
        PageRead {
            page: Page {
                records,
                deletions: Vec::new(),
                next,
                cursor_max,
                requests: cost.requests,
                bytes: cost.bytes,
                graphql_errors,
                field_types: IndexMap::new(),
            },
            error: None,
            from_step: false,
        }
    }

    /// Runs a step and returns a page without records whose next position
    /// carries the step's outputs, so the writer saves them.
    async fn read_step(&self, step: &Step, position: &Position) -> Result<PageRead, FetchError> {
        let outcome = steps::run(self.client, self.flow, self.entity, step, &self.context).await?;
        let mut next = position.clone();
        next.steps
            .insert(step.name.clone(), Value::Object(outcome.outputs));
        Ok(PageRead {
            page: Page {
                next: Some(next),
                requests: outcome.requests,
                bytes: outcome.bytes,
                ..Page::default()
            },
            error: None,
            from_step: true,
        })
    }

    /// Checks the request a page points to: a token already requested in
    /// this sequence is a pagination loop, a URL on another origin is
    /// refused. Either error is returned after the page is delivered.
    fn check_next(&self, token: &PageToken, page_number: u64) -> Option<FetchError> {
        let label = &self.label;
        if let PageToken::Url(next) = token
            && let Err(error) = self.check_origin(next)
        {
            return Some(error);
        }
        if !self.sequence.requested.contains(token) {
            return None;
        }
        let repeated = match token {
            PageToken::Cursor(cursor) => format!("cursor {:?}", crate::redact::redact(cursor)),
            PageToken::Url(url) => match Url::parse(url) {
                Ok(parsed) => format!("next URL {}", self.client.display_url(&parsed)),
                Err(_) => format!("next URL {:?}", crate::redact::redact(url)),
            },
            PageToken::Offset(offset) => format!("offset {offset}"),
            PageToken::Page(page) => format!("page number {page}"),
            PageToken::Start => "the first request".to_string(),
        };
        Some(FetchError::new(
            FetchErrorKind::PaginationLoop,
            format!(
                "{label}: pagination loop: page {page_number} points to {repeated}, which was already requested in this run; \
                 the records before it are kept and the saved position points at that request; \
                 check the entity's pagination settings"
            ),
        ))
    }

    fn check_origin(&self, next: &str) -> Result<(), FetchError> {
        if self.client.allow_cross_host() {
            return Ok(());
        }
        let parsed = Url::parse(next).map_err(|error| {
            FetchError::new(
                FetchErrorKind::Response,
                format!(
                    "{}: next URL {:?} is not valid: {error}",
                    self.label,
                    crate::redact::redact(next)
                ),
            )
        })?;
        let origin = Origin::of(&parsed);
        if &origin == self.client.origin() {
            return Ok(());
        }
        Err(FetchError::new(
            FetchErrorKind::CrossHost,
            format!(
                "{}: next URL {} is on {origin}, not on {} where http.base_url points; \
                 it was not requested so that credentials stay on the connector's host; \
                 set http.allow_cross_host: true if the API really continues there",
                self.label,
                self.client.display_url(&parsed),
                self.client.origin()
            ),
        ))
    }

    /// Keeps the template context's `state.cursor`, `window` and `steps` on
    /// `position`, renders the templated parameters with them, and starts a
    /// new loop-detection sequence with each window.
    fn follow_position(&mut self, position: &Position) -> Result<(), FetchError> {
        self.context["state"]["cursor"] = position.since.clone().unwrap_or(Value::Null);
        self.context["steps"] = Value::Object(position.steps.clone());
        for (name, template) in &self.entity.templated_parameters {
            let rendered = template.render(&self.context).map_err(|error| {
                FetchError::new(
                    FetchErrorKind::Template,
                    format!("entity {}: parameter {name}: {error}", self.entity.name),
                )
            })?;
            self.context["entity"][name] = Value::String(rendered);
        }
        if self.context_window != position.window {
            self.context["window"] = match &position.window {
                Some(window) => json!({"start": window.start, "end": window.end}),
                None => Value::Null,
            };
            self.context_window = position.window.clone();
        }
        if self.sequence.window != position.window {
            self.sequence = SequenceGuard {
                window: position.window.clone(),
                ..SequenceGuard::default()
            };
        }
        Ok(())
    }

    fn build_request(&self, position: &Position) -> Result<PreparedRequest, FetchError> {
        let source = RequestSource {
            label: &self.label,
            plan: &self.entity.request,
            connector_params: &self.flow.connector.http.params,
            graphql: self.entity.graphql.as_ref(),
        };
        if let PageToken::Url(url) = &position.page {
            // A saved position may come from an older run or a hand-edited
            // state, so its URL is checked again before anything is sent.
            self.check_origin(url)?;
            return request::follow_url(self.client, &source, &self.context, url);
        }

        let mut injections = Vec::new();
        if let Some(incremental) = &self.entity.incremental {
            if let (Some(param), Some(since)) = (&incremental.param, &position.since) {
                injections.push(Injection {
                    param,
                    value: since.clone(),
                });
            }
            if let (Some(window_plan), Some(window)) = (&incremental.window, &position.window) {
                if let Some(param) = &window_plan.start_param {
                    injections.push(Injection {
                        param,
                        value: window.start.clone(),
                    });
                }
                if let Some(param) = &window_plan.end_param {
                    injections.push(Injection {
                        param,
                        value: window.end.clone(),
                    });
                }
            }
        }
        for (param, value) in pagination::injections(&self.entity.pagination, &position.page) {
            injections.push(Injection { param, value });
        }
        request::build(self.client, &source, &self.context, &injections)
    }
}

/// Builds the template context of an entity's requests.
fn template_context(flow: &Flow, parameters: &Map<String, Value>, now: DateTime<Utc>) -> Value {
    json!({
        "config": config_values(flow),
        "state": {"cursor": null},
        "parent": null,
        "window": null,
        "steps": {},
        "entity": parameters,
        "now": iso_time(&now),
    })
}

/// Returns the flow's config values with null for the optional keys it
/// does not set, so `{{config.KEY}}` renders null (a query parameter left
/// out) where strict templates would fail.
pub(crate) fn config_values(flow: &Flow) -> Map<String, Value> {
    let mut values = flow.config.clone();
    for key in flow.connector.config.keys() {
        if !values.contains_key(key) {
            values.insert(key.clone(), Value::Null);
        }
    }
    values
}

/// Parses a body as JSON; an empty body (a 204, say) is null, which
/// selects no records.
pub(crate) fn parse_body(body: &[u8]) -> Result<Value, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).map_err(|error| error.to_string())
}

/// Builds the error for a final status that is not a success.
pub(crate) fn status_error(
    label: &str,
    client: &HttpClient,
    request: &PreparedRequest,
    exchange: &Exchange,
) -> FetchError {
    let status = exchange.status;
    let (kind, hint) = match status.as_u16() {
        401 | 403 => (
            FetchErrorKind::Auth,
            "the API rejected the credentials; check the connector's auth config values",
        ),
        _ if status.is_client_error() => (
            FetchErrorKind::Http,
            "the API rejected the request; check the path and parameters, or map this status in on_status",
        ),
        _ => (
            FetchErrorKind::Http,
            "the API failed; map this status in on_status if it is expected",
        ),
    };
    FetchError::new(
        kind,
        format!(
            "{label}: {} {}: HTTP {}: {}; {hint}",
            request.method,
            client.display_url(&request.url),
            status,
            body_excerpt(&exchange.body)
        ),
    )
}

fn entity_label(entity: &Entity) -> String {
    format!("entity {}", entity.name)
}

pub(crate) fn describe_position(position: &Position) -> String {
    let page = match &position.page {
        PageToken::Start => "first page".to_string(),
        PageToken::Cursor(_) => "saved cursor".to_string(),
        PageToken::Url(_) => "saved next URL".to_string(),
        PageToken::Offset(offset) => format!("offset {offset}"),
        PageToken::Page(page) => format!("page {page}"),
    };
    let page = match &position.window {
        Some(window) => format!("{page} of window {} to {}", window.start, window.end),
        None => page,
    };
    match &position.parent {
        Some(parent) if parent.done => format!("the parent after key {:?}", parent.key),
        Some(parent) => format!("{page} of parent key {:?}", parent.key),
        None => page,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::mpsc::channel;
    use tokio::time::timeout;

    use super::*;

    fn page(records: usize) -> Page {
        Page {
            records: vec![Map::new(); records],
            ..Page::default()
        }
    }

    #[tokio::test]
    async fn large_page_waits_for_queue() {
        let (sender, mut receiver) = channel(64);
        send_page(&sender, page(10_000)).await.unwrap();
        let second = timeout(Duration::from_millis(100), send_page(&sender, page(10_000))).await;
        assert!(second.is_err(), "a second 10,000-record page waits");

        assert_eq!(receiver.recv().await.unwrap().records.len(), 10_000);
        let third = timeout(Duration::from_secs(5), send_page(&sender, page(10_000))).await;
        assert_eq!(third, Ok(Ok(())));
    }

    #[tokio::test]
    async fn small_pages_fill_channel() {
        let (sender, _receiver) = channel(64);
        for _ in 0..64 {
            let sent = timeout(Duration::from_secs(5), send_page(&sender, page(100))).await;
            assert_eq!(sent, Ok(Ok(())));
        }
        let extra = timeout(Duration::from_millis(100), send_page(&sender, page(100))).await;
        assert!(extra.is_err(), "the 65th page waits");
    }

    #[tokio::test]
    async fn closed_channel_is_an_error() {
        let (sender, receiver) = channel(64);
        drop(receiver);
        assert_eq!(send_page(&sender, page(1)).await, Err(()));
    }
}
