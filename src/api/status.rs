//! Errors as Kubernetes `Status` objects, so kubectl prints them as it does for any
//! cluster (`Error from server (NotFound): deployments.apps "web" not found`), and the
//! `Status` a successful delete answers with.
//!
//! Every 404 carries `details` as kube-apiserver's do: name, group and kind (the
//! plural) for a missing object; empty (`{}`) for a path nothing serves — an unknown
//! resource or subresource. kubectl 1.32/1.33 `debug` dereferences `details` of a
//! NotFound and crashes without it, and tells the two apart by `details.name` ("ephemeral
//! containers are disabled for this cluster" when it is empty).

use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::resources::Resource;
use super::validation::FieldError;
use crate::store::StoreError;

/// What failed, as the API answers it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

fn details(resource: &Resource, name: &str) -> Value {
    json!({"name": name, "group": resource.group, "kind": resource.plural})
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn not_found(resource: &Resource, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", resource.qualified_name()),
        )
        .with_details(details(resource, name))
    }

    /// A path that names no resource or subresource: the plain 404 kubectl expects,
    /// with the empty `details` kube-apiserver sends.
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(json!({}))
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn already_exists(resource: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", resource.qualified_name()),
        )
        .with_details(details(resource, name))
    }

    pub fn conflict(resource: &Resource, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                resource.qualified_name()
            ),
        )
        .with_details(details(resource, name))
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"),
        )
    }

    /// 406: the Accept header lists none of the media types the endpoint `serves`.
    pub fn not_acceptable(accept: &str, serves: &[&str]) -> Self {
        Self::new(
            406,
            "NotAcceptable",
            format!(
                "only the following media types are accepted: {} (got {accept:?})",
                serves.join(", ")
            ),
        )
    }

    /// 422 with one cause per field, which kubectl prints after `is invalid:`.
    pub fn invalid(kind: &str, group: &str, name: &str, errors: &[FieldError]) -> Self {
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason.as_str(), "message": e.message, "field": e.field}))
            .collect();
        let summary: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Self::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {}", summary.join(", ")),
        )
        .with_details(json!({"name": name, "group": group, "kind": kind, "causes": causes}))
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    pub fn from_store(e: StoreError, resource: &Resource, name: &str) -> Self {
        match e {
            StoreError::AlreadyExists(_) => Self::already_exists(resource, name),
            StoreError::NotFound(_) => Self::not_found(resource, name),
            StoreError::Conflict { .. } => Self::conflict(resource, name),
            StoreError::Compacted { requested, oldest } => {
                Self::expired(format!("too old resource version: {requested} ({oldest})"))
            }
            StoreError::FutureRevision(r) => Self::new(
                504,
                "Timeout",
                format!("Too large resource version: {r}, current: older"),
            ),
            StoreError::Backend(message) => Self::internal(message),
        }
    }

    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, self.to_status().to_string()).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response
    }
}

/// A successful delete with nothing else to say: kube-apiserver's answer when the
/// object is gone and its registry does not return deleted objects. Empty detail
/// fields are left out, as Go's `omitempty` does.
pub fn success(resource: &Resource, name: &str, uid: Option<&str>) -> Value {
    let mut details = serde_json::Map::new();
    details.insert("name".into(), json!(name));
    if !resource.group.is_empty() {
        details.insert("group".into(), json!(resource.group));
    }
    details.insert("kind".into(), json!(resource.plural));
    if let Some(uid) = uid.filter(|u| !u.is_empty()) {
        details.insert("uid".into(), json!(uid));
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

/// A bare success, as subresources like binding and eviction answer.
pub fn bare_success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_not_found_carries_details() {
        let pods = super::super::resources::find("", "v1", "pods").unwrap();
        assert_eq!(ApiError::no_route().to_status()["details"], json!({}));
        let missing = ApiError::not_found(pods, "p").to_status();
        assert_eq!(missing["details"]["name"], "p");
    }

    #[test]
    fn delete_success_leaves_out_empty_details() {
        let configmaps = super::super::resources::find("", "v1", "configmaps").unwrap();
        let status = success(configmaps, "c", Some("u-1"));
        assert_eq!(
            status["details"],
            json!({"name": "c", "kind": "configmaps", "uid": "u-1"})
        );
        let deployments = super::super::resources::find("apps", "v1", "deployments").unwrap();
        assert_eq!(success(deployments, "d", None)["details"]["group"], "apps");
    }
}
