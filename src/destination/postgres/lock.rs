//! Advisory locks: one per flow entity for the length of a run, so two
//! processes never sync the same entity of one database at once; one per
//! schema while it is created; one per table for each write transaction.
//!
//! Run locks are session locks (`pg_try_advisory_lock(bigint)`) held on a
//! session that does nothing else. A run's write session may then be
//! replaced after a lost connection without giving up the lock, and a
//! process that dies ends the session, which frees the lock.
//! Schema and table locks use the two-key form
//! (`pg_advisory_xact_lock(int, int)`), whose key space PostgreSQL keeps
//! apart from the one-key form, and end with their transaction.

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::connect::Settings;
use super::error::describe;
use crate::destination::{DestinationError, TableRef};

/// First keys of ferry's two-key advisory locks ("fers" and "fert" in
/// ASCII), so they stay clear of other applications' locks.
const SCHEMA_LOCK_CLASS: i32 = 0x6665_7273;
const TABLE_LOCK_CLASS: i32 = 0x6665_7274;

/// Returns the advisory lock key of a flow entity: the first 8 bytes of
/// SHA-256 over both names, stable across versions and processes.
pub fn run_lock_key(flow: &str, entity: &str) -> i64 {
    let digest = Sha256::digest(format!("ferry run\0{flow}\0{entity}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Returns the first 4 bytes of SHA-256 over `text` as a lock key.
fn short_key(text: &str) -> i32 {
    let digest = Sha256::digest(text.as_bytes());
    let mut bytes = [0u8; 4];
    bytes.copy_from_slice(&digest[..4]);
    i32::from_be_bytes(bytes)
}

/// The statement that waits for another transaction holding the same
/// two-key lock, which [`schema_lock_params`] or [`table_lock_params`]
/// give.
pub const TRANSACTION_LOCK_SQL: &str = "SELECT pg_advisory_xact_lock($1, $2)";

/// Returns the keys of the lock taken while `schema` is created.
pub fn schema_lock_params(schema: &str) -> (i32, i32) {
    (
        SCHEMA_LOCK_CLASS,
        short_key(&format!("ferry schema\0{schema}")),
    )
}

/// Returns the keys of the lock every write transaction on `table` takes
/// first, so writes to one table (a run's chunks and a webhook's rows)
/// commit one after another, in the order of their `_ferry_synced_at`.
pub fn table_lock_params(table: &TableRef) -> (i32, i32) {
    let text = format!("ferry table\0{}\0{}", table.schema, table.table);
    (TABLE_LOCK_CLASS, short_key(&text))
}

/// A session holding run locks.
pub struct LockSession {
    client: Client,
    /// Keys held, with the `flow/entity` each belongs to.
    held: Vec<(i64, String)>,
}

impl LockSession {
    pub async fn open(settings: &Settings) -> Result<LockSession, DestinationError> {
        Ok(LockSession {
            client: settings.connect().await?,
            held: Vec::new(),
        })
    }

    /// Tells whether the session ended (the server restarted, or the
    /// connection broke), which released its locks.
    pub fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    pub fn holds(&self, key: i64) -> bool {
        self.held.iter().any(|(held, _)| *held == key)
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Takes the lock of `flow`/`entity` without waiting. A lock another
    /// session holds is [`DestinationError::Locked`], naming that session.
    pub async fn try_lock(
        &mut self,
        shown: &str,
        flow: &str,
        entity: &str,
    ) -> Result<(), DestinationError> {
        let key = run_lock_key(flow, entity);
        if self.holds(key) {
            return Ok(());
        }
        let failed = |error: tokio_postgres::Error| {
            DestinationError::Connect(format!(
                "{shown}: taking the run lock of {flow}/{entity} failed: {}",
                describe(&error)
            ))
        };
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .await
            .map_err(failed)?;
        if row.get::<_, bool>(0) {
            self.held.push((key, format!("{flow}/{entity}")));
            return Ok(());
        }
        let holder = self.describe_holder(key).await;
        Err(DestinationError::Locked(format!(
            "{shown}: {flow}/{entity} is already running elsewhere ({holder} has advisory lock {key}); this run did not start; wait for that run to finish"
        )))
    }

    /// Names the session holding `key`, as far as this role may see it.
    async fn describe_holder(&self, key: i64) -> String {
        // pg_locks splits a one-key advisory lock into its high and low
        // 32 bits (classid, objid) with objsubid 1.
        let high = (key >> 32) as u32;
        let low = key as u32;
        let sql = "SELECT l.pid, coalesce(a.application_name, ''), \
                   coalesce(host(a.client_addr), 'local socket') \
                   FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid \
                   WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                   AND l.classid::text = $1 AND l.objid::text = $2 \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   LIMIT 1";
        let row = self
            .client
            .query_opt(sql, &[&high.to_string(), &low.to_string()])
            .await;
        match row {
            Ok(Some(row)) => {
                // A lock held by a prepared transaction has no session: pid is NULL.
                let Ok(Some(pid)) = row.try_get::<_, Option<i32>>(0) else {
                    return "a prepared transaction".to_string();
                };
                let application: String = row.try_get(1).unwrap_or_default();
                let client: String = row.try_get(2).unwrap_or_default();
                format!("session {pid} of application \"{application}\" from {client}")
            }
            Ok(None) => "another session".to_string(),
            Err(error) => {
                tracing::debug!(error = %describe(&error), "looking up the holder of a run lock failed");
                "another session".to_string()
            }
        }
    }

    /// Releases the lock of `flow`/`entity`, if this session holds it.
    pub async fn unlock(&mut self, flow: &str, entity: &str) {
        let key = run_lock_key(flow, entity);
        let Some(position) = self.held.iter().position(|(held, _)| *held == key) else {
            return;
        };
        self.held.remove(position);
        let released = self
            .client
            .query_one("SELECT pg_advisory_unlock($1)", &[&key])
            .await;
        match released {
            Ok(row) if row.get::<_, bool>(0) => {}
            Ok(_) => tracing::warn!(flow, entity, key, "the run lock was not held at release"),
            // The session is dropped with this value, which frees the lock.
            Err(error) => tracing::warn!(
                flow,
                entity,
                error = %describe(&error),
                "releasing the run lock failed; closing its session releases it"
            ),
        }
    }

    /// Returns the `flow/entity` names of the locks held.
    pub fn held_names(&self) -> Vec<String> {
        self.held.iter().map(|(_, name)| name.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_distinct() {
        assert_eq!(
            run_lock_key("billing", "customers"),
            run_lock_key("billing", "customers")
        );
        assert_ne!(
            run_lock_key("billing", "customers"),
            run_lock_key("billing", "invoices")
        );
        // The separator keeps ("a", "bc") and ("ab", "c") apart.
        assert_ne!(run_lock_key("a", "bc"), run_lock_key("ab", "c"));
        assert_eq!(
            run_lock_key("billing", "customers"),
            -4_904_745_637_346_709_911
        );
    }
}
