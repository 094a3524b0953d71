//! Extra CA certificates from `SSL_CERT_FILE`, against a loopback HTTPS
//! server with a self-signed certificate.
//!
//! The variable is read when a client is built, and setting it inside this
//! process would race with other tests, so the trusting side runs in a
//! child process of this test binary with the variable set.

use std::io::Write;
use std::sync::Arc;

use ferry::engine::{FetchErrorKind, Position};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

use crate::support::plan::{connector, entity, test_flow};
use crate::support::run;

const URL_VARIABLE: &str = "FERRY_TEST_TLS_URL";

/// Starts an HTTPS server on 127.0.0.1 that responds to every request with
/// one page, and returns its URL and the certificate in PEM form.
async fn https_server() -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let certificate_pem = certified.cert.pem();
    let certificate = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![certificate], key)
        .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());

    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that rejects the certificate ends the handshake.
                let Ok(mut stream) = acceptor.accept(socket).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|window| window == b"\r\n\r\n") {
                    match stream.read(&mut buffer).await {
                        Ok(0) | Err(_) => return,
                        Ok(read) => request.extend_from_slice(&buffer[..read]),
                    }
                }
                let body = r#"{"data":[{"id":"tls"}]}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, certificate_pem)
}

#[tokio::test]
async fn self_signed_server_is_rejected_by_default() {
    let (url, _) = https_server().await;
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(connector(&url), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    let error = outcome.error();
    assert_eq!(error.kind, FetchErrorKind::Network);
    assert!(
        error.message.to_lowercase().contains("certificate"),
        "{error}"
    );
}

#[tokio::test]
async fn ssl_cert_file_trusts_extra_root() {
    let (url, certificate_pem) = https_server().await;
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(certificate_pem.as_bytes()).unwrap();

    let test_binary = std::env::current_exe().unwrap();
    let output = tokio::process::Command::new(test_binary)
        .args([
            "tls::trusted_fetch_in_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("SSL_CERT_FILE", file.path())
        .env(URL_VARIABLE, &url)
        .output()
        .await
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "child ran no test:\n{stdout}");
}

#[tokio::test]
async fn unreadable_ssl_cert_file_is_named() {
    let test_binary = std::env::current_exe().unwrap();
    let output = tokio::process::Command::new(test_binary)
        .args([
            "tls::missing_cert_file_in_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("SSL_CERT_FILE", "/nonexistent/ferry-ca.pem")
        .env(URL_VARIABLE, "https://127.0.0.1:9")
        .output()
        .await
        .unwrap();

    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "child ran no test:\n{stdout}");
}

/// Runs only as the child of `ssl_cert_file_trusts_extra_root`.
#[tokio::test]
#[ignore = "run by ssl_cert_file_trusts_extra_root in a child process"]
async fn trusted_fetch_in_child() {
    let Ok(url) = std::env::var(URL_VARIABLE) else {
        return;
    };
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(connector(&url), &items, json!({}));

    let outcome = run(&flow, &items, Position::default()).await;

    outcome.assert_ok();
    assert_eq!(outcome.ids(), vec![json!("tls")]);
}

/// Runs only as the child of `unreadable_ssl_cert_file_is_named`.
#[tokio::test]
#[ignore = "run by unreadable_ssl_cert_file_is_named in a child process"]
async fn missing_cert_file_in_child() {
    let Ok(url) = std::env::var(URL_VARIABLE) else {
        return;
    };
    let items = Arc::new(entity("items", "/items"));
    let flow = test_flow(connector(&url), &items, json!({}));

    let error = ferry::engine::HttpClient::new(&flow).unwrap_err();

    assert!(
        error.message.contains("/nonexistent/ferry-ca.pem"),
        "{error}"
    );
}
