//! `POST /api/v1/namespaces/<ns>/serviceaccounts/<name>/token`: the TokenRequest
//! subresource (authentication.k8s.io/v1), as kube-apiserver serves it — audiences
//! default to the API's, `expirationSeconds` to 3600 (at least 600, at most 2^32),
//! and a `boundObjectRef` to a Pod or Secret ties the token to that object's life.
//! Answers the request with `status.token` and `status.expirationTimestamp`.
//!
//! May call: the store (through the handlers' `read`) and `satoken` for signing.

use axum::body::Bytes;
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde_json::{json, Value};

use super::request::{read, Ctx};
use super::satoken::{self, BoundObject, TokenSubject};
use super::status::ApiError;
use super::validation::{CauseReason, FieldError};
use super::{body, json_response, object, resources};

const GROUP: &str = "authentication.k8s.io";
const KIND: &str = "TokenRequest";
const DEFAULT_EXPIRATION_SECS: i64 = 3600;
const MIN_EXPIRATION_SECS: i64 = 600;
const MAX_EXPIRATION_SECS: i64 = 1 << 32;

pub(super) async fn create(ctx: &Ctx, name: &str, body: &Bytes) -> Result<Response, ApiError> {
    let authority =
        ctx.state.tokens.get().cloned().ok_or_else(|| {
            ApiError::unavailable("service-account token signing is not configured")
        })?;
    let namespace = ctx.namespace.clone().unwrap_or_default();
    let mut request = body::decode(ctx.header(header::CONTENT_TYPE), body)?;
    check_names(&request, name, &namespace)?;
    let (_, sa) = read(ctx, name).await?;
    let spec = &mut request["spec"];
    if spec["audiences"].as_array().is_none_or(|a| a.is_empty()) {
        spec["audiences"] = json!(authority.audiences());
    }
    if spec["expirationSeconds"].as_i64().unwrap_or(0) == 0 {
        spec["expirationSeconds"] = json!(DEFAULT_EXPIRATION_SECS);
    }
    let lifetime = validate(spec)?;
    let audiences: Vec<String> = spec["audiences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .collect();
    let bound = match spec.get("boundObjectRef").filter(|r| !r.is_null()) {
        Some(reference) => Some(bound_object(ctx, name, &namespace, reference).await?),
        None => None,
    };
    let subject = TokenSubject {
        namespace: namespace.clone(),
        name: name.to_string(),
        uid: object::meta_str(&sa, "uid").unwrap_or_default().to_string(),
        bound,
    };
    let now = satoken::unix_now();
    let issued = authority
        .issue(&subject, &audiences, lifetime, now)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let meta = object::metadata_mut(&mut request);
    meta.insert("name".into(), json!(name));
    meta.insert("namespace".into(), json!(namespace));
    meta.insert("creationTimestamp".into(), json!(rfc3339(now)));
    request["apiVersion"] = json!(format!("{GROUP}/v1"));
    request["kind"] = json!(KIND);
    request["status"] = json!({
        "token": issued.token,
        "expirationTimestamp": rfc3339(issued.expires),
    });
    Ok(json_response(StatusCode::CREATED, &request))
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// A name or namespace in the body must match the URL's.
fn check_names(request: &Value, name: &str, namespace: &str) -> Result<(), ApiError> {
    for (field, expected, what) in [
        ("name", name, "name"),
        ("namespace", namespace, "namespace"),
    ] {
        let given = object::meta_str(request, field).unwrap_or("");
        if !given.is_empty() && given != expected {
            let error = FieldError {
                field: format!("metadata.{field}"),
                reason: CauseReason::Invalid,
                message: format!(
                    "Invalid value: \"{given}\": must match the service account {what} if specified"
                ),
            };
            return Err(ApiError::invalid(KIND, GROUP, name, &[error]));
        }
    }
    Ok(())
}

/// The lifetime asked for, within upstream's bounds.
fn validate(spec: &Value) -> Result<i64, ApiError> {
    let seconds = spec["expirationSeconds"].as_i64().unwrap_or(0);
    let problem = if seconds < MIN_EXPIRATION_SECS {
        "may not specify a duration less than 10 minutes"
    } else if seconds > MAX_EXPIRATION_SECS {
        "may not specify a duration larger than 2^32 seconds"
    } else {
        return Ok(seconds);
    };
    let error = FieldError {
        field: "spec.expirationSeconds".into(),
        reason: CauseReason::Invalid,
        message: format!("Invalid value: {seconds}: {problem}"),
    };
    Err(ApiError::invalid(KIND, GROUP, "", &[error]))
}

/// The Pod or Secret named by `boundObjectRef`, which must exist (with the uid, when
/// one is given) and, for a pod, run as this service account.
async fn bound_object(
    ctx: &Ctx,
    sa_name: &str,
    namespace: &str,
    reference: &Value,
) -> Result<BoundObject, ApiError> {
    let kind = reference["kind"].as_str().unwrap_or("");
    let api_version = reference["apiVersion"].as_str().unwrap_or("");
    let plural = match (api_version, kind) {
        ("v1", "Pod") => "pods",
        ("v1", "Secret") => "secrets",
        _ => {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {}",
                go_gvk(api_version, kind)
            )))
        }
    };
    let ref_name = reference["name"].as_str().unwrap_or("");
    let resource = resources::find("", "v1", plural).ok_or_else(ApiError::no_route)?;
    let entry = ctx
        .state
        .store
        .get(&resource.key(Some(namespace), ref_name))
        .await
        .map_err(|e| ApiError::from_store(e, resource, ref_name))?
        .ok_or_else(|| ApiError::not_found(resource, ref_name))?;
    let obj = object::from_entry(&entry).map_err(|e| ApiError::internal(e.to_string()))?;
    if kind == "Pod" && obj["spec"]["serviceAccountName"].as_str() != Some(sa_name) {
        return Err(ApiError::bad_request(format!(
            "cannot bind token for serviceaccount {sa_name:?} to pod running with different serviceaccount name."
        )));
    }
    let uid = object::meta_str(&obj, "uid")
        .unwrap_or_default()
        .to_string();
    let wanted = reference["uid"].as_str().unwrap_or("");
    if !wanted.is_empty() && wanted != uid {
        let mut error = ApiError::conflict(resource, ref_name);
        error.message = format!(
            "Operation cannot be fulfilled on {kind} \"{ref_name}\": the UID in the bound object reference ({wanted}) does not match the UID in record. The object might have been deleted and then recreated"
        );
        return Err(error);
    }
    Ok(BoundObject {
        kind: kind.to_string(),
        name: ref_name.to_string(),
        uid,
    })
}

/// Go's `schema.GroupVersionKind.String()`: `/v1, Kind=Node`, `apps/v1, Kind=Deployment`.
fn go_gvk(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_is_bounded_like_upstream() {
        assert_eq!(validate(&json!({"expirationSeconds": 600})).unwrap(), 600);
        let err = validate(&json!({"expirationSeconds": 60})).unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "TokenRequest.authentication.k8s.io \"\" is invalid: spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        assert!(validate(&json!({"expirationSeconds": (1i64 << 32) + 1})).is_err());
    }

    #[test]
    fn body_names_must_match_the_url() {
        let request = json!({"metadata": {"name": "other"}});
        assert_eq!(check_names(&request, "default", "x").unwrap_err().code, 422);
        assert!(check_names(&json!({"metadata": {"namespace": "x"}}), "default", "x").is_ok());
        assert_eq!(go_gvk("v1", "Node"), "/v1, Kind=Node");
    }
}
