//! Each auth type sends exactly its header or query parameter.

use std::sync::Arc;

use ferry::engine::Position;
use ferry::spec::plan::{ApiKeyLocation, AuthPlan};
use serde_json::{Value, json};

use crate::support::plan::{connector, entity, template, test_flow};
use crate::support::{json as json_response, received, requests, run, serve};

/// Runs one request with `auth` and returns the request the server got.
async fn send_with(auth: AuthPlan, config: Value, expected_target: &str) -> wiremock::Request {
    let server = serve(vec![(expected_target, json_response(json!({"data": []})))]).await;
    let items = Arc::new(entity("items", "/items"));
    let mut api = connector(&server.uri());
    api.http.auth = auth;
    let flow = test_flow(api, &items, config);

    run(&flow, &items, Position::default()).await.assert_ok();

    assert_eq!(
        requests(&server).await,
        vec![format!("GET {expected_target}")]
    );
    received(&server).await.remove(0)
}

fn header<'a>(request: &'a wiremock::Request, name: &str) -> Option<&'a str> {
    request
        .headers
        .get(name)
        .map(|value| value.to_str().unwrap())
}

#[tokio::test]
async fn none_sends_no_credentials() {
    let request = send_with(AuthPlan::None, json!({}), "/items").await;
    assert_eq!(header(&request, "authorization"), None);
}

#[tokio::test]
async fn bearer_sends_authorization_header() {
    let auth = AuthPlan::Bearer {
        token: template("{{config.token}}"),
    };
    let request = send_with(auth, json!({"token": "ghp_bearer_123"}), "/items").await;
    assert_eq!(
        header(&request, "authorization"),
        Some("Bearer ghp_bearer_123")
    );
}

#[tokio::test]
async fn api_key_in_header() {
    let auth = AuthPlan::ApiKey {
        location: ApiKeyLocation::Header,
        name: "X-Api-Key".into(),
        value: template("{{config.key}}"),
    };
    let request = send_with(auth, json!({"key": "key_header_123"}), "/items").await;
    assert_eq!(header(&request, "x-api-key"), Some("key_header_123"));
    assert_eq!(header(&request, "authorization"), None);
}

#[tokio::test]
async fn api_key_in_query() {
    let auth = AuthPlan::ApiKey {
        location: ApiKeyLocation::Query,
        name: "api_key".into(),
        value: template("{{config.key}}"),
    };
    let request = send_with(
        auth,
        json!({"key": "key query/1"}),
        "/items?api_key=key+query%2F1",
    )
    .await;
    assert_eq!(header(&request, "authorization"), None);
}

#[tokio::test]
async fn basic_sends_encoded_pair() {
    let auth = AuthPlan::Basic {
        username: template("{{config.user}}"),
        password: template("{{config.password}}"),
    };
    let request = send_with(auth, json!({"user": "ann", "password": "pa:ss"}), "/items").await;
    // base64("ann:pa:ss")
    assert_eq!(
        header(&request, "authorization"),
        Some("Basic YW5uOnBhOnNz")
    );
}

#[tokio::test]
async fn basic_with_empty_password() {
    // Close sends the API key as the username and no password.
    let auth = AuthPlan::Basic {
        username: template("{{config.api_key}}"),
        password: template(""),
    };
    let request = send_with(auth, json!({"api_key": "api_close_1"}), "/items").await;
    // base64("api_close_1:")
    assert_eq!(
        header(&request, "authorization"),
        Some("Basic YXBpX2Nsb3NlXzE6")
    );
}
