//! Child entities: one request sequence per parent row.
//!
//! Parent rows come from a [`ParentSource`] in (`synced_at`, key) order, a
//! batch at a time. Up to `parent.concurrency` parents are read at once,
//! each by its own task into its own small channel. Pages leave in parent
//! order: the pages of the oldest running parent are forwarded as they
//! arrive, while later parents wait in their channels, whose capacity
//! bounds the pages held in memory.
//!
//! Every forwarded page's `next` names its parent, and the last page of a
//! parent names that parent as done. So a committed chunk resumes exactly:
//! the parent in progress continues from its next request, and the parents
//! after it are listed again from the source. Work of later parents that
//! was fetched but not yet forwarded is fetched again, never skipped.

use std::cmp::Ordering;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc::{self, Receiver, Sender};
use tokio::task::JoinHandle;

use super::fetch::{
    EntityReader, FetchContext, PageBudget, PageRead, Totals, deliver, describe_position,
    fetch_first_page, read_first_page, read_sequence,
};
use super::incremental::initial_position;
use super::{
    FetchError, FetchErrorKind, Page, ParentPosition, ParentRow, ParentSource, Position, Record,
};
use crate::spec::plan::{Entity, ParentPlan};

/// Parent rows read from the source at once. Each DuckDB read scans the
/// table's unread rows, so larger batches mean fewer scans: paging through
/// 100,000 rows took 6.2 s at 500 and 2.5 s at 2,000 (an ignored test in
/// `tests/it/measure_children.rs`, on two shared Xeon cores).
const PARENT_BATCH: usize = 2_000;

/// Pages a running parent may hold before it waits for its turn: two keep
/// its next request going while it waits, and bound memory to
/// `concurrency * 2` pages.
const PARENT_CHANNEL_PAGES: usize = 2;

/// Fetches a child entity from `start`: the parent in progress first, then
/// every parent after it, sending pages in parent order.
pub(crate) async fn fetch_children(
    ctx: FetchContext,
    start: Position,
    pages: Sender<Page>,
) -> Result<(), FetchError> {
    let entity = ctx.entity.clone();
    let plan = parent_plan(&entity)?;
    let Some(source) = ctx.parents.clone() else {
        return Err(FetchError::new(
            FetchErrorKind::Template,
            format!(
                "entity {}: no parent rows to read; a child entity runs in a sync, which reads the rows of {}",
                entity.name, plan.entity
            ),
        ));
    };
    tracing::info!(
        flow = %ctx.flow.name,
        entity = %entity.name,
        parent = %plan.entity,
        concurrency = plan.concurrency,
        start = %describe_position(&start),
        "fetch started"
    );

    let mut totals = Totals::default();
    let mut parents_read = 0u64;
    let result = schedule(
        &ctx,
        plan,
        source,
        start,
        &pages,
        &mut totals,
        &mut parents_read,
    )
    .await;
    match &result {
        Ok(()) => tracing::info!(
            flow = %ctx.flow.name,
            entity = %entity.name,
            parents = parents_read,
            pages = totals.pages,
            records = totals.records,
            requests = totals.requests,
            "fetch finished"
        ),
        Err(error) => tracing::info!(
            flow = %ctx.flow.name,
            entity = %entity.name,
            parents = parents_read,
            pages = totals.pages,
            records = totals.records,
            requests = totals.requests,
            error_kind = ?error.kind,
            "fetch stopped by an error"
        ),
    }
    result
}

/// Keeps up to `parent.concurrency` parents running and forwards the
/// pages of the oldest one, until every parent is read or one fails.
async fn schedule(
    ctx: &FetchContext,
    plan: &ParentPlan,
    source: Arc<dyn ParentSource>,
    start: Position,
    pages: &Sender<Page>,
    totals: &mut Totals,
    parents_read: &mut u64,
) -> Result<(), FetchError> {
    let mut resume = match &start.parent {
        Some(parent) if !parent.done => Some(JobStart::Resume(Box::new(start.clone()))),
        _ => None,
    };
    let mut feed = ParentFeed {
        source,
        after: start.parent.as_ref().map(ParentPosition::finished),
        buffer: VecDeque::new(),
        exhausted: false,
    };
    let renames = match &ctx.entity.fields.names {
        Some(names) => {
            super::names::lookup(&ctx.flow, &ctx.entity.name, names, &ctx.client, ctx.now).await?
        }
        None => HashMap::new(),
    };
    let spawner = Spawner {
        ctx: ctx.clone(),
        budget: PageBudget::default(),
        since: start.since.clone(),
        renames,
    };

    let mut running: VecDeque<ParentJob> = VecDeque::new();
    loop {
        while running.len() < plan.concurrency.max(1) as usize {
            let job = match resume.take() {
                Some(job) => job,
                None => match feed.next().await? {
                    Some(row) => JobStart::Row(row),
                    None => break,
                },
            };
            running.push_back(spawner.spawn(plan, job)?);
        }
        let Some(head) = running.front_mut() else {
            return Ok(());
        };
        match head.pages.recv().await {
            Some(mut page) => {
                if page.next.is_none() {
                    page.next = Some(Position {
                        since: spawner.since.clone(),
                        parent: Some(head.parent.finished()),
                        ..Position::default()
                    });
                }
                let read = PageRead {
                    page,
                    error: None,
                    from_step: false,
                };
                if deliver(read, pages, totals).await?.is_none() {
                    return Ok(());
                }
            }
            None => {
                if let Some(job) = running.pop_front() {
                    job.finish().await?;
                    *parents_read += 1;
                }
            }
        }
    }
}

/// Reads the first page of a child entity for its first parent: the
/// first parent row of the source, or without a source the first record
/// of the parent entity's own first page.
pub(crate) async fn first_page(ctx: &FetchContext, start: Position) -> Result<Page, FetchError> {
    let plan = parent_plan(&ctx.entity)?;
    let row = match &ctx.parents {
        Some(source) => source.parents_after(None, 1).await?.into_iter().next(),
        None => first_parent_record(ctx, plan).await?,
    };
    let Some(row) = row else {
        return Err(FetchError::new(
            FetchErrorKind::Response,
            format!(
                "entity {}: parent entity {} has no records, so there is no parent to read children of",
                ctx.entity.name, plan.entity
            ),
        ));
    };

    let (position, embedded, _) = parent_start(plan, start.since.clone(), row)?;
    let mut reader = EntityReader::new(
        &ctx.flow,
        &ctx.entity,
        &ctx.client,
        ctx.now,
        PageBudget::default(),
    );
    reader.load_field_names().await?;
    if let Some(parent) = &position.parent {
        reader.set_parent(&parent.key, &parent.fields);
    }
    match embedded {
        Embedded::None => read_first_page(&mut reader, position).await,
        Embedded::Missing => Ok(Page::default()),
        Embedded::Value(value) => Ok(reader.read_embedded(&position, value)?.page),
    }
}

/// Fetches the parent entity's first page and turns its first record into
/// a parent row, timed now.
async fn first_parent_record(
    ctx: &FetchContext,
    plan: &ParentPlan,
) -> Result<Option<ParentRow>, FetchError> {
    let parent = ctx
        .flow
        .entity(&plan.entity)
        .or_else(|| ctx.flow.connector.entities.get(&plan.entity))
        .cloned()
        .ok_or_else(|| {
            FetchError::new(
                FetchErrorKind::Template,
                format!(
                    "entity {}: parent entity {} is not in connector {}",
                    ctx.entity.name, plan.entity, ctx.flow.connector.name
                ),
            )
        })?;
    let start = initial_position(&parent, None, ctx.now, false);
    let parent_ctx = FetchContext {
        entity: parent.clone(),
        ..ctx.clone()
    };
    let page = Box::pin(fetch_first_page(&parent_ctx, start)).await?;
    let Some(record) = page.records.into_iter().next() else {
        return Ok(None);
    };
    let key = parent
        .primary_key
        .iter()
        .map(|field| {
            let name = super::output_field_name(&parent.fields, field);
            record.get(name).cloned().unwrap_or(Value::Null)
        })
        .collect();
    Ok(Some(ParentRow {
        synced_at: ctx.now,
        key,
        fields: record,
    }))
}

fn parent_plan(entity: &Entity) -> Result<&ParentPlan, FetchError> {
    entity.parent.as_ref().ok_or_else(|| {
        FetchError::new(
            FetchErrorKind::Template,
            format!("entity {} has no parent", entity.name),
        )
    })
}

/// The parent's embedded value, when the entity reads one.
enum Embedded {
    /// The entity has no `parent.embedded`: its first request is sent.
    None,
    /// `parent.embedded` selects nothing or null in this parent row.
    Missing,
    Value(Value),
}

/// Returns the position of a parent's first request and its embedded
/// value. The position keeps only the `parent.fields` values, which is
/// all that its later requests render with.
fn parent_start(
    plan: &ParentPlan,
    since: Option<Value>,
    row: ParentRow,
) -> Result<(Position, Embedded, ParentPosition), FetchError> {
    let mut fields = Record::new();
    for field in &plan.fields {
        if let Some(value) = row.fields.get(field) {
            fields.insert(field.clone(), value.clone());
        }
    }
    let embedded = match &plan.embedded {
        None => Embedded::None,
        Some(path) => {
            let record = Value::Object(row.fields);
            match path.find_one(&record) {
                Ok(None | Some(Value::Null)) => Embedded::Missing,
                Ok(Some(value)) => Embedded::Value(value.clone()),
                Err(message) => {
                    return Err(FetchError::new(
                        FetchErrorKind::Response,
                        format!(
                            "parent.embedded {} in the {} row with key {:?}: {message}",
                            path.source(),
                            plan.entity,
                            row.key
                        ),
                    ));
                }
            }
        }
    };
    let parent = ParentPosition {
        synced_at: row.synced_at,
        key: row.key,
        fields,
        done: false,
    };
    let position = Position {
        since,
        parent: Some(parent.clone()),
        ..Position::default()
    };
    Ok((position, embedded, parent))
}

/// The next parent to read: a row of the list, or the saved position of
/// the parent a resumed run was in the middle of.
enum JobStart {
    Row(ParentRow),
    Resume(Box<Position>),
}

/// One parent being read by its own task.
struct ParentJob {
    parent: ParentPosition,
    pages: Receiver<Page>,
    handle: AbortOnDrop,
}

impl ParentJob {
    /// Waits for the task (its channel is closed) and returns its outcome.
    async fn finish(mut self) -> Result<(), FetchError> {
        let handle = self.handle.0.take();
        match handle {
            Some(handle) => handle.await.unwrap_or_else(|join_error| {
                Err(FetchError::new(
                    FetchErrorKind::Response,
                    format!("a parent's fetch task stopped unexpectedly: {join_error}"),
                ))
            }),
            None => Ok(()),
        }
    }
}

/// Aborts a parent's task when the fetch stops early (an error in another
/// parent, or the run was stopped), so no request outlives the fetch.
struct AbortOnDrop(Option<JoinHandle<Result<(), FetchError>>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// Starts parent tasks with what they share.
struct Spawner {
    ctx: FetchContext,
    budget: PageBudget,
    /// The run's incremental value, sent with every parent's requests.
    since: Option<Value>,
    /// Renames from `fields.names`, looked up once per run.
    renames: HashMap<String, String>,
}

impl Spawner {
    fn spawn(&self, plan: &ParentPlan, start: JobStart) -> Result<ParentJob, FetchError> {
        let (position, embedded, parent) = match start {
            JobStart::Row(row) => {
                let (position, embedded, parent) = parent_start(plan, self.since.clone(), row)?;
                (position, embedded, parent)
            }
            JobStart::Resume(position) => {
                let parent = position.parent.clone().ok_or_else(|| {
                    FetchError::new(
                        FetchErrorKind::Parents,
                        "a resumed child position has no parent".to_string(),
                    )
                })?;
                (*position, Embedded::None, parent)
            }
        };
        let (sender, receiver) = mpsc::channel(PARENT_CHANNEL_PAGES);
        let task = read_parent(
            self.ctx.clone(),
            self.budget.clone(),
            self.renames.clone(),
            position,
            embedded,
            sender,
        );
        Ok(ParentJob {
            parent,
            pages: receiver,
            handle: AbortOnDrop(Some(tokio::spawn(task))),
        })
    }
}

/// Reads every request of one parent, from its embedded value (if any)
/// and then its requests, into `pages`.
async fn read_parent(
    ctx: FetchContext,
    budget: PageBudget,
    renames: HashMap<String, String>,
    start: Position,
    embedded: Embedded,
    pages: Sender<Page>,
) -> Result<(), FetchError> {
    let mut reader = EntityReader::new(&ctx.flow, &ctx.entity, &ctx.client, ctx.now, budget);
    reader.add_renames(renames);
    if let Some(parent) = &start.parent {
        reader.set_parent(&parent.key, &parent.fields);
        tracing::debug!(
            flow = %ctx.flow.name,
            entity = %ctx.entity.name,
            parent_key = ?parent.key,
            "parent started"
        );
    }
    let mut totals = Totals::default();
    let first = match embedded {
        Embedded::None => None,
        Embedded::Missing => Some(PageRead {
            page: Page::default(),
            error: None,
            from_step: false,
        }),
        Embedded::Value(value) => Some(reader.read_embedded(&start, value)?),
    };
    let position = match first {
        None => start,
        Some(read) => match deliver(read, &pages, &mut totals).await? {
            Some(next) => next,
            None => return Ok(()),
        },
    };
    read_sequence(&mut reader, position, &pages, &mut totals).await
}

/// Parent rows after a position, read from the source a batch at a time.
struct ParentFeed {
    source: Arc<dyn ParentSource>,
    after: Option<ParentPosition>,
    buffer: VecDeque<ParentRow>,
    /// The source returned a short batch: rows written after it wait for
    /// the next run, which bounds this one.
    exhausted: bool,
}

impl ParentFeed {
    async fn next(&mut self) -> Result<Option<ParentRow>, FetchError> {
        if self.buffer.is_empty() && !self.exhausted {
            let rows = self
                .source
                .parents_after(self.after.as_ref(), PARENT_BATCH)
                .await?;
            self.exhausted = rows.len() < PARENT_BATCH;
            self.buffer.extend(rows);
        }
        let row = self.buffer.pop_front();
        if let Some(row) = &row {
            // A source that ignored the position would return the same rows
            // forever, so going backwards is an error, not a loop.
            if let Some(after) = &self.after
                && !is_after(row, after)
            {
                return Err(FetchError::new(
                    FetchErrorKind::Parents,
                    format!(
                        "the parent rows came back out of order: key {:?} written at {} is not after key {:?} written at {}",
                        row.key, row.synced_at, after.key, after.synced_at
                    ),
                ));
            }
            self.after = Some(ParentPosition {
                synced_at: row.synced_at,
                key: row.key.clone(),
                fields: Record::new(),
                done: true,
            });
        }
        Ok(row)
    }
}

/// True when `row` comes strictly after `position` in (`synced_at`, key)
/// order, comparing keys as a database orders their columns: numbers by
/// value, text by its bytes (the default binary collation).
fn is_after(row: &ParentRow, position: &ParentPosition) -> bool {
    let by_key = || {
        for (left, right) in row.key.iter().zip(&position.key) {
            match compare_key_values(left, right) {
                Ordering::Equal => continue,
                order => return order,
            }
        }
        row.key.len().cmp(&position.key.len())
    };
    row.synced_at
        .cmp(&position.synced_at)
        .then_with(by_key)
        .is_gt()
}

fn compare_key_values(left: &Value, right: &Value) -> Ordering {
    match (left, right) {
        (Value::Number(left), Value::Number(right)) => {
            let (left, right) = (left.to_string(), right.to_string());
            match (left.parse::<i128>(), right.parse::<i128>()) {
                (Ok(left), Ok(right)) => left.cmp(&right),
                _ => {
                    let left = left.parse::<f64>().unwrap_or(f64::NAN);
                    let right = right.parse::<f64>().unwrap_or(f64::NAN);
                    left.partial_cmp(&right).unwrap_or(Ordering::Equal)
                }
            }
        }
        (Value::String(left), Value::String(right)) => left.as_bytes().cmp(right.as_bytes()),
        (Value::Bool(left), Value::Bool(right)) => left.cmp(right),
        // A key column holds one type, so mixed pairs do not occur in
        // practice. Treating them as equal moves on to the next key value.
        _ => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn row(seconds: i64, key: Vec<Value>) -> ParentRow {
        ParentRow {
            synced_at: Utc.timestamp_opt(seconds, 0).unwrap(),
            key,
            fields: Record::new(),
        }
    }

    fn position(seconds: i64, key: Vec<Value>) -> ParentPosition {
        let row = row(seconds, key);
        ParentPosition {
            synced_at: row.synced_at,
            key: row.key,
            fields: Record::new(),
            done: true,
        }
    }

    #[test]
    fn later_time_is_after_any_key() {
        assert!(is_after(
            &row(2, vec![json!(1)]),
            &position(1, vec![json!(9)])
        ));
        assert!(!is_after(
            &row(1, vec![json!(9)]),
            &position(2, vec![json!(1)])
        ));
    }

    #[test]
    fn same_time_compares_keys_like_columns() {
        assert!(is_after(
            &row(1, vec![json!(10)]),
            &position(1, vec![json!(9)])
        ));
        // Text keys order by bytes, so "10" comes before "9".
        assert!(!is_after(
            &row(1, vec![json!("10")]),
            &position(1, vec![json!("9")])
        ));
        assert!(is_after(
            &row(1, vec![json!("a"), json!(2)]),
            &position(1, vec![json!("a"), json!(1)])
        ));
        assert!(!is_after(
            &row(1, vec![json!(5)]),
            &position(1, vec![json!(5)])
        ));
    }
}
