//! Retry decisions: which failures are retried and how long to wait.

use std::time::{Duration, SystemTime};

use rand::Rng;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::spec::plan::RetryPolicy;

/// True for statuses that mean "try again": 408, 429 and every 5xx.
pub(crate) fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || status.is_server_error()
}

/// Returns the delay before the attempt after `attempt` (1-based): the server's
/// `Retry-After` when it sent one, else exponential backoff with full jitter.
pub(crate) fn retry_delay(policy: &RetryPolicy, attempt: u32, headers: &HeaderMap) -> Duration {
    let server_wait = retry_after(headers, SystemTime::now()).or_else(|| rate_limit_reset(headers));
    match server_wait {
        Some(wait) => wait.min(policy.max_wait),
        None => backoff(policy, attempt),
    }
}

/// Exponential backoff with full jitter: a uniform delay between
/// `initial_backoff` and `initial_backoff * 2^attempt`, capped at
/// `max_backoff`. The floor keeps a burst of failures from retrying at once.
pub(crate) fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let floor = policy.initial_backoff.min(policy.max_backoff);
    let factor = 2u32.saturating_pow(attempt.min(30));
    let ceiling = policy
        .initial_backoff
        .saturating_mul(factor)
        .min(policy.max_backoff)
        .max(floor);
    if ceiling == floor {
        return floor;
    }
    let nanos = rand::rng().random_range(floor.as_nanos()..=ceiling.as_nanos());
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Reads `Retry-After` as delay seconds or an HTTP date. Zero and dates in
/// the past mean "now"; a value that is neither is ignored.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = text.parse::<f64>() {
        if seconds.is_finite() && seconds >= 0.0 {
            return Some(Duration::from_secs_f64(seconds.min(1e9)));
        }
        return None;
    }
    let date = httpdate::parse_http_date(text).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Reads the reset delay of the IETF rate-limit headers, for 429s without
/// `Retry-After`: `RateLimit-Reset: 3`, or the single-header form
/// `RateLimit: limit=100, remaining=0, reset=3` (Close sends this one).
/// Seconds may have a fraction.
pub(crate) fn rate_limit_reset(headers: &HeaderMap) -> Option<Duration> {
    let seconds = match headers.get("ratelimit-reset") {
        Some(value) => value.to_str().ok()?.trim().parse::<f64>().ok()?,
        None => {
            let text = headers.get("ratelimit")?.to_str().ok()?;
            text.split([',', ';'])
                .filter_map(|part| part.trim().split_once('='))
                .find(|(key, _)| key.trim().eq_ignore_ascii_case("reset"))
                .and_then(|(_, value)| value.trim().parse::<f64>().ok())?
        }
    };
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(1e9)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(
            retry_after(&headers("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(retry_after(&headers("0"), now), Some(Duration::ZERO));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            retry_after(&headers(&later), now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(retry_after(&headers(&earlier), now), Some(Duration::ZERO));
        assert_eq!(retry_after(&headers("soon"), now), None);
    }

    #[test]
    fn rate_limit_headers_give_reset() {
        let mut single = HeaderMap::new();
        single.insert(
            "ratelimit",
            HeaderValue::from_static("limit=100, remaining=0, reset=2.5"),
        );
        assert_eq!(
            rate_limit_reset(&single),
            Some(Duration::from_millis(2_500))
        );

        let mut split = HeaderMap::new();
        split.insert("ratelimit-reset", HeaderValue::from_static("4"));
        assert_eq!(rate_limit_reset(&split), Some(Duration::from_secs(4)));

        let mut without = HeaderMap::new();
        without.insert(
            "ratelimit",
            HeaderValue::from_static("limit=100, remaining=5"),
        );
        assert_eq!(rate_limit_reset(&without), None);
    }

    #[test]
    fn backoff_stays_within_bounds() {
        let policy = RetryPolicy {
            max_attempts: 6,
            max_wait: Duration::from_secs(300),
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        for attempt in 1..40 {
            let delay = backoff(&policy, attempt);
            assert!(
                delay >= Duration::from_millis(100),
                "attempt {attempt}: {delay:?}"
            );
            assert!(
                delay <= Duration::from_millis(500),
                "attempt {attempt}: {delay:?}"
            );
        }
    }

    #[test]
    fn retried_statuses() {
        assert!(is_retryable_status(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_retryable_status(StatusCode::REQUEST_TIMEOUT));
        assert!(is_retryable_status(StatusCode::BAD_GATEWAY));
        assert!(!is_retryable_status(StatusCode::NOT_FOUND));
    }
}
