//! An entity's steps: requests sent before its first page request, whose
//! outputs feed the later requests (a schema lookup, a query job to create
//! and then wait for).
//!
//! Each finished step is reported as a page without records whose next
//! position carries the step's outputs. The writer commits that position
//! like any other, so a resumed run skips the steps that finished and
//! reuses their outputs, such as the id of a query job already running.

use indexmap::IndexMap;
use serde_json::{Map, Value};
use tokio::time::Instant;

use super::client::HttpClient;
use super::fetch::{parse_body, status_error};
use super::request::{self, RequestSource};
use super::{FetchError, FetchErrorKind};
use crate::spec::plan::{Entity, Flow, Step};

/// The outputs of a finished step and the traffic it took.
pub(crate) struct StepOutcome {
    pub outputs: Map<String, Value>,
    /// Requests sent, polls and retries included.
    pub requests: u32,
    pub bytes: u64,
}

/// Returns the first step that `done` (the outputs of finished steps, by
/// step name) does not contain yet.
pub(crate) fn pending<'a>(entity: &'a Entity, done: &Map<String, Value>) -> Option<&'a Step> {
    entity
        .steps
        .iter()
        .find(|step| !done.contains_key(&step.name))
}

/// Sends `step`, again every `poll_interval` until its `until` path finds
/// `true`, and reads its outputs from the last response.
pub(crate) async fn run(
    client: &HttpClient,
    flow: &Flow,
    entity: &Entity,
    step: &Step,
    context: &Value,
) -> Result<StepOutcome, FetchError> {
    let label = format!("entity {} step {}", entity.name, step.name);
    let source = RequestSource {
        label: &label,
        plan: &step.request,
        connector_params: &flow.connector.http.params,
        graphql: None,
    };
    let request = request::build(client, &source, context, &[])?;
    let url = client.display_url(&request.url);
    tracing::info!(
        flow = %flow.name,
        entity = %entity.name,
        step = %step.name,
        url = %url,
        "step started"
    );

    let started = Instant::now();
    let mut outcome = StepOutcome {
        outputs: Map::new(),
        requests: 0,
        bytes: 0,
    };
    let mut polls = 0u32;
    loop {
        let exchange = client
            .execute(&request, &entity.name, &IndexMap::new())
            .await?;
        outcome.requests += exchange.attempts;
        outcome.bytes += exchange.body.len() as u64;
        if !exchange.status.is_success() {
            return Err(status_error(&label, client, &request, &exchange));
        }
        let body = parse_body(&exchange.body).map_err(|message| {
            FetchError::new(
                FetchErrorKind::Response,
                format!(
                    "{label}: {} {url}: the response is not JSON ({message})",
                    request.method
                ),
            )
        })?;

        if let Some(until) = &step.until
            && !is_true(until.find_one(&body))
        {
            polls += 1;
            if started.elapsed() + step.poll_interval > step.poll_timeout {
                return Err(FetchError::new(
                    FetchErrorKind::Response,
                    format!(
                        "{label}: {} was still not true after {polls} polls in {}s (poll_timeout_seconds); \
                         the steps before it are saved, so the next run polls again; \
                         raise poll_timeout_seconds if the work really takes longer",
                        until.source(),
                        step.poll_timeout.as_secs_f64()
                    ),
                ));
            }
            tracing::debug!(
                flow = %flow.name,
                entity = %entity.name,
                step = %step.name,
                polls,
                "step not complete yet, polling again"
            );
            tokio::time::sleep(step.poll_interval).await;
            continue;
        }

        for (name, path) in &step.outputs {
            let value = match path.find_one(&body) {
                Ok(Some(value)) => value.clone(),
                Ok(None) => {
                    return Err(output_error(&label, name, path.source(), "found nothing"));
                }
                Err(message) => return Err(output_error(&label, name, path.source(), &message)),
            };
            outcome.outputs.insert(name.clone(), value);
        }
        tracing::info!(
            flow = %flow.name,
            entity = %entity.name,
            step = %step.name,
            polls,
            requests = outcome.requests,
            "step finished"
        );
        return Ok(outcome);
    }
}

/// True for a JSON `true` or the text "true" in any case.
fn is_true(found: Result<Option<&Value>, String>) -> bool {
    match found {
        Ok(Some(Value::Bool(flag))) => *flag,
        Ok(Some(Value::String(text))) => text.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

fn output_error(label: &str, name: &str, path: &str, problem: &str) -> FetchError {
    FetchError::new(
        FetchErrorKind::Response,
        format!(
            "{label}: output {name} ({path}) {problem} in the response; \
             check the step's outputs against what the API returns"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_true_completes_a_step() {
        assert!(is_true(Ok(Some(&json!(true)))));
        assert!(is_true(Ok(Some(&json!("TRUE")))));
        assert!(!is_true(Ok(Some(&json!(false)))));
        assert!(!is_true(Ok(Some(&json!(1)))));
        assert!(!is_true(Ok(None)));
        assert!(!is_true(Err("several values".into())));
    }
}
