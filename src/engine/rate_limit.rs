//! The process-wide registry of request rate limiters.
//!
//! APIs meter requests per credential, so every run in the process that
//! uses the same connector, credentials and origin waits on one limiter.
//! Entries are keyed by a digest, never by the credentials themselves, and
//! live as long as the process: there is one per distinct credential.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use sha2::{Digest, Sha256};

use crate::spec::plan::RateLimit;

pub(crate) type Limiter = DefaultDirectRateLimiter;

struct Entry {
    limit: (u64, u32),
    limiter: Arc<Limiter>,
}

fn registry() -> &'static Mutex<HashMap<[u8; 32], Entry>> {
    static LIMITERS: OnceLock<Mutex<HashMap<[u8; 32], Entry>>> = OnceLock::new();
    LIMITERS.get_or_init(|| Mutex::new(HashMap::new()))
}

/// Returns the limiter shared by every run with this connector, credential
/// digest and origin. A changed rate (a reloaded spec) replaces the limiter.
/// Returns `None` when the rate has no period ([`RateLimit::period`]).
pub(crate) fn shared_limiter(
    connector: &str,
    credentials: &[u8; 32],
    origin: &str,
    limit: RateLimit,
) -> Option<Arc<Limiter>> {
    let quota = quota(limit)?;
    let key: [u8; 32] = Sha256::new()
        .chain_update(connector.as_bytes())
        .chain_update(b"\0")
        .chain_update(credentials)
        .chain_update(b"\0")
        .chain_update(origin.as_bytes())
        .finalize()
        .into();
    let requested = (limit.requests_per_second.to_bits(), limit.burst);

    let mut limiters = registry()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let entry = limiters.entry(key).or_insert_with(|| Entry {
        limit: requested,
        limiter: Arc::new(RateLimiter::direct(quota)),
    });
    if entry.limit != requested {
        *entry = Entry {
            limit: requested,
            limiter: Arc::new(RateLimiter::direct(quota)),
        };
    }
    Some(entry.limiter.clone())
}

fn quota(limit: RateLimit) -> Option<Quota> {
    let period = limit.period()?;
    let burst = NonZeroU32::new(limit.burst.max(1))?;
    Some(Quota::with_period(period)?.allow_burst(burst))
}
