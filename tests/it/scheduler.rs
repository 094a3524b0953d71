//! Scheduler timing with tokio's paused clock: cron ticks, overlap skips,
//! missed runs at start-up, and retry backoff.

use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ferry::daemon::metrics::{FlowLabels, Metrics};
use ferry::daemon::schedule::{Clock, LastRun};
use ferry::daemon::scheduler::{
    Command, Launcher, RunReason, RunRequest, ScheduledFlow, Scheduler, Submitted,
};
use ferry::spec::plan::Trigger;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

fn utc(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn cron(expression: &str) -> Trigger {
    Trigger::Cron {
        expression: expression.to_string(),
        schedule: Box::new(cron::Schedule::from_str(expression).unwrap()),
        timezone: chrono_tz::UTC,
    }
}

fn flow(name: &str, trigger: Trigger) -> ScheduledFlow {
    ScheduledFlow {
        name: name.to_string(),
        trigger: Some(trigger),
        digest: 1,
    }
}

/// Records each run with the clock's time; each run lasts `run_for`.
struct FakeLauncher {
    clock: Clock,
    run_for: Duration,
    last_run: Result<Option<LastRun>, String>,
    runs: Mutex<Vec<(String, RunReason, DateTime<Utc>)>>,
}

#[async_trait]
impl Launcher for FakeLauncher {
    async fn run(&self, request: RunRequest, cancel: CancellationToken) {
        self.runs
            .lock()
            .unwrap()
            .push((request.flow, request.reason, self.clock.now()));
        tokio::select! {
            _ = tokio::time::sleep(self.run_for) => {}
            _ = cancel.cancelled() => {}
        }
    }

    async fn last_run(&self, _flow: &str) -> Result<Option<LastRun>, String> {
        self.last_run.clone()
    }
}

struct Harness {
    launcher: Arc<FakeLauncher>,
    metrics: Arc<Metrics>,
    flows: watch::Sender<Vec<ScheduledFlow>>,
    commands: mpsc::Sender<Command>,
    shutdown: CancellationToken,
}

impl Harness {
    fn start(
        now: &str,
        flows: Vec<ScheduledFlow>,
        run_for: Duration,
        last_started: Result<Option<DateTime<Utc>>, String>,
    ) -> Harness {
        let last_run = last_started.map(|last| {
            last.map(|started_at| LastRun {
                started_at,
                complete: true,
            })
        });
        let clock = Clock::tokio_from(utc(now));
        let launcher = Arc::new(FakeLauncher {
            clock,
            run_for,
            last_run,
            runs: Mutex::new(Vec::new()),
        });
        let metrics = Arc::new(Metrics::new());
        let (flows_tx, flows_rx) = watch::channel(flows);
        let (commands_tx, commands_rx) = mpsc::channel(8);
        let shutdown = CancellationToken::new();
        let scheduler =
            Scheduler::new(clock, launcher.clone(), metrics.clone(), TaskTracker::new());
        tokio::spawn(scheduler.run(flows_rx, commands_rx, shutdown.clone()));
        Harness {
            launcher,
            metrics,
            flows: flows_tx,
            commands: commands_tx,
            shutdown,
        }
    }

    fn runs(&self) -> Vec<(String, RunReason, DateTime<Utc>)> {
        self.launcher.runs.lock().unwrap().clone()
    }

    fn skipped(&self, flow: &str) -> u64 {
        self.metrics
            .skipped_ticks
            .get_or_create(&FlowLabels {
                flow: flow.to_string(),
            })
            .get()
    }

    async fn submit(&self, flow: &str, reason: RunReason) -> Submitted {
        let (reply, answer) = oneshot::channel();
        let request = RunRequest {
            flow: flow.to_string(),
            entities: Vec::new(),
            reason,
        };
        self.commands
            .send(Command {
                request,
                reply: Some(reply),
            })
            .await
            .unwrap();
        answer.await.unwrap()
    }
}

async fn wait(seconds: u64) {
    tokio::time::sleep(Duration::from_secs(seconds)).await;
}

#[tokio::test(start_paused = true)]
async fn cron_ticks_start_runs_on_time() {
    let start = "2024-01-01T00:00:30Z";
    let harness = Harness::start(
        start,
        vec![flow("billing", cron("0 */5 * * * *"))],
        Duration::from_secs(10),
        Ok(Some(utc(start))),
    );
    wait(16 * 60).await;

    let times: Vec<DateTime<Utc>> = harness.runs().iter().map(|run| run.2).collect();
    assert_eq!(
        times,
        vec![
            utc("2024-01-01T00:05:00Z"),
            utc("2024-01-01T00:10:00Z"),
            utc("2024-01-01T00:15:00Z"),
        ]
    );
    assert!(
        harness
            .runs()
            .iter()
            .all(|run| run.1 == RunReason::Schedule)
    );
    harness.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn overlapping_tick_is_skipped_and_counted() {
    let start = "2024-01-01T00:00:00Z";
    let harness = Harness::start(
        start,
        vec![flow("slow", Trigger::Every(Duration::from_secs(60)))],
        Duration::from_secs(150),
        Ok(Some(utc(start))),
    );
    wait(5 * 60 + 1).await;

    let times: Vec<DateTime<Utc>> = harness.runs().iter().map(|run| run.2).collect();
    // The run from 00:01 lasts until 00:03:30, so the 00:02 and 00:03
    // ticks are skipped; 00:04 starts the next one, which covers 00:05.
    assert_eq!(
        times,
        vec![utc("2024-01-01T00:01:00Z"), utc("2024-01-01T00:04:00Z")]
    );
    assert_eq!(harness.skipped("slow"), 3);
    harness.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn missed_tick_runs_once_at_startup() {
    let start = "2024-01-01T12:30:00Z";
    // The last run started three hours ago: three hourly ticks were missed.
    let harness = Harness::start(
        start,
        vec![flow("hourly", cron("0 0 * * * *"))],
        Duration::from_secs(5),
        Ok(Some(utc("2024-01-01T09:30:00Z"))),
    );
    wait(31 * 60).await;

    let runs = harness.runs();
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[0].1, RunReason::Missed);
    assert_eq!(runs[0].2, utc(start));
    assert_eq!(runs[1].1, RunReason::Schedule);
    assert_eq!(runs[1].2, utc("2024-01-01T13:00:00Z"));
    harness.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn recent_run_is_not_repeated_at_startup() {
    let start = "2024-01-01T12:30:00Z";
    let harness = Harness::start(
        start,
        vec![flow("hourly", cron("0 0 * * * *"))],
        Duration::from_secs(5),
        Ok(Some(utc("2024-01-01T12:00:01Z"))),
    );
    wait(10 * 60).await;
    assert!(harness.runs().is_empty());
    harness.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn flow_that_never_ran_runs_at_startup() {
    let harness = Harness::start(
        "2024-01-01T12:30:00Z",
        vec![flow("new", Trigger::Every(Duration::from_secs(3600)))],
        Duration::from_secs(5),
        Ok(None),
    );
    wait(1).await;
    let runs = harness.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].1, RunReason::Missed);
    harness.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn unreadable_history_waits_for_next_tick() {
    let harness = Harness::start(
        "2024-01-01T12:30:00Z",
        vec![flow("hourly", cron("0 0 * * * *"))],
        Duration::from_secs(5),
        Err("connection refused".to_string()),
    );
    wait(31 * 60).await;
    let runs = harness.runs();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].2, utc("2024-01-01T13:00:00Z"));
    harness.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn every_keeps_rhythm_after_restart() {
    let start = "2024-01-01T12:30:00Z";
    let harness = Harness::start(
        start,
        vec![flow("rhythm", Trigger::Every(Duration::from_secs(3600)))],
        Duration::from_secs(5),
        Ok(Some(utc("2024-01-01T12:10:00Z"))),
    );
    wait(41 * 60).await;
    let times: Vec<DateTime<Utc>> = harness.runs().iter().map(|run| run.2).collect();
    assert_eq!(times, vec![utc("2024-01-01T13:10:00Z")]);
    harness.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn manual_and_webhook_requests_during_run() {
    let start = "2024-01-01T00:00:00Z";
    let harness = Harness::start(
        start,
        vec![ScheduledFlow {
            name: "hooks".to_string(),
            trigger: None,
            digest: 1,
        }],
        Duration::from_secs(100),
        Ok(Some(utc(start))),
    );
    assert_eq!(
        harness.submit("hooks", RunReason::Manual).await,
        Submitted::Started
    );
    assert_eq!(
        harness.submit("hooks", RunReason::Manual).await,
        Submitted::AlreadyRunning
    );
    assert_eq!(
        harness.submit("hooks", RunReason::Webhook).await,
        Submitted::Queued
    );
    assert_eq!(
        harness.submit("hooks", RunReason::Webhook).await,
        Submitted::Queued
    );
    assert_eq!(
        harness.submit("nope", RunReason::Manual).await,
        Submitted::UnknownFlow
    );
    wait(500).await;

    let runs = harness.runs();
    // Two queued webhook requests merge into one run after the first.
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].1, RunReason::Webhook);
    assert_eq!(runs[1].2, utc("2024-01-01T00:01:40Z"));
    harness.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn removed_flow_stops_and_changed_trigger_applies() {
    let start = "2024-01-01T00:00:00Z";
    let harness = Harness::start(
        start,
        vec![
            flow("keep", Trigger::Every(Duration::from_secs(600))),
            flow("drop", Trigger::Every(Duration::from_secs(60))),
        ],
        Duration::from_secs(5),
        Ok(Some(utc(start))),
    );
    wait(61).await;
    let mut changed = flow("keep", Trigger::Every(Duration::from_secs(120)));
    changed.digest = 2;
    harness.flows.send_replace(vec![changed]);
    wait(5 * 60).await;

    let runs = harness.runs();
    let dropped: Vec<_> = runs.iter().filter(|run| run.0 == "drop").collect();
    let kept: Vec<DateTime<Utc>> = runs
        .iter()
        .filter(|run| run.0 == "keep")
        .map(|run| run.2)
        .collect();
    assert_eq!(dropped.len(), 1);
    // Rescheduled every 2 minutes from the change at 00:01:01.
    assert_eq!(
        kept,
        vec![utc("2024-01-01T00:03:01Z"), utc("2024-01-01T00:05:01Z")]
    );
    harness.shutdown.cancel();
}

mod retries {
    use super::*;
    use ferry::daemon::alerts::Alerts;
    use ferry::daemon::runner::{Executor, FlowRunner, RetryPolicy};
    use ferry::daemon::status::StatusBoard;
    use ferry::daemon::writers::DestinationQueue;
    use ferry::spec::plan::Flow;
    use ferry::sync::{FlowReport, Outcome, RunError, RunOptions, RunReport};

    use crate::daemon_support::{load, shop_connector, shop_flow, write};

    /// Fails the first `failures` calls with `kind`, then succeeds.
    struct ScriptedExecutor {
        clock: Clock,
        failures: usize,
        kind: &'static str,
        calls: Mutex<Vec<(DateTime<Utc>, Vec<String>)>>,
    }

    #[async_trait]
    impl Executor for ScriptedExecutor {
        async fn run(
            &self,
            flow: Arc<Flow>,
            entities: Vec<String>,
            _options: RunOptions,
        ) -> FlowReport {
            let call = {
                let mut calls = self.calls.lock().unwrap();
                calls.push((self.clock.now(), entities));
                calls.len()
            };
            let failed = call <= self.failures;
            let run = RunReport {
                run_id: format!("run-{call}"),
                flow: flow.name.clone(),
                entity: "customers".to_string(),
                outcome: if failed {
                    Outcome::Failed
                } else {
                    Outcome::Succeeded
                },
                records: 3,
                pages: 1,
                requests: 1,
                graphql_errors: 0,
                started_at: self.clock.now(),
                duration_seconds: 0.5,
                error: failed.then(|| RunError {
                    kind: self.kind.to_string(),
                    message: "HTTP 503 from /customers".to_string(),
                }),
                resumed: call > 1,
            };
            FlowReport {
                flow: flow.name.clone(),
                runs: vec![run],
            }
        }
    }

    fn runner(failures: usize, kind: &'static str) -> (Arc<FlowRunner>, Arc<ScriptedExecutor>) {
        let folder = tempfile::tempdir().unwrap();
        write(folder.path(), "shop.yaml", &shop_connector("stripe"));
        let db = folder.path().join("warehouse.duckdb");
        write(
            folder.path(),
            "flow.yaml",
            &shop_flow("billing", "http://127.0.0.1:9", &db, ""),
        );
        let catalog = Arc::new(load(folder.path()));
        let (_, catalog_rx) = watch::channel(catalog);
        let clock = Clock::tokio_from(utc("2024-01-01T00:00:00Z"));
        let executor = Arc::new(ScriptedExecutor {
            clock,
            failures,
            kind,
            calls: Mutex::new(Vec::new()),
        });
        let metrics = Arc::new(Metrics::new());
        let runner = FlowRunner {
            catalog: catalog_rx,
            executor: executor.clone(),
            destinations: Arc::new(DestinationQueue::new(2, metrics.clone())),
            metrics: metrics.clone(),
            status: Arc::new(StatusBoard::default()),
            alerts: Arc::new(Alerts::new(None, metrics)),
            retry: RetryPolicy {
                max_attempts: 4,
                first_delay: Duration::from_secs(30),
                max_delay: Duration::from_secs(15 * 60),
            },
        };
        (Arc::new(runner), executor)
    }

    fn request() -> RunRequest {
        RunRequest {
            flow: "billing".to_string(),
            entities: Vec::new(),
            reason: RunReason::Schedule,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn failed_run_retries_with_doubling_backoff() {
        let (runner, executor) = runner(2, "http");
        runner.run(request(), CancellationToken::new()).await;

        let calls = executor.calls.lock().unwrap().clone();
        let times: Vec<DateTime<Utc>> = calls.iter().map(|call| call.0).collect();
        assert_eq!(
            times,
            vec![
                utc("2024-01-01T00:00:00Z"),
                utc("2024-01-01T00:00:30Z"),
                utc("2024-01-01T00:01:30Z"),
            ]
        );
        // Retries run only the entities that failed.
        assert_eq!(calls[1].1, vec!["customers".to_string()]);
        let retries = runner
            .metrics
            .run_retries
            .get_or_create(&FlowLabels {
                flow: "billing".to_string(),
            })
            .get();
        assert_eq!(retries, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_max_attempts() {
        let (runner, executor) = runner(10, "network");
        runner.run(request(), CancellationToken::new()).await;
        let times: Vec<DateTime<Utc>> = executor
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|call| call.0)
            .collect();
        assert_eq!(
            times,
            vec![
                utc("2024-01-01T00:00:00Z"),
                utc("2024-01-01T00:00:30Z"),
                utc("2024-01-01T00:01:30Z"),
                utc("2024-01-01T00:03:30Z"),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn error_needing_a_person_is_not_retried() {
        let (runner, executor) = runner(1, "pagination_loop");
        runner.run(request(), CancellationToken::new()).await;
        assert_eq!(executor.calls.lock().unwrap().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_during_backoff_stops_retrying() {
        let (runner, executor) = runner(5, "http");
        let cancel = CancellationToken::new();
        let task = tokio::spawn({
            let runner = runner.clone();
            let cancel = cancel.clone();
            async move { runner.run(request(), cancel).await }
        });
        tokio::time::sleep(Duration::from_secs(10)).await;
        cancel.cancel();
        task.await.unwrap();
        assert_eq!(executor.calls.lock().unwrap().len(), 1);
    }
}
