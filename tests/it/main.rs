//! Integration tests: one binary made of topic modules.

mod emulator;
mod support;

mod auth;
mod bigquery;
mod cli;
mod close;
mod daemon;
mod daemon_replicas;
mod daemon_support;
mod demo;
mod destination;
mod http;
mod incremental;
mod localstripe;
mod oauth;
mod pagination;
mod posthog;
mod records;
mod scheduler;
mod spec;
mod stripe;
mod sync;
mod tls;
mod webhooks;
