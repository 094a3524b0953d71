//! The page loop of one REST entity: request, response, records, next
//! position, until the entity is complete.
//!
//! Every [`Page`] carries the position of the request that follows it, so
//! "resume from the last page's `next`" sends exactly the request that was
//! not read yet. When the loop stops on an error that a page reveals (a
//! repeated cursor, a next URL on another host), the page is still sent,
//! with `next` pointing at the refused request, and the error follows.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use indexmap::IndexMap;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc::Sender;
use url::Url;

use super::client::{Exchange, HttpClient, Origin, PreparedRequest, body_excerpt};
use super::extract::Extractor;
use super::incremental::{initial_position, next_window};
use super::pagination::{self, NextStep};
use super::request::{self, Injection, RequestSource};
use super::steps;
use super::{FetchError, FetchErrorKind, Page, PageToken, Position, WindowPosition};
use crate::spec::plan::{Entity, Flow, Pagination, StatusAction, Step};
use crate::template::format_time;

/// The inputs of one entity fetch. `now` is fixed for the run, so windows and
/// `{{now}}` agree across every request of it.
#[derive(Debug, Clone)]
pub struct FetchContext {
    pub flow: Arc<Flow>,
    pub entity: Arc<Entity>,
    pub client: Arc<HttpClient>,
    pub now: DateTime<Utc>,
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
    let mut reader = EntityReader::new(&ctx.flow, &ctx.entity, &ctx.client, ctx.now)?;
    reader.load_field_names().await?;
    tracing::info!(
        flow = %ctx.flow.name,
        entity = %ctx.entity.name,
        start = %describe_position(&start),
        "fetch started"
    );

    let mut position = start;
    let (mut page_count, mut record_count, mut request_count) = (0u64, 0u64, 0u64);
    loop {
        let read = reader.read_page(&position).await;
        let PageRead {
            page,
            error,
            from_step,
        } = match read {
            Ok(read) => read,
            Err(error) => {
                tracing::info!(
                    flow = %ctx.flow.name,
                    entity = %ctx.entity.name,
                    pages = page_count,
                    records = record_count,
                    requests = request_count,
                    error_kind = ?error.kind,
                    "fetch stopped by an error"
                );
                return Err(error);
            }
        };
        if !from_step {
            page_count += 1;
        }
        record_count += page.records.len() as u64;
        request_count += u64::from(page.requests);
        let next = page.next.clone();

        if pages.send(page).await.is_err() {
            tracing::debug!(
                flow = %ctx.flow.name,
                entity = %ctx.entity.name,
                "page receiver dropped, so the fetch stops"
            );
            return Ok(());
        }
        if let Some(error) = error {
            return Err(error);
        }
        match next {
            Some(next) => position = next,
            None => {
                tracing::info!(
                    flow = %ctx.flow.name,
                    entity = %ctx.entity.name,
                    pages = page_count,
                    records = record_count,
                    requests = request_count,
                    "fetch finished"
                );
                return Ok(());
            }
        }
    }
}

/// Fetches the single page at `start`, for previews and connection checks;
/// the entity's steps run first.
pub async fn fetch_first_page(ctx: &FetchContext, start: Position) -> Result<Page, FetchError> {
    let mut reader = EntityReader::new(&ctx.flow, &ctx.entity, &ctx.client, ctx.now)?;
    reader.load_field_names().await?;
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
pub async fn check_connection(flow: &Flow) -> Result<(), FetchError> {
    let client = HttpClient::new(flow)?;
    let now = Utc::now();
    let connector = &flow.connector;

    if let Some(plan) = &connector.check {
        let context = template_context(flow, &Map::new(), now);
        let source = RequestSource {
            label: "check",
            plan,
            connector_params: &connector.http.params,
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
    let mut reader = EntityReader::new(flow, entity, &client, now)?;
    let start = initial_position(entity, None, now, false);
    reader.read_page(&start).await.map(|_| ())
}

/// A page and, when the page revealed one, the error that ends the fetch
/// after it is delivered.
pub(crate) struct PageRead {
    pub(crate) page: Page,
    pub(crate) error: Option<FetchError>,
    /// The "page" is a finished step: no records, its outputs in `next`.
    pub(crate) from_step: bool,
}

/// Reads an entity page by page and tracks what loop detection needs.
pub(crate) struct EntityReader<'a> {
    flow: &'a Flow,
    entity: &'a Entity,
    client: &'a HttpClient,
    now: DateTime<Utc>,
    extractor: Extractor,
    /// The template context; `state` and `window` follow the position.
    context: Value,
    context_window: Option<WindowPosition>,
    sequence: SequenceGuard,
    /// Pages requested by this reader, for `max_pages` and messages.
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
    ) -> Result<EntityReader<'a>, FetchError> {
        unsupported_features(entity)?;
        Ok(EntityReader {
            flow,
            entity,
            client,
            now,
            extractor: Extractor::new(entity),
            context: template_context(flow, &entity.parameters, now),
            context_window: None,
            sequence: SequenceGuard::default(),
            pages_read: 0,
        })
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
        if self.pages_read >= entity.max_pages {
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

        let exchange = self
            .client
            .execute(&request, &entity.name, &entity.on_status)
            .await?;
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

        match entity.on_status.get(&exchange.status.as_u16()) {
            Some(StatusAction::Ignore) | Some(StatusAction::EmptyPage) => {
                tracing::info!(
                    flow = %self.flow.name,
                    entity = %entity.name,
                    status = exchange.status.as_u16(),
                    url = %url,
                    "status listed in on_status, so this request sequence ends without records"
                );
                return Ok(self.end_of_sequence(position, &exchange, Vec::new(), None));
            }
            Some(StatusAction::Fail) => {
                return Err(status_error(
                    &entity_label(entity),
                    self.client,
                    &request,
                    &exchange,
                ));
            }
            None if !exchange.status.is_success() => {
                return Err(status_error(
                    &entity_label(entity),
                    self.client,
                    &request,
                    &exchange,
                ));
            }
            None => {}
        }

        self.read_body(position, &request, exchange, page_number, &url)
    }

    fn read_body(
        &mut self,
        position: &Position,
        request: &PreparedRequest,
        exchange: Exchange,
        page_number: u64,
        url: &str,
    ) -> Result<PageRead, FetchError> {
        let entity = self.entity;
        let body = parse_body(&exchange.body).map_err(|message| {
            FetchError::new(
                FetchErrorKind::Response,
                format!(
                    "entity {}: {} {url}: the response is not JSON ({message}); {}",
                    entity.name,
                    request.method,
                    body_excerpt(&exchange.body)
                ),
            )
        })?;
        let signals =
            pagination::read_signals(&entity.pagination, &body, &exchange.headers, &request.url)
                .map_err(|message| pagination::signal_error(&entity.name, url, message))?;
        let extracted = self.extractor.extract(body, page_number, &self.context)?;

        if let Some(identity) = extracted.identity {
            if self.sequence.previous_identity == Some(identity) {
                return Err(FetchError::new(
                    FetchErrorKind::PaginationLoop,
                    format!(
                        "entity {}: pagination loop: page {page_number} ({} {url}) has the same records as the page before it \
                         (same {} in the same order), so the API is ignoring the pagination parameter; \
                         the records before it are kept; check the entity's pagination settings",
                        entity.name,
                        request.method,
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
        match step {
            NextStep::End { ignored_more } => {
                if ignored_more {
                    tracing::warn!(
                        flow = %self.flow.name,
                        entity = %entity.name,
                        page = page_number,
                        url = %url,
                        "page has no records although the API reports more pages; an empty page ends the entity"
                    );
                }
                let mut read = self.end_of_sequence(
                    position,
                    &exchange,
                    extracted.records,
                    extracted.cursor_max,
                );
                read.page.field_types = extracted.field_types;
                Ok(read)
            }
            NextStep::Request(token) => {
                let error = self.check_next(&token, page_number);
                let next = Position {
                    page: token,
                    ..position.clone()
                };
                Ok(PageRead {
                    page: Page {
                        records: extracted.records,
                        deletions: Vec::new(),
                        next: Some(next),
                        cursor_max: extracted.cursor_max,
                        requests: exchange.attempts,
                        bytes: exchange.body.len() as u64,
                        field_types: extracted.field_types,
                    },
                    error,
                    from_step: false,
                })
            }
        }
    }

    /// Builds the page that ends a request sequence: `next` is the next
    /// window's first request, or `None` when the entity is complete.
    fn end_of_sequence(
        &self,
        position: &Position,
        exchange: &Exchange,
        records: Vec<super::Record>,
        cursor_max: Option<Value>,
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
                requests: exchange.attempts,
                bytes: exchange.body.len() as u64,
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
        let entity = &self.entity.name;
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
                "entity {entity}: pagination loop: page {page_number} points to {repeated}, which was already requested in this run; \
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
                    "entity {}: next URL {:?} is not valid: {error}",
                    self.entity.name,
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
                "entity {}: next URL {} is on {origin}, not on {} where http.base_url points; \
                 it was not requested so that credentials stay on the connector's host; \
                 set http.allow_cross_host: true if the API really continues there",
                self.entity.name,
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
        let label = entity_label(self.entity);
        let source = RequestSource {
            label: &label,
            plan: &self.entity.request,
            connector_params: &self.flow.connector.http.params,
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

fn unsupported_features(entity: &Entity) -> Result<(), FetchError> {
    let unsupported = if entity.graphql.is_some() {
        Some((FetchErrorKind::Graphql, "GraphQL entities (graphql:) are"))
    } else if matches!(entity.pagination, Pagination::Relay { .. }) {
        Some((FetchErrorKind::Graphql, "relay pagination is"))
    } else if entity.parent.is_some() {
        Some((FetchErrorKind::Template, "child entities (parent:) are"))
    } else {
        None
    };
    match unsupported {
        Some((kind, feature)) => Err(FetchError::new(
            kind,
            format!(
                "entity {}: {feature} not supported by the REST engine yet",
                entity.name
            ),
        )),
        None => Ok(()),
    }
}

/// Builds the template context of an entity's requests.
fn template_context(flow: &Flow, parameters: &Map<String, Value>, now: DateTime<Utc>) -> Value {
    json!({
        "config": config_values(flow),
        "state": {"cursor": null},
        "parent": null,
        "window": null,
        "entity": parameters,
        "steps": {},
        "now": format_time(&now, "iso"),
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

fn describe_position(position: &Position) -> String {
    let page = match &position.page {
        PageToken::Start => "first page".to_string(),
        PageToken::Cursor(_) => "saved cursor".to_string(),
        PageToken::Url(_) => "saved next URL".to_string(),
        PageToken::Offset(offset) => format!("offset {offset}"),
        PageToken::Page(page) => format!("page {page}"),
    };
    match &position.window {
        Some(window) => format!("{page} of window {} to {}", window.start, window.end),
        None => page,
    }
}
