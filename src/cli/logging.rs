//! Log output: plain lines or JSON on stderr, secrets masked, and progress
//! bars that log lines do not tear.

use std::io::{self, IsTerminal, Write};

use indicatif::{MultiProgress, ProgressDrawTarget};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

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

    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    let installed = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.with_ansi(interactive).try_init()
    };
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
