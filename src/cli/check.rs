//! `ferry check`: validate the whole config folder.

use std::process::ExitCode;

use serde_json::json;

use super::ConfigArgs;
use super::output::{Failure, print_json};

pub fn execute(config: &ConfigArgs, json: bool) -> Result<ExitCode, Failure> {
    let folder = config.folder();
    match crate::spec::load(&folder) {
        Ok(loaded) => {
            if json {
                print_json(&json!({
                    "ok": true,
                    "connectors": loaded.catalog.connectors.keys().collect::<Vec<_>>(),
                    "flows": loaded.catalog.flows.keys().collect::<Vec<_>>(),
                    "warnings": loaded.warnings,
                    "errors": [],
                }));
            } else {
                for warning in &loaded.warnings {
                    eprintln!("warning: {warning}");
                }
                println!(
                    "{}: {} connectors, {} flows, no problems",
                    folder.display(),
                    loaded.catalog.connectors.len(),
                    loaded.catalog.flows.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(diagnostics) => {
            if json {
                print_json(&json!({"ok": false, "errors": diagnostics, "warnings": []}));
            } else {
                for diagnostic in &diagnostics {
                    println!("{diagnostic}");
                }
                let count = diagnostics.len();
                eprintln!(
                    "{count} problem{} found in {}",
                    if count == 1 { "" } else { "s" },
                    folder.display()
                );
            }
            Ok(ExitCode::from(2))
        }
    }
}
