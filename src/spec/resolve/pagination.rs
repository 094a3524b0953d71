//! Pagination settings into a [`Pagination`] plan.

use super::compile::{self, Problems, extend};
use super::site::EntitySite;
use crate::spec::plan::{Pagination, Param, ParamLocation};
use crate::spec::raw::{RawChanges, RawEntity, RawPagination, RawParam};

const DEFAULT_RELAY_VARIABLE: &str = "after";

/// Resolves `raw` found at `relative`; no `pagination` means one request.
pub fn resolve(
    raw: Option<&RawPagination>,
    is_graphql: bool,
    site: &EntitySite,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<Pagination> {
    let Some(raw) = raw else {
        return Some(Pagination::None);
    };
    let at = |field: &'static str| extend(relative, field);
    let field = |name: &str| format!("{}.{name}", site.dotted(relative));
    let bare = bare_location(is_graphql);
    let url_type = match raw {
        RawPagination::LinkHeader => Some("link_header"),
        RawPagination::NextUrl { .. } => Some("next_url"),
        _ => None,
    };
    if let (true, Some(url_type)) = (is_graphql, url_type) {
        let message = format!(
            "{} {url_type} is for REST APIs: a GraphQL entity posts its query, so its pages come from variables; \
             use relay, cursor, offset or page_number",
            field("type")
        );
        problems.push(site.value(&at("type"), message));
        return None;
    }
    match raw {
        RawPagination::None => Some(Pagination::None),
        RawPagination::LinkHeader => Some(Pagination::LinkHeader),
        RawPagination::NextUrl { path } => {
            let path = compile::json_path(path, site, &at("path"), problems)?;
            Some(Pagination::NextUrl { path })
        }
        RawPagination::Cursor {
            cursor,
            param,
            has_more,
        } => {
            let cursor = compile::json_path(cursor, site, &at("cursor"), problems);
            let param = compile::param_in(param, bare, site, &at("param"), problems);
            let has_more =
                compile::optional_json_path(has_more.as_ref(), site, &at("has_more"), problems);
            Some(Pagination::Cursor {
                cursor: cursor?,
                param: param?,
                has_more: has_more?,
            })
        }
        RawPagination::Offset {
            offset_param,
            limit_param,
            limit,
            has_more,
            stop_on_short_page,
            start,
        } => {
            let offset_param =
                compile::param_in(offset_param, bare, site, &at("offset_param"), problems);
            let limit_param =
                compile::param_in(limit_param, bare, site, &at("limit_param"), problems);
            let has_more =
                compile::optional_json_path(has_more.as_ref(), site, &at("has_more"), problems);
            if *limit == 0 {
                let message = format!("{} must be at least 1, found 0", field("limit"));
                problems.push(site.value(&at("limit"), message));
                return None;
            }
            if let (Some(offset), Some(limit)) = (&offset_param, &limit_param)
                && offset == limit
            {
                let message = format!(
                    "{} and {} are the same parameter \"{}\"",
                    field("offset_param"),
                    field("limit_param"),
                    offset.name
                );
                problems.push(site.value(&at("limit_param"), message));
                return None;
            }
            Some(Pagination::Offset {
                offset_param: offset_param?,
                limit_param: limit_param?,
                limit: *limit,
                start: start.unwrap_or(0),
                has_more: has_more?,
                stop_on_short_page: *stop_on_short_page,
            })
        }
        RawPagination::PageNumber {
            param,
            start,
            total_pages,
            stop_on_short_page,
            page_size,
            page_size_param,
        } => {
            let mark = problems.len();
            let param = compile::param_in(param, bare, site, &at("param"), problems);
            let total_pages = compile::optional_json_path(
                total_pages.as_ref(),
                site,
                &at("total_pages"),
                problems,
            );
            let page_size_param = compile::optional_param_in(
                page_size_param.as_ref(),
                bare,
                site,
                &at("page_size_param"),
                problems,
            );
            if *page_size == Some(0) {
                let message = format!("{} must be at least 1, found 0", field("page_size"));
                problems.push(site.value(&at("page_size"), message));
            }
            if page_size.is_none() && *stop_on_short_page {
                let message = format!(
                    "{} needs {}: the number of records in a full page",
                    field("stop_on_short_page"),
                    field("page_size")
                );
                problems.push(site.key(&at("stop_on_short_page"), message));
            }
            if page_size.is_none() && page_size_param.as_ref().is_some_and(Option::is_some) {
                let message = format!(
                    "{} needs {}: the value to send",
                    field("page_size_param"),
                    field("page_size")
                );
                problems.push(site.key(&at("page_size_param"), message));
            }
            if !problems.clean_since(mark) {
                return None;
            }
            Some(Pagination::PageNumber {
                param: param?,
                start: start.unwrap_or(1),
                total_pages: total_pages?,
                stop_on_short_page: *stop_on_short_page,
                page_size: *page_size,
                page_size_param: page_size_param?,
            })
        }
        RawPagination::Relay {
            page_info,
            variable,
        } => {
            let page_info = compile::json_path(page_info, site, &at("page_info"), problems);
            if !is_graphql {
                let message = format!(
                    "{} relay is for GraphQL entities (graphql: {{query, variables}}); use cursor for a REST API",
                    field("type")
                );
                problems.push(site.value(&at("type"), message));
                return None;
            }
            let variable = variable.as_deref().unwrap_or(DEFAULT_RELAY_VARIABLE);
            if variable.trim().is_empty() {
                let message = format!("{} must not be empty", field("variable"));
                problems.push(site.value(&at("variable"), message));
                return None;
            }
            if variable.split('.').any(str::is_empty) {
                let message = format!(
                    "{}: \"{variable}\" is not a variable name or a dotted path into the variables (empty part)",
                    field("variable")
                );
                problems.push(site.value(&at("variable"), message));
                return None;
            }
            Some(Pagination::Relay {
                page_info: page_info?,
                variable: Param {
                    location: ParamLocation::Variables,
                    name: variable.to_string(),
                },
            })
        }
    }
}

/// Returns where a parameter written as a bare name goes: a GraphQL
/// entity's request has variables instead of a query string.
pub fn bare_location(is_graphql: bool) -> ParamLocation {
    if is_graphql {
        ParamLocation::Variables
    } else {
        ParamLocation::Query
    }
}

/// Lists every request parameter that an entity's pagination, incremental
/// and window settings place, with the path of each setting.
pub fn placed_params(raw: &RawEntity) -> Vec<(Vec<String>, Param)> {
    let bare = bare_location(raw.graphql.is_some());
    let mut found = pagination_params(raw.pagination.as_ref(), "pagination", bare);
    let mut add = |path: &[&str], param: &RawParam| {
        let path = path.iter().map(|segment| segment.to_string()).collect();
        found.push((path, param_of(param, bare)));
    };
    if let Some(incremental) = &raw.incremental {
        if let Some(param) = &incremental.param {
            add(&["incremental", "param"], param);
        }
        if let Some(window) = &incremental.window {
            if let Some(param) = &window.start_param {
                add(&["incremental", "window", "start_param"], param);
            }
            if let Some(param) = &window.end_param {
                add(&["incremental", "window", "end_param"], param);
            }
        }
    }
    found
}

/// Lists every request parameter that a change feed's `param` and
/// pagination place, with the path of each setting. A bare name is a
/// query parameter, because the feed is a REST request.
pub fn feed_params(raw: &RawChanges) -> Vec<(Vec<String>, Param)> {
    let bare = ParamLocation::Query;
    let mut found = pagination_params(raw.pagination.as_ref(), "changes.pagination", bare);
    if let Some(param) = &raw.param {
        let path = vec!["changes".to_string(), "param".to_string()];
        found.insert(0, (path, param_of(param, bare)));
    }
    found
}

/// Lists the parameters that the pagination settings at `section` (a
/// dotted path) place.
fn pagination_params(
    raw: Option<&RawPagination>,
    section: &str,
    bare: ParamLocation,
) -> Vec<(Vec<String>, Param)> {
    let mut found = Vec::new();
    let mut add = |field: &str, param: &RawParam| {
        let mut path: Vec<String> = section.split('.').map(str::to_string).collect();
        path.push(field.to_string());
        found.push((path, param_of(param, bare)));
    };
    match raw {
        Some(RawPagination::Cursor { param, .. }) => add("param", param),
        Some(RawPagination::Offset {
            offset_param,
            limit_param,
            ..
        }) => {
            add("offset_param", offset_param);
            add("limit_param", limit_param);
        }
        Some(RawPagination::PageNumber {
            param,
            page_size_param,
            ..
        }) => {
            add("param", param);
            if let Some(size) = page_size_param {
                add("page_size_param", size);
            }
        }
        _ => {}
    }
    found
}

fn param_of(raw: &RawParam, bare: ParamLocation) -> Param {
    match raw {
        RawParam::Query(name) => Param {
            location: bare,
            name: name.clone(),
        },
        RawParam::Placed(placed) => Param {
            location: placed.location,
            name: placed.name.clone(),
        },
    }
}
