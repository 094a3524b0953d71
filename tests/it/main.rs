//! Integration tests: one binary made of topic modules.

mod support;

mod auth;
mod bigquery;
mod cli;
mod daemon;
mod daemon_replicas;
mod daemon_support;
mod destination;
mod http;
mod incremental;
mod oauth;
mod pagination;
mod records;
mod scheduler;
mod spec;
mod sync;
mod tls;
mod webhooks;
