//! Names of connectors and flows: they appear in commands, URL paths
//! (`/webhooks/{flow}`) and as the default database schema.

use super::compile::Problems;
use super::site::Site;

/// Reports a name that is empty or has characters other than letters,
/// digits, `_`, `-` and `.`.
pub fn check_name(name: &str, noun: &str, site: &Site, problems: &mut Problems) {
    if name.is_empty() {
        problems.push(site.value(&["name"], format!("{noun} name must not be empty")));
        return;
    }
    let valid = name
        .chars()
        .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if !valid {
        problems.push(site.value(
            &["name"],
            format!(
                "{noun} name \"{name}\" may contain only letters, digits, \"_\", \"-\" and \".\""
            ),
        ));
    }
}
