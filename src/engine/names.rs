//! `fields.names`: readable names for fields that an API names by id.
//!
//! Close sends custom fields as `custom.cf_<id>` and lists the fields'
//! names at another endpoint. At the start of a run the lookup entity is
//! read in full, and each `<prefix><id>` field of the entity's records is
//! renamed `<prefix><name>`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::client::HttpClient;
use super::fetch::{EntityReader, PageBudget};
use super::incremental::initial_position;
use super::{FetchError, FetchErrorKind};
use crate::spec::plan::{FieldNames, Flow};
use crate::template::value_to_text;

/// Reads the lookup entity of `names` and returns the renames it implies,
/// source field name → output name. Names that two ids share are left out,
/// because both fields would land in one column.
pub(crate) async fn lookup(
    flow: &Flow,
    entity: &str,
    names: &FieldNames,
    client: &HttpClient,
    now: DateTime<Utc>,
) -> Result<HashMap<String, String>, FetchError> {
    let source = flow.connector.entities.get(&names.from).ok_or_else(|| {
        FetchError::new(
            FetchErrorKind::Template,
            format!(
                "entity {entity}: fields.names.from names entity {:?}, which connector {} does not have",
                names.from, flow.connector.name
            ),
        )
    })?;

    let mut reader = EntityReader::new(flow, source, client, now, PageBudget::default());
    let mut position = initial_position(source, None, now, true);
    let mut pairs: Vec<(String, String)> = Vec::new();
    loop {
        let read = reader.read_page(&position).await?;
        if let Some(error) = read.error {
            return Err(error);
        }
        for record in &read.page.records {
            let (Some(id), Some(name)) = (record.get(&names.id), record.get(&names.name)) else {
                continue;
            };
            if id.is_null() || name.is_null() {
                continue;
            }
            pairs.push((value_to_text(id), value_to_text(name)));
        }
        match read.page.next {
            Some(next) => position = next,
            None => break,
        }
    }

    let renames = renames_from_pairs(&names.prefix, pairs, entity);
    tracing::info!(
        flow = %flow.name,
        entity = %entity,
        lookup = %names.from,
        fields = renames.len(),
        "field names looked up"
    );
    Ok(renames)
}

/// Builds `<prefix><id>` → `<prefix><name>`, leaving out names shared by
/// several ids.
fn renames_from_pairs(
    prefix: &str,
    pairs: Vec<(String, String)>,
    entity: &str,
) -> HashMap<String, String> {
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for (_, name) in &pairs {
        *uses.entry(name.as_str()).or_default() += 1;
    }
    let mut renames = HashMap::new();
    for (id, name) in &pairs {
        if uses.get(name.as_str()).copied().unwrap_or(0) > 1 {
            tracing::warn!(
                entity = %entity,
                id = %id,
                name = %name,
                "several fields share this name, so their columns keep the id"
            );
            continue;
        }
        renames.insert(format!("{prefix}{id}"), format!("{prefix}{name}"));
    }
    renames
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_names_keep_their_ids() {
        let pairs = vec![
            ("cf_1".to_string(), "Industry".to_string()),
            ("cf_2".to_string(), "Owner".to_string()),
            ("cf_3".to_string(), "Owner".to_string()),
        ];
        let renames = renames_from_pairs("custom.", pairs, "leads");
        assert_eq!(renames.len(), 1);
        assert_eq!(renames["custom.cf_1"], "custom.Industry");
    }
}
