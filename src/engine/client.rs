//! The HTTP client of one flow run: connection pool, TLS roots, proxies,
//! credentials, the shared rate limit, and retries.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::Utc;
use indexmap::IndexMap;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::json;
use url::Url;

use super::auth::{Applied, Auth, AuthContext};
use super::graphql::Throttle;
use super::rate_limit::{Limiter, shared_limiter};
use super::retry::{backoff, is_retryable_status, retry_after, retry_delay};
use super::token::TokenStore;
use super::{FetchError, FetchErrorKind};
use crate::spec::plan::{Flow, RetryPolicy, StatusAction};
use crate::template::iso_time;

/// Redirects followed for one request before giving up.
const MAX_REDIRECTS: usize = 10;

/// Characters of a response body quoted in an error.
const BODY_EXCERPT_CHARS: usize = 300;

/// One flow run's HTTP client. Build it once per run and share it between
/// the run's entities: it keeps the connection pool and the rendered
/// credentials.
pub struct HttpClient {
    client: reqwest::Client,
    flow: String,
    base_url: String,
    origin: Origin,
    headers: HeaderMap,
    auth: Auth,
    limiter: Option<Arc<Limiter>>,
    retry: RetryPolicy,
    timeout: Duration,
    allow_cross_host: bool,
    max_response_bytes: u64,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Credentials and headers stay out of debug output.
        f.debug_struct("HttpClient")
            .field("flow", &self.flow)
            .field("origin", &self.origin.to_string())
            .field("rate_limited", &self.limiter.is_some())
            .finish_non_exhaustive()
    }
}

/// Scheme, host and port, compared literally: a URL taken from a response
/// may only be followed to the origin the connector named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    scheme: String,
    host: Option<String>,
    port: Option<u16>,
}

impl Origin {
    pub(crate) fn of(url: &Url) -> Origin {
        Origin {
            scheme: url.scheme().to_string(),
            host: url.host_str().map(str::to_string),
            port: url.port_or_known_default(),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}://{}",
            self.scheme,
            self.host.as_deref().unwrap_or("")
        )?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// A request ready to send, before credentials are added.
#[derive(Debug, Clone)]
pub(crate) struct PreparedRequest {
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Bytes>,
}

/// The final response to a request, after retries.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Attempts sent, the first included.
    pub attempts: u32,
}

enum AttemptError {
    /// A connection failure, reset or timeout: worth another attempt.
    Network(reqwest::Error),
    Fatal(FetchError),
}

impl HttpClient {
    /// Builds the client for one run of `flow`: renders the base URL,
    /// headers and credentials from `flow.config`, and loads extra CA
    /// certificates from `SSL_CERT_FILE`. A rotated OAuth 2.0 refresh
    /// token is kept in the flow's destination (`_ferry.state`).
    pub fn new(flow: &Flow) -> Result<HttpClient, FetchError> {
        let store = crate::sync::auth_state::store_for(flow);
        HttpClient::with_token_store(flow, store)
    }

    /// Builds the client for one run of `flow`, keeping rotated refresh
    /// tokens in `store` (or nowhere, with `None`).
    pub fn with_token_store(
        flow: &Flow,
        store: Option<Arc<dyn TokenStore>>,
    ) -> Result<HttpClient, FetchError> {
        let http = &flow.connector.http;
        let context = json!({
            "config": super::fetch::config_values(flow),
            "state": {"cursor": null},
            "parent": null,
            "window": null,
            "entity": {},
            "now": iso_time(&Utc::now()),
        });

        let base_url = http.base_url.render(&context).map_err(|error| {
            template_error(format!(
                "connector {}: http.base_url: {error}",
                flow.connector.name
            ))
        })?;
        let parsed = Url::parse(&base_url).map_err(|error| {
            template_error(format!(
                "connector {}: http.base_url {:?} is not a valid URL ({error}); \
                 set it to an absolute http(s) URL such as https://api.example.com",
                flow.connector.name,
                crate::redact::redact(&base_url)
            ))
        })?;
        let origin = Origin::of(&parsed);

        let auth_context = AuthContext {
            flow: &flow.name,
            retry: http.retry,
            timeout: http.timeout,
            store,
        };
        let auth = Auth::from_plan(&http.auth, &context, auth_context).map_err(|error| {
            FetchError::new(
                error.kind,
                format!("connector {}: {}", flow.connector.name, error.message),
            )
        })?;
        for secret in auth
            .secrets()
            .into_iter()
            .chain(flow.secrets.iter().map(String::as_str))
        {
            crate::redact::register(secret);
        }

        let mut headers = HeaderMap::new();
        for (name, template) in &http.headers {
            let value = template.render(&context).map_err(|error| {
                template_error(format!(
                    "connector {}: http.headers.{name}: {error}",
                    flow.connector.name
                ))
            })?;
            // An empty value leaves the header out, so an optional config
            // key (Stripe's `Stripe-Account`) can control whether it is sent.
            if value.is_empty() {
                continue;
            }
            let (name, value) = header_pair(name, &value).map_err(|message| {
                template_error(format!("connector {}: {message}", flow.connector.name))
            })?;
            headers.append(name, value);
        }

        let limiter = match http.rate_limit {
            None => None,
            Some(limit) => {
                let limiter = shared_limiter(
                    &flow.connector.name,
                    &auth.digest(),
                    &origin.to_string(),
                    limit,
                );
                let limiter = limiter.ok_or_else(|| {
                    let problem = limit.problem().unwrap_or_default();
                    template_error(format!("connector {}: {problem}", flow.connector.name))
                })?;
                Some(limiter)
            }
        };

        let client = build_reqwest(http.timeout, origin.clone(), http.allow_cross_host).map_err(
            |message| {
                FetchError::new(
                    FetchErrorKind::Network,
                    format!("flow {}: {message}", flow.name),
                )
            },
        )?;

        Ok(HttpClient {
            client,
            flow: flow.name.clone(),
            base_url,
            origin,
            headers,
            auth,
            limiter,
            retry: http.retry,
            timeout: http.timeout,
            allow_cross_host: http.allow_cross_host,
            max_response_bytes: http.max_response_bytes,
        })
    }

    /// Joins the base URL and `path` with exactly one slash between them.
    pub(crate) fn join(&self, path: &str) -> String {
        if path.is_empty() {
            return self.base_url.clone();
        }
        format!(
            "{}/{}",
            self.base_url.trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }

    pub(crate) fn origin(&self) -> &Origin {
        &self.origin
    }

    pub(crate) fn allow_cross_host(&self) -> bool {
        self.allow_cross_host
    }

    /// Returns the connector's `http.headers`, rendered.
    pub(crate) fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Returns `url` as text safe to show: the query API key, any password
    /// and every registered secret masked.
    pub(crate) fn display_url(&self, url: &Url) -> String {
        let mut masked_url = url.clone();
        if let Some(name) = self.auth.secret_query_param() {
            let masked: Vec<(String, String)> = masked_url
                .query_pairs()
                .map(|(key, value)| {
                    let value = if key == name {
                        "***".into()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            if !masked.is_empty() {
                masked_url.query_pairs_mut().clear().extend_pairs(masked);
            }
        }
        if masked_url.password().is_some() {
            let _ = masked_url.set_password(Some("***"));
        }
        crate::redact::redact(masked_url.as_str())
    }

    /// Sends `request` until it gets a final response: retries 408, 429,
    /// 5xx, connection failures, resets and timeouts up to
    /// `http.retry.max_attempts` attempts in all. A status listed in
    /// `on_status` is final at once. The returned status may be any that is
    /// not retried; the caller decides what it means.
    pub(crate) async fn execute(
        &self,
        request: &PreparedRequest,
        entity: &str,
        on_status: &IndexMap<u16, StatusAction>,
    ) -> Result<Exchange, FetchError> {
        self.execute_checked(request, entity, on_status, None).await
    }

    /// Sends `request` like [`HttpClient::execute`], and also retries a
    /// successful response in which `throttled` finds a rate-limit refusal
    /// (a GraphQL error inside a 200). Its wait is used unless the server
    /// sent `Retry-After`; either is capped at `http.retry.max_wait_seconds`.
    pub(crate) async fn execute_checked(
        &self,
        request: &PreparedRequest,
        entity: &str,
        on_status: &IndexMap<u16, StatusAction>,
        throttled: Option<ThrottleCheck>,
    ) -> Result<Exchange, FetchError> {
        let max_attempts = self.retry.max_attempts.max(1);
        let mut attempt = 1;
        // A 401 to an access token gets one new token and one more attempt,
        // which does not count against max_attempts.
        let mut renewed_after_401 = false;
        let mut sent = 0;
        loop {
            if let Some(limiter) = &self.limiter {
                limiter.until_ready().await;
            }
            let outcome = self.attempt(request).await;
            sent += 1;
            let last = attempt >= max_attempts;
            match outcome {
                Ok((exchange, applied)) => {
                    if let Some(throttle) = throttled.and_then(|check| check(&exchange)) {
                        if last {
                            return Err(self.gave_up_on_throttle(request, &throttle, attempt));
                        }
                        let delay = throttle_delay(&self.retry, attempt, &exchange, &throttle);
                        tracing::warn!(
                            flow = %self.flow,
                            entity,
                            attempt,
                            max_attempts,
                            status = exchange.status.as_u16(),
                            delay_ms = delay.as_millis() as u64,
                            url = %self.display_url(&request.url),
                            reason = %throttle.reason,
                            "response reports a rate limit in its body, retrying"
                        );
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    let status = exchange.status;
                    if status == StatusCode::UNAUTHORIZED
                        && !renewed_after_401
                        && self.auth.rejected(applied).await
                    {
                        renewed_after_401 = true;
                        tracing::info!(
                            flow = %self.flow,
                            entity,
                            url = %self.display_url(&request.url),
                            "request got 401 with an access token; retrying once with a new token"
                        );
                        continue;
                    }
                    let listed = on_status.contains_key(&status.as_u16());
                    if listed || !is_retryable_status(status) {
                        return Ok(Exchange {
                            attempts: sent,
                            ..exchange
                        });
                    }
                    if last {
                        return Err(self.gave_up_on_status(request, &exchange, attempt));
                    }
                    let delay = retry_delay(&self.retry, attempt, &exchange.headers);
                    tracing::warn!(
                        flow = %self.flow,
                        entity,
                        attempt,
                        max_attempts,
                        status = status.as_u16(),
                        delay_ms = delay.as_millis() as u64,
                        url = %self.display_url(&request.url),
                        "request failed with a retryable status, retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(AttemptError::Fatal(error)) => return Err(error),
                Err(AttemptError::Network(error)) => {
                    if last {
                        return Err(self.gave_up_on_network(request, &error, attempt));
                    }
                    let delay = retry_delay(&self.retry, attempt, &HeaderMap::new());
                    tracing::warn!(
                        flow = %self.flow,
                        entity,
                        attempt,
                        max_attempts,
                        delay_ms = delay.as_millis() as u64,
                        url = %self.display_url(&request.url),
                        error = %self.describe(&error),
                        "request failed, retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
            }
            attempt += 1;
        }
    }

    async fn attempt(
        &self,
        prepared: &PreparedRequest,
    ) -> Result<(Exchange, Applied), AttemptError> {
        let mut request = reqwest::Request::new(prepared.method.clone(), prepared.url.clone());
        *request.headers_mut() = prepared.headers.clone();
        if let Some(body) = &prepared.body {
            *request.body_mut() = Some(reqwest::Body::from(body.clone()));
        }
        let applied = self
            .auth
            .apply(&mut request)
            .await
            .map_err(AttemptError::Fatal)?;

        let response = self
            .client
            .execute(request)
            .await
            .map_err(|error| self.classify(prepared, error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = self.read_body(prepared, response).await?;
        Ok((
            Exchange {
                status,
                headers,
                body,
                attempts: 1,
            },
            applied,
        ))
    }

    /// Reads a response body of at most `http.max_response_mb` after
    /// decoding, so a huge page or a gzip bomb fails the request instead of
    /// filling memory. A larger body is not retried: the same request
    /// would get it again.
    async fn read_body(
        &self,
        prepared: &PreparedRequest,
        mut response: reqwest::Response,
    ) -> Result<Bytes, AttemptError> {
        let limit = self.max_response_bytes;
        let too_large = || {
            AttemptError::Fatal(FetchError::new(
                FetchErrorKind::Response,
                format!(
                    "{} {}: the response body is larger than http.max_response_mb ({} MiB), so it was not read; \
                     request smaller pages (a lower page size parameter) or raise http.max_response_mb",
                    prepared.method,
                    self.display_url(&prepared.url),
                    limit / (1024 * 1024)
                ),
            ))
        };
        // With gzip the declared length is the compressed one, which reqwest
        // hides, so this check only applies to bodies sent as they are.
        if response
            .content_length()
            .is_some_and(|length| length > limit)
        {
            return Err(too_large());
        }
        // Sized from the declared length: growing from empty copied each
        // page about twice, into memory the system had to zero first.
        let declared = response.content_length().unwrap_or(0).min(limit);
        let mut body = BytesMut::with_capacity(usize::try_from(declared).unwrap_or(0));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.classify(prepared, error))?
        {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    }

    fn classify(&self, request: &PreparedRequest, error: reqwest::Error) -> AttemptError {
        if error.is_redirect() {
            let kind = if find_source::<CrossOriginRedirect>(&error).is_some() {
                FetchErrorKind::CrossHost
            } else {
                FetchErrorKind::Http
            };
            return AttemptError::Fatal(FetchError::new(
                kind,
                format!(
                    "{} {}: {}",
                    request.method,
                    self.display_url(&request.url),
                    self.describe(&error)
                ),
            ));
        }
        if error.is_builder() {
            return AttemptError::Fatal(FetchError::new(
                FetchErrorKind::Template,
                format!(
                    "{} {}: invalid request: {}",
                    request.method,
                    self.display_url(&request.url),
                    self.describe(&error)
                ),
            ));
        }
        AttemptError::Network(error)
    }

    /// Formats the error and its causes on one line, without the URL reqwest
    /// attaches (it may carry a query API key) and with secrets masked.
    fn describe(&self, error: &reqwest::Error) -> String {
        let mut text = if error.is_timeout() {
            format!("timed out after {}s", self.timeout.as_secs_f64())
        } else {
            String::new()
        };
        let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
        if text.is_empty() {
            text = strip_url(error);
        }
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            if !text.contains(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        crate::redact::redact(&text)
    }

    fn gave_up_on_status(
        &self,
        request: &PreparedRequest,
        exchange: &Exchange,
        attempts: u32,
    ) -> FetchError {
        FetchError::new(
            FetchErrorKind::Http,
            format!(
                "{} {}: HTTP {} after {attempts} attempts (http.retry.max_attempts {}): {}; \
                 the API is failing or rate limiting, so try again later or raise http.retry.max_attempts",
                request.method,
                self.display_url(&request.url),
                exchange.status.as_u16(),
                self.retry.max_attempts,
                body_excerpt(&exchange.body)
            ),
        )
    }

    fn gave_up_on_throttle(
        &self,
        request: &PreparedRequest,
        throttle: &Throttle,
        attempts: u32,
    ) -> FetchError {
        FetchError::new(
            FetchErrorKind::Http,
            format!(
                "{} {}: rate limited (the response body says: {}) after {attempts} attempts \
                 (http.retry.max_attempts {}); try again later, lower http.rate_limit, or raise http.retry.max_attempts",
                request.method,
                self.display_url(&request.url),
                throttle.reason,
                self.retry.max_attempts
            ),
        )
    }

    fn gave_up_on_network(
        &self,
        request: &PreparedRequest,
        error: &reqwest::Error,
        attempts: u32,
    ) -> FetchError {
        FetchError::new(
            FetchErrorKind::Network,
            format!(
                "{} {}: {} after {attempts} attempts (http.retry.max_attempts {}); \
                 check that the host is reachable from here, the proxy settings and http.timeout_seconds",
                request.method,
                self.display_url(&request.url),
                self.describe(error),
                self.retry.max_attempts
            ),
        )
    }
}

/// Finds a rate-limit refusal in a response whose status is not one.
pub(crate) type ThrottleCheck = fn(&Exchange) -> Option<Throttle>;

/// Returns the wait before retrying a throttled response: `Retry-After`
/// when sent, else the wait the body or headers ask for, else backoff.
fn throttle_delay(
    policy: &RetryPolicy,
    attempt: u32,
    exchange: &Exchange,
    throttle: &Throttle,
) -> Duration {
    match retry_after(&exchange.headers, std::time::SystemTime::now()).or(throttle.wait) {
        Some(wait) => wait.min(policy.max_wait),
        None => backoff(policy, attempt),
    }
}

/// Builds the reqwest client: rustls with the platform's roots plus those
/// in `SSL_CERT_FILE`, proxies from `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY`
/// (reqwest's default), gzip, and a redirect policy that stays on `origin`
/// unless cross-host URLs are allowed.
fn build_reqwest(
    timeout: Duration,
    origin: Origin,
    allow_cross_host: bool,
) -> Result<reqwest::Client, String> {
    let redirects = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("stopped after {MAX_REDIRECTS} redirects"));
        }
        if !allow_cross_host && Origin::of(attempt.url()) != origin {
            let target = Origin::of(attempt.url());
            return attempt.error(CrossOriginRedirect {
                target: target.to_string(),
                origin: origin.to_string(),
            });
        }
        attempt.follow()
    });

    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .redirect(redirects);
    let roots = extra_root_certificates()?;
    if !roots.is_empty() {
        builder = builder.tls_certs_merge(roots);
    }
    builder
        .build()
        .map_err(|error| format!("could not build the HTTP client: {}", strip_url(&error)))
}

/// Builds the reqwest client for token requests: the same roots, proxies
/// and timeout as API requests, and no redirects, because a token request
/// carries the client secret or a signed assertion.
pub(crate) fn build_token_client(timeout: Duration) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none());
    let roots = extra_root_certificates()?;
    if !roots.is_empty() {
        builder = builder.tls_certs_merge(roots);
    }
    builder.build().map_err(|error| {
        format!(
            "could not build the HTTP client for token requests: {}",
            strip_url(&error)
        )
    })
}

/// Reads the PEM certificates named by `SSL_CERT_FILE`.
///
/// On Linux, rustls-platform-verifier 0.7 already reads the variable
/// through rustls-native-certs 0.8, which then trusts that file in place of
/// the system store (as OpenSSL does). Loading it here as well makes an
/// unreadable file an error naming it, not a log line, and makes the file
/// count on platforms whose verifier ignores the variable.
fn extra_root_certificates() -> Result<Vec<reqwest::Certificate>, String> {
    let Some(path) = std::env::var_os("SSL_CERT_FILE") else {
        return Ok(Vec::new());
    };
    let cert_file = path.to_string_lossy().into_owned();
    let pem = std::fs::read(&path).map_err(|error| {
        format!(
            "SSL_CERT_FILE {cert_file}: {error}; point it at a PEM file of CA certificates or unset it"
        )
    })?;
    let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|error| {
        format!(
            "SSL_CERT_FILE {cert_file} is not a PEM certificate bundle: {}",
            strip_url(&error)
        )
    })?;
    if certificates.is_empty() {
        return Err(format!(
            "SSL_CERT_FILE {cert_file} contains no PEM certificates; point it at a PEM file of CA certificates or unset it"
        ));
    }
    Ok(certificates)
}

/// A redirect to another origin, refused so that credentials stay on the
/// connector's host.
#[derive(Debug, thiserror::Error)]
#[error(
    "redirect to {target} refused: it is not on {origin}; set http.allow_cross_host: true if the API really serves from there"
)]
struct CrossOriginRedirect {
    target: String,
    origin: String,
}

fn find_source<'a, E: std::error::Error + 'static>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a E> {
    let mut current = Some(error);
    while let Some(cause) = current {
        if let Some(found) = cause.downcast_ref::<E>() {
            return Some(found);
        }
        current = cause.source();
    }
    None
}

pub(crate) fn strip_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text
            .replace(&format!(" ({url})"), "")
            .replace(url.as_str(), "<url>");
    }
    text
}

/// Up to the first 300 characters of a body, one line, secrets masked.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return "empty body".to_string();
    }
    let mut excerpt: String = trimmed.chars().take(BODY_EXCERPT_CHARS).collect();
    if trimmed.chars().nth(BODY_EXCERPT_CHARS).is_some() {
        excerpt.push_str("...");
    }
    let one_line = excerpt.replace(['\n', '\r'], " ");
    format!("body: {}", crate::redact::redact(&one_line))
}

/// Parses a header name and value, with a message naming the header.
pub(crate) fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    let header_name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a valid HTTP header name"))?;
    let header_value = HeaderValue::from_str(value).map_err(|_| {
        format!("header {name} renders to a value that cannot be sent in an HTTP header (control characters or non-ASCII text)")
    })?;
    Ok((header_name, header_value))
}

fn template_error(message: String) -> FetchError {
    FetchError::new(FetchErrorKind::Template, message)
}
