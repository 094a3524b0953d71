//! A local Stripe-compatible API: the list endpoints ferry's Stripe
//! connector reads, served from memory.
//!
//! `store` keeps the objects and applies Stripe's list rules; `routes`
//! turns them into HTTP with Stripe's authentication and error bodies. The
//! demo serves generated data from it, and the tests use it as an emulation
//! of Stripe.

pub mod routes;
pub mod store;

pub use routes::{SharedStore, router};
pub use store::{ListQuery, StripeStore};
