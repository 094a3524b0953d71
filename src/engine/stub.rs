//! Placeholder signatures until the REST engine lands.
#![allow(unused_variables)]

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{FetchError, Page, Position};
use crate::spec::plan::{Entity, Flow};

pub struct HttpClient;

impl HttpClient {
    pub fn new(flow: &Flow) -> Result<HttpClient, FetchError> {
        todo!()
    }
}

pub struct FetchContext {
    pub flow: Arc<Flow>,
    pub entity: Arc<Entity>,
    pub client: Arc<HttpClient>,
    pub now: DateTime<Utc>,
}

pub async fn fetch(
    context: FetchContext,
    start: Position,
    pages: tokio::sync::mpsc::Sender<Page>,
) -> Result<(), FetchError> {
    todo!()
}

pub fn initial_position(
    entity: &Entity,
    saved_cursor: Option<&Value>,
    now: DateTime<Utc>,
    full: bool,
) -> Position {
    todo!()
}

pub async fn check_connection(flow: &Flow) -> Result<(), FetchError> {
    todo!()
}

pub fn max_cursor(a: &Value, b: &Value) -> Value {
    todo!()
}
