//! Integration tests: one binary made of topic modules.

mod support;

mod auth;
mod cli;
mod destination;
mod http;
mod incremental;
mod pagination;
mod postgres;
mod records;
mod spec;
mod sync;
mod tls;
