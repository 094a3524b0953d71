//! Checks which variables a template may read where it is used.
//!
//! Templates render in strict mode, so a wrong name fails at run time; these
//! checks catch it while loading, with a did-you-mean hint:
//! - `config.X`: X is a declared config key;
//! - `state.cursor`: only on an entity with `incremental`;
//! - `parent.X`: X is listed in the entity's `parent.fields`;
//! - `window.start` / `window.end`: only with `incremental.window`;
//! - `entity.X`: only in `templates`, X a declared parameter;
//! - `steps.S.X`: in an entity's requests and records after its step S,
//!   X one of the step's outputs;
//! - `now`: anywhere.

use indexmap::IndexMap;

use crate::spec::plan::ConfigField;
use crate::spec::suggest;
use crate::template::Template;

/// What the templates of one place may read.
pub struct Scope<'a> {
    pub config: &'a IndexMap<String, ConfigField>,
    /// Config keys whose declarations had errors: references to them are
    /// not reported again.
    pub broken_config: &'a [String],
    /// `None` for connector-wide templates (`http`, `auth`, `check`), which
    /// render without entity state.
    pub request: Option<RequestScope<'a>>,
}

/// What an entity's request templates may read beyond `config` and `now`.
pub struct RequestScope<'a> {
    pub entity: &'a str,
    pub incremental: bool,
    pub window: bool,
    /// The parent entity and the fields it passes down.
    pub parent: Option<(&'a str, &'a [String])>,
    /// The template name and its declared parameters, inside `templates`.
    pub parameters: Option<(&'a str, Vec<&'a str>)>,
    /// The steps sent before this request, each with its outputs.
    pub steps: Vec<(&'a str, Vec<&'a str>)>,
}

const ROOTS: &[&str] = &[
    "config", "state", "parent", "window", "entity", "steps", "now",
];

/// Returns one message per variable of `template` that `scope` does not
/// provide.
pub fn check(template: &Template, scope: &Scope<'_>) -> Vec<String> {
    let mut problems = Vec::new();
    for variable in template.variables() {
        if let Some(problem) = check_variable(&variable, scope)
            && !problems.contains(&problem)
        {
            problems.push(problem);
        }
    }
    problems
}

fn check_variable(variable: &str, scope: &Scope<'_>) -> Option<String> {
    let variable = variable.strip_prefix("this.").unwrap_or(variable);
    // Block helpers (`#each`) change the context; their inner names are not
    // checked.
    if variable.starts_with('@') || variable.starts_with("../") || variable == "this" {
        return None;
    }
    let mut segments = variable.split('.');
    let root = segments.next().unwrap_or_default();
    let first = segments.next();
    match root {
        "now" if first.is_none() => None,
        "config" => check_config(first, scope),
        "state" => check_state(first, scope),
        "parent" => check_parent(first, scope),
        "window" => check_window(first, scope),
        "entity" => check_entity(first, scope),
        "steps" => check_step(first, segments.next(), scope),
        _ => {
            let mut hint = suggest::did_you_mean(root, ROOTS.iter().copied());
            if hint.is_empty() {
                hint = "; templates read config.*, state.cursor, parent.*, window.start, window.end, entity.*, steps.* and now".to_string();
            }
            Some(format!("unknown template variable \"{variable}\"{hint}"))
        }
    }
}

fn check_config(key: Option<&str>, scope: &Scope<'_>) -> Option<String> {
    let Some(key) = key else {
        return Some("{{config}} must name a key: {{config.KEY}}".to_string());
    };
    if scope.config.contains_key(key) || scope.broken_config.iter().any(|name| name == key) {
        return None;
    }
    let declared: Vec<&str> = scope.config.keys().map(String::as_str).collect();
    let hint = suggest::hint(key, &declared, "config keys declared");
    Some(format!(
        "{{{{config.{key}}}}} is not a declared config key{hint}"
    ))
}

fn check_state(key: Option<&str>, scope: &Scope<'_>) -> Option<String> {
    if key != Some("cursor") {
        let written = key
            .map(|key| format!("state.{key}"))
            .unwrap_or("state".into());
        return Some(format!(
            "{{{{{written}}}}} is not available; the only state value is {{{{state.cursor}}}}"
        ));
    }
    match &scope.request {
        Some(request) if request.incremental => None,
        Some(request) => Some(format!(
            "{{{{state.cursor}}}} needs incremental on entity \"{}\"",
            request.entity
        )),
        None => Some("{{state.cursor}} is only available in entity requests".to_string()),
    }
}

fn check_parent(field: Option<&str>, scope: &Scope<'_>) -> Option<String> {
    let Some(request) = &scope.request else {
        return Some("{{parent.*}} is only available in entity requests".to_string());
    };
    let Some(field) = field else {
        return Some("{{parent}} must name a field: {{parent.FIELD}}".to_string());
    };
    let Some((parent, fields)) = request.parent else {
        return Some(format!(
            "{{{{parent.{field}}}}} needs a parent on entity \"{}\": parent: {{entity: NAME, fields: [{field}]}}",
            request.entity
        ));
    };
    if fields.iter().any(|name| name == field) {
        return None;
    }
    let listed: Vec<&str> = fields.iter().map(String::as_str).collect();
    let mut hint = suggest::did_you_mean(field, listed.iter().copied());
    if hint.is_empty() {
        hint = format!("; add it to parent.fields to read it from \"{parent}\"");
    }
    Some(format!(
        "{{{{parent.{field}}}}} is not in parent.fields of entity \"{}\" ([{}]){hint}",
        request.entity,
        listed.join(", "),
    ))
}

fn check_window(field: Option<&str>, scope: &Scope<'_>) -> Option<String> {
    let Some(request) = &scope.request else {
        return Some("{{window.*}} is only available in entity requests".to_string());
    };
    if !matches!(field, Some("start" | "end")) {
        let written = field
            .map(|field| format!("window.{field}"))
            .unwrap_or("window".into());
        return Some(format!(
            "{{{{{written}}}}} is not available; use {{{{window.start}}}} or {{{{window.end}}}}"
        ));
    }
    if request.window {
        return None;
    }
    Some(format!(
        "{{{{window.{}}}}} needs incremental.window on entity \"{}\"",
        field.unwrap_or_default(),
        request.entity
    ))
}

fn check_entity(field: Option<&str>, scope: &Scope<'_>) -> Option<String> {
    let parameters = scope
        .request
        .as_ref()
        .and_then(|request| request.parameters.as_ref());
    let Some(field) = field else {
        return Some("{{entity}} must name a parameter: {{entity.NAME}}".to_string());
    };
    let Some((template, declared)) = parameters else {
        return Some(format!(
            "{{{{entity.{field}}}}} is only available in templates, where it reads the flow's parameters"
        ));
    };
    if declared.contains(&field) {
        return None;
    }
    let hint = suggest::hint(field, declared, "parameters declared");
    Some(format!(
        "{{{{entity.{field}}}}} is not a parameter of template \"{template}\"{hint}"
    ))
}

fn check_step(step: Option<&str>, output: Option<&str>, scope: &Scope<'_>) -> Option<String> {
    let (Some(step), Some(output)) = (step, output) else {
        return Some("{{steps}} must name a step and an output: {{steps.STEP.OUTPUT}}".to_string());
    };
    let Some(request) = &scope.request else {
        return Some(format!(
            "{{{{steps.{step}.{output}}}}} is only available in entity requests"
        ));
    };
    let Some((_, outputs)) = request.steps.iter().find(|(name, _)| *name == step) else {
        let names: Vec<&str> = request.steps.iter().map(|(name, _)| *name).collect();
        let mut hint = suggest::did_you_mean(step, names.iter().copied());
        if hint.is_empty() {
            hint = match names.is_empty() {
                true => "; no step runs before this request".to_string(),
                false => format!("; the steps before this request are: {}", names.join(", ")),
            };
        }
        return Some(format!(
            "{{{{steps.{step}.{output}}}}} reads step \"{step}\", which does not run before this request{hint}"
        ));
    };
    if outputs.contains(&output) {
        return None;
    }
    let hint = suggest::hint(output, outputs, "outputs of this step");
    Some(format!(
        "{{{{steps.{step}.{output}}}}} is not an output of step \"{step}\"{hint}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::raw::ConfigType;

    fn field() -> ConfigField {
        ConfigField {
            value_type: ConfigType::String,
            secret: false,
            default: None,
            required: true,
            description: None,
            allowed: None,
            pattern: None,
            templated: false,
        }
    }

    fn problems(source: &str, request: Option<RequestScope<'_>>) -> Vec<String> {
        let mut config = IndexMap::new();
        config.insert("token".to_string(), field());
        let scope = Scope {
            config: &config,
            broken_config: &[],
            request,
        };
        check(&Template::compile(source).unwrap(), &scope)
    }

    fn request() -> RequestScope<'static> {
        RequestScope {
            entity: "issues",
            incremental: false,
            window: false,
            parent: None,
            parameters: None,
            steps: Vec::new(),
        }
    }

    #[test]
    fn declared_config_key_passes() {
        assert!(problems("Bearer {{config.token}}", None).is_empty());
        assert!(problems("{{now}}", None).is_empty());
    }

    #[test]
    fn misspelt_config_key_is_suggested() {
        assert_eq!(
            problems("{{config.tokn}}", None),
            vec!["{{config.tokn}} is not a declared config key; did you mean \"token\"?"]
        );
    }

    #[test]
    fn state_needs_incremental() {
        assert_eq!(
            problems("{{state.cursor}}", Some(request())),
            vec!["{{state.cursor}} needs incremental on entity \"issues\""]
        );
        assert_eq!(
            problems("{{state.last}}", Some(request())),
            vec!["{{state.last}} is not available; the only state value is {{state.cursor}}"]
        );
    }

    #[test]
    fn parent_field_must_be_listed() {
        let fields = vec!["number".to_string()];
        let mut scope = request();
        scope.parent = Some(("issues", &fields));
        assert_eq!(
            problems("/{{parent.numbr}}", Some(scope)),
            vec![
                "{{parent.numbr}} is not in parent.fields of entity \"issues\" ([number]); did you mean \"number\"?"
            ]
        );
    }

    #[test]
    fn entity_outside_templates_is_rejected() {
        assert_eq!(
            problems("{{entity.query}}", Some(request())),
            vec![
                "{{entity.query}} is only available in templates, where it reads the flow's parameters"
            ]
        );
    }

    #[test]
    fn step_outputs_are_checked() {
        let mut scope = request();
        scope.steps = vec![("job", vec!["job_id", "location"])];
        assert!(problems("/queries/{{steps.job.job_id}}", Some(scope)).is_empty());

        let mut scope = request();
        scope.steps = vec![("job", vec!["job_id", "location"])];
        assert_eq!(
            problems("{{steps.job.jobid}}", Some(scope)),
            vec!["{{steps.job.jobid}} is not an output of step \"job\"; did you mean \"job_id\"?"]
        );

        assert_eq!(
            problems("{{steps.wait.schema}}", Some(request())),
            vec![
                "{{steps.wait.schema}} reads step \"wait\", which does not run before this request; no step runs before this request"
            ]
        );
    }

    #[test]
    fn unknown_root_is_suggested() {
        assert_eq!(
            problems("{{confg.token}}", None),
            vec!["unknown template variable \"confg.token\"; did you mean \"config\"?"]
        );
    }
}
