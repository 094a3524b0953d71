//! The request after each page, by pagination type.
//!
//! Reading a page takes two steps because records are moved out of the
//! body. [`read_signals`] copies what pagination needs (cursor, next URL,
//! `has_more`, page count) while the body is whole. Then [`decide`]
//! combines it with the number of records the page contained.

use reqwest::header::HeaderMap;
use serde_json::Value;
use url::Url;

use super::link::find_link;
use super::{FetchError, FetchErrorKind, PageToken};
use crate::jsonpath::JsonPath;
use crate::spec::plan::{Pagination, Param};

/// The pagination values of a response.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// The next cursor, or the next URL resolved against the request URL.
    next: Option<String>,
    has_more: Option<bool>,
    total_pages: Option<u64>,
    /// A Relay `pageInfo`, when the response has one.
    page_info: Option<PageInfo>,
}

/// The forward-pagination half of a Relay `pageInfo` object.
#[derive(Debug, PartialEq)]
struct PageInfo {
    has_next_page: bool,
    /// `None` when `endCursor` is missing, null or "".
    end_cursor: Option<String>,
}

/// The step after a page.
#[derive(Debug, PartialEq)]
pub(crate) enum NextStep {
    Request(PageToken),
    /// The request sequence is complete. `ignored_more` is set when the
    /// page was empty although the API reported more pages.
    End {
        ignored_more: bool,
    },
    /// The API reports more pages but gives no way to request them (a
    /// Relay `hasNextPage: true` with a null `endCursor`): the sequence
    /// stops with this message instead of repeating a request.
    Stuck(String),
}

/// Reads the pagination values of a response while its body is whole.
pub(crate) fn read_signals(
    pagination: &Pagination,
    body: &Value,
    headers: &HeaderMap,
    request_url: &Url,
) -> Result<Signals, String> {
    let mut signals = Signals::default();
    match pagination {
        Pagination::None => {}
        Pagination::Relay { page_info, .. } => {
            signals.page_info = read_page_info(page_info, body)?;
        }
        Pagination::Cursor {
            cursor, has_more, ..
        } => {
            signals.next = cursor_text(cursor, body)?;
            signals.has_more = read_bool(has_more.as_ref(), body)?;
        }
        Pagination::NextUrl { path } => {
            signals.next = match cursor_text(path, body)? {
                Some(next) => Some(
                    request_url
                        .join(&next)
                        .map_err(|error| {
                            format!(
                                "next URL {:?} at {} is not valid: {error}",
                                crate::redact::redact(&next),
                                path.source()
                            )
                        })?
                        .to_string(),
                ),
                None => None,
            };
        }
        Pagination::LinkHeader => {
            signals.next = find_link(headers, "next", request_url).map(String::from);
        }
        Pagination::Offset { has_more, .. } => {
            signals.has_more = read_bool(has_more.as_ref(), body)?;
        }
        Pagination::PageNumber { total_pages, .. } => {
            signals.total_pages = match total_pages {
                Some(path) => read_count(path, body)?,
                None => None,
            };
        }
    }
    Ok(signals)
}

/// Decides the request after a page that held `records` records and was
/// fetched with `current`.
pub(crate) fn decide(
    pagination: &Pagination,
    current: &PageToken,
    signals: Signals,
    records: usize,
) -> NextStep {
    let empty = records == 0;
    match pagination {
        Pagination::None => NextStep::End {
            ignored_more: false,
        },
        Pagination::Relay { page_info, .. } => decide_relay(page_info, signals.page_info, empty),
        Pagination::Cursor { .. } => {
            let more = signals.next.is_some() && signals.has_more != Some(false);
            match signals.next {
                Some(cursor) if more && !empty => NextStep::Request(PageToken::Cursor(cursor)),
                _ => NextStep::End {
                    ignored_more: more && empty,
                },
            }
        }
        Pagination::NextUrl { .. } | Pagination::LinkHeader => match signals.next {
            Some(url) if !empty => NextStep::Request(PageToken::Url(url)),
            next => NextStep::End {
                ignored_more: next.is_some(),
            },
        },
        Pagination::Offset {
            limit,
            start,
            stop_on_short_page,
            ..
        } => {
            let offset = match current {
                PageToken::Offset(offset) => *offset,
                _ => *start,
            };
            if empty || signals.has_more == Some(false) {
                return NextStep::End {
                    ignored_more: empty && signals.has_more == Some(true),
                };
            }
            if *stop_on_short_page && (records as u64) < *limit {
                return NextStep::End {
                    ignored_more: false,
                };
            }
            NextStep::Request(PageToken::Offset(offset.saturating_add(*limit)))
        }
        Pagination::PageNumber {
            start,
            stop_on_short_page,
            page_size,
            ..
        } => {
            let page = match current {
                PageToken::Page(page) => *page,
                _ => *start,
            };
            let pages_read = page.saturating_sub(*start).saturating_add(1);
            let last = signals.total_pages.is_some_and(|total| pages_read >= total);
            if empty {
                return NextStep::End {
                    ignored_more: signals.total_pages.is_some() && !last,
                };
            }
            let short =
                *stop_on_short_page && page_size.is_some_and(|size| (records as u64) < size);
            if last || short {
                return NextStep::End {
                    ignored_more: false,
                };
            }
            NextStep::Request(PageToken::Page(page.saturating_add(1)))
        }
    }
}

/// Returns the values pagination places into a request for `token`.
pub(crate) fn injections<'a>(
    pagination: &'a Pagination,
    token: &PageToken,
) -> Vec<(&'a Param, Value)> {
    match (pagination, token) {
        (Pagination::Cursor { param, .. }, PageToken::Cursor(cursor))
        | (
            Pagination::Relay {
                variable: param, ..
            },
            PageToken::Cursor(cursor),
        ) => {
            vec![(param, Value::String(cursor.clone()))]
        }
        (
            Pagination::Offset {
                offset_param,
                limit_param,
                limit,
                start,
                ..
            },
            token,
        ) => {
            let offset = match token {
                PageToken::Offset(offset) => *offset,
                _ => *start,
            };
            vec![
                (offset_param, Value::from(offset)),
                (limit_param, Value::from(*limit)),
            ]
        }
        (
            Pagination::PageNumber {
                param,
                start,
                page_size,
                page_size_param,
                ..
            },
            token,
        ) => {
            let page = match token {
                PageToken::Page(page) => *page,
                _ => *start,
            };
            let mut values = vec![(param, Value::from(page))];
            if let (Some(size_param), Some(size)) = (page_size_param, page_size) {
                values.push((size_param, Value::from(*size)));
            }
            values
        }
        _ => Vec::new(),
    }
}

/// Decides the request after a Relay page: `endCursor` while
/// `hasNextPage` is true. An empty page ends the sequence as with every
/// pagination type (GitHub sends a null `endCursor` on empty pages).
fn decide_relay(path: &JsonPath, page_info: Option<PageInfo>, empty: bool) -> NextStep {
    let Some(page_info) = page_info else {
        if empty {
            return NextStep::End {
                ignored_more: false,
            };
        }
        return NextStep::Stuck(format!(
            "pagination.page_info {} selected nothing, so the next page is unknown; \
             point it at the connection's pageInfo object and request pageInfo {{ hasNextPage endCursor }} in the query",
            path.source()
        ));
    };
    if !page_info.has_next_page {
        return NextStep::End {
            ignored_more: false,
        };
    }
    if empty {
        return NextStep::End { ignored_more: true };
    }
    match page_info.end_cursor {
        Some(cursor) => NextStep::Request(PageToken::Cursor(cursor)),
        None => NextStep::Stuck(format!(
            "pageInfo at {} has hasNextPage true but endCursor null, so the next page cannot be requested; \
             check that the query selects pageInfo {{ endCursor }} on the same connection as the records",
            path.source()
        )),
    }
}

/// Reads `hasNextPage` and `endCursor` from the object at `path`; `None`
/// when the path selects nothing or null.
fn read_page_info(path: &JsonPath, body: &Value) -> Result<Option<PageInfo>, String> {
    let found = match path.find_one(body)? {
        None | Some(Value::Null) => return Ok(None),
        Some(found) => found,
    };
    if !found.is_object() {
        return Err(format!(
            "{} selected {}, expected the pageInfo object",
            path.source(),
            kind_of(found)
        ));
    }
    let has_next_page = match found.get("hasNextPage") {
        Some(Value::Bool(flag)) => *flag,
        Some(other) => {
            return Err(format!(
                "hasNextPage in {} is {other}, expected true or false",
                path.source()
            ));
        }
        None => {
            return Err(format!(
                "the pageInfo at {} has no hasNextPage; select pageInfo {{ hasNextPage endCursor }} in the query",
                path.source()
            ));
        }
    };
    let end_cursor = match found.get("endCursor") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) if text.is_empty() => None,
        Some(Value::String(text)) => Some(text.clone()),
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(other) => {
            return Err(format!(
                "endCursor in {} is {}, expected a string",
                path.source(),
                kind_of(other)
            ));
        }
    };
    Ok(Some(PageInfo {
        has_next_page,
        end_cursor,
    }))
}

/// Reads a cursor or URL: none, null or "" is the end, a string is used
/// verbatim and a number in its decimal digits.
fn cursor_text(path: &JsonPath, body: &Value) -> Result<Option<String>, String> {
    match path.find_one(body)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(Value::Number(number)) => Ok(Some(number.to_string())),
        Some(other) => Err(format!(
            "{} selected {}, expected a string or a number",
            path.source(),
            kind_of(other)
        )),
    }
}

/// Reads a `has_more` flag: a boolean, "true"/"false", or 0/1.
fn read_bool(path: Option<&JsonPath>, body: &Value) -> Result<Option<bool>, String> {
    let Some(path) = path else {
        return Ok(None);
    };
    match path.find_one(body)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(flag)) => Ok(Some(*flag)),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(Value::Number(number)) if number.as_u64() == Some(0) => Ok(Some(false)),
        Some(Value::Number(number)) if number.as_u64() == Some(1) => Ok(Some(true)),
        Some(other) => Err(format!(
            "{} selected {other}, expected true or false",
            path.source()
        )),
    }
}

fn read_count(path: &JsonPath, body: &Value) -> Result<Option<u64>, String> {
    match path.find_one(body)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(number)) => number.as_u64().map(Some).ok_or_else(|| {
            format!(
                "{} selected {number}, expected a whole number",
                path.source()
            )
        }),
        Some(Value::String(text)) => text.trim().parse::<u64>().map(Some).map_err(|_| {
            format!(
                "{} selected {text:?}, expected a whole number",
                path.source()
            )
        }),
        Some(other) => Err(format!(
            "{} selected {}, expected a whole number",
            path.source(),
            kind_of(other)
        )),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Builds the error for a response whose pagination values are unusable.
/// `label` names the entity (and parent), `request` the method and URL.
pub(crate) fn signal_error(label: &str, request: &str, message: String) -> FetchError {
    FetchError::new(
        FetchErrorKind::Response,
        format!("{label}: {request}: pagination: {message}; check the entity's pagination paths"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::plan::ParamLocation;

    fn query(name: &str) -> Param {
        Param {
            location: ParamLocation::Query,
            name: name.into(),
        }
    }

    fn offset(stop_on_short_page: bool) -> Pagination {
        Pagination::Offset {
            offset_param: query("offset"),
            limit_param: query("limit"),
            limit: 2,
            start: 0,
            has_more: None,
            stop_on_short_page,
        }
    }

    #[test]
    fn offset_short_page_rules() {
        let next = decide(&offset(false), &PageToken::Start, Signals::default(), 1);
        assert_eq!(next, NextStep::Request(PageToken::Offset(2)));
        let next = decide(&offset(true), &PageToken::Start, Signals::default(), 1);
        assert_eq!(
            next,
            NextStep::End {
                ignored_more: false
            }
        );
        let next = decide(&offset(false), &PageToken::Offset(4), Signals::default(), 0);
        assert_eq!(
            next,
            NextStep::End {
                ignored_more: false
            }
        );
    }

    #[test]
    fn cursor_empty_page_ignores_more() {
        let pagination = Pagination::Cursor {
            cursor: JsonPath::compile("$.next").unwrap(),
            param: query("after"),
            has_more: None,
        };
        let signals = Signals {
            next: Some("c2".into()),
            ..Signals::default()
        };
        let next = decide(&pagination, &PageToken::Start, signals, 0);
        assert_eq!(next, NextStep::End { ignored_more: true });
    }

    fn relay() -> Pagination {
        Pagination::Relay {
            page_info: JsonPath::compile("$.data.items.pageInfo").unwrap(),
            variable: Param {
                location: ParamLocation::Variables,
                name: "after".into(),
            },
        }
    }

    fn relay_step(page_info: Value, records: usize) -> NextStep {
        let body = serde_json::json!({"data": {"items": {"pageInfo": page_info}}});
        let url = Url::parse("http://localhost/graphql").unwrap();
        let signals = read_signals(&relay(), &body, &HeaderMap::new(), &url).unwrap();
        decide(&relay(), &PageToken::Start, signals, records)
    }

    #[test]
    fn relay_follows_end_cursor() {
        let step = relay_step(
            serde_json::json!({"hasNextPage": true, "endCursor": "Y3Vyc29yOjI="}),
            2,
        );
        assert_eq!(
            step,
            NextStep::Request(PageToken::Cursor("Y3Vyc29yOjI=".into()))
        );
        let step = relay_step(
            serde_json::json!({"hasNextPage": false, "endCursor": "x"}),
            2,
        );
        assert_eq!(
            step,
            NextStep::End {
                ignored_more: false
            }
        );
    }

    #[test]
    fn relay_null_end_cursor_is_stuck() {
        let step = relay_step(
            serde_json::json!({"hasNextPage": true, "endCursor": null}),
            2,
        );
        assert!(matches!(step, NextStep::Stuck(ref message) if message.contains("endCursor null")));
        let step = relay_step(
            serde_json::json!({"hasNextPage": true, "endCursor": null}),
            0,
        );
        assert_eq!(step, NextStep::End { ignored_more: true });
    }

    #[test]
    fn relay_page_info_must_have_has_next_page() {
        let body = serde_json::json!({"data": {"items": {"pageInfo": {"endCursor": "a"}}}});
        let url = Url::parse("http://localhost/graphql").unwrap();
        let error = read_signals(&relay(), &body, &HeaderMap::new(), &url).unwrap_err();
        assert!(error.contains("no hasNextPage"), "{error}");
    }

    #[test]
    fn relay_injects_the_variable() {
        let pagination = relay();
        let values = injections(&pagination, &PageToken::Cursor("c1".into()));
        assert_eq!(values.len(), 1);
        assert_eq!(values[0].0.location, ParamLocation::Variables);
        assert_eq!(values[0].1, serde_json::json!("c1"));
        assert!(injections(&pagination, &PageToken::Start).is_empty());
    }

    #[test]
    fn page_number_total_pages() {
        let pagination = Pagination::PageNumber {
            param: query("page"),
            start: 1,
            total_pages: None,
            stop_on_short_page: false,
            page_size: None,
            page_size_param: None,
        };
        let signals = || Signals {
            total_pages: Some(2),
            ..Signals::default()
        };
        let next = decide(&pagination, &PageToken::Start, signals(), 3);
        assert_eq!(next, NextStep::Request(PageToken::Page(2)));
        let next = decide(&pagination, &PageToken::Page(2), signals(), 3);
        assert_eq!(
            next,
            NextStep::End {
                ignored_more: false
            }
        );
    }
}
