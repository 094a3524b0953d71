//! Log output: plain lines or JSON on stderr, secrets masked, and progress
//! bars that log lines do not tear.

use std::io::{self, IsTerminal, Write};

use indicatif::{MultiProgress, ProgressDrawTarget};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::redact::RedactingWriter;

/// What the command may draw on: progress bars only on an interactive terminal.
#[derive(Clone)]
pub struct Logs {
    pub bars: Option<MultiProgress>,
}

/// Installs the global subscriber. `quiet` commands (list, check, schema)
/// log warnings only, so their output stays readable.
pub fn init(filter: Option<&str>, quiet: bool) -> Logs {
    let default = if quiet { "warn" } else { "info" };
    let filter = filter
        .map(str::to_string)
        .or_else(|| std::env::var("RUST_LOG").ok())
        .unwrap_or_else(|| default.to_string());
    let filter = EnvFilter::try_new(&filter).unwrap_or_else(|error| {
        eprintln!("warning: invalid log filter {filter:?} ({error}); using {default}");
        EnvFilter::new(default)
    });

    let json = std::env::var("FERRY_LOG_FORMAT").is_ok_and(|format| format == "json");
    let interactive = io::stderr().is_terminal() && !json;
    let bars = interactive.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
    let writer = StderrWriter { bars: bars.clone() };

    let output = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_target(false);
    let output = if json {
        output.json().flatten_event(true).boxed()
    } else {
        output.with_ansi(interactive).boxed()
    };
    // The filter applies to the output only, so the retry counter of
    // `ferry run` receives the engine's retry events at any log level.
    let installed = tracing_subscriber::registry()
        .with(output.with_filter(filter))
        .with(crate::daemon::retry_events::RetryCounter)
        .try_init();
    if installed.is_err() {
        // Only tests install a second subscriber; the first one stays.
    }
    Logs { bars }
}

/// Writes log lines to stderr through the secret mask, pausing progress bars.
#[derive(Clone)]
struct StderrWriter {
    bars: Option<MultiProgress>,
}

impl<'a> MakeWriter<'a> for StderrWriter {
    type Writer = RedactingWriter<LineWriter>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(LineWriter {
            bars: self.bars.clone(),
        })
    }
}

pub struct LineWriter {
    bars: Option<MultiProgress>,
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.bars {
            Some(bars) => bars.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}
