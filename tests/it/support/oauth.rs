//! A local OAuth 2.0 provider. Its token endpoint serves client
//! credentials, refresh tokens (optionally rotated, the old one rejected
//! afterwards) and RFC 7523 JWT assertions, whose signature and claims it
//! checks with a public key. API handlers call [`authorize`] to accept only
//! the access tokens it issued.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};

/// How the provider behaves.
#[derive(Clone, Default)]
pub struct Settings {
    pub client_id: String,
    pub client_secret: String,
    /// Expect the client id and secret in an `Authorization: Basic` header
    /// instead of the form.
    pub client_basic: bool,
    /// Refresh tokens accepted at the start.
    pub refresh_tokens: Vec<String>,
    /// Return a new refresh token with each refresh, and reject the old one.
    pub rotate: bool,
    pub expires_in: Option<u64>,
    /// For the JWT bearer grant: the PEM public key that verifies assertions,
    /// and the issuer they must name.
    pub jwt: Option<JwtCheck>,
}

#[derive(Clone)]
pub struct JwtCheck {
    pub public_key_pem: String,
    pub issuer: String,
}

/// A token request as the endpoint received it.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub form: Vec<(String, String)>,
    pub authorization: Option<String>,
}

impl TokenRequest {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn names(&self) -> Vec<&str> {
        self.form.iter().map(|(key, _)| key.as_str()).collect()
    }
}

#[derive(Default)]
pub struct ProviderState {
    pub settings: Settings,
    /// The token endpoint's own URL, the audience JWT assertions must name.
    pub token_url: String,
    pub token_requests: Vec<TokenRequest>,
    /// Verified JWT assertions: (header, claims).
    pub assertions: Vec<(Value, Value)>,
    /// Responses sent before normal behaviour, one per token request.
    pub scripted: VecDeque<(u16, Value)>,
    pub valid_access_tokens: HashSet<String>,
    pub valid_refresh_tokens: HashSet<String>,
    /// Access tokens the API accepted, in order.
    pub accepted: Vec<String>,
    /// Requests the API rejected with 401.
    pub rejected: usize,
    issued: usize,
}

pub type Shared = Arc<Mutex<ProviderState>>;

pub fn shared(settings: Settings) -> Shared {
    let valid_refresh_tokens = settings.refresh_tokens.iter().cloned().collect();
    Arc::new(Mutex::new(ProviderState {
        settings,
        valid_refresh_tokens,
        ..ProviderState::default()
    }))
}

/// Builds the `POST /token` route.
pub fn routes(state: Shared) -> Router {
    Router::new().route("/token", post(token)).with_state(state)
}

/// Returns the access token when `headers` carry one this provider issued
/// and still accepts, else `None`: respond with [`unauthorized`] then.
pub fn authorize(state: &Shared, headers: &HeaderMap) -> Option<String> {
    let mut state = state.lock().unwrap();
    let token = headers
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::to_string);
    match token {
        Some(token) if state.valid_access_tokens.contains(&token) => {
            state.accepted.push(token.clone());
            Some(token)
        }
        _ => {
            state.rejected += 1;
            None
        }
    }
}

/// Google's 401 response body.
pub fn unauthorized() -> Response {
    let body = json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.", "status": "UNAUTHENTICATED"}});
    (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response()
}

/// Makes every access token issued so far invalid, as if they expired.
pub fn expire_access_tokens(state: &Shared) {
    state.lock().unwrap().valid_access_tokens.clear();
}

async fn token(State(state): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    let request = TokenRequest {
        form,
        authorization: headers
            .get("authorization")
            .and_then(|value| value.to_str().ok())
            .map(str::to_string),
    };
    let mut state = state.lock().unwrap();
    state.token_requests.push(request.clone());
    if let Some((status, body)) = state.scripted.pop_front() {
        return (StatusCode::from_u16(status).unwrap(), axum::Json(body)).into_response();
    }
    match grant(&mut state, &request) {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err((code, description)) => (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": code, "error_description": description})),
        )
            .into_response(),
    }
}

fn grant(state: &mut ProviderState, request: &TokenRequest) -> Result<Value, (String, String)> {
    let fail = |code: &str, description: &str| Err((code.to_string(), description.to_string()));
    match request.field("grant_type") {
        Some("client_credentials") => {
            check_client(state, request)?;
            Ok(issue(state, None))
        }
        Some("refresh_token") => {
            check_client(state, request)?;
            let presented = request
                .field("refresh_token")
                .unwrap_or_default()
                .to_string();
            if !state.valid_refresh_tokens.contains(&presented) {
                return fail("invalid_grant", "Token has been expired or revoked.");
            }
            let rotated = state.settings.rotate.then(|| {
                state.valid_refresh_tokens.remove(&presented);
                let next = format!("rt-rotated-{}", state.issued + 1);
                state.valid_refresh_tokens.insert(next.clone());
                next
            });
            Ok(issue(state, rotated))
        }
        Some("urn:ietf:params:oauth:grant-type:jwt-bearer") => {
            let Some(check) = state.settings.jwt.clone() else {
                return fail("unsupported_grant_type", "no JWT issuer configured");
            };
            let assertion = request.field("assertion").unwrap_or_default();
            let key = DecodingKey::from_rsa_pem(check.public_key_pem.as_bytes()).unwrap();
            let mut validation = Validation::new(Algorithm::RS256);
            validation.set_audience(&[state.token_url.as_str()]);
            validation.set_issuer(&[check.issuer.as_str()]);
            validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
            match jsonwebtoken::decode::<Value>(assertion, &key, &validation) {
                Ok(data) => {
                    let header = serde_json::to_value(&data.header).unwrap();
                    state.assertions.push((header, data.claims));
                    Ok(issue(state, None))
                }
                Err(error) => fail("invalid_grant", &format!("Invalid JWT: {error}")),
            }
        }
        other => fail(
            "unsupported_grant_type",
            &format!("grant_type {other:?} is not supported"),
        ),
    }
}

fn check_client(state: &ProviderState, request: &TokenRequest) -> Result<(), (String, String)> {
    let settings = &state.settings;
    let (id, secret) = if settings.client_basic {
        let Some(encoded) = request
            .authorization
            .as_deref()
            .and_then(|value| value.strip_prefix("Basic "))
        else {
            return Err(("invalid_client".into(), "no Basic credentials".into()));
        };
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let text = String::from_utf8(decoded).unwrap();
        let (id, secret) = text.split_once(':').unwrap();
        let decode = |part: &str| {
            url::form_urlencoded::parse(format!("x={part}").as_bytes())
                .next()
                .unwrap()
                .1
                .into_owned()
        };
        (decode(id), decode(secret))
    } else {
        (
            request.field("client_id").unwrap_or_default().to_string(),
            request
                .field("client_secret")
                .unwrap_or_default()
                .to_string(),
        )
    };
    if id == settings.client_id && secret == settings.client_secret {
        Ok(())
    } else {
        Err((
            "invalid_client".into(),
            "The OAuth client was not found.".into(),
        ))
    }
}

fn issue(state: &mut ProviderState, refresh_token: Option<String>) -> Value {
    state.issued += 1;
    let access_token = format!("at-{}", state.issued);
    state.valid_access_tokens.insert(access_token.clone());
    let mut body = json!({"access_token": access_token, "token_type": "Bearer"});
    if let Some(seconds) = state.settings.expires_in {
        body["expires_in"] = json!(seconds);
    }
    if let Some(refresh_token) = refresh_token {
        body["refresh_token"] = json!(refresh_token);
    }
    body
}

/// Serves `router` on a loopback port and returns its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{address}")
}
