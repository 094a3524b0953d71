//! Integration tests: one binary made of topic modules.

mod support;

mod auth;
mod children;
mod graphql;
mod http;
mod incremental;
mod pagination;
mod records;
mod spec;
mod spec_children;
mod tls;
