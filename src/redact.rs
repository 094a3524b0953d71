//! Keeps secrets out of every output.
//!
//! Secret values (config keys marked `secret`, webhook secrets, database
//! passwords, the API token) are registered here when a flow is resolved.
//! Everything ferry prints passes through [`redact`]: log lines through
//! [`RedactingWriter`], errors and `--json` output at the CLI's edge, and
//! error texts before they are stored in `_ferry.runs`. A response body that
//! echoes a token is therefore masked too.

use std::io::{self, Write};
use std::sync::{OnceLock, RwLock};

const MASK: &str = "***";

/// Shorter values are not masked: a 1-character "secret" would mask every
/// occurrence of that character in every message.
const MIN_SECRET_LEN: usize = 4;

fn registry() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Vec::new()))
}

/// Registers a secret value; later output masks it.
pub fn register(secret: &str) {
    if secret.len() < MIN_SECRET_LEN {
        return;
    }
    let mut secrets = registry()
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if secrets.iter().any(|known| known == secret) {
        return;
    }
    secrets.push(secret.to_string());
    // Longest first, so a secret that contains another is masked whole.
    secrets.sort_by_key(|known| std::cmp::Reverse(known.len()));
    for form in encoded_forms(secret) {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    secrets.sort_by_key(|known| std::cmp::Reverse(known.len()));
}

/// Registers `new` and forgets `old`, for credentials that replace each
/// other (access tokens renewed every hour), so that a long-running
/// process does not mask an ever-growing list.
pub fn replace(old: Option<&str>, new: &str) {
    if let Some(old) = old.filter(|old| *old != new) {
        let forms: Vec<String> = std::iter::once(old.to_string())
            .chain(encoded_forms(old))
            .collect();
        let mut secrets = registry()
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        secrets.retain(|known| !forms.contains(known));
    }
    register(new);
}

/// Forms a secret takes in URLs, and inside JSON strings (a response body
/// that echoes it, `--json` output, JSON log lines), so those are masked too.
fn encoded_forms(secret: &str) -> Vec<String> {
    let query: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|quoted| quoted.strip_suffix('"'))
        .unwrap_or_default()
        .to_string();
    let mut forms = Vec::new();
    for form in [query, json] {
        if form != secret && !form.is_empty() && !forms.contains(&form) {
            forms.push(form);
        }
    }
    forms
}

/// Secrets shorter than this are masked only where they stand as a word
/// of their own, because a short password such as `bench` would otherwise
/// mask the flow `bench_stripe` and every path through a `bench` folder.
/// A long token is masked wherever it occurs.
const WORD_ONLY_BELOW: usize = 16;

/// Returns `text` with every registered secret replaced by `***`.
pub fn redact(text: &str) -> String {
    let secrets = registry()
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut output = text.to_string();
    for secret in secrets.iter() {
        if output.contains(secret.as_str()) {
            output = mask(&output, secret);
        }
    }
    output
}

/// Masks the occurrences of `secret` in `text`: all of them for a long
/// secret, those not inside a longer word for a short one.
fn mask(text: &str, secret: &str) -> String {
    if secret.len() >= WORD_ONLY_BELOW {
        return text.replace(secret, MASK);
    }
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut output = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find(secret) {
        let start = search + found;
        let end = start + secret.len();
        let glued_before = text[..start].chars().next_back().is_some_and(word)
            && !ends_with_escape(&text[..start])
            && secret.chars().next().is_some_and(word);
        let glued_after = text[end..].chars().next().is_some_and(word)
            && secret.chars().next_back().is_some_and(word);
        if glued_before || glued_after {
            // An occurrence that overlaps this one may still stand alone.
            search = start + text[start..].chars().next().map_or(1, char::len_utf8);
            continue;
        }
        output.push_str(&text[copied..start]);
        output.push_str(MASK);
        copied = end;
        search = end;
    }
    output.push_str(&text[copied..]);
    output
}

/// Tells whether `text` ends with an escape for one character: `%XX`
/// in a URL, or `\n`, `\t`, `\r`, `\b`, `\f` or `\uXXXX` in a JSON string.
/// Its letters and digits do not make a secret after it part of a word.
fn ends_with_escape(text: &str) -> bool {
    let bytes = text.as_bytes();
    let hex = |tail: &[u8]| tail.iter().all(u8::is_ascii_hexdigit);
    let length = bytes.len();
    let percent = length >= 3 && bytes[length - 3] == b'%' && hex(&bytes[length - 2..]);
    let letter = length >= 2
        && bytes[length - 2] == b'\\'
        && matches!(bytes[length - 1], b'n' | b't' | b'r' | b'b' | b'f');
    let unicode =
        length >= 6 && &bytes[length - 6..length - 4] == b"\\u" && hex(&bytes[length - 4..]);
    percent || letter || unicode
}

/// Returns a URL with its password (and any `password=` query value) masked.
pub fn url_without_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some(MASK));
            }
            let pairs: Vec<(String, String)> = parsed
                .query_pairs()
                .map(|(key, value)| {
                    let sensitive = key.eq_ignore_ascii_case("password")
                        || key.eq_ignore_ascii_case("sslpassword");
                    let value = if sensitive {
                        MASK.to_string()
                    } else {
                        value.into_owned()
                    };
                    (key.into_owned(), value)
                })
                .collect();
            if !pairs.is_empty() {
                parsed.query_pairs_mut().clear().extend_pairs(pairs);
            }
            redact(parsed.as_str())
        }
        // Not a URL: mask what sits between "://user:" and "@", and the
        // passwords of a libpq keyword/value string.
        Err(_) => {
            let masked = match (raw.find("://"), raw.rfind('@')) {
                (Some(scheme_end), Some(at)) if at > scheme_end => {
                    let credentials = &raw[scheme_end + 3..at];
                    match credentials.find(':') {
                        Some(colon) => format!(
                            "{}{}:{}{}",
                            &raw[..scheme_end + 3],
                            &credentials[..colon],
                            MASK,
                            &raw[at..]
                        ),
                        None => raw.to_string(),
                    }
                }
                _ => raw.to_string(),
            };
            redact(&mask_keyword_passwords(&masked))
        }
    }
}

/// Masks the values of `password` and `sslpassword` in a libpq
/// keyword/value string (`host=db password='p w'`), quoted or not.
fn mask_keyword_passwords(text: &str) -> String {
    const KEY: &str = "password";
    // ASCII lowercasing keeps every byte offset.
    let lowercase = text.to_ascii_lowercase();
    let mut masked = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lowercase[search..].find(KEY) {
        let key_end = search + found + KEY.len();
        search = key_end;
        let after_key = text[key_end..].trim_start();
        let Some(after_equals) = after_key.strip_prefix('=') else {
            continue;
        };
        let value = after_equals.trim_start();
        let value_start = text.len() - value.len();
        let value_end = value_start + keyword_value_length(value);
        masked.push_str(&text[copied..value_start]);
        masked.push_str(MASK);
        copied = value_end;
        search = value_end;
    }
    masked.push_str(&text[copied..]);
    masked
}

/// Returns the byte length of the keyword value that starts `text`: a
/// single-quoted value with `\` escapes, or everything up to whitespace.
fn keyword_value_length(text: &str) -> usize {
    let bytes = text.as_bytes();
    if bytes.first() != Some(&b'\'') {
        return text.find(char::is_whitespace).unwrap_or(text.len());
    }
    let mut index = 1;
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            b'\'' => return index + 1,
            _ => index += 1,
        }
    }
    text.len()
}

/// A `tracing` writer that masks secrets in each formatted log line.
pub struct RedactingWriter<W: Write> {
    inner: W,
}

impl<W: Write> RedactingWriter<W> {
    pub fn new(inner: W) -> Self {
        RedactingWriter { inner }
    }
}

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.inner.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secret_is_masked() {
        register("sk_test_redact_me_123");
        assert_eq!(redact("token sk_test_redact_me_123 sent"), "token *** sent");
    }

    #[test]
    fn url_encoded_secret_is_masked() {
        register("a b&c=secret");
        assert_eq!(redact("?key=a+b%26c%3Dsecret"), "?key=***");
    }

    #[test]
    fn json_escaped_secret_is_masked() {
        register("pa\"ss\\word_json");
        assert_eq!(
            redact(r#"{"echo":"pa\"ss\\word_json"}"#),
            r#"{"echo":"***"}"#
        );
    }

    #[test]
    fn postgres_password_is_masked() {
        let shown = url_without_password("postgres://ferry:hunter22@db.example/app");
        assert_eq!(shown, "postgres://ferry:***@db.example/app");
    }

    #[test]
    fn keyword_value_password_is_masked() {
        let shown = url_without_password(r"host=db password='a b\'c' user=u sslpassword=x1");
        assert_eq!(shown, "host=db password=*** user=u sslpassword=***");
        let shown = url_without_password("dbname=app PASSWORD = hunter22");
        assert_eq!(shown, "dbname=app PASSWORD = ***");
        let shown = url_without_password("password='unterminated é");
        assert_eq!(shown, "password=***");
        assert_eq!(
            url_without_password("password is missing"),
            "password is missing"
        );
    }

    #[test]
    fn replaced_secret_is_forgotten() {
        register("access_token_old_1");
        replace(Some("access_token_old_1"), "access_token_new_2");
        assert_eq!(
            redact("access_token_old_1 access_token_new_2"),
            "access_token_old_1 ***"
        );
    }

    #[test]
    fn short_secret_inside_a_word_stays() {
        register("benchpw");
        assert_eq!(
            redact("flow benchpw_stripe at /srv/benchpw/ferry.d: postgres://u:benchpw@h benchpw"),
            "flow benchpw_stripe at /srv/***/ferry.d: postgres://u:***@h ***"
        );
        assert_eq!(
            redact("xbenchpw benchpwx benchpw."),
            "xbenchpw benchpwx ***."
        );
    }

    #[test]
    fn short_secret_after_an_escape_is_masked() {
        register("tok3n9x");
        assert_eq!(
            redact("GET /a?next=%2Fcb%3Ftoken%3Dtok3n9x failed"),
            "GET /a?next=%2Fcb%3Ftoken%3D*** failed"
        );
        assert_eq!(
            redact(r#"{"error":"key:\ntok3n9x"}"#),
            r#"{"error":"key:\n***"}"#
        );
        assert_eq!(
            redact(r#"{"error":"\u00abtok3n9x\u00bb"}"#),
            r#"{"error":"\u00ab***\u00bb"}"#
        );
    }

    #[test]
    fn short_secret_overlapping_a_glued_one_is_masked() {
        register("ab-ab");
        assert_eq!(redact("xab-ab-ab"), "xab-***");
    }

    #[test]
    fn long_secret_is_masked_inside_words() {
        register("sk_live_0123456789abcdef");
        assert_eq!(redact("token=xsk_live_0123456789abcdefx"), "token=x***x");
    }

    #[test]
    fn short_values_are_not_registered() {
        register("ab");
        assert_eq!(redact("abc"), "abc");
    }
}
