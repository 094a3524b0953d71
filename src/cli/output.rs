//! How commands end: exit codes and error text.

use std::process::ExitCode;

use crate::redact::redact;
use crate::spec::Diagnostic;

/// A command that could not do its work.
#[derive(Debug)]
pub enum Failure {
    /// Invalid input found before any request was sent (exit 2).
    Input(Vec<String>),
    /// A run or request failed (exit 1).
    Run(String),
}

impl Failure {
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::Input(vec![message.into()])
    }

    pub fn diagnostics(diagnostics: &[Diagnostic]) -> Failure {
        Failure::Input(diagnostics.iter().map(ToString::to_string).collect())
    }

    pub fn run(message: impl Into<String>) -> Failure {
        Failure::Run(message.into())
    }

    /// Prints the failure to stderr, secrets masked, and returns its exit code.
    pub fn report(self) -> ExitCode {
        match self {
            Failure::Input(messages) => {
                for message in messages {
                    eprintln!("error: {}", redact(&message));
                }
                ExitCode::from(2)
            }
            Failure::Run(message) => {
                eprintln!("error: {}", redact(&message));
                ExitCode::from(1)
            }
        }
    }
}

impl Failure {
    /// Reports the failure for a command run with `--json`: the text on
    /// stderr as without it, and `{"ok": false, "errors": [{"message"}]}`
    /// on stdout (the shape `ferry check --json` prints), so a script that
    /// parses stdout gets JSON whatever happened.
    pub fn report_json(self) -> ExitCode {
        let messages: Vec<serde_json::Value> = match &self {
            Failure::Input(messages) => messages
                .iter()
                .map(|message| serde_json::json!({ "message": message }))
                .collect(),
            Failure::Run(message) => vec![serde_json::json!({ "message": message })],
        };
        print_json(&serde_json::json!({ "ok": false, "errors": messages }));
        self.report()
    }
}

/// Prints a JSON value on stdout, secrets masked.
pub fn print_json(value: &serde_json::Value) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".to_string());
    println!("{}", redact(&text));
}
