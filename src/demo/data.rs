//! Generated Stripe data for the demo: customers, subscriptions, invoices
//! and charges, shaped like Stripe's own example objects.
//!
//! Each object starts as a copy of the example object Stripe publishes for
//! its resource (`fixtures/stripe-objects.json`, from stripe/openapi's
//! `fixtures3.json`, MIT licence) and gets its own ids, times, amounts and
//! statuses from a seeded random generator, so one seed always yields the
//! same data set.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};

/// Stripe's example objects, keyed by resource (`customer`, `invoice`, …).
const STRIPE_OBJECTS: &str = include_str!("fixtures/stripe-objects.json");

/// 2024-01-01T00:00:00Z: the first customer of the data set signs up after it.
const RANGE_START: i64 = 1_704_067_200;
/// 2025-07-01T00:00:00Z: no object is created after it.
const RANGE_END: i64 = 1_751_328_000;
const DAY: i64 = 86_400;
const MONTH: i64 = 30 * DAY;

/// Invoices per subscription at most, so the data set stays a few thousand rows.
const MAX_INVOICES_PER_SUBSCRIPTION: i64 = 4;

const FIRST_NAMES: &[&str] = &[
    "Ada",
    "Grace",
    "Alan",
    "Edsger",
    "Barbara",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Dennis",
    "Radia",
    "John",
    "Sophie",
    "Linus",
    "Katherine",
    "Tim",
];
const LAST_NAMES: &[&str] = &[
    "Lovelace",
    "Hopper",
    "Turing",
    "Dijkstra",
    "Liskov",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "Backus",
    "Wilson",
    "Torvalds",
    "Johnson",
    "Berners-Lee",
];
const COUNTRIES: &[(&str, &str, &str)] = &[
    ("US", "San Francisco", "usd"),
    ("US", "New York", "usd"),
    ("GB", "London", "gbp"),
    ("DE", "Berlin", "eur"),
    ("FR", "Paris", "eur"),
    ("NL", "Amsterdam", "eur"),
];
/// Plans: nickname and monthly price in the currency's minor unit.
const PLANS: &[(&str, i64)] = &[("Starter", 900), ("Team", 4_900), ("Business", 19_900)];
const CARD_BRANDS: &[&str] = &["visa", "mastercard", "amex"];

/// The generated objects, each list newest last (the API sorts them).
#[derive(Debug, Default)]
pub struct Dataset {
    pub customers: Vec<Value>,
    pub subscriptions: Vec<Value>,
    pub invoices: Vec<Value>,
    pub charges: Vec<Value>,
}

#[derive(Debug, thiserror::Error)]
#[error("the built-in Stripe example objects are unreadable: {0}")]
pub struct DataError(String);

/// Stripe's example object of each resource the demo generates.
struct Templates {
    customer: Value,
    subscription: Value,
    invoice: Value,
    charge: Value,
}

impl Templates {
    fn load() -> Result<Templates, DataError> {
        let all: Map<String, Value> =
            serde_json::from_str(STRIPE_OBJECTS).map_err(|error| DataError(error.to_string()))?;
        let take = |name: &str| {
            all.get(name)
                .cloned()
                .ok_or_else(|| DataError(format!("no example object for {name}")))
        };
        Ok(Templates {
            customer: take("customer")?,
            subscription: take("subscription")?,
            invoice: take("invoice")?,
            charge: take("charge")?,
        })
    }
}

/// Generates `customers` customers and what they bought, from `seed`.
pub fn generate(seed: u64, customers: usize) -> Result<Dataset, DataError> {
    let templates = Templates::load()?;
    let mut generator = Generator {
        rng: StdRng::seed_from_u64(seed),
        templates,
        dataset: Dataset::default(),
    };
    let mut signups: Vec<i64> = (0..customers)
        .map(|_| {
            generator
                .rng
                .random_range(RANGE_START..RANGE_END - 2 * MONTH)
        })
        .collect();
    signups.sort_unstable();
    for (index, created) in signups.into_iter().enumerate() {
        generator.customer(index, created);
    }
    Ok(generator.dataset)
}

struct Generator {
    rng: StdRng,
    templates: Templates,
    dataset: Dataset,
}

/// What the later objects of one customer copy from it.
struct CustomerInfo {
    id: String,
    name: String,
    email: String,
    currency: &'static str,
    created: i64,
}

impl Generator {
    fn id(&mut self, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
        let tail: String = (0..14)
            .map(|_| ALPHABET[self.rng.random_range(0..ALPHABET.len())] as char)
            .collect();
        format!("{prefix}_{tail}")
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.random_range(0..items.len())]
    }

    fn customer(&mut self, index: usize, created: i64) {
        let first = self.pick(FIRST_NAMES);
        let last = self.pick(LAST_NAMES);
        let (country, city, currency) = self.pick(COUNTRIES);
        let info = CustomerInfo {
            id: self.id("cus"),
            name: format!("{first} {last}"),
            email: format!(
                "{}.{}{index}@example.com",
                first.to_lowercase(),
                last.to_lowercase()
            ),
            currency,
            created,
        };

        let mut customer = self.templates.customer.clone();
        customer["id"] = json!(info.id);
        customer["created"] = json!(created);
        customer["name"] = json!(info.name);
        customer["email"] = json!(info.email);
        customer["currency"] = json!(currency);
        customer["address"]["country"] = json!(country);
        customer["address"]["city"] = json!(city);
        customer["discount"] = Value::Null;
        customer["invoice_prefix"] = json!(format!("{:07X}", index + 0x1000));
        customer["metadata"] = json!({"signup_source": self.pick(&["web", "sales", "partner"])});
        self.dataset.customers.push(customer);

        if self.rng.random_bool(0.7) {
            self.subscription(&info);
        }
    }

    fn subscription(&mut self, customer: &CustomerInfo) {
        let id = self.id("sub");
        let created = customer.created + self.rng.random_range(0..30 * DAY);
        let (plan, amount) = self.pick(PLANS);
        let roll: f64 = self.rng.random();
        let status = match roll {
            r if r < 0.20 => "canceled",
            r if r < 0.30 => "past_due",
            r if r < 0.35 => "trialing",
            _ => "active",
        };
        let months = (RANGE_END - created) / MONTH;
        let lived = match status {
            "canceled" => self.rng.random_range(1..=months.max(1)),
            "trialing" => 0,
            _ => months,
        };
        let ended_at = (status == "canceled").then(|| created + lived * MONTH);

        let mut subscription = self.templates.subscription.clone();
        subscription["id"] = json!(id);
        subscription["customer"] = json!(customer.id);
        subscription["created"] = json!(created);
        subscription["start_date"] = json!(created);
        subscription["billing_cycle_anchor"] = json!(created);
        subscription["status"] = json!(status);
        subscription["currency"] = json!(customer.currency);
        subscription["cancel_at"] = Value::Null;
        subscription["canceled_at"] = json!(ended_at);
        subscription["ended_at"] = json!(ended_at);
        subscription["trial_start"] = json!((status == "trialing").then_some(created));
        subscription["trial_end"] = json!((status == "trialing").then_some(created + 14 * DAY));
        subscription["metadata"] = json!({"plan": plan});
        if let Some(item) = subscription["items"]["data"].get_mut(0) {
            item["id"] = json!(self.id("si"));
            item["subscription"] = json!(id);
            item["created"] = json!(created);
            item["price"]["unit_amount"] = json!(amount);
            item["price"]["unit_amount_decimal"] = json!(amount.to_string());
            item["price"]["nickname"] = json!(plan);
            item["price"]["currency"] = json!(customer.currency);
            item["current_period_start"] = json!(created + lived * MONTH);
            item["current_period_end"] = json!(created + (lived + 1) * MONTH);
        }
        subscription["items"]["url"] = json!(format!("/v1/subscription_items?subscription={id}"));

        let invoices = lived.min(MAX_INVOICES_PER_SUBSCRIPTION);
        let first_invoice = lived - invoices;
        let mut latest = Value::Null;
        for month in first_invoice..lived.max(first_invoice) {
            let last = month + 1 == lived;
            let unpaid = last && status == "past_due";
            latest = json!(self.invoice(customer, &id, created + month * MONTH, amount, unpaid));
        }
        subscription["latest_invoice"] = latest;
        self.dataset.subscriptions.push(subscription);
    }

    /// Adds one monthly invoice, and its charge unless `unpaid`; returns its id.
    fn invoice(
        &mut self,
        customer: &CustomerInfo,
        subscription: &str,
        period_start: i64,
        amount: i64,
        unpaid: bool,
    ) -> String {
        let id = self.id("in");
        let created = period_start + self.rng.random_range(0..3_600);
        let paid_at = created + self.rng.random_range(60..7_200);
        let sequence = self.dataset.invoices.len() + 1;

        let mut invoice = self.templates.invoice.clone();
        invoice["id"] = json!(id);
        invoice["number"] = json!(format!("DEMO-{sequence:06}"));
        invoice["customer"] = json!(customer.id);
        invoice["customer_email"] = json!(customer.email);
        invoice["customer_name"] = json!(customer.name);
        invoice["currency"] = json!(customer.currency);
        invoice["created"] = json!(created);
        invoice["effective_at"] = json!(created);
        invoice["period_start"] = json!(period_start);
        invoice["period_end"] = json!(period_start + MONTH);
        invoice["due_date"] = Value::Null;
        invoice["billing_reason"] = json!("subscription_cycle");
        invoice["amount_due"] = json!(amount);
        invoice["subtotal"] = json!(amount);
        invoice["total"] = json!(amount);
        invoice["amount_paid"] = json!(if unpaid { 0 } else { amount });
        invoice["amount_remaining"] = json!(if unpaid { amount } else { 0 });
        invoice["attempted"] = json!(true);
        invoice["attempt_count"] = json!(if unpaid { 3 } else { 1 });
        invoice["status"] = json!(if unpaid { "open" } else { "paid" });
        invoice["status_transitions"] = json!({
            "finalized_at": created,
            "marked_uncollectible_at": null,
            "paid_at": if unpaid { Value::Null } else { json!(paid_at) },
            "voided_at": null,
        });
        invoice["parent"] = json!({
            "type": "subscription_details",
            "quote_details": null,
            "subscription_details": {"metadata": {}, "subscription": subscription},
        });
        invoice["last_finalization_error"] = Value::Null;
        invoice["from_invoice"] = Value::Null;
        if let Some(line) = invoice["lines"]["data"].get_mut(0) {
            line["id"] = json!(self.id("il"));
            line["invoice"] = json!(id);
            line["amount"] = json!(amount);
            line["subtotal"] = json!(amount);
            line["currency"] = json!(customer.currency);
            line["description"] = json!("1 × subscription (monthly)");
            line["period"] = json!({"start": period_start, "end": period_start + MONTH});
        }
        invoice["lines"]["url"] = json!(format!("/v1/invoices/{id}/lines"));
        self.dataset.invoices.push(invoice);

        if unpaid {
            self.charge(customer, &id, created + 3_600, amount, false);
        } else {
            // Some payments fail once before the retry succeeds.
            if self.rng.random_bool(0.05) {
                self.charge(customer, &id, created + 60, amount, false);
            }
            self.charge(customer, &id, paid_at, amount, true);
        }
        id
    }

    fn charge(
        &mut self,
        customer: &CustomerInfo,
        invoice: &str,
        created: i64,
        amount: i64,
        succeeded: bool,
    ) {
        let brand = self.pick(CARD_BRANDS);
        let last4 = format!("{:04}", self.rng.random_range(0..10_000));
        let mut charge = self.templates.charge.clone();
        charge["id"] = json!(self.id("ch"));
        charge["customer"] = json!(customer.id);
        charge["created"] = json!(created);
        charge["amount"] = json!(amount);
        charge["amount_captured"] = json!(if succeeded { amount } else { 0 });
        charge["captured"] = json!(succeeded);
        charge["paid"] = json!(succeeded);
        charge["status"] = json!(if succeeded { "succeeded" } else { "failed" });
        charge["currency"] = json!(customer.currency);
        charge["description"] = json!(format!("Payment for invoice {invoice}"));
        charge["failure_code"] = json!((!succeeded).then_some("card_declined"));
        charge["failure_message"] = json!((!succeeded).then_some("Your card was declined."));
        charge["balance_transaction"] = json!(succeeded.then(|| format!("txn_{}", &invoice[3..])));
        charge["billing_details"]["name"] = json!(customer.name);
        charge["billing_details"]["email"] = json!(customer.email);
        charge["receipt_email"] = json!(customer.email);
        charge["receipt_url"] = Value::Null;
        charge["metadata"] = json!({"invoice": invoice});
        charge["payment_method_details"]["card"]["brand"] = json!(brand);
        charge["payment_method_details"]["card"]["network"] = json!(brand);
        charge["payment_method_details"]["card"]["last4"] = json!(last4);
        charge["outcome"]["type"] = json!(if succeeded {
            "authorized"
        } else {
            "issuer_declined"
        });
        charge["outcome"]["seller_message"] = json!(if succeeded {
            "Payment complete."
        } else {
            "The bank did not return any further details with this decline."
        });
        self.dataset.charges.push(charge);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_data() {
        let first = generate(7, 50).unwrap();
        let second = generate(7, 50).unwrap();
        assert_eq!(first.customers, second.customers);
        assert_eq!(first.invoices, second.invoices);
        assert_eq!(first.charges, second.charges);
    }

    #[test]
    fn objects_reference_each_other() {
        let data = generate(1, 200).unwrap();
        assert_eq!(data.customers.len(), 200);
        let customer_ids: Vec<&str> = data
            .customers
            .iter()
            .map(|customer| customer["id"].as_str().unwrap())
            .collect();
        for subscription in &data.subscriptions {
            let customer = subscription["customer"].as_str().unwrap();
            assert!(customer_ids.contains(&customer), "{customer}");
        }
        let paid = data
            .invoices
            .iter()
            .filter(|invoice| invoice["status"] == "paid")
            .count();
        let succeeded = data
            .charges
            .iter()
            .filter(|charge| charge["status"] == "succeeded")
            .count();
        assert_eq!(paid, succeeded);
    }

    #[test]
    fn ids_are_unique() {
        let data = generate(3, 500).unwrap();
        let mut ids: Vec<&str> = data
            .customers
            .iter()
            .chain(&data.subscriptions)
            .chain(&data.invoices)
            .chain(&data.charges)
            .map(|object| object["id"].as_str().unwrap())
            .collect();
        let total = ids.len();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), total);
    }
}
