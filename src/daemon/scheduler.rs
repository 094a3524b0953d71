//! The scheduler: one task that decides when each flow runs.
//!
//! It owns a slot per flow: trigger, next tick, the run in progress. It
//! reacts to five inputs: a new flow list, a run request (manual or
//! webhook), a finished run, the history check of a new flow (was a run
//! missed?), and the timer of the earliest tick. Runs happen in tasks it
//! spawns through a [`Launcher`]; one flow has at most one run at a time.
//!
//! - A tick that finds the flow's previous run still going is skipped,
//!   logged and counted (`ferry_scheduled_runs_skipped_total`).
//! - A webhook trigger that arrives during a run is queued and runs once
//!   the current run ends; a manual request is answered "already running".
//! - A removed flow's run is cancelled: it commits its chunk in flight and
//!   stops.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::metrics::{FlowLabels, Metrics};
use super::schedule::{self, Clock, LastRun};
use crate::spec::plan::Trigger;

/// A flow as the scheduler sees it: its name, trigger and version.
#[derive(Debug, Clone)]
pub struct ScheduledFlow {
    pub name: String,
    pub trigger: Option<Trigger>,
    /// Changes whenever anything in the flow's definition changes.
    pub digest: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunReason {
    Schedule,
    /// The run a missed tick (or a flow that never ran) is owed at start-up.
    Missed,
    Manual,
    Webhook,
}

impl RunReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            RunReason::Schedule => "schedule",
            RunReason::Missed => "missed",
            RunReason::Manual => "manual",
            RunReason::Webhook => "webhook",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    pub flow: String,
    /// Entities to run; empty for every entity of the flow.
    pub entities: Vec<String>,
    pub reason: RunReason,
}

/// The scheduler's reply to a run request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Submitted {
    Started,
    /// The flow is running; the request runs when that run ends.
    Queued,
    /// The flow is running and the request was not queued.
    AlreadyRunning,
    UnknownFlow,
}

pub struct Command {
    pub request: RunRequest,
    pub reply: Option<oneshot::Sender<Submitted>>,
}

/// Runs flows for the scheduler and reads their history.
#[async_trait]
pub trait Launcher: Send + Sync + 'static {
    /// Runs a flow, retries included; returns when it is over. `cancel`
    /// fires on shutdown or when the flow is removed.
    async fn run(&self, request: RunRequest, cancel: CancellationToken);

    /// Reads the flow's latest recorded run: `Ok(None)` when it never
    /// ran, `Err` when the history cannot be read.
    async fn last_run(&self, flow: &str) -> Result<Option<LastRun>, String>;

    /// Called whenever a flow's next tick or running state changes.
    fn publish(&self, flow: &str, next: Option<DateTime<Utc>>, running: bool) {
        let _ = (flow, next, running);
    }
}

struct Slot {
    trigger: Option<Trigger>,
    digest: u64,
    next: Option<DateTime<Utc>>,
    /// The run in progress: its cancellation and its sequence number.
    running: Option<(CancellationToken, u64)>,
    pending: Option<RunRequest>,
    /// The history check is done (or not needed).
    checked: bool,
}

struct Finished {
    flow: String,
    sequence: u64,
}

struct History {
    flow: String,
    digest: u64,
    last_run: Result<Option<LastRun>, String>,
}

pub struct Scheduler<L: Launcher> {
    clock: Clock,
    launcher: Arc<L>,
    metrics: Arc<Metrics>,
    slots: BTreeMap<String, Slot>,
    /// Tracks run tasks so shutdown can wait for their last chunk.
    tracker: TaskTracker,
    sequence: u64,
    /// Run tasks report their end here; one message per run, and the
    /// scheduler drains it continuously, so it cannot grow past the runs.
    finished_tx: mpsc::UnboundedSender<Finished>,
    finished_rx: mpsc::UnboundedReceiver<Finished>,
    /// History checks report here; at most one message per flow added.
    history_tx: mpsc::UnboundedSender<History>,
    history_rx: mpsc::UnboundedReceiver<History>,
}

impl<L: Launcher> Scheduler<L> {
    pub fn new(
        clock: Clock,
        launcher: Arc<L>,
        metrics: Arc<Metrics>,
        tracker: TaskTracker,
    ) -> Self {
        let (finished_tx, finished_rx) = mpsc::unbounded_channel();
        let (history_tx, history_rx) = mpsc::unbounded_channel();
        Scheduler {
            clock,
            launcher,
            metrics,
            slots: BTreeMap::new(),
            tracker,
            sequence: 0,
            finished_tx,
            finished_rx,
            history_tx,
            history_rx,
        }
    }

    /// Schedules until `shutdown` fires. Runs in progress then see their
    /// cancellation (children of `shutdown`); the caller waits for them
    /// through the tracker.
    pub async fn run(
        mut self,
        mut flows: watch::Receiver<Vec<ScheduledFlow>>,
        mut commands: mpsc::Receiver<Command>,
        shutdown: CancellationToken,
    ) {
        let initial = flows.borrow_and_update().clone();
        self.apply(initial, &shutdown);
        loop {
            let wake = self.earliest_tick().map(|at| self.clock.instant_at(at));
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = flows.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let list = flows.borrow_and_update().clone();
                    self.apply(list, &shutdown);
                }
                Some(command) = commands.recv() => {
                    let answer = self.submit(command.request, &shutdown);
                    if let Some(reply) = command.reply {
                        let _ = reply.send(answer);
                    }
                }
                Some(finished) = self.finished_rx.recv() => self.finish(finished, &shutdown),
                Some(history) = self.history_rx.recv() => self.checked(history, &shutdown),
                _ = sleep_until(wake) => self.fire_due(&shutdown),
            }
        }
        info!("scheduler stopped: no new runs start");
    }

    fn earliest_tick(&self) -> Option<DateTime<Utc>> {
        self.slots.values().filter_map(|slot| slot.next).min()
    }

    fn apply(&mut self, flows: Vec<ScheduledFlow>, shutdown: &CancellationToken) {
        let names: Vec<String> = flows.iter().map(|flow| flow.name.clone()).collect();
        let removed: Vec<String> = self
            .slots
            .keys()
            .filter(|name| !names.contains(name))
            .cloned()
            .collect();
        for name in removed {
            if let Some(slot) = self.slots.remove(&name) {
                if let Some((token, _)) = slot.running {
                    info!(flow = %name, "flow removed; its run stops after the chunk in flight");
                    token.cancel();
                } else {
                    info!(flow = %name, "flow removed");
                }
            }
            self.launcher.publish(&name, None, false);
        }

        for flow in flows {
            match self.slots.get_mut(&flow.name) {
                Some(slot) if slot.digest == flow.digest => {}
                Some(slot) => {
                    let trigger_changed = describe(&slot.trigger) != describe(&flow.trigger);
                    slot.digest = flow.digest;
                    slot.trigger = flow.trigger;
                    if trigger_changed {
                        let now = self.clock.now();
                        slot.next = slot
                            .trigger
                            .as_ref()
                            .and_then(|trigger| schedule::next_tick(trigger, now, None));
                        info!(flow = %flow.name, trigger = %describe(&slot.trigger), next_run = ?slot.next, "flow schedule changed");
                    } else {
                        info!(flow = %flow.name, "flow changed; its next run uses the new definition");
                    }
                    let (next, running) = (slot.next, slot.running.is_some());
                    self.launcher.publish(&flow.name, next, running);
                }
                None => self.add(flow, shutdown),
            }
        }
    }

    fn add(&mut self, flow: ScheduledFlow, shutdown: &CancellationToken) {
        let checked = flow.trigger.is_none();
        info!(flow = %flow.name, trigger = %describe(&flow.trigger), "flow added");
        if !checked {
            let launcher = self.launcher.clone();
            let sender = self.history_tx.clone();
            let (name, digest) = (flow.name.clone(), flow.digest);
            let shutdown = shutdown.clone();
            // Reading the destination may take a while (a locked file), so
            // it runs apart and the scheduler keeps serving other flows.
            self.tracker.spawn(async move {
                let last_run = tokio::select! {
                    last_run = launcher.last_run(&name) => last_run,
                    _ = shutdown.cancelled() => return,
                };
                let _ = sender.send(History {
                    flow: name,
                    digest,
                    last_run,
                });
            });
        }
        self.slots.insert(
            flow.name.clone(),
            Slot {
                trigger: flow.trigger,
                digest: flow.digest,
                next: None,
                running: None,
                pending: None,
                checked,
            },
        );
        self.launcher.publish(&flow.name, None, false);
    }

    /// Schedules a flow once its history is known, and runs it at once
    /// when a tick was missed.
    fn checked(&mut self, history: History, shutdown: &CancellationToken) {
        let now = self.clock.now();
        let Some(slot) = self.slots.get_mut(&history.flow) else {
            return;
        };
        if slot.checked && slot.digest != history.digest {
            return;
        }
        slot.checked = true;
        let Some(trigger) = slot.trigger.clone() else {
            return;
        };
        let last_run = match history.last_run {
            Ok(last) => last,
            Err(error) => {
                warn!(flow = %history.flow, error = %error, "cannot read the flow's run history; assuming no run was missed");
                Some(LastRun {
                    started_at: now,
                    complete: true,
                })
            }
        };
        let last_started = last_run.map(|run| run.started_at);
        slot.next = schedule::next_tick(&trigger, now, last_started);
        if schedule::missed(&trigger, last_run, now) {
            info!(flow = %history.flow, last_started = ?last_started, complete = ?last_run.map(|run| run.complete), "the flow's last run was missed or is incomplete; running it now");
            self.launch(
                RunRequest {
                    flow: history.flow.clone(),
                    entities: Vec::new(),
                    reason: RunReason::Missed,
                },
                shutdown,
            );
        } else {
            debug!(flow = %history.flow, next_run = ?slot.next, "flow scheduled");
            let (next, running) = (slot.next, slot.running.is_some());
            self.launcher.publish(&history.flow, next, running);
        }
    }

    fn fire_due(&mut self, shutdown: &CancellationToken) {
        let now = self.clock.now();
        let due: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, slot)| slot.next.is_some_and(|next| next <= now))
            .map(|(name, _)| name.clone())
            .collect();
        for name in due {
            let Some(slot) = self.slots.get_mut(&name) else {
                continue;
            };
            let tick = slot.next;
            slot.next = slot
                .trigger
                .as_ref()
                .and_then(|trigger| schedule::next_tick(trigger, now, tick));
            if slot.running.is_some() {
                info!(flow = %name, tick = ?tick, next_run = ?slot.next, "scheduled run skipped: the previous run is still going");
                self.metrics
                    .skipped_ticks
                    .get_or_create(&FlowLabels { flow: name.clone() })
                    .inc();
                let next = slot.next;
                self.launcher.publish(&name, next, true);
                continue;
            }
            self.launch(
                RunRequest {
                    flow: name,
                    entities: Vec::new(),
                    reason: RunReason::Schedule,
                },
                shutdown,
            );
        }
    }

    fn submit(&mut self, request: RunRequest, shutdown: &CancellationToken) -> Submitted {
        let Some(slot) = self.slots.get_mut(&request.flow) else {
            return Submitted::UnknownFlow;
        };
        if slot.running.is_none() {
            self.launch(request, shutdown);
            return Submitted::Started;
        }
        if request.reason != RunReason::Webhook {
            return Submitted::AlreadyRunning;
        }
        // Merge with a request already waiting: an empty list means every entity.
        slot.pending = Some(match slot.pending.take() {
            None => request,
            Some(mut waiting) => {
                if waiting.entities.is_empty() || request.entities.is_empty() {
                    waiting.entities.clear();
                } else {
                    for entity in request.entities {
                        if !waiting.entities.contains(&entity) {
                            waiting.entities.push(entity);
                        }
                    }
                }
                waiting
            }
        });
        Submitted::Queued
    }

    fn launch(&mut self, request: RunRequest, shutdown: &CancellationToken) {
        let Some(slot) = self.slots.get_mut(&request.flow) else {
            return;
        };
        self.sequence += 1;
        let sequence = self.sequence;
        let token = shutdown.child_token();
        slot.running = Some((token.clone(), sequence));
        let next = slot.next;
        self.launcher.publish(&request.flow, next, true);

        let launcher = self.launcher.clone();
        let finished = self.finished_tx.clone();
        let flow = request.flow.clone();
        self.tracker.spawn(async move {
            launcher.run(request, token).await;
            let _ = finished.send(Finished { flow, sequence });
        });
    }

    fn finish(&mut self, finished: Finished, shutdown: &CancellationToken) {
        let Some(slot) = self.slots.get_mut(&finished.flow) else {
            return;
        };
        if slot.running.as_ref().map(|(_, sequence)| *sequence) != Some(finished.sequence) {
            return;
        }
        slot.running = None;
        let next = slot.next;
        match slot.pending.take() {
            Some(request) if !shutdown.is_cancelled() => self.launch(request, shutdown),
            _ => self.launcher.publish(&finished.flow, next, false),
        }
    }
}

fn describe(trigger: &Option<Trigger>) -> String {
    trigger
        .as_ref()
        .map(schedule::describe)
        .unwrap_or_else(|| "none (manual and webhook runs only)".to_string())
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
