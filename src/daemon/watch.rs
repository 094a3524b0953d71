//! Watches the config folder and requests a reload after changes settle.
//!
//! notify's debouncer merges the bursts editors produce (write to a temp
//! file, rename it over the original) into one batch per quiet period, and
//! watching recursively picks up files in folders created later. A batch
//! that touches only files with other extensions (swap files, backups) is
//! ignored; anything touching a `.yaml`/`.yml` file or a folder asks for a
//! reload, which always reads the whole folder again.

use std::path::Path;
use std::time::Duration;

use notify_debouncer_full::notify::{EventKind, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, DebouncedEvent, new_debouncer};
use tokio::sync::mpsc;
use tracing::{debug, warn};

/// Keeps the watcher alive; dropping it stops watching.
pub struct FolderWatch {
    _debouncer: notify_debouncer_full::Debouncer<
        notify_debouncer_full::notify::RecommendedWatcher,
        notify_debouncer_full::RecommendedCache,
    >,
}

/// Starts watching `folder`. Each settled batch of relevant changes puts
/// a request in `reloads` (capacity 1: a request already waiting covers
/// every change before it, so a full channel drops the new one).
pub fn watch(
    folder: &Path,
    quiet: Duration,
    reloads: mpsc::Sender<&'static str>,
) -> Result<FolderWatch, String> {
    let handler = move |result: DebounceEventResult| match result {
        Ok(events) => {
            if events.iter().any(relevant) {
                debug!(events = events.len(), "config folder changed");
                let _ = reloads.try_send("folder");
            }
        }
        Err(errors) => {
            for error in errors {
                warn!(error = %error, "watching the config folder reported an error");
            }
            // Something may have changed that the watcher could not describe.
            let _ = reloads.try_send("watch-error");
        }
    };
    let mut debouncer = new_debouncer(quiet, None, handler)
        .map_err(|error| format!("cannot watch {}: {error}", folder.display()))?;
    debouncer
        .watch(folder, RecursiveMode::Recursive)
        .map_err(|error| format!("cannot watch {}: {error}", folder.display()))?;
    Ok(FolderWatch {
        _debouncer: debouncer,
    })
}

fn relevant(event: &DebouncedEvent) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    if event.paths.is_empty() {
        return true;
    }
    event.paths.iter().any(|path| match path.extension() {
        Some(extension) => extension == "yaml" || extension == "yml",
        // Folders (created, removed, renamed) and extensionless paths.
        None => true,
    })
}
