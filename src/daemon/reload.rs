//! Loading the config folder and applying it: the last good catalog
//! stays in force until a valid set replaces it.
//!
//! Every load reads every file again, `${file:…}` secrets included, so a
//! rotated secret file applies at the next reload (a folder change or
//! SIGHUP).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tracing::{error, info, warn};

use super::metrics::Metrics;
use super::scheduler::ScheduledFlow;
use super::status::StatusBoard;
use crate::spec::plan::{Catalog, Flow};

/// Whether a valid config was ever loaded, and the latest load's errors.
#[derive(Default)]
pub struct ConfigHealth {
    inner: Mutex<(bool, Vec<String>)>,
}

impl ConfigHealth {
    pub fn loaded(&self) -> bool {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).0
    }

    /// Returns the located errors of the latest load; empty when it was valid.
    pub fn errors(&self) -> Vec<String> {
        self.inner
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .clone()
    }

    fn set(&self, valid: bool, errors: Vec<String>) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.0 |= valid;
        inner.1 = errors;
    }
}

/// Loads the folder and publishes what changed.
pub struct Reloader {
    folder: PathBuf,
    catalog: watch::Sender<Arc<Catalog>>,
    schedule: watch::Sender<Vec<ScheduledFlow>>,
    health: Arc<ConfigHealth>,
    metrics: Arc<Metrics>,
    status: Arc<StatusBoard>,
    /// A valid config was applied at least once.
    applied_once: AtomicBool,
}

/// The result of a reload, for logs, metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    Applied,
    Unchanged,
    Invalid,
}

impl ReloadOutcome {
    pub fn as_str(&self) -> &'static str {
        match self {
            ReloadOutcome::Applied => "applied",
            ReloadOutcome::Unchanged => "unchanged",
            ReloadOutcome::Invalid => "invalid",
        }
    }
}

impl Reloader {
    pub fn new(
        folder: PathBuf,
        catalog: watch::Sender<Arc<Catalog>>,
        schedule: watch::Sender<Vec<ScheduledFlow>>,
        health: Arc<ConfigHealth>,
        metrics: Arc<Metrics>,
        status: Arc<StatusBoard>,
    ) -> Reloader {
        Reloader {
            folder,
            catalog,
            schedule,
            health,
            metrics,
            status,
            applied_once: AtomicBool::new(false),
        }
    }

    pub async fn reload(&self, cause: &str) -> ReloadOutcome {
        let folder = self.folder.clone();
        let started = std::time::Instant::now();
        let loaded = tokio::task::spawn_blocking(move || crate::spec::load(&folder)).await;
        let outcome = match loaded {
            Ok(Ok(loaded)) => {
                for warning in &loaded.warnings {
                    warn!("{warning}");
                }
                self.health.set(true, Vec::new());
                self.apply(loaded.catalog, cause)
            }
            Ok(Err(diagnostics)) => {
                for diagnostic in &diagnostics {
                    error!("{diagnostic}");
                }
                let errors: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
                error!(
                    outcome = "invalid",
                    cause,
                    errors = errors.len(),
                    folder = %self.folder.display(),
                    "config reload failed; the last good config keeps running"
                );
                self.health.set(false, errors);
                ReloadOutcome::Invalid
            }
            Err(join_error) => {
                error!(outcome = "invalid", cause, error = %join_error, "config reload stopped unexpectedly; the last good config keeps running");
                ReloadOutcome::Invalid
            }
        };
        self.metrics.record_reload(outcome.as_str());
        if outcome != ReloadOutcome::Invalid {
            info!(
                outcome = outcome.as_str(),
                cause,
                milliseconds = started.elapsed().as_millis() as u64,
                "config reloaded"
            );
        }
        outcome
    }

    fn apply(&self, catalog: Catalog, cause: &str) -> ReloadOutcome {
        let old = self.catalog.borrow().clone();
        let digest = |flow: &Flow| {
            let mut hasher = DefaultHasher::new();
            // Debug output covers every field of the resolved flow.
            format!("{flow:?}").hash(&mut hasher);
            hasher.finish()
        };
        let added: Vec<&String> = catalog
            .flows
            .keys()
            .filter(|name| !old.flows.contains_key(*name))
            .collect();
        let removed: Vec<&String> = old
            .flows
            .keys()
            .filter(|name| !catalog.flows.contains_key(*name))
            .collect();
        let changed: Vec<&String> = catalog
            .flows
            .iter()
            .filter(|(name, flow)| {
                old.flows
                    .get(*name)
                    .is_some_and(|previous| digest(previous) != digest(flow))
            })
            .map(|(name, _)| name)
            .collect();
        let first = !self.applied_once.swap(true, Ordering::SeqCst);
        if !first && added.is_empty() && removed.is_empty() && changed.is_empty() {
            return ReloadOutcome::Unchanged;
        }
        info!(cause, flows = catalog.flows.len(), added = ?added, removed = ?removed, changed = ?changed, "applying config");

        let scheduled: Vec<ScheduledFlow> = catalog
            .flows
            .values()
            .map(|flow| ScheduledFlow {
                name: flow.name.clone(),
                trigger: flow.trigger.clone(),
                digest: digest(flow),
            })
            .collect();
        let names: Vec<String> = catalog.flows.keys().cloned().collect();
        self.metrics.flows.set(names.len() as i64);
        // The catalog goes first: a run the new schedule starts reads it.
        self.catalog.send_replace(Arc::new(catalog));
        self.schedule.send_replace(scheduled);
        self.status.retain(&names);
        ReloadOutcome::Applied
    }
}
