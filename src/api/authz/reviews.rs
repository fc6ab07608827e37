//! Access reviews (authorization.k8s.io/v1), answered from the same RBAC policy that
//! authorizes requests: SelfSubjectAccessReview (`kubectl auth can-i`, also with
//! `--as`), SubjectAccessReview (any user's decision, for those allowed to ask),
//! LocalSubjectAccessReview (the same within one namespace) and
//! SelfSubjectRulesReview (`kubectl auth can-i --list`). Masters are allowed
//! everything; a node's answer covers only what RBAC grants it, not what the node
//! authorizer adds.
//!
//! Owns: the review endpoints. May call: [`super::rbac`], `body`.

use axum::extract::{Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::rbac::{self, User};
use super::Attributes;
use crate::api::status::ApiError;
use crate::api::{body, caller, json_response, SharedState};

const GROUP_VERSION: &str = "authorization.k8s.io/v1";

async fn read_review(request: Request) -> Result<Value, ApiError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = axum::body::to_bytes(request.into_body(), body::MAX_BODY)
        .await
        .map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
    let review = body::decode(&content_type, &bytes)?;
    if !review["spec"].is_object() {
        return Err(ApiError::bad_request("the review has no spec"));
    }
    Ok(review)
}

/// The question a review's spec asks.
enum Question {
    Resource(Attributes),
    Path { verb: String, path: String },
}

fn question(spec: &Value) -> Result<Question, ApiError> {
    let text = |v: &Value, f: &str| v[f].as_str().unwrap_or_default().to_string();
    if let Some(r) = spec.get("resourceAttributes").filter(|r| r.is_object()) {
        let verb = text(r, "verb");
        let verb = super::super::resources::VERBS
            .iter()
            .chain(["impersonate", "bind", "escalate", "use", "approve", "sign"].iter())
            .find(|v| **v == verb)
            .copied()
            .unwrap_or("unknown");
        return Ok(Question::Resource(Attributes {
            verb,
            group: text(r, "group"),
            resource: text(r, "resource"),
            subresource: text(r, "subresource"),
            namespace: text(r, "namespace"),
            name: text(r, "name"),
            field_selector: String::new(),
        }));
    }
    if let Some(p) = spec.get("nonResourceAttributes").filter(|p| p.is_object()) {
        return Ok(Question::Path {
            verb: text(p, "verb"),
            path: text(p, "path"),
        });
    }
    Err(ApiError::bad_request(
        "spec: exactly one of resourceAttributes or nonResourceAttributes must be set",
    ))
}

async fn decide(state: &SharedState, user: &User, master: bool, q: &Question) -> bool {
    if master {
        return true;
    }
    let request = match q {
        Question::Resource(a) => rbac::Request::Resource(a),
        Question::Path { verb, path } => rbac::Request::Path { verb, path },
    };
    state.rbac.allows(&state.store, user, &request).await
}

fn answer(mut review: Value, kind: &str, allowed: bool) -> Response {
    review["apiVersion"] = json!(GROUP_VERSION);
    review["kind"] = json!(kind);
    review["metadata"] = json!({"creationTimestamp": null});
    review["status"] = if allowed {
        json!({"allowed": true, "reason": "RBAC: allowed"})
    } else {
        json!({"allowed": false})
    };
    json_response(StatusCode::CREATED, &review)
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectaccessreviews`
pub async fn self_subject_access_review(
    State(state): State<SharedState>,
    request: Request,
) -> Response {
    let Some(identity) = caller(&request).cloned() else {
        return ApiError::unauthorized().into_response();
    };
    let result = async {
        let review = read_review(request).await?;
        let q = question(&review["spec"])?;
        let user = User::from_identity(&identity);
        let allowed = decide(&state, &user, super::is_master(&identity), &q).await;
        Ok::<_, ApiError>(answer(review, "SelfSubjectAccessReview", allowed))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// The user a SubjectAccessReview asks about.
fn subject(spec: &Value) -> Result<(User, bool), ApiError> {
    let name = spec["user"].as_str().unwrap_or_default();
    let groups: Vec<String> = spec["groups"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| g.as_str().map(String::from))
        .collect();
    if name.is_empty() && groups.is_empty() {
        return Err(ApiError::bad_request(
            "spec.user or spec.groups: at least one of user or group must be specified",
        ));
    }
    let master = groups.iter().any(|g| g == "system:masters");
    Ok((User::new(name, &groups), master))
}

/// `POST /apis/authorization.k8s.io/v1/subjectaccessreviews`
pub async fn subject_access_review(State(state): State<SharedState>, request: Request) -> Response {
    let result = async {
        let review = read_review(request).await?;
        let q = question(&review["spec"])?;
        let (user, master) = subject(&review["spec"])?;
        let allowed = decide(&state, &user, master, &q).await;
        Ok::<_, ApiError>(answer(review, "SubjectAccessReview", allowed))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /apis/authorization.k8s.io/v1/namespaces/{ns}/localsubjectaccessreviews`
pub async fn local_subject_access_review(
    State(state): State<SharedState>,
    Path(namespace): Path<String>,
    request: Request,
) -> Response {
    let result = async {
        let review = read_review(request).await?;
        let q = question(&review["spec"])?;
        match &q {
            Question::Resource(a) if a.namespace == namespace => {}
            Question::Resource(a) => {
                return Err(ApiError::bad_request(format!(
                    "spec.resourceAttributes.namespace: Invalid value: \"{}\": must match metadata.namespace \"{namespace}\"",
                    a.namespace
                )))
            }
            Question::Path { .. } => {
                return Err(ApiError::bad_request(
                    "spec.nonResourceAttributes: disallowed on this kind of request",
                ))
            }
        }
        let (user, master) = subject(&review["spec"])?;
        let allowed = decide(&state, &user, master, &q).await;
        let mut response = review;
        response["metadata"]["namespace"] = json!(namespace);
        Ok::<_, ApiError>(answer(response, "LocalSubjectAccessReview", allowed))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}

/// `POST /apis/authorization.k8s.io/v1/selfsubjectrulesreviews`: every rule that
/// applies to the caller in `spec.namespace`.
pub async fn self_subject_rules_review(
    State(state): State<SharedState>,
    request: Request,
) -> Response {
    let Some(identity) = caller(&request).cloned() else {
        return ApiError::unauthorized().into_response();
    };
    let result = async {
        let mut review = read_review(request).await?;
        let namespace = review["spec"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let policy = state.rbac.current(&state.store).await;
        let user = User::from_identity(&identity);
        let rules: Vec<&rbac::Rule> = policy.rules_for(&user, &namespace);
        let (mut resource_rules, mut path_rules) = (Vec::new(), Vec::new());
        if super::is_master(&identity) {
            resource_rules.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
            path_rules.push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
        }
        for r in rules {
            if r.non_resource_urls.is_empty() {
                resource_rules.push(json!({"verbs": r.verbs, "apiGroups": r.api_groups,
                    "resources": r.resources, "resourceNames": r.resource_names}));
            } else {
                path_rules.push(json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}));
            }
        }
        review["apiVersion"] = json!(GROUP_VERSION);
        review["kind"] = json!("SelfSubjectRulesReview");
        review["metadata"] = json!({"creationTimestamp": null});
        review["status"] = json!({"resourceRules": resource_rules,
            "nonResourceRules": path_rules, "incomplete": false});
        Ok::<_, ApiError>(json_response(StatusCode::CREATED, &review))
    };
    result.await.unwrap_or_else(IntoResponse::into_response)
}
