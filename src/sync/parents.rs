//! A child entity's parent rows, read from the parent's table in the
//! destination.
//!
//! The rows come through a second destination handle, because the run's
//! own handle is busy writing the child's chunks.

use async_trait::async_trait;
use tokio::sync::Mutex;

use crate::destination::{Destination, RowPosition, RowQuery, TableRef};
use crate::engine::{self, FetchError, FetchErrorKind, ParentPosition, ParentRow, ParentSource};
use crate::spec::plan::{Entity, Flow};

/// The parent table of one child entity, on its own destination handle.
pub struct DestinationParents {
    /// A mutex only because `read_rows` takes `&mut self`; the child's
    /// fetch reads one batch at a time.
    destination: Mutex<Box<dyn Destination>>,
    /// The query without its position and limit.
    query: RowQuery,
    /// `flow/entity`, for messages.
    label: String,
}

impl DestinationParents {
    /// Prepares the parent table query of `entity`; `None` when it has no
    /// parent or the parent is not an entity of the connector.
    pub fn new(
        flow: &Flow,
        entity: &Entity,
        destination: Box<dyn Destination>,
    ) -> Option<DestinationParents> {
        let plan = entity.parent.as_ref()?;
        let parent = flow
            .entity(&plan.entity)
            .or_else(|| flow.connector.entities.get(&plan.entity))?;
        let key = parent
            .primary_key
            .iter()
            .map(|field| engine::output_field_name(&parent.fields, field).to_string())
            .collect();
        let fields = match &plan.embedded {
            None => Some(plan.fields.clone()),
            Some(path) => path.first_key().map(|first| {
                let mut fields = plan.fields.clone();
                if !fields.iter().any(|field| field == first) {
                    fields.push(first.to_string());
                }
                fields
            }),
        };
        Some(DestinationParents {
            destination: Mutex::new(destination),
            query: RowQuery {
                table: TableRef {
                    schema: flow.schema.clone(),
                    table: plan.entity.clone(),
                },
                key,
                fields,
                after: None,
                limit: 0,
            },
            label: format!("{}/{}", flow.name, entity.name),
        })
    }
}

#[async_trait]
impl ParentSource for DestinationParents {
    async fn parents_after(
        &self,
        after: Option<&ParentPosition>,
        limit: usize,
    ) -> Result<Vec<ParentRow>, FetchError> {
        let mut query = self.query.clone();
        query.after = after.map(|position| RowPosition {
            synced_at: position.synced_at,
            key: position.key.clone(),
        });
        query.limit = limit;
        let rows = self
            .destination
            .lock()
            .await
            .read_rows(&query)
            .await
            .map_err(|error| {
                FetchError::new(
                    FetchErrorKind::Parents,
                    format!(
                        "{}: reading parent rows from {} failed: {}",
                        self.label,
                        query.table,
                        crate::redact::redact(&error.to_string())
                    ),
                )
            })?;
        Ok(rows
            .into_iter()
            .map(|row| ParentRow {
                synced_at: row.synced_at,
                key: row.key,
                fields: row.fields,
            })
            .collect())
    }
}
