//! An entity's `steps`: requests sent before its first page request, whose
//! outputs later templates read as `{{steps.<step>.<output>}}`.

use std::time::Duration;

use super::compile::{self, Problems, extend};
use super::site::EntitySite;
use super::variables::{RequestScope, Scope};
use crate::spec::plan::{HttpMethod, RequestPlan, Step};
use crate::spec::raw::RawStep;

const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(1);
const DEFAULT_POLL_TIMEOUT: Duration = Duration::from_secs(3600);

/// Returns each step's name and outputs, for the template scopes that may
/// read them.
pub fn outputs(raw: &[RawStep]) -> Vec<(&str, Vec<&str>)> {
    raw.iter()
        .map(|step| {
            let outputs = step.outputs.keys().map(String::as_str).collect();
            (step.name.as_str(), outputs)
        })
        .collect()
}

/// Resolves every step. Each step's templates may read the outputs of the
/// steps before it; `scope` is the entity's request scope.
pub fn resolve(
    raw: &[RawStep],
    site: &EntitySite,
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<Vec<Step>> {
    let mark = problems.len();
    let mut steps = Vec::with_capacity(raw.len());
    for (i, step) in raw.iter().enumerate() {
        let index = i.to_string();
        let relative = ["steps", index.as_str()];
        check_name(raw, i, site, &relative, problems);
        let earlier = Scope {
            config: scope.config,
            broken_config: scope.broken_config,
            request: scope.request.as_ref().map(|request| RequestScope {
                entity: request.entity,
                incremental: request.incremental,
                window: request.window,
                parent: request.parent,
                parameters: request.parameters.clone(),
                steps: outputs(&raw[..i]),
            }),
        };
        if let Some(step) = resolve_step(step, site, &relative, &earlier, problems) {
            steps.push(step);
        }
    }
    problems.clean_since(mark).then_some(steps)
}

fn check_name(
    raw: &[RawStep],
    i: usize,
    site: &EntitySite,
    relative: &[&str],
    problems: &mut Problems,
) {
    let name = raw[i].name.as_str();
    let name_path = extend(relative, "name");
    let valid = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        problems.push(site.value(
            &name_path,
            format!("step name \"{name}\" must be letters, digits and \"_\", so templates can read it as {{{{steps.NAME.OUTPUT}}}}"),
        ));
    } else if raw[..i].iter().any(|earlier| earlier.name == name) {
        problems.push(site.value(
            &name_path,
            format!("step name \"{name}\" is used twice; give each step its own name"),
        ));
    }
}

fn resolve_step(
    raw: &RawStep,
    site: &EntitySite,
    relative: &[&str],
    scope: &Scope<'_>,
    problems: &mut Problems,
) -> Option<Step> {
    let path = compile::template(&raw.path, site, &extend(relative, "path"), scope, problems);
    let params = compile::template_value_map(
        &raw.params,
        site,
        &extend(relative, "params"),
        scope,
        problems,
    );
    let headers = compile::template_map(
        &raw.headers,
        site,
        &extend(relative, "headers"),
        scope,
        problems,
    );
    let body = match &raw.body {
        Some(body) => {
            compile::template_value(body, site, &extend(relative, "body"), scope, problems)
                .map(Some)
        }
        None => Some(None),
    };
    let default_method = match raw.body {
        Some(_) => HttpMethod::Post,
        None => HttpMethod::Get,
    };

    let outputs_path = extend(relative, "outputs");
    let mut outputs = Some(Vec::with_capacity(raw.outputs.len()));
    for (name, source) in &raw.outputs {
        let compiled = compile::json_path(source, site, &extend(&outputs_path, name), problems);
        match (compiled, outputs.as_mut()) {
            (Some(path), Some(list)) => list.push((name.clone(), path)),
            _ => outputs = None,
        }
    }
    let until = compile::optional_json_path(
        raw.until.as_ref(),
        site,
        &extend(relative, "until"),
        problems,
    );
    let poll_interval = seconds(
        raw.poll_interval_seconds,
        DEFAULT_POLL_INTERVAL,
        site,
        &extend(relative, "poll_interval_seconds"),
        problems,
    );
    let poll_timeout = seconds(
        raw.poll_timeout_seconds,
        DEFAULT_POLL_TIMEOUT,
        site,
        &extend(relative, "poll_timeout_seconds"),
        problems,
    );

    Some(Step {
        name: raw.name.clone(),
        request: RequestPlan {
            method: raw.method.unwrap_or(default_method),
            path: path?,
            params: params?,
            headers: headers?,
            body: body?,
        },
        outputs: outputs?,
        until: until?,
        poll_interval: poll_interval?,
        poll_timeout: poll_timeout?,
    })
}

fn seconds(
    value: Option<f64>,
    default: Duration,
    site: &EntitySite,
    relative: &[&str],
    problems: &mut Problems,
) -> Option<Duration> {
    match value {
        Some(seconds) => compile::positive_seconds(seconds, site, relative, problems),
        None => Some(default),
    }
}
