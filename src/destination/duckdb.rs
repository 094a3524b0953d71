//! The DuckDB destination.

use async_trait::async_trait;
use serde_json::Value;

use super::{
    Chunk, ColumnInfo, Destination, DestinationError, EntityTarget, RunOutcome, RunRecord,
    StateRow, TableRef,
};

pub struct DuckDbDestination;

impl DuckDbDestination {
    pub fn open(path: &str) -> Result<DuckDbDestination, DestinationError> {
        let _ = path;
        todo!("duckdb")
    }
}

#[async_trait]
impl Destination for DuckDbDestination {
    fn describe(&self) -> String {
        todo!()
    }

    async fn read_state(
        &mut self,
        _flow: &str,
        _entity: &str,
    ) -> Result<Option<Value>, DestinationError> {
        todo!()
    }

    async fn write_state(
        &mut self,
        _flow: &str,
        _entity: &str,
        _state: Option<&Value>,
    ) -> Result<(), DestinationError> {
        todo!()
    }

    async fn list_state(&mut self, _flow: Option<&str>) -> Result<Vec<StateRow>, DestinationError> {
        todo!()
    }

    async fn begin_run(
        &mut self,
        _target: &EntityTarget,
        _run: &RunRecord,
    ) -> Result<(), DestinationError> {
        todo!()
    }

    async fn write_chunk(
        &mut self,
        _target: &EntityTarget,
        _run_id: &str,
        _chunk: Chunk,
    ) -> Result<(), DestinationError> {
        todo!()
    }

    async fn finish_run(
        &mut self,
        _target: &EntityTarget,
        _run_id: &str,
        _outcome: RunOutcome,
    ) -> Result<(), DestinationError> {
        todo!()
    }

    async fn list_runs(
        &mut self,
        _flow: Option<&str>,
        _limit: usize,
    ) -> Result<Vec<RunRecord>, DestinationError> {
        todo!()
    }

    async fn columns(&mut self, _table: &TableRef) -> Result<Vec<ColumnInfo>, DestinationError> {
        todo!()
    }
}
