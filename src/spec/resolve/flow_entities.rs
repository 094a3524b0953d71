//! A flow's `entities`: which of the connector's entities it syncs, and the
//! entities it makes from the connector's templates.
//!
//! A selected child entity brings its parent along (the parent's records
//! drive the child's requests), and parents always come before their
//! children in [`Selection::entities`].

use std::sync::{Arc, OnceLock};

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::compile::Problems;
use super::entity::{EntityContext, EntityMode, resolve_entity};
use super::flow::{expand_value, report_value_problems, secret_texts};
use super::site::{EntitySite, Site};
use super::values::{self, Given, Naming, Part};
use crate::spec::env::Expander;
use crate::spec::plan::{Connector, Entity, EntityTemplate};
use crate::spec::raw::{RawEntity, RawFlowEntities};
use crate::spec::suggest;
use crate::spec::yaml::errors::{self, SerdeProblem};

pub struct Selection {
    /// Parents before their children.
    pub entities: Vec<Arc<Entity>>,
    /// Values of secret template parameters.
    pub secrets: Vec<String>,
}

pub fn select(
    raw: Option<&RawFlowEntities>,
    connector: &Connector,
    site: &Site,
    expander: &Expander<'_>,
    problems: &mut Problems,
) -> Option<Selection> {
    let mark = problems.len();
    let mut chosen: Vec<Arc<Entity>> = Vec::new();
    let mut secrets = Vec::new();
    match raw {
        None => chosen.extend(connector.entities.values().cloned()),
        Some(RawFlowEntities::List(names)) => {
            for (i, name) in names.iter().enumerate() {
                let index = i.to_string();
                if chosen.iter().any(|entity| &entity.name == name) {
                    problems.push(site.value(
                        &["entities", &index],
                        format!("entity \"{name}\" is listed twice"),
                    ));
                    continue;
                }
                if let Some(entity) = lookup(name, connector, site, &["entities", &index], problems)
                {
                    chosen.push(entity);
                }
            }
        }
        Some(RawFlowEntities::Map(entries)) => {
            for (name, settings) in entries {
                let entity = match settings.get("template") {
                    Some(Value::String(template)) => {
                        let entry = Entry {
                            name,
                            template,
                            settings,
                            site: site.child(&["entities", name]),
                        };
                        instantiate(&entry, connector, expander, &mut secrets, problems)
                    }
                    Some(_) => {
                        problems.push(site.value(
                            &["entities", name, "template"],
                            "template must be the name of one of the connector's templates",
                        ));
                        None
                    }
                    None => plain_entry(name, settings, connector, site, problems),
                };
                chosen.extend(entity);
            }
        }
    }
    if !problems.clean_since(mark) {
        return None;
    }
    Some(Selection {
        entities: with_parents(chosen, connector),
        secrets,
    })
}

/// Looks up an entry without `template`: a connector entity, which takes
/// no settings.
fn plain_entry(
    name: &str,
    settings: &IndexMap<String, Value>,
    connector: &Connector,
    site: &Site,
    problems: &mut Problems,
) -> Option<Arc<Entity>> {
    if let Some(key) = settings.keys().next() {
        problems.push(site.key(
            &["entities", name, key],
            format!(
                "unknown setting \"{key}\" for entity \"{name}\"; only entries with template: NAME take settings, so write {name}: {{}}"
            ),
        ));
        return None;
    }
    lookup(name, connector, site, &["entities", name], problems)
}

fn lookup(
    name: &str,
    connector: &Connector,
    site: &Site,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<Arc<Entity>> {
    if let Some(entity) = connector.entities.get(name) {
        return Some(entity.clone());
    }
    if connector.templates.contains_key(name) {
        problems.push(site.key(
            relative,
            format!(
                "\"{name}\" is a template of connector \"{}\", not an entity; declare it in the entities mapping as NAME: {{template: {name}, ...}}",
                connector.name
            ),
        ));
        return None;
    }
    let names: Vec<&str> = connector.entities.keys().map(String::as_str).collect();
    let mut hint = suggest::did_you_mean(name, names.iter().copied());
    if hint.is_empty() {
        hint = format!(
            "; the {} connector has: {}",
            connector.name,
            names.join(", ")
        );
    }
    problems.push(site.key(
        relative,
        format!(
            "unknown entity \"{name}\" in connector \"{}\"{hint}",
            connector.name
        ),
    ));
    None
}

/// Orders `chosen` so that each entity comes after its parent, adding
/// parents that were not selected.
fn with_parents(chosen: Vec<Arc<Entity>>, connector: &Connector) -> Vec<Arc<Entity>> {
    fn add(entity: &Arc<Entity>, connector: &Connector, ordered: &mut Vec<Arc<Entity>>) {
        if ordered.iter().any(|known| known.name == entity.name) {
            return;
        }
        let parent = entity
            .parent
            .as_ref()
            .and_then(|parent| connector.entities.get(&parent.entity));
        if let Some(parent) = parent {
            add(parent, connector, ordered);
        }
        ordered.push(entity.clone());
    }
    let mut ordered = Vec::with_capacity(chosen.len());
    for entity in &chosen {
        add(entity, connector, &mut ordered);
    }
    ordered
}

/// Returns the names of [`RawEntity`]'s fields, which a flow's template
/// entry may override.
fn entity_fields() -> &'static [String] {
    static FIELDS: OnceLock<Vec<String>> = OnceLock::new();
    FIELDS.get_or_init(|| match serde_json::to_value(RawEntity::default()) {
        Ok(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    })
}

/// A flow's `entities` entry that names a template.
struct Entry<'a> {
    name: &'a str,
    template: &'a str,
    settings: &'a IndexMap<String, Value>,
    site: Site,
}

/// Makes an entity from a template: keys that are template parameters give
/// their values, other keys that are entity fields replace the template's.
/// A key that is both is a parameter.
fn instantiate(
    entry: &Entry<'_>,
    connector: &Connector,
    expander: &Expander<'_>,
    secrets: &mut Vec<String>,
    problems: &mut Problems,
) -> Option<Arc<Entity>> {
    let name = entry.name;
    let site = &entry.site;
    if connector.entities.contains_key(name) {
        problems.push(site.key(
            &[],
            format!(
                "\"{name}\" is already an entity of connector \"{}\"; give the template entry another name",
                connector.name
            ),
        ));
        return None;
    }
    let Some(template) = connector.templates.get(entry.template) else {
        let names: Vec<&str> = connector.templates.keys().map(String::as_str).collect();
        let hint = suggest::hint(entry.template, &names, "templates in this connector");
        problems.push(site.value(
            &["template"],
            format!(
                "unknown template \"{}\" in connector \"{}\"{hint}",
                entry.template, connector.name
            ),
        ));
        return None;
    };

    let mark = problems.len();
    let (given, overrides) = split_settings(entry, template, expander, problems);
    for field in &given {
        if template
            .parameters
            .get(&field.key)
            .is_some_and(|declared| declared.secret)
        {
            secret_texts(&field.value, secrets);
        }
    }
    let owner = format!("template \"{}\"", template.name);
    let naming = Naming {
        noun: "parameter",
        owner: &owner,
    };
    let (values, mut value_problems) = values::check_values(&template.parameters, &given, &naming);
    // A parameter whose `${…}` failed is reported already, not also as missing.
    let written = |key: &String| entry.settings.contains_key(key);
    value_problems.retain(|problem| !(problem.part == Part::Container && written(&problem.key)));
    report_value_problems(&value_problems, site, &[], problems);
    if !problems.clean_since(mark) {
        return None;
    }

    let raw = merge(template, &overrides, site, problems)?;
    let entity_names: Vec<String> = connector.entities.keys().cloned().collect();
    let context = EntityContext {
        connector: &connector.name,
        config: &connector.config,
        broken_config: &[],
        entity_names: &entity_names,
        base_url: connector.http.base_url.source(),
    };
    let entity_site = EntitySite::Instance {
        flow: site.clone(),
        template: template.name.clone(),
        overrides: overrides.keys().cloned().collect(),
    };
    let mode = EntityMode::Instance {
        template: &template.name,
        parameters: &template.parameters,
        values,
    };
    resolve_entity(name, &raw, mode, &context, &entity_site, problems).map(Arc::new)
}

/// Splits an entry's keys into parameter values and entity field overrides;
/// each override is checked on its own so its problem points at it.
fn split_settings(
    entry: &Entry<'_>,
    template: &EntityTemplate,
    expander: &Expander<'_>,
    problems: &mut Problems,
) -> (Vec<Given>, Map<String, Value>) {
    let site = &entry.site;
    let mut given = Vec::new();
    let mut overrides = Map::new();
    for (key, value) in entry.settings {
        if key == "template" {
            continue;
        }
        if template.parameters.contains_key(key) {
            if let Some((value, substituted)) =
                expand_value(value, expander, site, &[key], problems)
            {
                given.push(Given {
                    key: key.clone(),
                    value,
                    from_text: substituted,
                });
            }
        } else if key == "parameters" {
            problems.push(site.key(
                &[key],
                format!("parameters are declared by template \"{}\"; set each one directly, as NAME: VALUE", template.name),
            ));
        } else if entity_fields().contains(key) {
            let single = Value::Object(Map::from_iter([(key.clone(), value.clone())]));
            match serde_json::from_value::<RawEntity>(single) {
                Ok(_) => {
                    overrides.insert(key.clone(), value.clone());
                }
                Err(error) => {
                    let problem = SerdeProblem::new(site.path(&[key]), error.to_string());
                    let subject = format!("entity \"{}\"", entry.name);
                    let (at, message) = errors::describe(&problem, &site.index, &subject);
                    problems.push(crate::spec::Diagnostic {
                        path: site.file.to_string(),
                        line: at.line,
                        column: at.column,
                        message,
                    });
                }
            }
        } else {
            let mut candidates: Vec<&str> =
                template.parameters.keys().map(String::as_str).collect();
            candidates.extend(entity_fields().iter().map(String::as_str));
            let mut hint = suggest::did_you_mean(key, candidates.iter().copied());
            if hint.is_empty() {
                let parameters: Vec<&str> =
                    template.parameters.keys().map(String::as_str).collect();
                hint = format!("; its parameters are: {}", parameters.join(", "));
            }
            problems.push(site.key(
                &[key],
                format!(
                    "unknown parameter \"{key}\" for template \"{}\"{hint}",
                    template.name
                ),
            ));
        }
    }
    (given, overrides)
}

/// Applies the flow's overrides to the template's definition.
fn merge(
    template: &EntityTemplate,
    overrides: &Map<String, Value>,
    site: &Site,
    problems: &mut Problems,
) -> Option<RawEntity> {
    let mut definition = match serde_json::to_value(&template.raw) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    definition.remove("parameters");
    for (key, value) in overrides {
        definition.insert(key.clone(), value.clone());
    }
    match serde_json::from_value::<RawEntity>(Value::Object(definition)) {
        Ok(raw) => Some(raw),
        Err(error) => {
            problems.push(site.key(
                &[],
                format!(
                    "template \"{}\" with these settings is not a valid entity: {error}",
                    template.name
                ),
            ));
            None
        }
    }
}
