//! Credentials for each request.
//!
//! [`Auth`] is built once per flow run from the connector's `http.auth`,
//! with its templates rendered against the flow's config, and applied to
//! every attempt of every request. Token-based types (OAuth 2.0, service
//! accounts) fetch their token on the first request, through `token`.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde_json::Value;
use sha2::{Digest, Sha256};
use url::Url;

use super::service_account::{GOOGLE_TOKEN_URL, ServiceAccountKey};
use super::token::{ClientSecret, Grant, TokenSource, TokenSourceConfig, TokenStore};
use super::{FetchError, FetchErrorKind};
use crate::spec::plan::{ApiKeyLocation, AuthPlan, RetryPolicy};
use crate::template::Template;

/// The inputs token-based auth needs beyond the plan: the flow, how token
/// requests are retried and timed out, and the refresh token store.
pub(crate) struct AuthContext<'a> {
    pub flow: &'a str,
    pub retry: RetryPolicy,
    pub timeout: Duration,
    /// Keeps rotated refresh tokens between runs.
    pub store: Option<Arc<dyn TokenStore>>,
}

/// The credential a request attempt carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Applied {
    /// A fixed credential, or none.
    Fixed,
    /// An access token of this generation, which a 401 may have expired.
    Token(u64),
}

pub(crate) enum Auth {
    None,
    /// A ready `Authorization` header: bearer and basic auth.
    Authorization {
        header: HeaderValue,
        credential: String,
    },
    ApiKeyHeader {
        name: HeaderName,
        value: HeaderValue,
        credential: String,
    },
    ApiKeyQuery {
        name: String,
        value: String,
    },
    /// `Authorization: Bearer` with a token from a token endpoint.
    Token(Arc<TokenSource>),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The variant only, because every other field contains a credential.
        let kind = match self {
            Auth::None => "None",
            Auth::Authorization { .. } => "Authorization",
            Auth::ApiKeyHeader { .. } => "ApiKeyHeader",
            Auth::ApiKeyQuery { .. } => "ApiKeyQuery",
            Auth::Token(_) => "Token",
        };
        f.write_str(kind)
    }
}

impl Auth {
    /// Renders the credentials of `plan` with `context` (the flow's config).
    pub(crate) fn from_plan(
        plan: &AuthPlan,
        context: &Value,
        auth_context: AuthContext<'_>,
    ) -> Result<Auth, FetchError> {
        match plan {
            AuthPlan::None => Ok(Auth::None),
            AuthPlan::Bearer { token } => {
                let token = render(token, context, "http.auth.token")?;
                let header = sensitive_header(&format!("Bearer {token}"), "http.auth.token")?;
                Ok(Auth::Authorization {
                    header,
                    credential: token,
                })
            }
            AuthPlan::Basic { username, password } => {
                let username = render(username, context, "http.auth.username")?;
                let password = render(password, context, "http.auth.password")?;
                let pair = format!("{username}:{password}");
                let encoded = base64::engine::general_purpose::STANDARD.encode(&pair);
                let header = sensitive_header(&format!("Basic {encoded}"), "http.auth.username")?;
                Ok(Auth::Authorization {
                    header,
                    credential: pair,
                })
            }
            AuthPlan::ApiKey {
                location,
                name,
                value,
            } => {
                let value = render(value, context, "http.auth.value")?;
                match location {
                    ApiKeyLocation::Header => {
                        let header_name =
                            HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                                auth_error(format!(
                                    "http.auth.name {name:?} is not a valid HTTP header name"
                                ))
                            })?;
                        Ok(Auth::ApiKeyHeader {
                            name: header_name,
                            value: sensitive_header(&value, "http.auth.value")?,
                            credential: value,
                        })
                    }
                    ApiKeyLocation::Query => Ok(Auth::ApiKeyQuery {
                        name: name.clone(),
                        value,
                    }),
                }
            }
            AuthPlan::OAuth2ClientCredentials { .. }
            | AuthPlan::OAuth2RefreshToken { .. }
            | AuthPlan::JwtServiceAccount { .. } => {
                let config = token_source_config(plan, context, auth_context)?;
                Ok(Auth::Token(Arc::new(TokenSource::new(config))))
            }
        }
    }

    /// Forgets the access token that received a 401, so the next attempt
    /// fetches a new one. Returns false when the credential is fixed and a
    /// new attempt would fail the same way.
    pub(crate) async fn rejected(&self, applied: Applied) -> bool {
        match (self, applied) {
            (Auth::Token(source), Applied::Token(generation)) => {
                source.rejected(generation).await;
                true
            }
            _ => false,
        }
    }

    /// Adds the credentials to one request attempt. A query API key is added
    /// only when the URL does not carry that parameter already, so URLs taken
    /// from responses never get it twice.
    pub(crate) async fn apply(
        &self,
        request: &mut reqwest::Request,
    ) -> Result<Applied, FetchError> {
        match self {
            Auth::None => {}
            Auth::Authorization { header, .. } => {
                request.headers_mut().insert(AUTHORIZATION, header.clone());
            }
            Auth::ApiKeyHeader { name, value, .. } => {
                request.headers_mut().insert(name.clone(), value.clone());
            }
            Auth::ApiKeyQuery { name, value } => {
                let url = request.url_mut();
                let present = url.query_pairs().any(|(key, _)| key == name.as_str());
                if !present {
                    url.query_pairs_mut().append_pair(name, value);
                }
            }
            Auth::Token(source) => {
                let (header, generation) = source.authorization().await?;
                request.headers_mut().insert(AUTHORIZATION, header);
                return Ok(Applied::Token(generation));
            }
        }
        Ok(Applied::Fixed)
    }

    /// Returns the query parameter that carries a secret, to mask in URLs
    /// shown to people.
    pub(crate) fn secret_query_param(&self) -> Option<&str> {
        match self {
            Auth::ApiKeyQuery { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Returns every secret value this auth sends, for redaction. Token
    /// sources register their credentials themselves.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        match self {
            Auth::None | Auth::Token(_) => Vec::new(),
            Auth::Authorization { credential, .. } | Auth::ApiKeyHeader { credential, .. } => {
                vec![credential]
            }
            Auth::ApiKeyQuery { value, .. } => vec![value],
        }
    }

    /// Returns a SHA-256 digest of the credentials, so that runs sharing them
    /// share a rate limit without the key itself being kept as a map key.
    pub(crate) fn digest(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        match self {
            Auth::None => hasher.update(b"none"),
            Auth::Authorization { credential, .. } => {
                hasher.update(b"authorization\0");
                hasher.update(credential.as_bytes());
            }
            Auth::ApiKeyHeader {
                name, credential, ..
            } => {
                hasher.update(b"header\0");
                hasher.update(name.as_str().as_bytes());
                hasher.update(b"\0");
                hasher.update(credential.as_bytes());
            }
            Auth::ApiKeyQuery { name, value } => {
                hasher.update(b"query\0");
                hasher.update(name.as_bytes());
                hasher.update(b"\0");
                hasher.update(value.as_bytes());
            }
            Auth::Token(source) => {
                hasher.update(b"token\0");
                hasher.update(source.digest());
            }
        }
        hasher.finalize().into()
    }
}

fn render(template: &Template, context: &Value, field: &str) -> Result<String, FetchError> {
    template
        .render(context)
        .map_err(|error| FetchError::new(FetchErrorKind::Template, format!("{field}: {error}")))
}

fn sensitive_header(text: &str, field: &str) -> Result<HeaderValue, FetchError> {
    let mut value = HeaderValue::from_str(text).map_err(|_| {
        auth_error(format!(
            "{field} renders to a value that cannot be sent in an HTTP header \
             (control characters or non-ASCII text); check the config value it reads"
        ))
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn auth_error(message: String) -> FetchError {
    FetchError::new(FetchErrorKind::Auth, message)
}

/// Renders a token-based plan into what its token source needs.
fn token_source_config(
    plan: &AuthPlan,
    context: &Value,
    auth_context: AuthContext<'_>,
) -> Result<TokenSourceConfig, FetchError> {
    let client = |id: &Template, secret: &Template, method| -> Result<_, FetchError> {
        Ok(Some(ClientSecret {
            id: render(id, context, "http.auth.client_id")?,
            secret: render(secret, context, "http.auth.client_secret")?,
            method,
        }))
    };
    let extra = |fields: &[(String, Template)]| -> Result<Vec<(String, String)>, FetchError> {
        fields
            .iter()
            .map(|(name, template)| {
                Ok((
                    name.clone(),
                    render(template, context, &format!("http.auth.extra.{name}"))?,
                ))
            })
            .collect()
    };
    let (auth_type, token_url, client, scopes, extra, grant) = match plan {
        AuthPlan::OAuth2ClientCredentials {
            token_url,
            client_id,
            client_secret,
            scopes,
            extra: fields,
            client_auth,
        } => (
            "oauth2_client_credentials",
            render(token_url, context, "http.auth.token_url")?,
            client(client_id, client_secret, *client_auth)?,
            scopes.clone(),
            extra(fields)?,
            Grant::ClientCredentials,
        ),
        AuthPlan::OAuth2RefreshToken {
            token_url,
            client_id,
            client_secret,
            refresh_token,
            scopes,
            extra: fields,
            client_auth,
        } => {
            let configured = render(refresh_token, context, "http.auth.refresh_token")?;
            if configured.trim().is_empty() {
                return Err(auth_error(
                    "http.auth.refresh_token renders to an empty value; set the refresh token in the flow's config".into(),
                ));
            }
            (
                "oauth2_refresh_token",
                render(token_url, context, "http.auth.token_url")?,
                client(client_id, client_secret, *client_auth)?,
                scopes.clone(),
                extra(fields)?,
                Grant::RefreshToken { configured },
            )
        }
        AuthPlan::JwtServiceAccount {
            service_account,
            scopes,
            token_url,
            subject,
        } => {
            let source = service_account
                .render_value(context)
                .map_err(|error| template_error("http.auth.service_account", &error.0))?;
            let mut secrets = Vec::new();
            let key = ServiceAccountKey::parse(&source, &mut secrets);
            for secret in &secrets {
                crate::redact::register(secret);
                // The key as it appears inside JSON text, newlines escaped.
                crate::redact::register(&secret.replace('\n', "\\n"));
            }
            let key =
                key.map_err(|message| auth_error(format!("http.auth.service_account {message}")))?;
            let url = match token_url {
                Some(template) => render(template, context, "http.auth.token_url")?,
                None => key
                    .token_uri
                    .clone()
                    .unwrap_or_else(|| GOOGLE_TOKEN_URL.to_string()),
            };
            let subject = match subject {
                Some(template) => Some(render(template, context, "http.auth.subject")?)
                    .filter(|subject| !subject.is_empty()),
                None => None,
            };
            (
                "jwt_service_account",
                url,
                None,
                scopes.clone(),
                Vec::new(),
                Grant::JwtBearer {
                    key: Box::new(key),
                    subject,
                },
            )
        }
        _ => return Err(auth_error("this auth type uses no token endpoint".into())),
    };

    let token_url = Url::parse(&token_url)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https"))
        .ok_or_else(|| {
            auth_error(format!(
                "the token URL {:?} is not an absolute http(s) URL; check http.auth.token_url{}",
                crate::redact::redact(&token_url),
                if auth_type == "jwt_service_account" {
                    " or the key file's token_uri"
                } else {
                    ""
                }
            ))
        })?;
    let store = match grant {
        Grant::RefreshToken { .. } => auth_context.store,
        _ => None,
    };
    Ok(TokenSourceConfig {
        flow: auth_context.flow.to_string(),
        auth_type,
        token_url,
        client,
        scopes,
        extra,
        grant,
        retry: auth_context.retry,
        http: super::client::build_token_client(auth_context.timeout)
            .map_err(|message| FetchError::new(FetchErrorKind::Network, message))?,
        store,
    })
}

fn template_error(field: &str, message: &str) -> FetchError {
    FetchError::new(FetchErrorKind::Template, format!("{field}: {message}"))
}
