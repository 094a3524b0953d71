//! Stripe: ferry's Stripe-compatible API (the `ferry demo` server) with the
//! request recorder and fault queue in front.

use std::sync::{Arc, RwLock};

use ferry::demo::stripe_api::{self, SharedStore, StripeStore};

use super::Harness;

pub const API_KEY: &str = "sk_test_emulator_4242424242";

pub struct Stripe {
    pub url: String,
    pub store: SharedStore,
    pub harness: Harness,
}

impl Stripe {
    pub async fn start(store: StripeStore) -> Stripe {
        let store = Arc::new(RwLock::new(store));
        let harness = Harness::default();
        let url = harness
            .serve(stripe_api::router(store.clone(), API_KEY))
            .await;
        Stripe {
            url,
            store,
            harness,
        }
    }

    pub fn with<R>(&self, change: impl FnOnce(&mut StripeStore) -> R) -> R {
        change(&mut self.store.write().unwrap())
    }
}
