//! A flow's rotated OAuth 2.0 refresh token, kept in `_ferry.state`.
//!
//! Providers that rotate refresh tokens invalidate the old token with each
//! refresh, so the newest one must outlive the process. It is the state row
//! of the flow and the reserved entity name [`AUTH_ENTITY`]:
//!
//! ```json
//! {"refresh_token": "…", "configured_sha256": "…", "saved_at": "…"}
//! ```
//!
//! The row is written in a transaction of its own right after each
//! rotation, and read before the flow's first token request.
//! `configured_sha256` is the digest of the refresh token in the flow's
//! config at the time, so that a person who puts a new token there
//! replaces the saved one. `ferry state show` masks the token ([`mask`]),
//! and `ferry state reset FLOW` leaves the row alone.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use serde_json::{Value, json};

use crate::destination;
use crate::engine::{SavedRefreshToken, TokenStore};
use crate::spec::plan::{AuthPlan, DestinationUrl, Flow};

/// The entity name of the auth state row. Entity names starting with
/// `_ferry` are reserved, so no entity's state can take this row.
pub const AUTH_ENTITY: &str = "_ferry_auth";

/// Returns the store of `flow`'s rotated refresh token, when its connector
/// authenticates with a refresh token.
pub fn store_for(flow: &Flow) -> Option<Arc<dyn TokenStore>> {
    if !matches!(
        flow.connector.http.auth,
        AuthPlan::OAuth2RefreshToken { .. }
    ) {
        return None;
    }
    Some(Arc::new(DestinationTokenStore {
        url: flow.destination.clone(),
        flow: flow.name.clone(),
    }))
}

/// Replaces a saved refresh token in a state document with `***`, for
/// display.
pub fn mask(state: &mut Value) {
    if let Some(token) = state.get_mut("refresh_token")
        && token.is_string()
    {
        *token = Value::String("***".to_string());
    }
}

/// Keeps the token in the flow's own destination, opened for each read or
/// write (once per run and once per rotation).
///
/// It opens the destination directly, not through the daemon's run queue:
/// the token is read and saved while an entity run of the same flow holds
/// a queue slot, and waiting for another slot could wait forever. Within
/// one process a DuckDB file is shared, and its write transactions take
/// turns.
struct DestinationTokenStore {
    url: DestinationUrl,
    flow: String,
}

#[async_trait]
impl TokenStore for DestinationTokenStore {
    async fn load(&self) -> Result<Option<SavedRefreshToken>, String> {
        let mut destination = destination::open(&self.url)
            .await
            .map_err(|error| error.to_string())?;
        let stored = destination
            .read_state(&self.flow, AUTH_ENTITY)
            .await
            .map_err(|error| error.to_string())?;
        let Some(stored) = stored else {
            return Ok(None);
        };
        let text = |name: &str| stored.get(name).and_then(Value::as_str).map(str::to_string);
        match (text("refresh_token"), text("configured_sha256")) {
            (Some(refresh_token), Some(configured_sha256)) => Ok(Some(SavedRefreshToken {
                refresh_token,
                configured_sha256,
            })),
            _ => Err(format!(
                "the state row {}/{AUTH_ENTITY} in {} has no refresh_token and configured_sha256; \
                 delete that row to start again from the refresh token in the flow's config",
                self.flow,
                self.url.display()
            )),
        }
    }

    async fn save(&self, token: &SavedRefreshToken) -> Result<(), String> {
        let mut destination = destination::open(&self.url)
            .await
            .map_err(|error| error.to_string())?;
        let state = json!({
            "refresh_token": token.refresh_token,
            "configured_sha256": token.configured_sha256,
            "saved_at": Utc::now().to_rfc3339(),
        });
        destination
            .write_state(&self.flow, AUTH_ENTITY, Some(&state))
            .await
            .map_err(|error| error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_hides_only_the_token() {
        let mut state = json!({"refresh_token": "rt_secret", "configured_sha256": "ab"});
        mask(&mut state);
        assert_eq!(
            state,
            json!({"refresh_token": "***", "configured_sha256": "ab"})
        );
    }
}
