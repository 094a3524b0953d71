//! ferry keeps database tables up to date with HTTP APIs described in YAML.
//!
//! The data flows through these modules in order:
//!
//! - [`spec`]: reads the config folder (connectors and flows) and resolves
//!   it into a checked plan; every later stage reads only the plan.
//! - [`engine`]: sends an entity's requests (auth, retries, rate limits,
//!   pagination) and extracts records from the responses, page by page.
//! - [`sync`]: runs one entity: pages flow from the engine task to the
//!   writer task through a bounded channel, and are committed in chunks
//!   together with the state that lets the next run resume.
//! - [`destination`]: DuckDB and PostgreSQL tables, typed columns that
//!   widen as records demand, upserts, and the `_ferry` bookkeeping schema.
//! - [`daemon`]: `ferry run`: the watched folder, schedules, webhooks and
//!   the HTTP server around the sync.
//! - [`cli`]: the `ferry` command.
//! - [`demo`]: `ferry demo`, with a local Stripe-compatible API.
//!
//! [`template`], [`jsonpath`] and [`redact`] serve all of them.

pub mod cli;
pub mod daemon;
pub mod demo;
pub mod destination;
pub mod engine;
pub mod jsonpath;
pub mod redact;
pub mod spec;
pub mod sync;
pub mod template;
