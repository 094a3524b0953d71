//! Google service-account keys and the RS256 assertions signed with them
//! (RFC 7523: a JWT exchanged for an access token at the token endpoint).
//!
//! The key file's private key is parsed once and kept only as a signing
//! key; messages name the key file's fields, never their values.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use serde_json::Value;

/// Lifetime of an assertion. Google accepts at most one hour.
const ASSERTION_SECONDS: i64 = 3600;

/// Token endpoint used when neither the key file nor `http.auth.token_url`
/// names one.
pub(crate) const GOOGLE_TOKEN_URL: &str = "https://oauth2.googleapis.com/token";

/// The parts of a service-account key file that signing needs.
pub(crate) struct ServiceAccountKey {
    pub client_email: String,
    pub private_key_id: Option<String>,
    /// The key file's `token_uri`, when it has one.
    pub token_uri: Option<String>,
    signing_key: EncodingKey,
}

impl std::fmt::Debug for ServiceAccountKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The signing key stays out of debug output.
        f.debug_struct("ServiceAccountKey")
            .field("client_email", &self.client_email)
            .field("private_key_id", &self.private_key_id)
            .finish_non_exhaustive()
    }
}

/// The claims of an assertion, as Google's token endpoint reads them.
#[derive(Serialize)]
struct Claims<'a> {
    iss: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    aud: &'a str,
    iat: i64,
    exp: i64,
}

impl ServiceAccountKey {
    /// Reads a key file: its JSON text, or the JSON object itself.
    /// `secrets` receives the private key text so that it can be masked.
    pub(crate) fn parse(
        source: &Value,
        secrets: &mut Vec<String>,
    ) -> Result<ServiceAccountKey, String> {
        let parsed;
        let key = match source {
            Value::String(text) => {
                parsed = serde_json::from_str::<Value>(text.trim()).map_err(|error| {
                    format!(
                        "is not JSON (line {}, column {}); pass the service-account key file's content, \
                         for example with ${{file:/path/to/key.json}}",
                        error.line(),
                        error.column()
                    )
                })?;
                &parsed
            }
            other => other,
        };
        let Value::Object(fields) = key else {
            return Err("is not a JSON object; pass the service-account key file's content".into());
        };

        let text = |name: &str| -> Option<String> {
            fields
                .get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .filter(|value| !value.is_empty())
        };
        if let Some(kind) = text("type")
            && kind != "service_account"
        {
            return Err(format!(
                "is a key file of type {kind:?}, not \"service_account\"; \
                 create a JSON key for a service account in the Google Cloud console"
            ));
        }
        let client_email = text("client_email")
            .ok_or("has no client_email; pass a service-account key file as Google issues it")?;
        let private_key = text("private_key")
            .ok_or("has no private_key; pass a service-account key file as Google issues it")?;
        secrets.push(private_key.clone());

        let signing_key = EncodingKey::from_rsa_pem(private_key.as_bytes()).map_err(|_| {
            "has a private_key that is not an RSA private key in PEM form; \
             pass the key file as Google issues it"
                .to_string()
        })?;
        Ok(ServiceAccountKey {
            client_email,
            private_key_id: text("private_key_id"),
            token_uri: text("token_uri"),
            signing_key,
        })
    }

    /// Signs an assertion for `audience` (the token endpoint), valid for
    /// one hour from `now`.
    pub(crate) fn assertion(
        &self,
        audience: &str,
        scopes: &[String],
        subject: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<String, String> {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = self.private_key_id.clone();
        let issued_at = now.timestamp();
        let claims = Claims {
            iss: &self.client_email,
            sub: subject,
            scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
            aud: audience,
            iat: issued_at,
            exp: issued_at + ASSERTION_SECONDS,
        };
        jsonwebtoken::encode(&header, &claims, &self.signing_key).map_err(|error| {
            format!(
                "signing the assertion with the key of {} failed ({:?})",
                self.client_email,
                error.kind()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn missing_fields_are_named() {
        let mut secrets = Vec::new();
        let error = ServiceAccountKey::parse(&json!({"type": "service_account"}), &mut secrets)
            .unwrap_err();
        assert!(error.contains("client_email"), "{error}");

        let key = json!({"client_email": "a@b", "private_key": "not a key"});
        let error = ServiceAccountKey::parse(&key, &mut secrets).unwrap_err();
        assert!(error.contains("not an RSA private key"), "{error}");
        assert!(!error.contains("not a key"), "{error}");
        assert_eq!(secrets, vec!["not a key".to_string()]);
    }

    #[test]
    fn other_key_types_are_rejected() {
        let key = json!({"type": "authorized_user", "client_id": "x"});
        let error = ServiceAccountKey::parse(&key, &mut Vec::new()).unwrap_err();
        assert!(error.contains("authorized_user"), "{error}");
    }

    #[test]
    fn text_that_is_not_json_is_rejected() {
        let error = ServiceAccountKey::parse(&json!("{oops"), &mut Vec::new()).unwrap_err();
        assert!(error.starts_with("is not JSON"), "{error}");
    }
}
