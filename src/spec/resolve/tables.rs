//! Two flows writing the same table of the same database would overwrite
//! each other's rows and state: that is a load error. So is a PostgreSQL
//! schema or table name that PostgreSQL would cut.

use std::collections::HashMap;
use std::sync::Arc;

use super::compile::Problems;
use super::destination::{self, Database};
use super::site::Site;
use crate::spec::plan::{DestinationUrl, Flow};

/// PostgreSQL keeps this many bytes of a name (NAMEDATALEN - 1) and cuts
/// the rest, so two long names could end up the same table.
const POSTGRES_NAME_BYTES: usize = 63;

/// Reports schemas and entity tables of PostgreSQL flows whose names are
/// longer than PostgreSQL keeps.
pub fn check_postgres_names(flows: &[(Arc<Flow>, Site)], problems: &mut Problems) {
    for (flow, site) in flows {
        if !matches!(flow.destination, DestinationUrl::Postgres { .. }) {
            continue;
        }
        if flow.schema.len() > POSTGRES_NAME_BYTES {
            problems.push(site.value(
                &["schema"],
                format!(
                    "schema \"{}\" is {} bytes long, and PostgreSQL keeps {POSTGRES_NAME_BYTES} bytes of a name; choose a shorter schema",
                    flow.schema,
                    flow.schema.len()
                ),
            ));
        }
        for entity in &flow.entities {
            if entity.name.len() > POSTGRES_NAME_BYTES {
                problems.push(site.key(
                    &["entities"],
                    format!(
                        "entity \"{}\" is {} bytes long, and PostgreSQL keeps {POSTGRES_NAME_BYTES} bytes of a table name; give the entity a shorter name",
                        entity.name,
                        entity.name.len()
                    ),
                ));
            }
        }
    }
}

/// Reports each pair of flows that share tables, at the later flow.
pub fn check_tables(flows: &[(Arc<Flow>, Site)], problems: &mut Problems) {
    let mut owners: HashMap<(Database, String), usize> = HashMap::new();
    // (earlier flow, later flow) → the tables they share, in order.
    let mut shared: Vec<((usize, usize), Vec<String>)> = Vec::new();
    for (position, (flow, _)) in flows.iter().enumerate() {
        let Some(database) = destination::database(&flow.destination) else {
            continue;
        };
        for entity in &flow.entities {
            let key = (
                database.clone(),
                database.table_key(&flow.schema, &entity.name),
            );
            let table = format!("{}.{}", flow.schema, entity.name);
            match owners.get(&key) {
                None => {
                    owners.insert(key, position);
                }
                Some(&first) => match shared
                    .iter_mut()
                    .find(|(pair, _)| *pair == (first, position))
                {
                    Some((_, tables)) => tables.push(table),
                    None => shared.push(((first, position), vec![table])),
                },
            }
        }
    }
    for ((first, second), tables) in shared {
        let (earlier, _) = &flows[first];
        let (later, site) = &flows[second];
        let noun = if tables.len() == 1 { "table" } else { "tables" };
        let at: &[&str] = if site.index.get(&["destination"]).is_some() {
            &["destination"]
        } else {
            &["name"]
        };
        problems.push(site.key(
            at,
            format!(
                "flows \"{}\" and \"{}\" both write {noun} {} in {} (flow \"{}\" is defined at {}); give one of them another schema or destination",
                earlier.name,
                later.name,
                tables.join(", "),
                later.destination.display(),
                earlier.name,
                earlier.origin,
            ),
        ));
    }
}
