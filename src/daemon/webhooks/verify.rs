//! Webhook signature verification on the raw request body.
//!
//! Every comparison goes through `Mac::verify_slice`, which compares in
//! constant time. Several secrets may be configured during a rotation: a
//! request passes when any signature matches any secret.
//!
//! - Stripe (`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>…]`):
//!   HMAC-SHA256 keyed by the whole secret (`whsec_` prefix included) over
//!   `"<t>.<body>"`; any `v1` may match, other schemes (`v0`) are ignored;
//!   `t` must be within the tolerance of now. Scheme as implemented by
//!   stripe-python's `WebhookSignature` (MIT).
//! - Close (`close-sig-hash`, `close-sig-timestamp`): HMAC-SHA256 over the
//!   timestamp followed directly by the body, keyed by the hex-decoded
//!   `signature_key`, hex digest. Scheme as documented on Close's
//!   developer site (Webhooks, "Webhook Signatures").
//! - Generic: HMAC-SHA256 of the body in one header, hex or base64, after
//!   an optional prefix such as `sha256=`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::spec::plan::{SignatureEncoding, SignatureScheme};

type HmacSha256 = Hmac<Sha256>;

/// Reasons a request is rejected. The texts name headers and the rule that
/// failed, never a secret or an expected signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("header {0} is missing")]
    MissingHeader(String),
    #[error("header {header} is malformed: {reason}")]
    Malformed { header: String, reason: String },
    #[error(
        "timestamp {timestamp} is {age_seconds}s away from now, beyond the {tolerance_seconds}s tolerance (a replay or a wrong clock)"
    )]
    OutsideTolerance {
        timestamp: i64,
        age_seconds: i64,
        tolerance_seconds: u64,
    },
    #[error("no signature matches any configured secret")]
    Mismatch,
    #[error("the webhook secret is not valid for this scheme: {0}")]
    BadSecret(String),
}

/// Checks a request's signature against every configured secret.
pub fn verify(
    scheme: &SignatureScheme,
    secrets: &[String],
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Result<(), SignatureError> {
    match scheme {
        SignatureScheme::Stripe { tolerance } => {
            verify_stripe(secrets, headers, body, now, *tolerance)
        }
        SignatureScheme::Close { tolerance } => {
            verify_close(secrets, headers, body, now, *tolerance)
        }
        SignatureScheme::Hmac {
            header,
            encoding,
            prefix,
            ..
        } => verify_hmac(secrets, headers, body, header, *encoding, prefix.as_deref()),
    }
}

const STRIPE_HEADER: &str = "stripe-signature";
const CLOSE_HASH_HEADER: &str = "close-sig-hash";
const CLOSE_TIMESTAMP_HEADER: &str = "close-sig-timestamp";

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, SignatureError> {
    let value = headers
        .get(name)
        .ok_or_else(|| SignatureError::MissingHeader(name.to_string()))?;
    value.to_str().map_err(|_| SignatureError::Malformed {
        header: name.to_string(),
        reason: "not visible ASCII".to_string(),
    })
}

fn verify_stripe(
    secrets: &[String],
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let value = header(headers, STRIPE_HEADER)?;
    let malformed = |reason: &str| SignatureError::Malformed {
        header: STRIPE_HEADER.to_string(),
        reason: reason.to_string(),
    };

    let mut timestamp = None;
    let mut signatures = Vec::new();
    for item in value.split(',') {
        let Some((key, field)) = item.trim().split_once('=') else {
            continue;
        };
        match key {
            "t" => timestamp = Some(field),
            // A v1 that is not hex cannot match; it is skipped, not fatal.
            "v1" => signatures.extend(hex::decode(field).ok()),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or_else(|| malformed("no t= timestamp"))?;
    let seconds: i64 = timestamp
        .parse()
        .map_err(|_| malformed("t= is not a unix timestamp"))?;
    if signatures.is_empty() {
        return Err(malformed("no v1= signature"));
    }
    check_tolerance(seconds, now, tolerance)?;

    for secret in secrets {
        let mut signed = Vec::with_capacity(timestamp.len() + 1 + body.len());
        signed.extend_from_slice(timestamp.as_bytes());
        signed.push(b'.');
        signed.extend_from_slice(body);
        if matches_any(secret.as_bytes(), &signed, &signatures)? {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

fn verify_close(
    secrets: &[String],
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let hash = header(headers, CLOSE_HASH_HEADER)?;
    let timestamp = header(headers, CLOSE_TIMESTAMP_HEADER)?;
    let seconds: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed {
            header: CLOSE_TIMESTAMP_HEADER.to_string(),
            reason: "not a unix timestamp".to_string(),
        })?;
    let signature = hex::decode(hash.trim()).map_err(|_| SignatureError::Malformed {
        header: CLOSE_HASH_HEADER.to_string(),
        reason: "not hex".to_string(),
    })?;
    check_tolerance(seconds, now, tolerance)?;

    let mut signed = Vec::with_capacity(timestamp.len() + body.len());
    signed.extend_from_slice(timestamp.as_bytes());
    signed.extend_from_slice(body);
    for secret in secrets {
        let key = hex::decode(secret.trim()).map_err(|_| {
            SignatureError::BadSecret(
                "Close signs with the hex signature_key of the webhook subscription; the secret is not hex".to_string(),
            )
        })?;
        if matches_any(&key, &signed, std::slice::from_ref(&signature))? {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

fn verify_hmac(
    secrets: &[String],
    headers: &HeaderMap,
    body: &[u8],
    name: &str,
    encoding: SignatureEncoding,
    prefix: Option<&str>,
) -> Result<(), SignatureError> {
    let value = header(headers, name)?.trim();
    let value = match prefix {
        Some(prefix) => value
            .strip_prefix(prefix)
            .ok_or_else(|| SignatureError::Malformed {
                header: name.to_string(),
                reason: format!("does not start with {prefix:?}"),
            })?,
        None => value,
    };
    let decoded = match encoding {
        SignatureEncoding::Hex => hex::decode(value).ok(),
        SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.decode(value).ok(),
    };
    let signature = decoded.ok_or_else(|| SignatureError::Malformed {
        header: name.to_string(),
        reason: format!("not {}", encoding_name(encoding)),
    })?;
    for secret in secrets {
        if matches_any(secret.as_bytes(), body, std::slice::from_ref(&signature))? {
            return Ok(());
        }
    }
    Err(SignatureError::Mismatch)
}

fn encoding_name(encoding: SignatureEncoding) -> &'static str {
    match encoding {
        SignatureEncoding::Hex => "hex",
        SignatureEncoding::Base64 => "base64",
    }
}

/// True when the HMAC of `message` under `key` equals one of `signatures`,
/// each compared in constant time.
fn matches_any(key: &[u8], message: &[u8], signatures: &[Vec<u8>]) -> Result<bool, SignatureError> {
    let mut mac = HmacSha256::new_from_slice(key)
        .map_err(|error| SignatureError::BadSecret(error.to_string()))?;
    mac.update(message);
    Ok(signatures
        .iter()
        .any(|signature| mac.clone().verify_slice(signature).is_ok()))
}

fn check_tolerance(
    timestamp: i64,
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|since| since.as_secs() as i64)
        .unwrap_or(0);
    let age = now.saturating_sub(timestamp);
    if age.unsigned_abs() > tolerance.as_secs() {
        return Err(SignatureError::OutsideTolerance {
            timestamp,
            age_seconds: age,
            tolerance_seconds: tolerance.as_secs(),
        });
    }
    Ok(())
}

/// Signs a body as Stripe does, for tests and local tooling.
pub fn stripe_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Signs a body as Close does (hex key), for tests and local tooling.
/// Returns `None` when the key is not hex.
pub fn close_signature(hex_key: &str, timestamp: i64, body: &[u8]) -> Option<String> {
    let key = hex::decode(hex_key).ok()?;
    let mut mac = HmacSha256::new_from_slice(&key).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(body);
    Some(hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    // From stripe-webhook-signature-examples.json, computed with Stripe's
    // Python SDK (stripe-python, MIT).
    const STRIPE_SECRET: &str = "whsec_test_secret";
    const STRIPE_BODY: &str = r#"{"id":"evt_1","object":"event","type":"customer.created"}"#;
    const STRIPE_V1: &str = "7401f12dfbd370e571f0ed15746eb48bff16d798a9b8f1fc8c91034db4bb4698";

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn stripe(tolerance: u64) -> SignatureScheme {
        SignatureScheme::Stripe {
            tolerance: Duration::from_secs(tolerance),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn stripe_published_example_verifies() {
        let header = format!("t=1700000000,v1={STRIPE_V1}");
        let result = verify(
            &stripe(300),
            &[STRIPE_SECRET.to_string()],
            &headers(&[("stripe-signature", &header)]),
            STRIPE_BODY.as_bytes(),
            at(1_700_000_100),
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn stripe_extra_v1_and_v0_still_verify() {
        let header = format!("t=1700000000,v1=bad_signature,v1={STRIPE_V1},v0=6ffb");
        let result = verify(
            &stripe(300),
            &[STRIPE_SECRET.to_string()],
            &headers(&[("stripe-signature", &header)]),
            STRIPE_BODY.as_bytes(),
            at(1_700_000_000),
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn stripe_rotated_secret_verifies() {
        let header = format!("t=1700000000,v1={STRIPE_V1}");
        let secrets = ["whsec_new".to_string(), STRIPE_SECRET.to_string()];
        let result = verify(
            &stripe(300),
            &secrets,
            &headers(&[("stripe-signature", &header)]),
            STRIPE_BODY.as_bytes(),
            at(1_700_000_000),
        );
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn stripe_old_timestamp_is_rejected() {
        let header = format!("t=1700000000,v1={STRIPE_V1}");
        let result = verify(
            &stripe(300),
            &[STRIPE_SECRET.to_string()],
            &headers(&[("stripe-signature", &header)]),
            STRIPE_BODY.as_bytes(),
            at(1_700_000_301),
        );
        assert!(matches!(
            result,
            Err(SignatureError::OutsideTolerance { .. })
        ));
    }

    #[test]
    fn stripe_changed_body_is_rejected() {
        let header = format!("t=1700000000,v1={STRIPE_V1}");
        let result = verify(
            &stripe(300),
            &[STRIPE_SECRET.to_string()],
            &headers(&[("stripe-signature", &header)]),
            br#"{"id":"evt_1","object":"event","type":"customer.deleted"}"#,
            at(1_700_000_000),
        );
        assert_eq!(result, Err(SignatureError::Mismatch));
    }

    #[test]
    fn stripe_signer_matches_published_example() {
        assert_eq!(
            stripe_signature(STRIPE_SECRET, 1_700_000_000, STRIPE_BODY.as_bytes()),
            format!("t=1700000000,v1={STRIPE_V1}")
        );
    }

    #[test]
    fn close_signature_verifies_with_hex_key() {
        let key = "058bfb6a3d8cfdc4da7c3be5901b16ae11da982b46a25fb2cd7016e97a140a1c";
        let body = br#"{"event":{"id":"ev_1"}}"#;
        let hash = close_signature(key, 1_544_271_440, body).unwrap();
        let scheme = SignatureScheme::Close {
            tolerance: Duration::from_secs(300),
        };
        let good = headers(&[
            ("close-sig-hash", &hash),
            ("close-sig-timestamp", "1544271440"),
        ]);
        assert_eq!(
            verify(&scheme, &[key.to_string()], &good, body, at(1_544_271_440)),
            Ok(())
        );
        // The key is hex-decoded: the same text used as raw bytes is another key.
        let mut mac = HmacSha256::new_from_slice(key.as_bytes()).unwrap();
        mac.update(b"1544271440");
        mac.update(body);
        let raw_key_hash = hex::encode(mac.finalize().into_bytes());
        let wrong = headers(&[
            ("close-sig-hash", &raw_key_hash),
            ("close-sig-timestamp", "1544271440"),
        ]);
        assert_eq!(
            verify(&scheme, &[key.to_string()], &wrong, body, at(1_544_271_440)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn generic_hmac_with_prefix_verifies() {
        let body = b"{}";
        let mut mac = HmacSha256::new_from_slice(b"s3cret-value").unwrap();
        mac.update(body);
        let value = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let scheme = SignatureScheme::Hmac {
            header: "x-hub-signature-256".to_string(),
            algorithm: crate::spec::plan::HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            prefix: Some("sha256=".to_string()),
        };
        let secrets = ["s3cret-value".to_string()];
        let good = headers(&[("x-hub-signature-256", &value)]);
        assert_eq!(verify(&scheme, &secrets, &good, body, at(0)), Ok(()));
        let missing = HeaderMap::new();
        assert_eq!(
            verify(&scheme, &secrets, &missing, body, at(0)),
            Err(SignatureError::MissingHeader(
                "x-hub-signature-256".to_string()
            ))
        );
    }
}
