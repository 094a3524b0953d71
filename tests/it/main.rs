//! Integration tests: one binary made of topic modules.

mod support;

mod auth;
mod daemon_support;
mod http;
mod incremental;
mod pagination;
mod records;
mod scheduler;
mod spec;
mod tls;
