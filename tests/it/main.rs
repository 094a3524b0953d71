//! Integration tests: one binary made of topic modules.

mod emulator;
mod support;

mod auth;
mod bigquery;
mod changes;
mod children;
mod cli;
mod close;
mod daemon;
mod daemon_replicas;
mod daemon_support;
mod demo;
mod destination;
mod destination_rows;
mod github;
mod graphql;
mod graphql_server;
mod http;
mod incremental;
mod localstripe;
mod measure_children;
mod oauth;
mod pagination;
mod postgres;
mod posthog;
mod records;
mod scheduler;
mod spec;
mod spec_children;
mod stripe;
mod sync;
mod tls;
mod webhooks;
