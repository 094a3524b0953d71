//! `ferry demo` and the local Stripe-compatible API it serves.
//!
//! - `data`: a seeded data set of customers, subscriptions, invoices and
//!   charges, shaped like Stripe's own example objects.
//! - `stripe_api`: an in-process HTTP server with Stripe's list endpoints,
//!   pagination, filters, events and errors; tests use it as Stripe's
//!   emulation too.
//! - `command`: starts the server on 127.0.0.1, runs the built-in Stripe
//!   connector twice (a full load, then an incremental run) and prints the
//!   tables it filled.

mod command;
pub mod data;
pub mod stripe_api;

pub use command::{DEMO_API_KEY, DEMO_ENTITIES, DemoError, DemoOptions, DemoSummary, run};
