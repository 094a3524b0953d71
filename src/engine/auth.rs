//! Credentials for each request.
//!
//! [`Auth`] is built once per flow run from the connector's `http.auth`,
//! with its templates rendered against the flow's config, and applied to
//! every attempt of every request. `apply` is async so that auth types
//! which fetch and refresh tokens can share this shape.

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderName, HeaderValue};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{FetchError, FetchErrorKind};
use crate::spec::plan::{ApiKeyLocation, AuthPlan};
use crate::template::Template;

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
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The variant only, because every other field contains a credential.
        let kind = match self {
            Auth::None => "None",
            Auth::Authorization { .. } => "Authorization",
            Auth::ApiKeyHeader { .. } => "ApiKeyHeader",
            Auth::ApiKeyQuery { .. } => "ApiKeyQuery",
        };
        f.write_str(kind)
    }
}

impl Auth {
    /// Renders the credentials of `plan` with `context` (the flow's config).
    pub(crate) fn from_plan(plan: &AuthPlan, context: &Value) -> Result<Auth, FetchError> {
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
            AuthPlan::OAuth2ClientCredentials { .. } => {
                Err(unsupported("oauth2_client_credentials"))
            }
            AuthPlan::OAuth2RefreshToken { .. } => Err(unsupported("oauth2_refresh_token")),
            AuthPlan::JwtServiceAccount { .. } => Err(unsupported("jwt_service_account")),
        }
    }

    /// Adds the credentials to one request attempt. A query API key is added
    /// only when the URL does not carry that parameter already, so URLs taken
    /// from responses never get it twice.
    pub(crate) async fn apply(&self, request: &mut reqwest::Request) -> Result<(), FetchError> {
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
        }
        Ok(())
    }

    /// Returns the query parameter that carries a secret, to mask in URLs
    /// shown to people.
    pub(crate) fn secret_query_param(&self) -> Option<&str> {
        match self {
            Auth::ApiKeyQuery { name, .. } => Some(name),
            _ => None,
        }
    }

    /// Returns every secret value this auth sends, for redaction.
    pub(crate) fn secrets(&self) -> Vec<&str> {
        match self {
            Auth::None => Vec::new(),
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

fn unsupported(kind: &str) -> FetchError {
    auth_error(format!(
        "auth type {kind} is not supported yet; use bearer, api_key or basic, \
         or pass a token you obtained yourself through a bearer config value"
    ))
}
