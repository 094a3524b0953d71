//! One open database per file in this process.
//!
//! DuckDB lets one process write a file, and opening the same file a
//! second time in that process fails, so every destination for a file gets
//! a clone of one connection, which shares the database instance.
//!
//! Write transactions on one file take turns (the writer lock). DuckDB
//! runs concurrent transactions, but two that change the catalog at once
//! fail: two entities creating tables in one new schema get "Catalog
//! write-write conflict on create".

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, PoisonError, Weak};

use duckdb::{Config, Connection};
use tokio::sync::Semaphore;

use crate::destination::DestinationError;

/// The write-ahead log size at which DuckDB checkpoints. Its default
/// (16 MB) checkpoints every few chunks, and each checkpoint compresses
/// the table's growing last row group again (a fifth of a 100,000-record
/// sync). Rows not yet checkpointed stay in memory, so the log is not
/// left to grow without bound either.
const CHECKPOINT_THRESHOLD: &str = "256MB";

/// DuckDB's worker threads. ferry's statements are chunk appends and small
/// bookkeeping queries, which one thread runs as fast. With more, the
/// writing thread spun waiting for the workers (a tenth of its time), and
/// the workers took the cores that fetch and parse the next pages.
const THREADS: &str = "1";

/// The variable that sets DuckDB's memory limit (any DuckDB size, such as
/// `1GB`). Without it DuckDB's own default applies, 80 % of the machine's
/// memory. Rows not yet checkpointed stay in memory, and a
/// 1,000,000-record sync reached 1 GB. Past a limit DuckDB moves them to
/// its temporary folder beside the file (`FILE.tmp`), but a primary-key
/// index stays: with 256 MB, a test table with 36-character text keys
/// failed every commit from about 3,450,000 rows on. So ferry sets no
/// limit of its own, and a small one is the user's choice.
const MEMORY_LIMIT_VARIABLE: &str = "FERRY_DUCKDB_MEMORY_LIMIT";

/// Open databases by canonical path. Entries are weak so the file closes
/// (and its lock is released) once the last destination using it is gone.
static OPEN: LazyLock<Mutex<HashMap<PathBuf, Weak<SharedDatabase>>>> =
    LazyLock::new(Mutex::default);

/// Calls that may run on a file at once, each on a blocking thread of its
/// own. Further calls would only hold a thread (and its memory) while they
/// wait for DuckDB's locks and the writer lock.
const CALLS: usize = 4;

/// What every destination of one file shares.
struct SharedDatabase {
    /// The first connection, which new sessions clone.
    root: Mutex<Connection>,
    /// Held for the length of each write transaction.
    writer: Mutex<()>,
    /// A permit per call running on the file (see [`CALLS`]).
    calls: Arc<Semaphore>,
}

/// A connection of its own, plus the file's shared state, which keeps
/// the registry entry alive while this session is in use (a cancelled
/// call can leave it running on a blocking thread after its destination
/// is dropped).
pub struct Session {
    pub connection: Connection,
    /// The database's catalog name (the file name without `.duckdb`).
    pub catalog: String,
    shared: Arc<SharedDatabase>,
}

impl Session {
    /// Lends the connection and the catalog name, first waiting for the
    /// file's other write transactions to end when `write` is set.
    pub fn borrow(&mut self, write: bool) -> (Option<MutexGuard<'_, ()>>, &mut Connection, &str) {
        let writer = write.then(|| {
            self.shared
                .writer
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        });
        (writer, &mut self.connection, &self.catalog)
    }

    /// Returns the permits of calls on this file, taken before a call goes to a
    /// blocking thread.
    pub fn calls(&self) -> Arc<Semaphore> {
        Arc::clone(&self.shared.calls)
    }
}

/// Opens `path`, or shares the database another destination opened.
pub fn connect(path: &str) -> Result<Session, DestinationError> {
    let key = canonical_path(path)?;
    let mut open = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());

    let shared = match open.get(&key).and_then(Weak::upgrade) {
        Some(shared) => shared,
        None => {
            let connection = Connection::open_with_flags(&key, database_config(path)?)
                .map_err(|error| open_error(path, error))?;
            let shared = Arc::new(SharedDatabase {
                root: Mutex::new(connection),
                writer: Mutex::new(()),
                calls: Arc::new(Semaphore::new(CALLS)),
            });
            open.insert(key.clone(), Arc::downgrade(&shared));
            shared
        }
    };
    open.retain(|_, entry| entry.strong_count() > 0);

    let connection = shared
        .root
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .try_clone()
        .map_err(|error| open_error(path, error))?;
    let catalog = connection
        .query_row("SELECT current_database()", [], |row| row.get(0))
        .map_err(|error| open_error(path, error))?;
    Ok(Session {
        connection,
        catalog,
        shared,
    })
}

/// Adds the setting that raises DuckDB's memory limit to a DuckDB error
/// that ran out of it, whose own advice (`SET memory_limit`) a ferry user
/// cannot follow. A table's primary-key index stays in memory, so a large
/// keyed table needs a larger limit.
pub fn with_memory_advice(detail: String) -> String {
    let out_of_memory =
        detail.contains("Out of Memory Error") || detail.contains("failed to pin block");
    if !out_of_memory {
        return detail;
    }
    format!(
        "{detail}\nDuckDB reached its memory limit ({MEMORY_LIMIT_VARIABLE}, or 80 % of \
         the machine's memory without it); set {MEMORY_LIMIT_VARIABLE} to a larger size, such as 4GB, \
         or give the machine more memory"
    )
}

/// Reads the memory limit the environment sets, if any.
fn memory_limit(path: &str) -> Result<Option<String>, DestinationError> {
    let Some(limit) = std::env::var(MEMORY_LIMIT_VARIABLE)
        .ok()
        .map(|limit| limit.trim().to_string())
        .filter(|limit| !limit.is_empty())
    else {
        return Ok(None);
    };
    if is_size(&limit) {
        return Ok(Some(limit));
    }
    Err(DestinationError::Connect(format!(
        "duckdb://{path}: {MEMORY_LIMIT_VARIABLE}={limit:?} is not a size; \
         use a number and a unit, such as 512MB or 2GB, or unset it for DuckDB's default"
    )))
}

/// Checks that `text` is a size DuckDB reads: a number, then B, KB, MB, GB,
/// TB or their KiB forms, in any case.
fn is_size(text: &str) -> bool {
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let units = [
        "b", "kb", "mb", "gb", "tb", "kib", "mib", "gib", "tib", "bytes",
    ];
    number.parse::<f64>().is_ok_and(|value| value > 0.0)
        && units.contains(&unit.trim().to_ascii_lowercase().as_str())
}

/// Builds the database's settings. Extension autoloading and autoinstalling
/// are off, because they would download an extension (ICU for a time zone
/// setting) from the network, and JSON is compiled in. Then come the
/// checkpoint threshold, the thread count and the memory limit above.
fn database_config(path: &str) -> Result<Config, DestinationError> {
    let memory_limit = memory_limit(path)?;
    let config = Config::default()
        .enable_autoload_extension(false)
        .and_then(|config| config.with("autoinstall_known_extensions", "false"))
        .and_then(|config| config.with("checkpoint_threshold", CHECKPOINT_THRESHOLD))
        .and_then(|config| config.with("threads", THREADS))
        .and_then(|config| match &memory_limit {
            Some(limit) => config.with("memory_limit", limit),
            None => Ok(config),
        });
    config.map_err(|error| {
        DestinationError::Connect(format!(
            "duckdb://{path}: configuring DuckDB failed: {error}"
        ))
    })
}

/// Resolves the file's directory, so two spellings of one file share an
/// entry. The file itself may not exist yet.
fn canonical_path(path: &str) -> Result<PathBuf, DestinationError> {
    let path = Path::new(path);
    let Some(name) = path.file_name() else {
        return Err(DestinationError::Connect(format!(
            "duckdb://{}: the path names no file",
            path.display()
        )));
    };
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let directory = directory.canonicalize().map_err(|error| {
        DestinationError::Connect(format!(
            "duckdb://{}: directory {} is not usable ({error}); create it first",
            path.display(),
            directory.display()
        ))
    })?;
    Ok(directory.join(name))
}

fn open_error(path: &str, error: duckdb::Error) -> DestinationError {
    let message = format!("duckdb://{path}: {error}");
    // DuckDB's wording: "Could not set lock on file ...: Conflicting lock
    // is held in <program> (PID n)".
    if message.contains("Could not set lock") || message.contains("Conflicting lock") {
        DestinationError::Locked(message)
    } else {
        DestinationError::Connect(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_duckdb_reads() {
        for size in ["256MB", "2GB", "1.5 GiB", "512mb", "1000000b"] {
            assert!(is_size(size), "{size}");
        }
        for size in ["lots", "MB", "0MB", "12", "5 parsecs", "-1GB"] {
            assert!(!is_size(size), "{size}");
        }
    }
}
