//! What `GET /flows` reports: per flow, its schedule and whether it runs;
//! per entity, its last run.
//!
//! The board lives in memory. After a restart it starts from the newest
//! `_ferry.runs` row of each entity, read when the daemon checks whether a
//! flow's schedule missed a run.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::destination::RunRecord;
use crate::sync::RunReport;

#[derive(Debug, Clone, Default, Serialize)]
pub struct FlowState {
    pub running: bool,
    pub next_run: Option<DateTime<Utc>>,
    pub entities: BTreeMap<String, EntityState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct EntityState {
    pub run_id: String,
    pub started_at: DateTime<Utc>,
    pub outcome: String,
    pub records: u64,
    pub duration_seconds: f64,
    /// Secrets already masked.
    pub error: Option<String>,
}

/// Flow states by name. The lock is held only to copy or update a map
/// entry, never across an await.
#[derive(Default)]
pub struct StatusBoard {
    flows: Mutex<BTreeMap<String, FlowState>>,
}

impl StatusBoard {
    pub fn set_schedule(&self, flow: &str, next: Option<DateTime<Utc>>, running: bool) {
        let mut flows = self.flows.lock().unwrap_or_else(PoisonError::into_inner);
        let state = flows.entry(flow.to_string()).or_default();
        state.next_run = next;
        state.running = running;
    }

    pub fn record(&self, run: &RunReport, outcome: &str) {
        let mut flows = self.flows.lock().unwrap_or_else(PoisonError::into_inner);
        let state = flows.entry(run.flow.clone()).or_default();
        state.entities.insert(
            run.entity.clone(),
            EntityState {
                run_id: run.run_id.clone(),
                started_at: run.started_at,
                outcome: outcome.to_string(),
                records: run.records,
                duration_seconds: run.duration_seconds,
                error: run
                    .error
                    .as_ref()
                    .map(|error| crate::redact::redact(&error.message)),
            },
        );
    }

    /// Fills in the entities that have no run since the daemon started
    /// from the newest finished one of `runs`, rows of `_ferry.runs` of
    /// the flow.
    pub fn seed(&self, flow: &str, runs: &[RunRecord]) {
        // A `running` row belongs to another process, or to a process that
        // stopped before the run finished, so the board shows finished runs.
        let finished: Vec<&RunRecord> = runs.iter().filter(|run| run.status != "running").collect();
        let mut flows = self.flows.lock().unwrap_or_else(PoisonError::into_inner);
        let state = flows.entry(flow.to_string()).or_default();
        for run in finished.iter().copied() {
            if state.entities.contains_key(&run.entity)
                || finished
                    .iter()
                    .any(|other| other.entity == run.entity && other.started_at > run.started_at)
            {
                continue;
            }
            let duration = run
                .finished_at
                .map(|finished| (finished - run.started_at).as_seconds_f64())
                .unwrap_or_default();
            state.entities.insert(
                run.entity.clone(),
                EntityState {
                    run_id: run.run_id.clone(),
                    started_at: run.started_at,
                    outcome: run.status.clone(),
                    records: run.records,
                    duration_seconds: duration,
                    error: run.error.as_ref().map(|error| crate::redact::redact(error)),
                },
            );
        }
    }

    /// Forgets flows that are no longer in the config.
    pub fn retain(&self, names: &[String]) {
        let mut flows = self.flows.lock().unwrap_or_else(PoisonError::into_inner);
        flows.retain(|name, _| names.contains(name));
    }

    pub fn get(&self, flow: &str) -> FlowState {
        let flows = self.flows.lock().unwrap_or_else(PoisonError::into_inner);
        flows.get(flow).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn run(run_id: &str, entity: &str, minute: u32, status: &str) -> RunRecord {
        let started_at = Utc.with_ymd_and_hms(2026, 1, 1, 0, minute, 0).unwrap();
        RunRecord {
            run_id: run_id.into(),
            flow: "f".into(),
            entity: entity.into(),
            started_at,
            finished_at: (status != "running").then(|| started_at + chrono::Duration::seconds(3)),
            status: status.into(),
            records: 7,
            error: None,
        }
    }

    #[test]
    fn seed_takes_newest_finished_run() {
        let board = StatusBoard::default();
        let runs = [
            run("r3", "a", 3, "running"),
            run("r2", "a", 2, "failed"),
            run("r1", "a", 1, "succeeded"),
            run("r4", "b", 1, "succeeded"),
        ];
        board.seed("f", &runs);
        let state = board.get("f");
        assert_eq!(state.entities["a"].run_id, "r2");
        assert_eq!(state.entities["a"].outcome, "failed");
        assert_eq!(state.entities["a"].duration_seconds, 3.0);
        assert_eq!(state.entities["b"].run_id, "r4");
    }
}
