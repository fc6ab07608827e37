//! The Eviction subresource: `POST /api/v1/namespaces/{ns}/pods/{name}/eviction` with a
//! policy/v1 (or v1beta1) `Eviction`, as `kubectl drain` sends it (protobuf from the
//! typed client, or JSON).
//!
//! An allowed eviction marks a running pod `DisruptionTarget=True`
//! (`EvictionByEvictionAPI`), deletes it with the Eviction's `deleteOptions`
//! (gracefully, so the node agent stops it) and answers 201 with a bare
//! `Status{status: Success}`, as kube-apiserver's
//! `pkg/registry/core/pod/storage/eviction.go` does. A missing pod is a 404.
//!
//! PodDisruptionBudgets are not served yet, so no budget can block an eviction: every
//! eviction is allowed, and the 429 `TooManyRequests` kube-apiserver sends while a
//! budget forbids a disruption never happens. When budgets arrive, the check belongs
//! here, between reading the pod and deleting it.
//!
//! May call: the delete path of `handlers` (the same preconditions, grace periods and
//! finalizers as `DELETE`).

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::{delete_object, parse_delete_options, write_with_retries};
use crate::api::object;
use crate::api::request::{read, Ctx};
use crate::api::status::{self, ApiError};
use crate::api::{body, json_response};

/// The API versions an Eviction body may carry.
const EVICTION_VERSIONS: &[&str] = &["policy/v1", "policy/v1beta1"];

pub(super) async fn evict(ctx: &Ctx, name: &str, body: &Bytes) -> Result<Response, ApiError> {
    let eviction = decode_eviction(ctx.header(header::CONTENT_TYPE), body)?;
    let named = eviction["metadata"]["name"].as_str().unwrap_or("");
    if !named.is_empty() && named != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let options = parse_delete_options(ctx, &eviction["deleteOptions"])?;
    // A missing pod is the pod's 404, before any budget would be consulted.
    let (_, pod) = read(ctx, name).await?;
    if !is_terminal(&pod) && !options.is_dry_run() {
        write_with_retries(ctx, name, None, |_, pod| Ok(with_disruption_target(pod))).await?;
    }
    delete_object(ctx, name, &options).await?;
    Ok(json_response(StatusCode::CREATED, &status::bare_success()))
}

fn is_terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    )
}

/// The pod with the DisruptionTarget condition an eviction sets (kept as it is when
/// already there, or when the pod is already going).
fn with_disruption_target(pod: &Value) -> Value {
    let mut pod = pod.clone();
    let mut conditions = pod["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let present = conditions
        .iter()
        .any(|c| c["type"] == "DisruptionTarget" && c["status"] == "True");
    if present || object::is_deleting(&pod) {
        return pod;
    }
    conditions.retain(|c| c["type"] != "DisruptionTarget");
    conditions.push(serde_json::json!({
        "type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI",
        "message": "Eviction API: evicting", "lastProbeTime": null,
        "lastTransitionTime": object::now_rfc3339(),
    }));
    pod["status"]["conditions"] = Value::Array(conditions);
    pod
}

/// The Eviction in the body, checked to be one.
fn decode_eviction(content_type: &str, bytes: &[u8]) -> Result<Value, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("an Eviction body is required"));
    }
    let eviction = body::decode(content_type, bytes)?;
    if !eviction.is_object() {
        return Err(ApiError::bad_request("the Eviction body must be an object"));
    }
    let kind = eviction["kind"].as_str().unwrap_or("Eviction");
    let version = eviction["apiVersion"].as_str().unwrap_or("policy/v1");
    if kind != "Eviction" || !EVICTION_VERSIONS.contains(&version) {
        return Err(ApiError::bad_request(format!(
            "the body of an eviction must be a policy/v1 Eviction, not {version} {kind}"
        )));
    }
    if !eviction["deleteOptions"].is_null() && !eviction["deleteOptions"].is_object() {
        return Err(ApiError::bad_request("deleteOptions must be an object"));
    }
    Ok(eviction)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn eviction_bodies_are_checked() {
        let ok = decode_eviction(
            "application/json",
            br#"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"p"},"deleteOptions":{"gracePeriodSeconds":5}}"#,
        )
        .unwrap();
        assert_eq!(ok["deleteOptions"], json!({"gracePeriodSeconds": 5}));
        assert!(decode_eviction(
            "application/json",
            br#"{"kind":"Eviction","apiVersion":"policy/v1beta1"}"#
        )
        .is_ok());
        let wrong = decode_eviction("application/json", br#"{"kind":"Pod","apiVersion":"v1"}"#);
        assert_eq!(wrong.unwrap_err().code, 400);
        assert_eq!(
            decode_eviction("application/json", b"").unwrap_err().code,
            400
        );
    }
}
