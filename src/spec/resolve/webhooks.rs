//! A connector's `webhooks` into a [`WebhookPlan`].

use std::time::Duration;

use super::compile::{self, Problems};
use super::site::{EntitySite, Site};
use crate::spec::plan::{SignatureScheme, WebhookPlan, WebhookRoute};
use crate::spec::raw::{RawSignature, RawWebhooks};
use crate::spec::suggest;

/// Maximum age of a signed timestamp when the connector sets no tolerance.
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

pub fn resolve(
    raw: &RawWebhooks,
    entity_names: &[String],
    site: &Site,
    problems: &mut Problems,
) -> Option<WebhookPlan> {
    let mark = problems.len();
    let plain = EntitySite::Plain(site.child(&["webhooks"]));
    let id = compile::json_path(&raw.id, &plain, &["id"], problems);
    let event_type = compile::json_path(&raw.event_type, &plain, &["type"], problems);
    let object = compile::json_path(&raw.object, &plain, &["object"], problems);
    let occurred_at =
        compile::optional_json_path(raw.occurred_at.as_ref(), &plain, &["occurred_at"], problems);
    let signature = match &raw.signature {
        RawSignature::Stripe { tolerance_seconds } => SignatureScheme::Stripe {
            tolerance: tolerance_seconds.map_or(DEFAULT_TOLERANCE, Duration::from_secs),
        },
        RawSignature::Close { tolerance_seconds } => SignatureScheme::Close {
            tolerance: tolerance_seconds.map_or(DEFAULT_TOLERANCE, Duration::from_secs),
        },
        RawSignature::Hmac {
            header,
            algorithm,
            encoding,
            prefix,
        } => {
            if header.trim().is_empty() {
                problems.push(plain.value(
                    &["signature", "header"],
                    "webhooks.signature.header must not be empty",
                ));
            }
            SignatureScheme::Hmac {
                header: header.clone(),
                algorithm: *algorithm,
                encoding: *encoding,
                prefix: prefix.clone(),
            }
        }
    };

    let names: Vec<&str> = entity_names.iter().map(String::as_str).collect();
    let mut routes = Vec::new();
    for (i, route) in raw.routes.iter().enumerate() {
        let index = i.to_string();
        if route.events.is_empty() {
            problems.push(plain.key(
                &["routes", &index, "events"],
                "webhooks.routes: events must list at least one event type",
            ));
        }
        match &route.entity {
            Some(entity) if !names.contains(&entity.as_str()) => {
                let hint = suggest::hint(entity, &names, "entities");
                problems.push(plain.value(
                    &["routes", &index, "entity"],
                    format!("webhooks.routes: unknown entity \"{entity}\"{hint}"),
                ));
            }
            None if route.delete => {
                problems.push(plain.key(
                    &["routes", &index],
                    "webhooks.routes: delete needs the entity whose row is marked deleted",
                ));
            }
            _ => {}
        }
        routes.push(WebhookRoute {
            events: route.events.clone(),
            entity: route.entity.clone(),
            delete: route.delete,
        });
    }

    if !problems.clean_since(mark) {
        return None;
    }
    Some(WebhookPlan {
        signature,
        id: id?,
        event_type: event_type?,
        object: object?,
        occurred_at: occurred_at?,
        routes,
    })
}
