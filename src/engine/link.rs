//! RFC 8288 `Link` headers: the target of a given relation.

use reqwest::header::{HeaderMap, LINK};
use url::Url;

/// Returns the target of the first link whose `rel` includes `relation`
/// (compared case-insensitively), resolved against `base`. Several `Link`
/// headers are read in order; a malformed link-value is skipped.
pub(crate) fn find_link(headers: &HeaderMap, relation: &str, base: &Url) -> Option<Url> {
    headers
        .get_all(LINK)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(parse_links)
        .find(|link| {
            link.relations
                .split_ascii_whitespace()
                .any(|rel| rel.eq_ignore_ascii_case(relation))
        })
        .and_then(|link| base.join(&link.target).ok())
}

#[derive(Debug, PartialEq)]
struct Link {
    target: String,
    relations: String,
}

/// Parses one header value: `<target>; rel="a b"; title=x, <target2>; ...`.
fn parse_links(text: &str) -> Vec<Link> {
    let mut links = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
        let Some(after_open) = rest.strip_prefix('<') else {
            break;
        };
        let Some(close) = after_open.find('>') else {
            break;
        };
        let target = after_open[..close].trim().to_string();
        let (relations, remainder) = parse_params(&after_open[close + 1..]);
        if let Some(relations) = relations {
            links.push(Link { target, relations });
        }
        rest = remainder;
    }
    links
}

/// Reads `; name=value` parameters up to the comma that ends the
/// link-value; returns the first `rel` and the text after that comma.
fn parse_params(text: &str) -> (Option<String>, &str) {
    let mut rel = None;
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return (rel, rest);
        }
        if let Some(after) = rest.strip_prefix(',') {
            return (rel, after);
        }
        let Some(after) = rest.strip_prefix(';') else {
            // Junk between parameters: skip to the next link-value.
            let next = rest.find(',').map_or("", |comma| &rest[comma + 1..]);
            return (rel, next);
        };
        let after = after.trim_start();
        let name_end = after
            .find(|c: char| c == '=' || c == ';' || c == ',' || c.is_whitespace())
            .unwrap_or(after.len());
        let name = &after[..name_end];
        let mut remainder = after[name_end..].trim_start();
        let mut value = String::new();
        if let Some(after_eq) = remainder.strip_prefix('=') {
            let after_eq = after_eq.trim_start();
            (value, remainder) = match after_eq.strip_prefix('"') {
                Some(quoted) => read_quoted(quoted),
                None => {
                    let end = after_eq.find([';', ',']).unwrap_or(after_eq.len());
                    (after_eq[..end].trim().to_string(), &after_eq[end..])
                }
            };
        }
        // RFC 8288 section 3.3: only the first rel parameter counts.
        if name.eq_ignore_ascii_case("rel") && rel.is_none() {
            rel = Some(value);
        }
        rest = remainder;
    }
}

/// Reads a quoted-string body after its opening quote, undoing `\` escapes.
fn read_quoted(text: &str) -> (String, &str) {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((index, c)) = chars.next() {
        match c {
            '\\' => {
                if let Some((_, escaped)) = chars.next() {
                    value.push(escaped);
                }
            }
            '"' => return (value, &text[index + 1..]),
            other => value.push(other),
        }
    }
    (value, "")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(LINK, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn base() -> Url {
        Url::parse("https://api.example.com/v1/items?page=1").unwrap()
    }

    #[test]
    fn github_style_header() {
        let headers = headers(&[
            r#"<https://api.example.com/v1/items?page=2>; rel="next", <https://api.example.com/v1/items?page=9>; rel="last""#,
        ]);
        let next = find_link(&headers, "next", &base()).unwrap();
        assert_eq!(next.as_str(), "https://api.example.com/v1/items?page=2");
    }

    #[test]
    fn several_relations_and_case() {
        let headers = headers(&[r#"</v1/items?page=3>; title="a, b; c"; REL="prefetch Next""#]);
        let next = find_link(&headers, "next", &base()).unwrap();
        assert_eq!(next.as_str(), "https://api.example.com/v1/items?page=3");
    }

    #[test]
    fn relative_target_and_second_header() {
        let headers = headers(&[r#"<?page=0>; rel=prev"#, r#"<items?page=2>; rel=next"#]);
        let next = find_link(&headers, "next", &base()).unwrap();
        assert_eq!(next.as_str(), "https://api.example.com/v1/items?page=2");
    }

    #[test]
    fn no_next_link() {
        let headers = headers(&[r#"<https://api.example.com/v1/items?page=1>; rel="prev""#]);
        assert_eq!(find_link(&headers, "next", &base()), None);
    }

    #[test]
    fn commas_inside_target() {
        let links = parse_links(r#"<https://x/a?ids=1,2>; rel="next""#);
        assert_eq!(
            links,
            vec![Link {
                target: "https://x/a?ids=1,2".into(),
                relations: "next".into()
            }]
        );
    }
}
