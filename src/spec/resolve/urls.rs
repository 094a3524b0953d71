//! URL checks shared by `http.base_url` and `alert.url`.

/// Checks that `text` is an absolute http or https URL with a host. The
/// error starts with the quoted text, so callers can put the field first.
pub fn check_http_url(text: &str) -> Result<url::Url, String> {
    match url::Url::parse(text) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
            Ok(parsed)
        }
        Ok(parsed) => Err(format!(
            "\"{text}\" is not an http(s) URL (scheme \"{}\")",
            parsed.scheme()
        )),
        Err(error) => Err(format!("\"{text}\" is not a valid URL ({error})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_and_https_pass() {
        assert!(check_http_url("https://api.github.com").is_ok());
        assert!(check_http_url("http://127.0.0.1:8080/v1").is_ok());
    }

    #[test]
    fn other_schemes_fail() {
        assert_eq!(
            check_http_url("ftp://files.example.com").unwrap_err(),
            "\"ftp://files.example.com\" is not an http(s) URL (scheme \"ftp\")"
        );
    }

    #[test]
    fn relative_text_fails() {
        assert_eq!(
            check_http_url("api.github.com").unwrap_err(),
            "\"api.github.com\" is not a valid URL (relative URL without a base)"
        );
    }
}
