//! `ferry run`: the long-running daemon.
//!
//! Tasks and how they talk:
//!
//! - the reload task loads the config folder on a request from the watcher
//!   (`watch`) or SIGHUP, and publishes the last good catalog and the flow list
//!   on two `watch` channels (`reload`);
//! - the scheduler task turns the flow list, ticks and run requests into
//!   runs (`schedule`, `scheduler`); each run is a task of its own that
//!   retries, counts and alerts (`runner`, `metrics`, `status`, `alerts`),
//!   and opens destinations through the per-file writer queue (`writers`);
//! - the HTTP server serves probes, metrics, status, manual runs and
//!   webhooks (`server`, `webhooks`);
//! - the signal task turns the first SIGTERM/SIGINT into the one shutdown
//!   token every task watches, and exits at once on the second.
//!
//! Shutdown: the token stops the scheduler and the server; runs see it
//! through their child tokens, commit the chunk in flight and stop; the
//! daemon waits for them up to a timeout and exits 0. The next start
//! resumes from the last committed chunk either way.

pub mod alerts;
pub mod metrics;
pub mod reload;
pub mod retry_events;
pub mod runner;
pub mod schedule;
pub mod scheduler;
pub mod server;
pub mod status;
pub mod watch;
pub mod webhooks;
pub mod writers;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, watch as channel};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use metrics::Metrics;
use reload::{ConfigHealth, Reloader};
use runner::{FlowRunner, RetryPolicy, SyncExecutor};
use schedule::Clock;
use scheduler::Scheduler;
use status::StatusBoard;
use writers::DestinationQueue;

/// Everything `ferry run` takes from the command line and environment.
#[derive(Debug, Clone)]
pub struct DaemonOptions {
    pub folder: PathBuf,
    pub listen: String,
    /// `FERRY_API_TOKEN`: required on write endpoints when set.
    pub api_token: Option<String>,
    /// Entity runs at once, across all flows.
    pub max_runs: usize,
    /// Alert URL for flows that name none.
    pub alert_url: Option<String>,
    /// How long runs may take to commit their chunk after a stop signal.
    pub shutdown_timeout: Duration,
    /// Quiet period after a change before the folder is reloaded.
    pub debounce: Duration,
    pub retry: RetryPolicy,
}

/// Errors that stop the daemon from starting or end it.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// Bad input: a missing folder, a refused address.
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

/// Returns the default limit on concurrent entity runs: twice the cores.
pub fn default_max_runs() -> usize {
    std::thread::available_parallelism()
        .map(|cores| cores.get() * 2)
        .unwrap_or(4)
}

/// Runs the daemon until a stop signal.
pub async fn run(options: DaemonOptions) -> Result<(), DaemonError> {
    if !options.folder.is_dir() {
        return Err(DaemonError::Usage(format!(
            "config folder {} does not exist; create it or pass --config DIR",
            options.folder.display()
        )));
    }
    if let Some(token) = &options.api_token {
        crate::redact::register(token);
    }
    let addresses: Vec<std::net::SocketAddr> = tokio::net::lookup_host(&options.listen)
        .await
        .map_err(|error| DaemonError::Usage(format!("--listen {}: {error}", options.listen)))?
        .collect();
    server::check_listen(&addresses, options.api_token.as_deref()).map_err(DaemonError::Usage)?;
    let listener = tokio::net::TcpListener::bind(addresses.as_slice())
        .await
        .map_err(|error| {
            DaemonError::Failed(format!("cannot listen on {}: {error}", options.listen))
        })?;
    let local = listener
        .local_addr()
        .map_err(|error| DaemonError::Failed(error.to_string()))?;

    let metrics = Arc::new(Metrics::new());
    metrics::install_global(metrics.clone());
    let status = Arc::new(StatusBoard::default());
    let health = Arc::new(ConfigHealth::default());
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let (catalog_tx, catalog_rx) =
        channel::channel(Arc::new(crate::spec::plan::Catalog::default()));
    let (schedule_tx, schedule_rx) = channel::channel(Vec::new());
    // Run requests from HTTP and webhooks. The scheduler replies to each at
    // once, so 256 waiting requests would mean it is far behind.
    let (commands_tx, commands_rx) = mpsc::channel(256);

    let reloader = Reloader::new(
        options.folder.clone(),
        catalog_tx,
        schedule_tx,
        health.clone(),
        metrics.clone(),
        status.clone(),
    );
    let started = std::time::Instant::now();
    reloader.reload("start").await;
    info!(
        folder = %options.folder.display(),
        flows = catalog_rx.borrow().flows.len(),
        milliseconds = started.elapsed().as_millis() as u64,
        "config loaded"
    );

    let destinations = Arc::new(DestinationQueue::new(options.max_runs, metrics.clone()));
    let alerts = Arc::new(alerts::Alerts::new(
        options.alert_url.clone(),
        metrics.clone(),
    ));
    let runner = Arc::new(FlowRunner {
        catalog: catalog_rx.clone(),
        executor: Arc::new(SyncExecutor {
            destinations: destinations.clone(),
        }),
        destinations: destinations.clone(),
        metrics: metrics.clone(),
        status: status.clone(),
        alerts,
        retry: options.retry,
    });
    let scheduler = Scheduler::new(Clock::System, runner, metrics.clone(), tracker.clone());
    let scheduler_task = tokio::spawn(scheduler.run(schedule_rx, commands_rx, shutdown.clone()));

    // Reload requests from the watcher and SIGHUP (capacity 1: see `watch`).
    let (reload_tx, reload_rx) = mpsc::channel(1);
    let _watch = watch::watch(&options.folder, options.debounce, reload_tx.clone())
        .map_err(DaemonError::Failed)?;
    let reload_task = tokio::spawn(reload_loop(reloader, reload_rx, shutdown.clone()));
    tokio::spawn(hangups(reload_tx));

    let app = Arc::new(server::AppState {
        catalog: catalog_rx.clone(),
        health,
        metrics: metrics.clone(),
        status,
        commands: commands_tx.clone(),
        api_token: options.api_token.clone(),
        webhooks: Arc::new(webhooks::WebhookState {
            catalog: catalog_rx.clone(),
            metrics: metrics.clone(),
            destinations,
            commands: commands_tx,
            shutdown: shutdown.clone(),
            flow_locks: Mutex::new(Default::default()),
        }),
        readiness: Mutex::new(None),
    });
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, server::router(app))
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
    });
    info!(listen = %local, folder = %options.folder.display(), max_runs = options.max_runs, "ferry daemon started");

    tokio::spawn(signals(shutdown.clone()));
    shutdown.cancelled().await;

    info!(
        timeout_seconds = options.shutdown_timeout.as_secs(),
        "stopping: no new runs; runs commit their chunk in flight"
    );
    let _ = scheduler_task.await;
    let _ = reload_task.await;
    tracker.close();
    if tokio::time::timeout(options.shutdown_timeout, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            timeout_seconds = options.shutdown_timeout.as_secs(),
            "runs still going after the shutdown timeout; exiting anyway (the next start resumes from their last committed chunk)"
        );
    }
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(Ok(Err(serve_error))) => {
            error!(error = %serve_error, "HTTP server stopped with an error")
        }
        Err(_) => warn!("HTTP server still closing connections after 5s; exiting"),
        _ => {}
    }
    info!("ferry daemon stopped");
    Ok(())
}

async fn reload_loop(
    reloader: Reloader,
    mut requests: mpsc::Receiver<&'static str>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            request = requests.recv() => match request {
                Some(cause) => {
                    reloader.reload(cause).await;
                }
                None => return,
            },
        }
    }
}

/// Requests a reload on SIGHUP, as most daemons do (useful after a
/// `${file:…}` secret changed outside the folder).
async fn hangups(reloads: mpsc::Sender<&'static str>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            warn!("cannot listen for SIGHUP; reload by changing a file in the config folder");
            return;
        };
        while hangup.recv().await.is_some() {
            let _ = reloads.try_send("sighup");
        }
    }
    #[cfg(not(unix))]
    {
        let _ = reloads;
    }
}

/// Cancels `shutdown` on the first SIGTERM/SIGINT and exits at once on a second.
async fn signals(shutdown: CancellationToken) {
    if wait_for_stop_signal().await.is_err() {
        warn!("cannot listen for stop signals; stop ferry with SIGKILL");
        return;
    }
    info!("stop signal received (send it again to exit at once)");
    shutdown.cancel();
    if wait_for_stop_signal().await.is_ok() {
        warn!(
            "second stop signal: exiting at once; the next start resumes from the last committed chunk"
        );
        std::process::exit(130);
    }
}

async fn wait_for_stop_signal() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::select! {
            _ = terminate.recv() => Ok(()),
            _ = interrupt.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
