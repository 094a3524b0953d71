//! Access tokens from an OAuth 2.0 token endpoint: client credentials and
//! refresh tokens (RFC 6749 sections 4.4 and 6) and signed JWT assertions
//! (RFC 7523, Google service accounts).
//!
//! One [`TokenSource`] serves every request of a flow run. It keeps the
//! access token until shortly before it expires, and fetches a new one
//! under a lock, so entities running at once cause one token request, not
//! one each. A provider that rotates refresh tokens returns a new one with
//! each access token and invalidates the old one. The newest is therefore
//! saved through a [`TokenStore`] at once, and the next run (or process)
//! starts from it.
//!
//! Every credential here (client secret, refresh and access tokens, the
//! service account's private key) is registered with [`crate::redact`],
//! and no message or log line includes one.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use chrono::Utc;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;
use tokio::time::Instant;
use url::Url;

use super::client::{body_excerpt, strip_url};
use super::retry::{is_retryable_status, retry_delay};
use super::service_account::ServiceAccountKey;
use super::{FetchError, FetchErrorKind};
use crate::spec::plan::{ClientAuth, RetryPolicy};

/// Renew a token this long before it expires, or at half its lifetime
/// when that is shorter, so a request never leaves with a token about to
/// expire.
const RENEW_MARGIN: Duration = Duration::from_secs(60);

/// `error` codes of a token response that mean "try again later"; Google's
/// client libraries retry these too.
const RETRYABLE_ERRORS: &[&str] = &[
    "temporarily_unavailable",
    "server_error",
    "internal_failure",
];

/// A refresh token saved between runs.
#[derive(Clone, PartialEq, Eq)]
pub struct SavedRefreshToken {
    pub refresh_token: String,
    /// SHA-256 (hex) of the refresh token in the flow's config when this
    /// one was saved. A different configured token means a person put in a
    /// new one, which then wins over the saved one.
    pub configured_sha256: String,
}

impl std::fmt::Debug for SavedRefreshToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SavedRefreshToken")
            .field("configured_sha256", &self.configured_sha256)
            .finish_non_exhaustive()
    }
}

/// Storage for the newest refresh token of a flow, between runs.
#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn load(&self) -> Result<Option<SavedRefreshToken>, String>;
    /// Saves the token in a transaction of its own, so the token survives
    /// whatever happens to the run afterwards.
    async fn save(&self, token: &SavedRefreshToken) -> Result<(), String>;
}

/// How the token request proves who is asking.
pub(crate) enum Grant {
    ClientCredentials,
    RefreshToken {
        configured: String,
    },
    JwtBearer {
        key: Box<ServiceAccountKey>,
        subject: Option<String>,
    },
}

/// A client id and secret, sent as the provider expects them.
pub(crate) struct ClientSecret {
    pub id: String,
    pub secret: String,
    pub method: ClientAuth,
}

/// Everything a token source is made from.
pub(crate) struct TokenSourceConfig {
    pub flow: String,
    /// The auth type, for messages (`oauth2_refresh_token`).
    pub auth_type: &'static str,
    pub token_url: Url,
    pub client: Option<ClientSecret>,
    pub scopes: Vec<String>,
    /// Extra form fields of every token request.
    pub extra: Vec<(String, String)>,
    pub grant: Grant,
    pub retry: RetryPolicy,
    pub http: reqwest::Client,
    pub store: Option<Arc<dyn TokenStore>>,
}

/// Fetches, caches and renews the access token of one flow run.
pub(crate) struct TokenSource {
    config: TokenSourceConfig,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("auth_type", &self.config.auth_type)
            .field(
                "token_url",
                &crate::redact::redact(self.config.token_url.as_str()),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Cache {
    token: Option<AccessToken>,
    /// Counts the access tokens fetched, so a 401 discards only the token
    /// that received it.
    generation: u64,
    /// The newest refresh token known: the configured one, a saved one or
    /// one the endpoint returned.
    refresh_token: Option<String>,
    /// The store was read (it is read once, before the first token request).
    loaded: bool,
}

struct AccessToken {
    value: String,
    header: HeaderValue,
    /// `None` when the endpoint gave no lifetime: the token is used until
    /// the API rejects it.
    renew_at: Option<Instant>,
}

/// The fields of a token endpoint's JSON response that ferry reads.
struct TokenResponse {
    access_token: Option<String>,
    refresh_token: Option<String>,
    expires_in: Option<Duration>,
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenSource {
    pub(crate) fn new(config: TokenSourceConfig) -> TokenSource {
        if let Some(client) = &config.client {
            crate::redact::register(&client.secret);
        }
        if let Grant::RefreshToken { configured } = &config.grant {
            crate::redact::register(configured);
        }
        TokenSource {
            config,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Returns the `Authorization` header to send, fetching a token first
    /// when there is none or it is about to expire, and the token's
    /// generation, to pass to [`TokenSource::rejected`] after a 401.
    pub(crate) async fn authorization(&self) -> Result<(HeaderValue, u64), FetchError> {
        let mut cache = self.cache.lock().await;
        if let Some(token) = &cache.token
            && token
                .renew_at
                .is_none_or(|renew_at| Instant::now() < renew_at)
        {
            return Ok((token.header.clone(), cache.generation));
        }
        self.fetch(&mut cache).await?;
        match &cache.token {
            Some(token) => Ok((token.header.clone(), cache.generation)),
            None => Err(self.error("the token endpoint returned no access token".into())),
        }
    }

    /// Forgets the token of `generation` after the API rejected it, so the
    /// next request fetches a new one. A newer token is kept: another
    /// request already replaced the rejected one.
    pub(crate) async fn rejected(&self, generation: u64) {
        let mut cache = self.cache.lock().await;
        if cache.generation == generation && cache.token.is_some() {
            tracing::info!(
                flow = %self.config.flow,
                auth = self.config.auth_type,
                "the API rejected the access token with 401, so a new one is fetched"
            );
            cache.token = None;
        }
    }

    /// Returns a digest that identifies the credentials (not the tokens),
    /// for the shared rate limit.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.config.auth_type.as_bytes());
        hasher.update(b"\0");
        hasher.update(self.config.token_url.as_str().as_bytes());
        if let Some(client) = &self.config.client {
            hasher.update(b"\0");
            hasher.update(client.id.as_bytes());
        }
        if let Grant::JwtBearer { key, subject } = &self.config.grant {
            hasher.update(b"\0");
            hasher.update(key.client_email.as_bytes());
            hasher.update(b"\0");
            hasher.update(subject.as_deref().unwrap_or_default().as_bytes());
        }
        hasher.finalize().into()
    }

    async fn fetch(&self, cache: &mut Cache) -> Result<(), FetchError> {
        if !cache.loaded {
            cache.refresh_token = self.initial_refresh_token().await?;
            cache.loaded = true;
        }
        let form = self.form(cache.refresh_token.as_deref())?;
        tracing::info!(
            flow = %self.config.flow,
            auth = self.config.auth_type,
            token_url = %crate::redact::redact(self.config.token_url.as_str()),
            "requesting an access token"
        );
        let response = self.request(&form).await?;

        let Some(access_token) = response.access_token.filter(|token| !token.is_empty()) else {
            return Err(self.error(
                "the token endpoint responded without an access_token; \
                 check http.auth.token_url"
                    .into(),
            ));
        };
        let previous = cache.token.take().map(|token| token.value);
        crate::redact::replace(previous.as_deref(), &access_token);
        let mut header = HeaderValue::from_str(&format!("Bearer {access_token}")).map_err(|_| {
            self.error("the token endpoint returned an access token that is not valid in an HTTP header".into())
        })?;
        header.set_sensitive(true);

        let renew_at = response.expires_in.map(|lifetime| {
            let margin = RENEW_MARGIN.min(lifetime / 2);
            Instant::now() + lifetime.saturating_sub(margin)
        });
        cache.generation += 1;
        cache.token = Some(AccessToken {
            value: access_token,
            header,
            renew_at,
        });
        tracing::info!(
            flow = %self.config.flow,
            auth = self.config.auth_type,
            expires_in_seconds = response.expires_in.map(|lifetime| lifetime.as_secs()),
            "access token received"
        );

        if let Some(rotated) = response.refresh_token.filter(|token| !token.is_empty())
            && cache.refresh_token.as_deref() != Some(rotated.as_str())
            && matches!(self.config.grant, Grant::RefreshToken { .. })
        {
            self.rotate(cache, rotated).await;
        }
        Ok(())
    }

    /// Keeps a refresh token the endpoint returned in place of the one
    /// sent, and saves it at once: the provider may have invalidated the
    /// old one already.
    async fn rotate(&self, cache: &mut Cache, rotated: String) {
        crate::redact::replace(None, &rotated);
        cache.refresh_token = Some(rotated.clone());
        let Grant::RefreshToken { configured } = &self.config.grant else {
            return;
        };
        let Some(store) = &self.config.store else {
            tracing::warn!(
                flow = %self.config.flow,
                "the token endpoint rotated the refresh token, but there is nowhere to save it; \
                 it is used until this process ends"
            );
            return;
        };
        let saved = SavedRefreshToken {
            refresh_token: rotated,
            configured_sha256: sha256_hex(configured),
        };
        match store.save(&saved).await {
            Ok(()) => tracing::info!(
                flow = %self.config.flow,
                "the token endpoint rotated the refresh token; the new one is saved in _ferry.state"
            ),
            Err(error) => tracing::error!(
                flow = %self.config.flow,
                error = %crate::redact::redact(&error),
                "the token endpoint rotated the refresh token, but saving it failed; \
                 this run keeps using it, but a later run may need a new refresh token in the flow's config"
            ),
        }
    }

    /// Returns the refresh token to start from: the saved one when it was
    /// rotated from the token in the flow's config, else the configured one.
    async fn initial_refresh_token(&self) -> Result<Option<String>, FetchError> {
        let Grant::RefreshToken { configured } = &self.config.grant else {
            return Ok(None);
        };
        let Some(store) = &self.config.store else {
            return Ok(Some(configured.clone()));
        };
        let saved = store.load().await.map_err(|error| {
            self.error(format!(
                "reading the saved refresh token from _ferry.state failed: {}",
                crate::redact::redact(&error)
            ))
        })?;
        match saved {
            Some(saved) if saved.configured_sha256 == sha256_hex(configured) => {
                crate::redact::register(&saved.refresh_token);
                tracing::info!(
                    flow = %self.config.flow,
                    "using the rotated refresh token saved in _ferry.state"
                );
                Ok(Some(saved.refresh_token))
            }
            Some(_) => {
                tracing::info!(
                    flow = %self.config.flow,
                    "the refresh token in the flow's config changed since a rotated one was saved, \
                     so the configured one is used"
                );
                Ok(Some(configured.clone()))
            }
            None => Ok(Some(configured.clone())),
        }
    }

    /// Builds the form fields of a token request.
    fn form(&self, refresh_token: Option<&str>) -> Result<Vec<(String, String)>, FetchError> {
        let config = &self.config;
        let mut form: Vec<(String, String)> = Vec::new();
        let mut add = |name: &str, value: String| form.push((name.to_string(), value));
        match &config.grant {
            Grant::ClientCredentials => add("grant_type", "client_credentials".into()),
            Grant::RefreshToken { .. } => {
                add("grant_type", "refresh_token".into());
                add("refresh_token", refresh_token.unwrap_or_default().into());
            }
            Grant::JwtBearer { key, subject } => {
                let assertion = key
                    .assertion(
                        config.token_url.as_str(),
                        &config.scopes,
                        subject.as_deref(),
                        Utc::now(),
                    )
                    .map_err(|message| self.error(message))?;
                add(
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
                );
                add("assertion", assertion);
            }
        }
        let scoped = !matches!(config.grant, Grant::JwtBearer { .. });
        if scoped && !config.scopes.is_empty() {
            add("scope", config.scopes.join(" "));
        }
        if let Some(client) = &config.client
            && client.method == ClientAuth::Body
        {
            add("client_id", client.id.clone());
            add("client_secret", client.secret.clone());
        }
        for (name, value) in &config.extra {
            add(name, value.clone());
        }
        Ok(form)
    }

    /// Sends a token request, retrying like any other request: 408, 429,
    /// 5xx, connection failures and the endpoint's "try again" errors, up
    /// to `http.retry.max_attempts` attempts in all.
    async fn request(&self, form: &[(String, String)]) -> Result<TokenResponse, FetchError> {
        let retry = &self.config.retry;
        let max_attempts = retry.max_attempts.max(1);
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut attempt = 1;
        loop {
            let outcome = self.send(body.clone()).await;
            let last = attempt >= max_attempts;
            let (delay, reason) = match outcome {
                Err(error) if !last => {
                    let reason = crate::redact::redact(&describe(&error));
                    (retry_delay(retry, attempt, &HeaderMap::new()), reason)
                }
                Err(error) => {
                    return Err(self.error(format!(
                        "the token request failed after {attempt} attempts: {}; \
                         check that the token endpoint is reachable from here",
                        crate::redact::redact(&describe(&error))
                    )));
                }
                Ok((status, headers, bytes)) => {
                    let parsed = parse_response(&bytes);
                    let retryable = is_retryable_status(status)
                        || parsed.as_ref().is_some_and(|response| {
                            response
                                .error
                                .as_deref()
                                .is_some_and(|code| RETRYABLE_ERRORS.contains(&code))
                        });
                    let accepted = status.is_success()
                        && parsed
                            .as_ref()
                            .is_some_and(|response| response.error.is_none());
                    if accepted && let Some(response) = parsed {
                        return Ok(response);
                    }
                    if !retryable || last {
                        return Err(self.rejection(status, parsed.as_ref(), &bytes, attempt));
                    }
                    (
                        retry_delay(retry, attempt, &headers),
                        format!("HTTP {}", status.as_u16()),
                    )
                }
            };
            tracing::warn!(
                flow = %self.config.flow,
                auth = self.config.auth_type,
                attempt,
                max_attempts,
                delay_ms = delay.as_millis() as u64,
                reason = %reason,
                "token request failed, retrying"
            );
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn send(
        &self,
        body: String,
    ) -> Result<(StatusCode, HeaderMap, bytes::Bytes), reqwest::Error> {
        let mut request = self
            .config
            .http
            .post(self.config.token_url.clone())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json")
            .body(body);
        if let Some(client) = &self.config.client
            && client.method == ClientAuth::Basic
        {
            request = request.header(AUTHORIZATION, basic_header(&client.id, &client.secret));
        }
        let response = request.send().await?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await?;
        Ok((status, headers, bytes))
    }

    /// Builds the error for a token response that gave no token: the
    /// provider's `error` and `error_description` when it sent them.
    fn rejection(
        &self,
        status: StatusCode,
        parsed: Option<&TokenResponse>,
        body: &[u8],
        attempts: u32,
    ) -> FetchError {
        let detail = match parsed.and_then(|response| response.error.as_deref()) {
            Some(code) => match parsed.and_then(|response| response.error_description.as_deref()) {
                Some(description) => format!("{code}: {description}"),
                None => code.to_string(),
            },
            None => body_excerpt(body),
        };
        let tries = if attempts > 1 {
            format!(" after {attempts} attempts")
        } else {
            String::new()
        };
        self.error(format!(
            "the token endpoint rejected the request with HTTP {}{tries}: {}; {}",
            status.as_u16(),
            crate::redact::redact(&detail),
            self.hint()
        ))
    }

    fn hint(&self) -> &'static str {
        match self.config.grant {
            Grant::ClientCredentials => {
                "check the client_id, client_secret and scopes in the flow's config"
            }
            Grant::RefreshToken { .. } => {
                "the refresh token may be revoked, expired or already used; put a new one in the flow's config"
            }
            Grant::JwtBearer { .. } => {
                "check that the service-account key is active, that the account may use the scopes, \
                 and, with a subject, that domain-wide delegation is granted"
            }
        }
    }

    fn error(&self, message: String) -> FetchError {
        FetchError::new(
            FetchErrorKind::Auth,
            format!(
                "http.auth ({}, token endpoint {}): {message}",
                self.config.auth_type,
                crate::redact::redact(self.config.token_url.as_str())
            ),
        )
    }
}

/// Reads a token endpoint's JSON body; `None` when it is not JSON.
fn parse_response(body: &[u8]) -> Option<TokenResponse> {
    let Value::Object(fields) = serde_json::from_slice::<Value>(body).ok()? else {
        return None;
    };
    let text = |name: &str| fields.get(name).and_then(Value::as_str).map(str::to_string);
    Some(TokenResponse {
        access_token: text("access_token"),
        refresh_token: text("refresh_token"),
        expires_in: fields.get("expires_in").and_then(lifetime),
        error: text("error"),
        error_description: text("error_description"),
    })
}

/// Reads `expires_in`: seconds as a number or a numeric string (Google's
/// libraries accept both).
fn lifetime(value: &Value) -> Option<Duration> {
    let seconds = match value {
        Value::Number(number) => number.to_string().parse::<f64>().ok()?,
        Value::String(text) => text.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)))
}

/// `Authorization: Basic` for a client id and secret, each form-encoded
/// first as RFC 6749 section 2.3.1 requires.
fn basic_header(id: &str, secret: &str) -> HeaderValue {
    let encode =
        |text: &str| url::form_urlencoded::byte_serialize(text.as_bytes()).collect::<String>();
    let pair = format!("{}:{}", encode(id), encode(secret));
    let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
    // Base64 text is always a valid header value.
    let mut header = HeaderValue::from_str(&format!("Basic {encoded}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    header.set_sensitive(true);
    header
}

/// Formats a reqwest error and its causes without the URL reqwest adds.
fn describe(error: &reqwest::Error) -> String {
    let mut text = if error.is_timeout() {
        "timed out".to_string()
    } else {
        strip_url(error)
    };
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

pub(crate) fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn lifetime_reads_numbers_and_strings() {
        assert_eq!(lifetime(&json!(3599)), Some(Duration::from_secs(3599)));
        assert_eq!(lifetime(&json!("3600")), Some(Duration::from_secs(3600)));
        assert_eq!(lifetime(&json!("soon")), None);
        assert_eq!(lifetime(&json!(-5)), None);
    }

    #[test]
    fn basic_header_form_encodes_both_parts() {
        let header = basic_header("id:1", "s p&");
        let encoded = base64::engine::general_purpose::STANDARD.encode("id%3A1:s+p%26");
        assert_eq!(header.to_str().unwrap(), format!("Basic {encoded}"));
    }

    #[test]
    fn error_response_fields_are_read() {
        let parsed =
            parse_response(br#"{"error":"invalid_grant","error_description":"Bad"}"#).unwrap();
        assert_eq!(parsed.error.as_deref(), Some("invalid_grant"));
        assert_eq!(parsed.error_description.as_deref(), Some("Bad"));
        assert!(parse_response(b"<html>").is_none());
    }
}
