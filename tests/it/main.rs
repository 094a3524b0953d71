//! Integration tests: one binary made of topic modules.

mod support;

mod auth;
mod bigquery;
mod cli;
mod destination;
mod http;
mod incremental;
mod oauth;
mod pagination;
mod records;
mod spec;
mod sync;
mod tls;
