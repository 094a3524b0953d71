//! The `ferry` command line.
//!
//! Exit codes are part of the interface: 0 when every entity succeeded
//! (warnings allowed), 1 when a run failed, 2 for invalid input (config,
//! missing variable, unknown flow), detected before any request is sent.

mod check;
mod interactive;
mod list;
mod logging;
mod output;
mod preview;
mod state;
mod sync;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use output::print_json;

pub use output::Failure;

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "Keeps DuckDB and PostgreSQL tables up to date with HTTP APIs described in YAML"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,

    /// Log level or tracing filter (`debug`, `ferry=trace`); overrides RUST_LOG.
    #[arg(long, global = true, env = "FERRY_LOG")]
    log: Option<String>,
}

#[derive(Debug, Args, Clone)]
pub struct ConfigArgs {
    /// Folder of connector and flow YAML files, read recursively [default: ./ferry.d]
    #[arg(long, short = 'c', env = "FERRY_CONFIG", global = true)]
    pub config: Option<PathBuf>,
}

impl ConfigArgs {
    pub fn folder(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from("./ferry.d"))
    }

    /// Loads the folder. Without `--config`, a missing `./ferry.d` means
    /// "built-in connectors only", so `preview` and `sync -s` work anywhere.
    pub fn load(&self) -> Result<crate::spec::Loaded, Failure> {
        let folder = self.folder();
        let loaded = if self.config.is_none() && !folder.exists() {
            crate::spec::load_builtin()
        } else {
            crate::spec::load(&folder)
        };
        let loaded = loaded.map_err(|diagnostics| Failure::diagnostics(&diagnostics))?;
        for warning in &loaded.warnings {
            tracing::warn!("{warning}");
        }
        Ok(loaded)
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon: watch the config folder, run flows on schedule, serve HTTP.
    Run(RunArgs),
    /// Run every selected entity of a flow once, in the foreground.
    Sync(sync::SyncArgs),
    /// Validate every file of the config folder; exit 2 if anything is wrong.
    Check {
        #[command(flatten)]
        config: ConfigArgs,
        /// Print the problems as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List connectors, a connector's entities, or flows.
    List(list::ListArgs),
    /// Send the connector's check request with a flow's credentials.
    CheckConnection {
        flow: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Fetch the first page of an entity and show its records and inferred columns; writes nothing.
    Preview(preview::PreviewArgs),
    /// Show, reset or set the saved state of a flow's entities.
    State(state::StateArgs),
    /// Print the JSON Schemas of connector and flow files.
    Schema,
    /// Sync a local Stripe-like API into ./ferry-demo.duckdb: no account or network needed.
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Address of the HTTP server (health, metrics, flows, webhooks); a
    /// non-loopback address needs FERRY_API_TOKEN.
    #[arg(long, default_value = "127.0.0.1:8080", env = "FERRY_LISTEN")]
    listen: String,
    /// Entity runs at once across all flows [default: twice the CPU cores].
    #[arg(long, env = "FERRY_MAX_CONCURRENT_RUNS")]
    max_concurrent_runs: Option<usize>,
    /// URL that receives a JSON POST when a flow fails after its retries or
    /// recovers, for flows without an alert.url of their own.
    #[arg(long, env = "FERRY_ALERT_URL", hide_env_values = true)]
    alert_url: Option<String>,
    /// Seconds runs get to commit their chunk in flight after SIGTERM.
    #[arg(long, default_value_t = 30, env = "FERRY_SHUTDOWN_TIMEOUT_SECONDS")]
    shutdown_timeout_seconds: u64,
    /// Milliseconds of quiet after a config change before the folder is reloaded.
    #[arg(long, default_value_t = 500, env = "FERRY_RELOAD_DEBOUNCE_MS")]
    reload_debounce_ms: u64,
    /// Attempts per flow run, the first included (failed runs retry with
    /// exponential backoff).
    #[arg(long, default_value_t = 4, env = "FERRY_RUN_ATTEMPTS")]
    run_attempts: u32,
    /// Seconds before the first retry of a failed run; doubles per retry, up to 15 minutes.
    #[arg(long, default_value_t = 30, env = "FERRY_RETRY_DELAY_SECONDS")]
    retry_delay_seconds: u64,
}

impl RunArgs {
    fn options(&self) -> crate::daemon::DaemonOptions {
        use std::time::Duration;
        let retry = crate::daemon::runner::RetryPolicy {
            max_attempts: self.run_attempts.max(1),
            first_delay: Duration::from_secs(self.retry_delay_seconds),
            ..Default::default()
        };
        crate::daemon::DaemonOptions {
            folder: self.config.folder(),
            listen: self.listen.clone(),
            api_token: std::env::var("FERRY_API_TOKEN")
                .ok()
                .filter(|token| !token.is_empty()),
            max_runs: self
                .max_concurrent_runs
                .unwrap_or_else(crate::daemon::default_max_runs),
            alert_url: self.alert_url.clone(),
            shutdown_timeout: Duration::from_secs(self.shutdown_timeout_seconds),
            debounce: Duration::from_millis(self.reload_debounce_ms),
            retry,
        }
    }
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// DuckDB file to write.
    #[arg(long, default_value = "./ferry-demo.duckdb")]
    db: PathBuf,
    /// Customers to generate; subscriptions, invoices and charges follow from them.
    #[arg(long, default_value_t = 1_500)]
    customers: usize,
}

async fn demo(args: DemoArgs) -> Result<ExitCode, Failure> {
    let options = crate::demo::DemoOptions {
        db: args.db,
        customers: args.customers,
    };
    let mut stdout = std::io::stdout();
    crate::demo::run(&options, &mut stdout)
        .await
        .map_err(|error| Failure::run(error.to_string()))?;
    Ok(ExitCode::SUCCESS)
}

/// Ends on a command line clap rejects (or on `--help`, `--version`).
/// With `--json` among the arguments, the error also prints as JSON on
/// stdout, as every other error of such a command does.
fn usage_error(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let informational = matches!(
        error.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    // After `--`, `--json` is a positional value, not the flag.
    let json = std::env::args_os()
        .take_while(|argument| argument != "--")
        .any(|argument| argument == "--json");
    if json && !informational {
        // clap's text is the error, which may go on over indented lines
        // (the missing arguments), then a blank line, usage and a hint.
        let text = error.to_string();
        let message = text
            .lines()
            .take_while(|line| !line.trim().is_empty())
            .map(str::trim)
            .collect::<Vec<_>>()
            .join(" ");
        let message = message.trim_start_matches("error: ");
        print_json(&serde_json::json!({ "ok": false, "errors": [{ "message": message }] }));
    }
    // Prints to stderr (stdout for help and version) with clap's exit code.
    error.exit()
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(error),
    };
    let quiet_logs = matches!(
        cli.command,
        Command::Schema
            | Command::List(_)
            | Command::Check { .. }
            | Command::State(_)
            | Command::Demo(_)
    );
    let logs = logging::init(cli.log.as_deref(), quiet_logs);

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let json = cli.command.prints_json();
    let result = runtime.block_on(dispatch(cli.command, logs));
    match result {
        Ok(code) => code,
        Err(failure) if json => failure.report_json(),
        Err(failure) => failure.report(),
    }
}

impl Command {
    /// Returns whether the command requests JSON output (`--json`).
    fn prints_json(&self) -> bool {
        match self {
            Command::Sync(args) => args.json(),
            Command::Check { json, .. } => *json,
            Command::List(args) => args.json(),
            Command::Preview(args) => args.json(),
            Command::State(args) => args.json(),
            _ => false,
        }
    }
}

async fn dispatch(command: Command, logs: logging::Logs) -> Result<ExitCode, Failure> {
    match command {
        Command::Run(args) => match crate::daemon::run(args.options()).await {
            Ok(()) => Ok(ExitCode::SUCCESS),
            Err(crate::daemon::DaemonError::Usage(message)) => Err(Failure::usage(message)),
            Err(crate::daemon::DaemonError::Failed(message)) => Err(Failure::run(message)),
        },
        Command::Sync(args) => sync::execute(args, logs).await,
        Command::Check { config, json } => check::execute(&config, json),
        Command::List(args) => list::execute(args),
        Command::CheckConnection { flow, config } => {
            preview::check_connection(&flow, &config).await
        }
        Command::Preview(args) => preview::execute(args).await,
        Command::State(args) => state::execute(args).await,
        Command::Schema => {
            for (name, schema) in crate::spec::schema::render() {
                println!("# {name}");
                println!("{schema}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo(args) => demo(args).await,
    }
}
