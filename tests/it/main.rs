//! Integration tests: one binary made of topic modules.

mod support;

mod auth;
mod children;
mod cli;
mod daemon;
mod daemon_replicas;
mod daemon_support;
mod destination;
mod destination_rows;
mod github;
mod graphql;
mod graphql_server;
mod http;
mod incremental;
mod measure_children;
mod pagination;
mod records;
mod scheduler;
mod spec;
mod spec_children;
mod sync;
mod tls;
mod webhooks;
