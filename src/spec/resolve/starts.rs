//! `incremental.start` written as a template of config values
//! (`"{{config.start_date}}"`), rendered with each flow's config, so a flow
//! chooses how far back its first run reads.

use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::compile::Problems;
use super::site::Site;
use crate::spec::plan::Entity;
use crate::template::Template;

/// Returns the entities with every templated `incremental.start` rendered
/// from `config`; a template that fails is reported on the flow's config.
pub fn render(
    entities: Vec<Arc<Entity>>,
    config: &Map<String, Value>,
    site: &Site,
    problems: &mut Problems,
) -> Option<Vec<Arc<Entity>>> {
    let mark = problems.len();
    let context = json!({ "config": config });
    let rendered = entities
        .into_iter()
        .map(|entity| {
            let Some(Value::String(start)) = entity
                .incremental
                .as_ref()
                .and_then(|incremental| incremental.start.as_ref())
            else {
                return entity;
            };
            if !start.contains("{{") {
                return entity;
            }
            let value =
                Template::compile(start).and_then(|template| template.render_value(&context));
            match value {
                Ok(value) => {
                    let mut changed = (*entity).clone();
                    if let Some(incremental) = changed.incremental.as_mut() {
                        incremental.start = Some(value);
                    }
                    Arc::new(changed)
                }
                Err(error) => {
                    problems.push(site.key(
                        &["source", "config"],
                        format!("entity {}: incremental.start: {error}", entity.name),
                    ));
                    entity
                }
            }
        })
        .collect();
    problems.clean_since(mark).then_some(rendered)
}
