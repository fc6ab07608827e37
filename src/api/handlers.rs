//! The object handlers: routing of `/api` and `/apis` paths to get, list, watch,
//! create, update, patch, delete and deletecollection, and the subresources
//! (status, scale, binding, finalize; eviction in `handlers::eviction`; token in
//! `tokenrequest`).

mod eviction;

use std::collections::{BTreeSet, HashMap};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::alloc::{self, Allocations};
use super::auth::Identity;
use super::list::{list_objects, scan, Listed};
use super::patch::{self, apply, PatchType};
use super::request::{read, Ctx, Filter};
use super::resources::{self, Resource};
use super::status::{self, ApiError};
use super::validation::{CauseReason, FieldError};
use super::{
    body, defaults, discovery, events, json_response, json_response_typed, object, openapi,
    rawlist, schema, table, validation, watch, SharedState,
};
use crate::model::selector::LabelSelector;
use crate::store::{Entry, ListRequest, Revision, StoreError, WriteOp};

/// Patches and unconditional updates retry this often when they race another writer.
const CONFLICT_RETRIES: usize = 64;

/// Where a request goes.
enum Target {
    Collection,
    Item(String),
    Sub(String, String),
}

pub async fn dispatch(State(state): State<SharedState>, request: Request) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let user = request
        .extensions()
        .get::<Identity>()
        .map(|i| i.user.clone())
        .unwrap_or_default();
    let logged = tracing::enabled!(tracing::Level::DEBUG).then(|| {
        let agent = request.headers().get(header::USER_AGENT);
        let agent = agent.and_then(|a| a.to_str().ok()).unwrap_or_default();
        (request.uri().clone(), agent.to_string())
    });
    let response = match route(state, request).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    };
    if let Some((uri, agent)) = logged {
        tracing::debug!(%method, %uri, %user, %agent, status = response.status().as_u16(),
            micros = started.elapsed().as_micros() as u64, "request");
    }
    response
}

async fn route(state: SharedState, request: Request) -> Result<Response, ApiError> {
    // pods, services and nodes `…/proxy/…`: relayed with the path as it came.
    if let Some(target) = super::resource_proxy::parse_path(request.uri().path()) {
        return Ok(super::resource_proxy::serve(state, target, request).await);
    }
    let path = request.uri().path().trim_end_matches('/').to_string();
    let query: HashMap<String, String> = request
        .uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Some(response) = discovery_route(&state, &path, &accept) {
        return Ok(response);
    }
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::no_route()),
    };
    let (resource, namespace, target) = parse_target(group, version, rest)?;
    // Logs and exec go to the pod's node, with the request as it came (upgrades).
    if let (Target::Sub(name, sub), Some(ns)) = (&target, &namespace) {
        if resource.group.is_empty() && resource.plural == "pods" && super::proxy::handles(sub) {
            let (ns, name, sub) = (ns.clone(), name.clone(), sub.clone());
            return Ok(super::proxy::serve(state, ns, name, sub, request).await);
        }
    }
    let method = request.method().clone();
    let identity = request.extensions().get::<Identity>().cloned();
    let headers = request.headers().clone();
    let body = if super::method_is_write(&method) {
        axum::body::to_bytes(request.into_body(), body::MAX_BODY)
            .await
            .map_err(body_error)?
    } else {
        Bytes::new()
    };
    let ctx = Ctx {
        state,
        resource,
        namespace,
        query,
        headers,
        identity,
    };
    serve(ctx, method, target, body).await
}

/// A body over the limit is 413, as on kube-apiserver; anything else 400.
fn body_error(e: axum::Error) -> ApiError {
    let limited =
        std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
    if limited {
        ApiError::too_large(format!(
            "Request entity too large: limit is {}",
            body::MAX_BODY
        ))
    } else {
        ApiError::bad_request(format!("reading the request body: {e}"))
    }
}

fn discovery_route(state: &SharedState, path: &str, accept: &str) -> Option<Response> {
    let ok = |v: Value| json_response(StatusCode::OK, &v);
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    Some(match segments.as_slice() {
        ["api"] => discovery_root(accept, |version| match version {
            Some(v) => discovery::aggregated_core(v),
            None => discovery::legacy_core(&state.config.advertise_address),
        }),
        ["apis"] => discovery_root(accept, |version| match version {
            Some(v) => discovery::aggregated_groups(v),
            None => discovery::legacy_groups(),
        }),
        ["api", "v1"] => ok(discovery::resource_list("", "v1")?),
        ["apis", g] => ok(discovery::legacy_group(g)?),
        ["apis", g, v] => ok(discovery::resource_list(g, v)?),
        ["openapi", "v2"] if accept.contains("protobuf") => {
            let mut response = Response::new(axum::body::Body::from(openapi::v2_protobuf()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(openapi::V2_PROTOBUF),
            );
            response
        }
        ["openapi", "v2"] => openapi_response(openapi::v2_json()),
        ["openapi", "v3"] => ok(openapi::root()),
        ["openapi", "v3", rest @ ..] => {
            let doc = openapi::group_version_document(&rest.join("/"))?;
            let mut response = openapi_response(doc);
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, immutable"),
            );
            response
        }
        _ => return None,
    })
}

/// A built OpenAPI document, sent as it was serialized.
fn openapi_response(doc: &'static openapi::Document) -> Response {
    let mut response = Response::new(axum::body::Body::from(doc.json.as_slice()));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `GET /api` or `GET /apis` in the form the Accept header picks (`document` gets the
/// aggregated version, or `None` for legacy); `Vary: Accept` as kube-apiserver sends.
fn discovery_root(
    accept: &str,
    document: impl FnOnce(Option<discovery::AggregatedVersion>) -> Value,
) -> Response {
    let mut response = match discovery::negotiate(accept) {
        Some(discovery::DiscoveryForm::Aggregated(version)) => json_response_typed(
            StatusCode::OK,
            &document(Some(version)),
            version.content_type(),
        ),
        Some(discovery::DiscoveryForm::Legacy) => json_response(StatusCode::OK, &document(None)),
        None => ApiError::not_acceptable(accept, &discovery::SERVED_MEDIA_TYPES).into_response(),
    };
    response
        .headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    response
}

fn parse_target(
    group: &str,
    version: &str,
    rest: &[&str],
) -> Result<(&'static Resource, Option<String>, Target), ApiError> {
    let find =
        |plural: &str| resources::find(group, version, plural).ok_or_else(ApiError::no_route);
    let namespace_sub = |s: &str| group.is_empty() && matches!(s, "status" | "finalize");
    match rest {
        [plural] => Ok((find(plural)?, None, Target::Collection)),
        ["namespaces", ns, sub] if namespace_sub(sub) => Ok((
            find("namespaces")?,
            None,
            Target::Sub(ns.to_string(), sub.to_string()),
        )),
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_ok_and(|r| r.namespaced) => {
            let resource = find(plural)?;
            let target = match tail {
                [] => Target::Collection,
                [name] => Target::Item(name.to_string()),
                [name, sub] => Target::Sub(name.to_string(), sub.to_string()),
                _ => return Err(ApiError::no_route()),
            };
            Ok((resource, Some(ns.to_string()), target))
        }
        [plural, name] => Ok((find(plural)?, None, Target::Item(name.to_string()))),
        [plural, name, sub] => Ok((
            find(plural)?,
            None,
            Target::Sub(name.to_string(), sub.to_string()),
        )),
        _ => Err(ApiError::no_route()),
    }
}

async fn serve(
    ctx: Ctx,
    method: Method,
    target: Target,
    body: Bytes,
) -> Result<Response, ApiError> {
    if ctx.resource.namespaced
        && ctx.namespace.is_none()
        && !matches!((&method, &target), (&Method::GET, Target::Collection))
    {
        return Err(ApiError::no_route());
    }
    match (method, target) {
        (Method::GET, Target::Collection) if ctx.flag("watch") => watch::serve(ctx).await,
        (Method::GET, Target::Collection) => list(&ctx).await,
        (Method::POST, Target::Collection) => create(&ctx, &body).await,
        (Method::DELETE, Target::Collection) => delete_collection(&ctx, &body).await,
        (Method::GET, Target::Item(name)) => get(&ctx, &name).await,
        (Method::PUT, Target::Item(name)) => update(&ctx, &name, &body, None).await,
        (Method::PATCH, Target::Item(name)) => patch(&ctx, &name, &body, None).await,
        (Method::DELETE, Target::Item(name)) => delete(&ctx, &name, &body).await,
        (method, Target::Sub(name, sub)) => subresource(&ctx, method, &name, &sub, &body).await,
        (method, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

async fn subresource(
    ctx: &Ctx,
    method: Method,
    name: &str,
    sub: &str,
    body: &Bytes,
) -> Result<Response, ApiError> {
    if ctx.resource.subresource(sub).is_none() {
        return Err(ApiError::no_route());
    }
    match (sub, method) {
        ("status", Method::GET) => get(ctx, name).await,
        ("status", Method::PUT) => update(ctx, name, body, Some("status")).await,
        ("status", Method::PATCH) => patch(ctx, name, body, Some("status")).await,
        ("scale", Method::GET) => {
            let (_, obj) = read(ctx, name).await?;
            Ok(json_response(StatusCode::OK, &scale_of(ctx, &obj)))
        }
        ("scale", Method::PUT) => update(ctx, name, body, Some("scale")).await,
        ("scale", Method::PATCH) => patch(ctx, name, body, Some("scale")).await,
        ("binding", Method::POST) => bind(ctx, name, body).await,
        ("token", Method::POST) => super::tokenrequest::create(ctx, name, body).await,
        ("finalize", Method::PUT) => update(ctx, name, body, Some("finalize")).await,
        ("eviction", Method::POST) => eviction::evict(ctx, name, body).await,
        ("ephemeralcontainers", Method::GET) => get(ctx, name).await,
        ("ephemeralcontainers", Method::PUT) => {
            update(ctx, name, body, Some("ephemeralcontainers")).await
        }
        ("ephemeralcontainers", Method::PATCH) => {
            patch(ctx, name, body, Some("ephemeralcontainers")).await
        }
        (_, method) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method})"
        ))),
    }
}

async fn get(ctx: &Ctx, name: &str) -> Result<Response, ApiError> {
    let (_, obj) = read(ctx, name).await?;
    Ok(ctx.respond(StatusCode::OK, &ctx.present(obj)))
}

async fn list(ctx: &Ctx) -> Result<Response, ApiError> {
    let filter = Filter::from_query(ctx)?;
    let limit = ctx.param("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    if ctx.wants_table() {
        let listed = list_objects(ctx, &filter, limit).await?;
        let now = chrono::Utc::now();
        let t = table::table(
            ctx.resource.kind,
            &listed.items,
            &listed.revision.to_string(),
            listed.continue_token.as_deref(),
            now,
        );
        return Ok(json_response(StatusCode::OK, &t));
    }
    if ctx.resource.group == "events.k8s.io" {
        // Converted from core/v1 Events: decoded, converted, encoded.
        let listed = list_objects(ctx, &filter, limit).await?;
        let items: Vec<Value> = listed.items.into_iter().map(|o| ctx.shape(o)).collect();
        let listed = Listed {
            items: items.iter().map(|i| i.to_string().into_bytes()).collect(),
            revision: listed.revision,
            continue_token: listed.continue_token,
        };
        return Ok(list_response(ctx, listed));
    }
    list_raw(ctx, &filter, limit).await
}

/// A list written from the stored bytes of its objects (see [`rawlist`]).
async fn list_raw(ctx: &Ctx, filter: &Filter, limit: usize) -> Result<Response, ApiError> {
    let api_version = ctx.resource.api_version();
    let shape = if ctx.wants_metadata_only() {
        rawlist::Shape::MetadataOnly
    } else {
        rawlist::Shape::Full {
            api_version: &api_version,
            kind: ctx.resource.kind,
        }
    };
    let listed = scan(ctx, filter, limit, |entry| {
        let mut item = Vec::with_capacity(entry.value.len() + 64);
        let kept = rawlist::append_item(&entry.value, entry.mod_rev, filter, shape, &mut item)
            .map_err(|e| ApiError::internal(format!("{e} (key {})", entry.key)))?;
        Ok(kept.then_some(item))
    })
    .await?;
    Ok(list_response(ctx, listed))
}

/// `{"kind": …List, "apiVersion", "metadata", "items": [...]}` around encoded items.
fn list_response(ctx: &Ctx, listed: Listed<Vec<u8>>) -> Response {
    let mut metadata = json!({"resourceVersion": listed.revision.to_string()});
    if let Some(token) = listed.continue_token {
        metadata["continue"] = Value::String(token);
    }
    let (kind, api_version) = if ctx.wants_metadata_only() {
        (
            "PartialObjectMetadataList".to_string(),
            "meta.k8s.io/v1".to_string(),
        )
    } else {
        (ctx.resource.list_kind(), ctx.resource.api_version())
    };
    let head = json!({"kind": kind, "apiVersion": api_version, "metadata": metadata});
    let body = list_body(&head, &listed.items);
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `head` (an object) with `"items": [...]` added from already encoded items.
fn list_body(head: &Value, items: &[Vec<u8>]) -> Vec<u8> {
    let head = head.to_string();
    let size: usize = items.iter().map(|i| i.len() + 1).sum();
    let mut body = Vec::with_capacity(head.len() + size + 16);
    // The head without its closing brace, then the items.
    body.extend_from_slice(head.strip_suffix('}').unwrap_or("{").as_bytes());
    if head.len() > 2 {
        body.push(b',');
    }
    body.extend_from_slice(b"\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item);
    }
    body.extend_from_slice(b"]}");
    body
}

/// Decodes an object body and checks its type against the endpoint.
fn decode_object(ctx: &Ctx, body: &Bytes) -> Result<Value, ApiError> {
    let content_type = ctx.header(header::CONTENT_TYPE).to_string();
    let mut obj = body::decode(&content_type, body)?;
    if !obj.is_object() {
        return Err(ApiError::bad_request("the request body must be an object"));
    }
    let expected = ctx.resource.api_version();
    if let Some(given) = obj.get("apiVersion").and_then(Value::as_str) {
        if given != expected {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({given}) does not match the expected API version ({expected})"
            )));
        }
    }
    if let Some(kind) = obj.get("kind").and_then(Value::as_str) {
        if kind != ctx.resource.kind {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                ctx.resource.kind
            )));
        }
    }
    obj["apiVersion"] = Value::String(expected);
    obj["kind"] = Value::String(ctx.resource.kind.into());
    if ctx.resource.group == "events.k8s.io" {
        obj = events::to_core(&obj);
    }
    Ok(obj)
}

/// The namespace a namespaced object lands in; a mismatch with the path is an error.
fn place_in_namespace(ctx: &Ctx, obj: &mut Value) -> Result<(), ApiError> {
    let meta = object::metadata_mut(obj);
    if !ctx.resource.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let ns = ctx.namespace.clone().unwrap_or_default();
    match meta.get("namespace").and_then(Value::as_str) {
        Some(given) if !given.is_empty() && given != ns => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            meta.insert("namespace".into(), Value::String(ns));
            Ok(())
        }
    }
}

/// Types and, under `fieldValidation=Strict` (kubectl's default), unknown fields.
/// Otherwise unknown fields are dropped, with warnings for `Warn`.
fn check_schema(ctx: &Ctx, obj: &mut Value) -> Result<Vec<String>, ApiError> {
    let api_version = obj["apiVersion"].as_str().unwrap_or("").to_string();
    let unknown = schema::check_and_prune(&api_version, ctx.resource.kind, obj)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    if unknown.is_empty() {
        return Ok(vec![]);
    }
    match ctx.param("fieldValidation").unwrap_or("Warn") {
        "Strict" => {
            let errors: Vec<FieldError> = unknown
                .iter()
                .map(|path| FieldError {
                    field: path.clone(),
                    reason: CauseReason::Invalid,
                    message: format!(
                        "Invalid value: unknown field \"{path}\": field not declared in schema"
                    ),
                })
                .collect();
            Err(invalid(ctx, object::name(obj), &errors))
        }
        "Ignore" => Ok(vec![]),
        _ => Ok(unknown
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect()),
    }
}

fn invalid(ctx: &Ctx, name: &str, errors: &[FieldError]) -> ApiError {
    ApiError::invalid(ctx.resource.kind, ctx.resource.group, name, errors)
}

fn with_warnings(mut response: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let quoted = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{quoted}\"")) {
            response.headers_mut().append("Warning", v);
        }
    }
    response
}

/// What Kubernetes resets or computes on create, per kind.
fn prepare_create(ctx: &Ctx, obj: &mut Value) {
    let meta = object::metadata_mut(obj);
    meta.insert("uid".into(), Value::String(object::new_uid()));
    meta.insert(
        "creationTimestamp".into(),
        Value::String(object::now_rfc3339()),
    );
    for field in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
    ] {
        meta.remove(field);
    }
    if ctx.resource.has_generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    match ctx.resource.kind {
        "Deployment" | "ReplicaSet" | "CronJob" | "PersistentVolumeClaim" | "PersistentVolume" => {
            obj["status"] = json!({})
        }
        "Job" => {
            obj["status"] = json!({});
            super::batch::generate_job_selector(obj);
        }
        // The four counts DaemonSetStatus always serializes.
        "DaemonSet" => {
            obj["status"] = json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
                "desiredNumberScheduled": 0, "numberReady": 0})
        }
        "Service" => obj["status"] = json!({"loadBalancer": {}}),
        "Namespace" => obj["status"] = json!({"phase": "Active"}),
        "Pod" => {
            let qos = qos_class(obj);
            obj["status"] = json!({"phase": "Pending", "qosClass": qos});
        }
        _ => {}
    }
}

/// The Pod's QoS class from its containers' requests and limits.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .filter_map(|f| pod["spec"][f].as_array())
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        for resource in ["cpu", "memory"] {
            let request = &c["resources"]["requests"][resource];
            let limit = &c["resources"]["limits"][resource];
            any |= !request.is_null() || !limit.is_null();
            guaranteed &= !limit.is_null() && (request.is_null() || request == limit);
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn fill_generate_name(obj: &mut Value) -> Result<(), ApiError> {
    let meta = object::metadata_mut(obj);
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if has_name {
        return Ok(());
    }
    let base = meta
        .get("generateName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if base.is_empty() {
        return Err(ApiError::invalid_required_name());
    }
    let name = format!("{base}{}", object::random_suffix(5));
    meta.insert("name".into(), Value::String(name));
    Ok(())
}

impl ApiError {
    fn invalid_required_name() -> Self {
        let mut e = ApiError::bad_request("name or generateName is required");
        e.code = 422;
        e.reason = "Invalid";
        e
    }
}

/// A namespaced object needs a namespace that exists and is not being deleted.
async fn check_namespace(ctx: &Ctx) -> Result<(), ApiError> {
    let Some(ns) = ctx.namespace.as_deref().filter(|_| ctx.resource.namespaced) else {
        return Ok(());
    };
    let namespaces = resources::find("", "v1", "namespaces").ok_or_else(ApiError::no_route)?;
    let entry = ctx
        .state
        .store
        .get(&namespaces.key(None, ns))
        .await
        .map_err(|e| ApiError::from_store(e, namespaces, ns))?
        .ok_or_else(|| ApiError::not_found(namespaces, ns))?;
    let obj = object::from_entry(&entry).map_err(|e| ApiError::internal(e.to_string()))?;
    if object::is_deleting(&obj) && ctx.resource.kind != "Event" {
        return Err(ApiError::forbidden(format!(
            "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
            ctx.resource.qualified_name(),
            object::name(&obj)
        )));
    }
    Ok(())
}

/// Defaults, then validates; every problem becomes one 422.
fn default_and_validate(
    ctx: &Ctx,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Vec<String>, ApiError> {
    let nulls = validation::null_list_items(obj);
    if !nulls.is_empty() {
        return Err(invalid(ctx, object::name(obj), &nulls));
    }
    defaults::apply_defaults(ctx.resource.kind, obj);
    let warnings = check_schema(ctx, obj)?;
    let errors = validation::validate(ctx.resource.kind, obj, old);
    if !errors.is_empty() {
        return Err(invalid(ctx, object::name(obj), &errors));
    }
    check_size(obj)?;
    Ok(warnings)
}

/// The largest object stored: what one request body may hold (kube-apiserver's
/// 3 MiB), so no patch can grow an object past what a client could send.
const MAX_OBJECT_BYTES: usize = body::MAX_BODY;

fn check_size(obj: &Value) -> Result<(), ApiError> {
    let size = serde_json::to_vec(obj).map_or(usize::MAX, |v| v.len());
    if size > MAX_OBJECT_BYTES {
        return Err(ApiError::too_large(format!(
            "Request entity too large: limit is {MAX_OBJECT_BYTES}"
        )));
    }
    Ok(())
}

async fn create(ctx: &Ctx, body: &Bytes) -> Result<Response, ApiError> {
    let obj = decode_object(ctx, body)?;
    let (code, stored, warnings) = create_object(ctx, obj).await?;
    Ok(with_warnings(
        ctx.respond(code, &ctx.present(stored)),
        &warnings,
    ))
}

/// The create path every way of creating shares (POST, and apply of a missing object).
async fn create_object(
    ctx: &Ctx,
    mut obj: Value,
) -> Result<(StatusCode, Value, Vec<String>), ApiError> {
    place_in_namespace(ctx, &mut obj)?;
    fill_generate_name(&mut obj)?;
    prepare_create(ctx, &mut obj);
    if ctx.resource.kind == "Pod" && ctx.resource.group.is_empty() {
        super::ephemeral::forbid_on_create(&obj)?;
    }
    let warnings = default_and_validate(ctx, &mut obj, None)?;
    super::authz::restriction::admit_create(ctx.identity.as_ref(), ctx.resource, &obj)?;
    super::authz::escalation::admit(&ctx.state, ctx.identity.as_ref(), ctx.resource, &obj).await?;
    check_namespace(ctx).await?;
    if let (Some(ns), "Pod") = (ctx.namespace.as_deref(), ctx.resource.kind) {
        super::sa_admission::admit_pod(&ctx.state, ns, &mut obj).await?;
    }
    super::storage_admission::admit(&ctx.state, ctx.resource.kind, &mut obj).await?;
    let name = object::name(&obj).to_string();
    // Checked before allocating, so a duplicate is AlreadyExists, not an address clash.
    let exists = ctx
        .state
        .store
        .get(&ctx.key(&name))
        .await
        .map_err(|e| ApiError::from_store(e, ctx.resource, &name))?;
    if exists.is_some() {
        return Err(ApiError::already_exists(ctx.resource, &name));
    }
    for attempt in 0..CONFLICT_RETRIES {
        let mut candidate = obj.clone();
        let mut ops = allocate(ctx, &mut candidate, None).await?;
        let key = ctx.key(&name);
        if ctx.dry_run() {
            return Ok((StatusCode::CREATED, candidate, warnings));
        }
        ops.insert(
            0,
            WriteOp::Create {
                key: key.clone(),
                value: object::to_stored(&candidate),
            },
        );
        match ctx.state.store.transaction(ops).await {
            Ok(entries) => {
                object::set_resource_version(&mut candidate, entries[0].mod_rev);
                return Ok((StatusCode::CREATED, candidate, warnings));
            }
            // Lost an allocation race: pick again.
            Err(StoreError::AlreadyExists(k)) if k != key && attempt + 1 < CONFLICT_RETRIES => {
                continue
            }
            Err(e) => return Err(ApiError::from_store(e, ctx.resource, &name)),
        }
    }
    Err(ApiError::internal("could not allocate service addresses"))
}

/// For Services: the ClusterIP and node ports, and the store writes that hold them.
async fn allocate(
    ctx: &Ctx,
    obj: &mut Value,
    old: Option<&Value>,
) -> Result<Vec<WriteOp>, ApiError> {
    if ctx.resource.kind != "Service" {
        return Ok(vec![]);
    }
    let used_ips = used_keys(ctx, alloc::IP_PREFIX).await?;
    let used_ports = used_keys(ctx, alloc::PORT_PREFIX).await?;
    alloc::assign(
        obj,
        old,
        &ctx.state.config.service_cidr,
        &used_ips,
        &used_ports,
    )
    .map_err(|e| {
        invalid(
            ctx,
            object::name(obj),
            &[FieldError {
                field: e.field,
                reason: CauseReason::Invalid,
                message: e.message,
            }],
        )
    })?;
    let owner = format!(
        "{}/{}",
        ctx.namespace.as_deref().unwrap_or(""),
        object::name(obj)
    );
    let before = old.map(Allocations::of).unwrap_or_default();
    Ok(Allocations::of(obj).changes_from(&before, &owner))
}

async fn used_keys(ctx: &Ctx, prefix: &str) -> Result<BTreeSet<String>, ApiError> {
    let listed = ctx
        .state
        .store
        .list(ListRequest {
            prefix: prefix.into(),
            ..Default::default()
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(listed
        .entries
        .into_iter()
        .map(|e| e.key[prefix.len()..].to_string())
        .collect())
}

/// Which part of an object a write may change.
#[derive(Clone, Copy, PartialEq)]
enum Part {
    Main,
    Status,
    Scale,
    Finalize,
    /// `pods/ephemeralcontainers` (see `ephemeral`).
    Ephemeral,
}

fn part_of(sub: Option<&str>) -> Part {
    match sub {
        Some("status") => Part::Status,
        Some("scale") => Part::Scale,
        Some("finalize") => Part::Finalize,
        Some("ephemeralcontainers") => Part::Ephemeral,
        _ => Part::Main,
    }
}

/// The Scale view of a Deployment or ReplicaSet.
fn scale_of(ctx: &Ctx, obj: &Value) -> Value {
    let selector = LabelSelector::from_json(&obj["spec"]["selector"])
        .map(|s| s.to_string())
        .unwrap_or_default();
    let meta = object::metadata(obj).cloned().unwrap_or_default();
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta.get("name"), "namespace": meta.get("namespace"), "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"), "creationTimestamp": meta.get("creationTimestamp"),
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
    .tap_namespace(ctx)
}

trait TapNamespace {
    fn tap_namespace(self, ctx: &Ctx) -> Self;
}

impl TapNamespace for Value {
    fn tap_namespace(mut self, ctx: &Ctx) -> Self {
        if ctx.namespace.is_none() {
            if let Some(m) = self["metadata"].as_object_mut() {
                m.remove("namespace");
            }
        }
        self
    }
}

/// Builds the object a write of `part` produces from the stored one and the input.
fn merge_part(ctx: &Ctx, part: Part, existing: &Value, input: Value) -> Result<Value, ApiError> {
    let mut result = match part {
        Part::Main => {
            let mut new = input;
            if ctx.resource.has_status {
                match existing.get("status") {
                    Some(status) => new["status"] = status.clone(),
                    None => {
                        if let Some(m) = new.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            if ctx.resource.kind == "Pod" {
                super::ephemeral::keep_on_update(existing, &mut new);
            }
            new
        }
        Part::Ephemeral => super::ephemeral::merge(existing, &input)?,
        Part::Status => {
            let mut new = existing.clone();
            new["status"] = input.get("status").cloned().unwrap_or(Value::Null);
            new
        }
        Part::Scale => {
            let replicas = input["spec"]["replicas"]
                .as_i64()
                .ok_or_else(|| ApiError::bad_request("scale spec.replicas must be an integer"))?;
            let mut new = existing.clone();
            new["spec"]["replicas"] = json!(replicas);
            new
        }
        Part::Finalize => {
            let mut new = existing.clone();
            new["spec"]["finalizers"] = input["spec"]["finalizers"].clone();
            new
        }
    };
    keep_system_metadata(ctx, existing, &mut result);
    Ok(result)
}

/// Fields of metadata clients cannot change, and the generation bump on spec changes.
fn keep_system_metadata(ctx: &Ctx, existing: &Value, new: &mut Value) {
    let empty = serde_json::Map::new();
    let old_meta = object::metadata(existing).unwrap_or(&empty);
    let spec_changed = object::spec_of(existing) != object::spec_of(new);
    let meta = object::metadata_mut(new);
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
    ] {
        match old_meta.get(field) {
            Some(v) => meta.insert(field.into(), v.clone()),
            None => meta.remove(field),
        };
    }
    if !meta.contains_key("managedFields") {
        if let Some(mf) = old_meta.get("managedFields") {
            meta.insert("managedFields".into(), mf.clone());
        }
    }
    if ctx.resource.has_generation {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let next = if spec_changed {
            generation + 1
        } else {
            generation
        };
        meta.insert("generation".into(), json!(next));
    }
    meta.remove("resourceVersion");
}

async fn update(
    ctx: &Ctx,
    name: &str,
    body: &Bytes,
    sub: Option<&str>,
) -> Result<Response, ApiError> {
    let part = part_of(sub);
    let input = if part == Part::Scale {
        body::decode(ctx.header(header::CONTENT_TYPE), body)?
    } else {
        decode_object(ctx, body)?
    };
    let given_name = object::name(&input).to_string();
    if !given_name.is_empty() && given_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given_name}) does not match the name on the URL ({name})"
        )));
    }
    let precondition = object::client_resource_version(&input).map_err(ApiError::bad_request)?;
    let (stored, warnings) = write_with_retries(ctx, name, precondition, |_, existing| {
        merge_part(ctx, part, existing, input.clone())
    })
    .await?;
    respond_write(ctx, part, stored, &warnings)
}

fn respond_write(
    ctx: &Ctx,
    part: Part,
    stored: Value,
    warnings: &[String],
) -> Result<Response, ApiError> {
    let shown = if part == Part::Scale {
        scale_of(ctx, &stored)
    } else {
        ctx.present(stored)
    };
    Ok(with_warnings(ctx.respond(StatusCode::OK, &shown), warnings))
}

/// Read, change, write; retried when another writer got in between, unless the
/// client pinned a resourceVersion (then a mismatch is its 409).
pub(super) async fn write_with_retries<F>(
    ctx: &Ctx,
    name: &str,
    precondition: Option<Revision>,
    change: F,
) -> Result<(Value, Vec<String>), ApiError>
where
    F: Fn(&Entry, &Value) -> Result<Value, ApiError>,
{
    for _ in 0..CONFLICT_RETRIES {
        let (entry, existing) = read(ctx, name).await?;
        if precondition.is_some_and(|rv| rv != entry.mod_rev) {
            return Err(ApiError::conflict(ctx.resource, name));
        }
        let new = change(&entry, &existing)?;
        match commit_update(ctx, name, &entry, &existing, new).await {
            Err(WriteFailure::Conflict) if precondition.is_none() => continue,
            Err(WriteFailure::Conflict) => return Err(ApiError::conflict(ctx.resource, name)),
            Err(WriteFailure::Api(e)) => return Err(e),
            Ok(result) => return Ok(result),
        }
    }
    Err(ApiError::conflict(ctx.resource, name))
}

enum WriteFailure {
    Conflict,
    Api(ApiError),
}

impl From<ApiError> for WriteFailure {
    fn from(e: ApiError) -> Self {
        WriteFailure::Api(e)
    }
}

/// Validates and stores an updated object; a deleting object whose last finalizer
/// went is deleted instead.
async fn commit_update(
    ctx: &Ctx,
    name: &str,
    entry: &Entry,
    existing: &Value,
    mut new: Value,
) -> Result<(Value, Vec<String>), WriteFailure> {
    let warnings = default_and_validate(ctx, &mut new, Some(existing))?;
    super::authz::restriction::admit_update(ctx.identity.as_ref(), ctx.resource, existing, &new)?;
    super::authz::escalation::admit(&ctx.state, ctx.identity.as_ref(), ctx.resource, &new).await?;
    let mut old_view = existing.clone();
    object::metadata_mut(&mut old_view).remove("resourceVersion");
    if new == old_view {
        // Nothing changed: no new revision, as on Kubernetes.
        return Ok((existing.clone(), warnings));
    }
    // A pod in its grace period stays until its node agent completes the delete.
    if object::is_deleting(&new) && finalization_done(&new) && !graceful(&new) {
        let deleted = finish_delete(ctx, name, entry, &new, ctx.dry_run()).await?;
        return Ok((deleted, warnings));
    }
    let mut ops = allocate(ctx, &mut new, Some(existing)).await?;
    if ctx.dry_run() {
        return Ok((new, warnings));
    }
    ops.insert(
        0,
        WriteOp::Update {
            key: ctx.key(name),
            value: object::to_stored(&new),
            expected_rev: Some(entry.mod_rev),
        },
    );
    match ctx.state.store.transaction(ops).await {
        Ok(entries) => {
            object::set_resource_version(&mut new, entries[0].mod_rev);
            Ok((new, warnings))
        }
        Err(StoreError::Conflict { .. }) | Err(StoreError::NotFound(_))
            if existing_still(ctx, name).await =>
        {
            Err(WriteFailure::Conflict)
        }
        // Deleted between the read and this write: gone, as a re-read would say.
        Err(StoreError::Conflict { .. }) => {
            Err(WriteFailure::Api(ApiError::not_found(ctx.resource, name)))
        }
        Err(e) => Err(WriteFailure::Api(ApiError::from_store(
            e,
            ctx.resource,
            name,
        ))),
    }
}

async fn existing_still(ctx: &Ctx, name: &str) -> bool {
    matches!(ctx.state.store.get(&ctx.key(name)).await, Ok(Some(_)))
}

/// No finalizers left (and, for namespaces, no spec.finalizers either).
fn finalization_done(obj: &Value) -> bool {
    let spec_finalizers = obj["spec"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    object::finalizers(obj).is_empty() && !(obj["kind"] == "Namespace" && spec_finalizers)
}

async fn patch(
    ctx: &Ctx,
    name: &str,
    body: &Bytes,
    sub: Option<&str>,
) -> Result<Response, ApiError> {
    let patch_type = PatchType::from_content_type(ctx.header(header::CONTENT_TYPE))?;
    if patch_type == PatchType::Apply {
        return server_side_apply(ctx, name, body, sub).await;
    }
    let patch_body = body::decode_json(body)?;
    let part = part_of(sub);
    let precondition = object::client_resource_version(&patch_body).unwrap_or(None);
    let (stored, warnings) = write_with_retries(ctx, name, precondition, |_, existing| {
        let view = match part {
            Part::Scale => scale_of(ctx, existing),
            _ => ctx.present(existing.clone()),
        };
        let patched = patch::apply_patch(patch_type, &view, &patch_body, ctx.resource.kind)?;
        check_patched_resource_version(ctx, name, &view, &patched)?;
        let mut patched = if ctx.resource.group == "events.k8s.io" {
            events::to_core(&patched)
        } else {
            patched
        };
        if part != Part::Scale {
            patched["apiVersion"] = existing["apiVersion"].clone();
            patched["kind"] = existing["kind"].clone();
        }
        merge_part(ctx, part, existing, patched)
    })
    .await?;
    respond_write(ctx, part, stored, &warnings)
}

/// A patch that sets `metadata.resourceVersion` (any patch type) is a precondition:
/// it must name the stored revision, else 409, as on Kubernetes.
fn check_patched_resource_version(
    ctx: &Ctx,
    name: &str,
    view: &Value,
    patched: &Value,
) -> Result<(), ApiError> {
    let patched_rv = &patched["metadata"]["resourceVersion"];
    let given = match patched_rv {
        Value::Null => return Ok(()),
        Value::String(s) if s.is_empty() => return Ok(()),
        other => other,
    };
    if given != &view["metadata"]["resourceVersion"] {
        return Err(ApiError::conflict(ctx.resource, name));
    }
    Ok(())
}

async fn server_side_apply(
    ctx: &Ctx,
    name: &str,
    body: &Bytes,
    sub: Option<&str>,
) -> Result<Response, ApiError> {
    let applied = decode_object(ctx, body)?;
    let manager = ctx
        .param("fieldManager")
        .filter(|m| !m.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request("PATCH with apply requires a fieldManager query parameter")
        })?
        .to_string();
    let now = object::now_rfc3339();
    let api_version = ctx.resource.api_version();
    let request = apply::ApplyRequest {
        applied: &applied,
        manager: &manager,
        force: ctx.flag("force"),
        api_version: &api_version,
        now: &now,
    };
    let given_name = object::name(&applied);
    if given_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given_name}) does not match the name on the URL ({name})"
        )));
    }
    let part = part_of(sub);
    match read(ctx, name).await {
        Err(e) if e.code == 404 && part == Part::Main => {
            let created = apply::apply(None, &request)?;
            let (code, stored, warnings) = create_object(ctx, created).await?;
            Ok(with_warnings(
                ctx.respond(code, &ctx.present(stored)),
                &warnings,
            ))
        }
        Err(e) => Err(e),
        Ok(_) => {
            // A resourceVersion in the applied configuration is a precondition.
            let precondition =
                object::client_resource_version(&applied).map_err(ApiError::bad_request)?;
            let (stored, warnings) = write_with_retries(ctx, name, precondition, |_, existing| {
                let merged = apply::apply(Some(existing), &request)?;
                merge_part(ctx, part, existing, merged)
            })
            .await?;
            respond_write(ctx, part, stored, &warnings)
        }
    }
}

/// DeleteOptions from the body and the query.
pub(super) struct DeleteOptions {
    propagation: Option<String>,
    grace_period: Option<i64>,
    precondition_uid: Option<String>,
    precondition_rv: Option<Revision>,
    /// `dryRun=All` in the query or the body.
    dry_run: bool,
    /// `orphanDependents: false` was given: kube-apiserver then answers 202 while the
    /// object waits for its dependents.
    cascade_requested: bool,
}

/// DeleteOptions of a DELETE request: the body (JSON, YAML or protobuf; may be
/// empty) and the query.
fn delete_options(ctx: &Ctx, body: &Bytes) -> Result<DeleteOptions, ApiError> {
    let options = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        body::decode(ctx.header(header::CONTENT_TYPE), body)?
    };
    if let Some(kind) = options["kind"].as_str().filter(|k| *k != "DeleteOptions") {
        return Err(ApiError::bad_request(format!(
            "the kind of a delete request body must be DeleteOptions, not {kind}"
        )));
    }
    parse_delete_options(ctx, &options)
}

impl DeleteOptions {
    pub(super) fn is_dry_run(&self) -> bool {
        self.dry_run
    }
}

/// DeleteOptions from a decoded body (also an Eviction's `deleteOptions`) and the query.
pub(super) fn parse_delete_options(ctx: &Ctx, options: &Value) -> Result<DeleteOptions, ApiError> {
    let mut propagation = options["propagationPolicy"].as_str().map(String::from);
    let orphan = options["orphanDependents"]
        .as_bool()
        .or_else(|| ctx.param("orphanDependents").map(|o| o == "true"));
    if propagation.is_none() && orphan == Some(true) {
        propagation = Some("Orphan".into());
    }
    if let Some(p) = ctx.param("propagationPolicy") {
        propagation = Some(p.to_string());
    }
    if let Some(p) = &propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::bad_request(format!(
                "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
    }
    let grace_period = ctx
        .param("gracePeriodSeconds")
        .and_then(|g| g.parse().ok())
        .or_else(|| options["gracePeriodSeconds"].as_i64());
    let precondition_rv = match options["preconditions"]["resourceVersion"].as_str() {
        Some(rv) => Some(
            rv.parse()
                .map_err(|_| ApiError::bad_request("invalid preconditions.resourceVersion"))?,
        ),
        None => None,
    };
    let body_dry_run = options["dryRun"]
        .as_array()
        .is_some_and(|d| d.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        propagation,
        grace_period,
        precondition_uid: options["preconditions"]["uid"].as_str().map(String::from),
        precondition_rv,
        dry_run: ctx.dry_run() || body_dry_run,
        cascade_requested: orphan == Some(false),
    })
}

/// Whether kube-apiserver answers a completed delete with the deleted object
/// (`ReturnDeletedObject` in its registry: pods, services, namespaces,
/// serviceaccounts) rather than a `Status`.
fn returns_deleted_object(resource: &Resource) -> bool {
    resource.group.is_empty()
        && matches!(
            resource.plural,
            "pods" | "services" | "namespaces" | "serviceaccounts"
        )
}

/// What a delete did.
pub(super) enum Deleted {
    /// The object is gone; the value is it as it was last.
    Gone(Value),
    /// The object waits (grace period, finalizers); the value is it, marked.
    Marked(Value),
}

async fn delete(ctx: &Ctx, name: &str, body: &Bytes) -> Result<Response, ApiError> {
    let options = delete_options(ctx, body)?;
    match delete_object(ctx, name, &options).await? {
        Deleted::Gone(obj) if !returns_deleted_object(ctx.resource) => {
            let uid = object::meta_str(&obj, "uid");
            Ok(json_response(
                StatusCode::OK,
                &status::success(ctx.resource, name, uid),
            ))
        }
        Deleted::Gone(obj) => Ok(ctx.respond(StatusCode::OK, &ctx.present(obj))),
        Deleted::Marked(obj) => {
            let code = if options.cascade_requested {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            Ok(ctx.respond(code, &ctx.present(obj)))
        }
    }
}

/// Deletes at once, or marks for deletion when finalizers, foreground/orphan
/// propagation or a pod's grace period must run first.
pub(super) async fn delete_object(
    ctx: &Ctx,
    name: &str,
    options: &DeleteOptions,
) -> Result<Deleted, ApiError> {
    for _ in 0..CONFLICT_RETRIES {
        let (entry, existing) = read(ctx, name).await?;
        check_preconditions(ctx, name, &entry, &existing, options)?;
        let marked = mark_for_deletion(ctx, &existing, options);
        if marked == existing && !object::is_deleting(&existing)
            || finalization_done(&marked) && !graceful(&marked)
        {
            match finish_delete(ctx, name, &entry, &existing, options.dry_run).await {
                Ok(deleted) => return Ok(Deleted::Gone(deleted)),
                Err(WriteFailure::Conflict) => continue,
                Err(WriteFailure::Api(e)) => return Err(e),
            }
        }
        if marked == existing || options.dry_run {
            return Ok(Deleted::Marked(marked));
        }
        match commit_update(ctx, name, &entry, &existing, marked).await {
            Ok((stored, _)) => return Ok(Deleted::Marked(stored)),
            Err(WriteFailure::Conflict) => continue,
            Err(WriteFailure::Api(e)) => return Err(e),
        }
    }
    Err(ApiError::conflict(ctx.resource, name))
}

fn check_preconditions(
    ctx: &Ctx,
    name: &str,
    entry: &Entry,
    existing: &Value,
    options: &DeleteOptions,
) -> Result<(), ApiError> {
    if let Some(uid) = &options.precondition_uid {
        if object::meta_str(existing, "uid") != Some(uid.as_str()) {
            let mut e = ApiError::conflict(ctx.resource, name);
            e.message = format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                object::meta_str(existing, "uid").unwrap_or("")
            );
            return Err(e);
        }
    }
    if options
        .precondition_rv
        .is_some_and(|rv| rv != entry.mod_rev)
    {
        return Err(ApiError::conflict(ctx.resource, name));
    }
    Ok(())
}

fn graceful(obj: &Value) -> bool {
    obj["metadata"]["deletionGracePeriodSeconds"]
        .as_i64()
        .unwrap_or(0)
        > 0
}

/// The object with deletionTimestamp and the finalizers its deletion needs.
fn mark_for_deletion(ctx: &Ctx, existing: &Value, options: &DeleteOptions) -> Value {
    let mut obj = existing.clone();
    let already = object::is_deleting(&obj);
    let mut finalizers = object::finalizers(&obj);
    let add = match options.propagation.as_deref() {
        Some("Foreground") => Some("foregroundDeletion"),
        Some("Orphan") => Some("orphan"),
        _ => None,
    };
    if let Some(f) = add {
        if !finalizers.iter().any(|x| x == f) {
            finalizers.push(f.to_string());
        }
    }
    // A Pod on a node stops gracefully: its node agent finishes the delete. A pod
    // whose containers are done (Succeeded, Failed) has nothing left to stop.
    let grace = match ctx.resource.kind {
        "Pod"
            if obj["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty())
                && !matches!(
                    obj["status"]["phase"].as_str(),
                    Some("Succeeded" | "Failed")
                ) =>
        {
            options
                .grace_period
                .or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30)
                .max(0)
        }
        _ => 0,
    };
    let namespace_finalizing = ctx.resource.kind == "Namespace";
    if finalizers.is_empty() && grace == 0 && !namespace_finalizing && !already {
        return obj;
    }
    let meta = object::metadata_mut(&mut obj);
    if !finalizers.is_empty() {
        meta.insert("finalizers".into(), json!(finalizers));
    }
    if !already {
        let at = chrono::Utc::now() + chrono::Duration::seconds(grace);
        meta.insert(
            "deletionTimestamp".into(),
            json!(at.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        );
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
    } else if ctx.resource.kind == "Pod" && options.grace_period.is_some() {
        shorten_grace_period(meta, grace);
    }
    if namespace_finalizing {
        obj["status"]["phase"] = json!("Terminating");
    }
    obj
}

/// A second delete of a terminating pod may shorten its grace period, never lengthen
/// it: the deletion keeps its start, so the new deadline is start + `grace`.
fn shorten_grace_period(meta: &mut serde_json::Map<String, Value>, grace: i64) {
    let Some(current) = meta
        .get("deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
    else {
        return;
    };
    if grace >= current {
        return;
    }
    meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
    let deadline = meta
        .get("deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    if let Some(deadline) = deadline {
        let at = deadline.with_timezone(&chrono::Utc) - chrono::Duration::seconds(current - grace);
        meta.insert(
            "deletionTimestamp".into(),
            json!(at.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
        );
    }
}

/// Removes the object (and what it holds, like a Service's addresses). Another
/// writer getting in between the read and this delete (a controller's status write)
/// is a `Conflict` for the caller to re-read and retry, as kube-apiserver does: only a
/// failed client precondition is the client's 409.
async fn finish_delete(
    ctx: &Ctx,
    name: &str,
    entry: &Entry,
    obj: &Value,
    dry_run: bool,
) -> Result<Value, WriteFailure> {
    let mut ops = vec![WriteOp::Delete {
        key: ctx.key(name),
        expected_rev: Some(entry.mod_rev),
    }];
    if ctx.resource.kind == "Service" {
        let owner = format!("{}/{name}", ctx.namespace.as_deref().unwrap_or(""));
        ops.extend(Allocations::default().changes_from(&Allocations::of(obj), &owner));
    }
    let mut deleted = obj.clone();
    if dry_run {
        return Ok(deleted);
    }
    let entries = match ctx.state.store.transaction(ops).await {
        Ok(entries) => entries,
        Err(StoreError::Conflict { .. }) => return Err(WriteFailure::Conflict),
        Err(e) => return Err(ApiError::from_store(e, ctx.resource, name).into()),
    };
    object::set_resource_version(&mut deleted, entries[0].mod_rev);
    Ok(deleted)
}

async fn delete_collection(ctx: &Ctx, body: &Bytes) -> Result<Response, ApiError> {
    let options = delete_options(ctx, body)?;
    let filter = Filter::from_query(ctx)?;
    let listed = list_objects(ctx, &filter, 0).await?;
    let mut deleted = Vec::new();
    for obj in listed.items {
        let name = object::name(&obj).to_string();
        let ns_ctx = Ctx {
            state: ctx.state.clone(),
            resource: ctx.resource,
            namespace: object::meta_str(&obj, "namespace").map(String::from),
            query: ctx.query.clone(),
            headers: ctx.headers.clone(),
            identity: ctx.identity.clone(),
        };
        match delete_object(&ns_ctx, &name, &options).await {
            Ok(Deleted::Gone(obj) | Deleted::Marked(obj)) => deleted.push(ctx.present(obj)),
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "kind": ctx.resource.list_kind(),
            "apiVersion": ctx.resource.api_version(),
            "metadata": {"resourceVersion": ctx.state.store.current_revision().to_string()},
            "items": deleted,
        }),
    ))
}

/// `POST pods/<name>/binding`: the scheduler assigns a node.
async fn bind(ctx: &Ctx, name: &str, body: &Bytes) -> Result<Response, ApiError> {
    let binding = body::decode(ctx.header(header::CONTENT_TYPE), body)?;
    let node = binding["target"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::bad_request("binding target.name is required"))?
        .to_string();
    write_with_retries(ctx, name, None, |_, existing| {
        if let Some(current) = existing["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
            let mut e = ApiError::conflict(ctx.resource, name);
            e.message = format!("Operation cannot be fulfilled on pods/binding \"{name}\": pod {name} is already assigned to node \"{current}\"");
            return Err(e);
        }
        if object::is_deleting(existing) {
            return Err(ApiError::conflict(ctx.resource, name));
        }
        let mut pod = existing.clone();
        pod["spec"]["nodeName"] = json!(node);
        set_condition(&mut pod, json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": object::now_rfc3339()}));
        Ok(pod)
    })
    .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &status::success(ctx.resource, name, None),
    ))
}

fn set_condition(obj: &mut Value, condition: Value) {
    let conditions = obj["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut conditions: Vec<Value> = conditions
        .into_iter()
        .filter(|c| c["type"] != condition["type"])
        .collect();
    conditions.push(condition);
    obj["status"]["conditions"] = Value::Array(conditions);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_like_kubernetes_paths() {
        let (r, ns, t) = parse_target("", "v1", &["namespaces", "default", "pods", "web"]).unwrap();
        assert_eq!((r.plural, ns.as_deref()), ("pods", Some("default")));
        assert!(matches!(t, Target::Item(n) if n == "web"));
        let (r, ns, t) = parse_target("", "v1", &["namespaces", "kube-system"]).unwrap();
        assert_eq!((r.plural, ns), ("namespaces", None));
        assert!(matches!(t, Target::Item(n) if n == "kube-system"));
        let (r, _, t) = parse_target("", "v1", &["namespaces", "x", "finalize"]).unwrap();
        assert_eq!(r.plural, "namespaces");
        assert!(matches!(t, Target::Sub(n, s) if n == "x" && s == "finalize"));
        let (r, _, t) = parse_target(
            "apps",
            "v1",
            &["namespaces", "d", "deployments", "w", "scale"],
        )
        .unwrap();
        assert_eq!(r.plural, "deployments");
        assert!(matches!(t, Target::Sub(_, s) if s == "scale"));
        assert!(parse_target("", "v1", &["nothing"]).is_err());
    }

    #[test]
    fn a_second_delete_shortens_a_pods_grace_period_but_never_lengthens_it() {
        let mut pod = json!({"metadata": {
            "deletionTimestamp": "2026-01-01T00:00:30Z",
            "deletionGracePeriodSeconds": 30,
        }});
        let meta = object::metadata_mut(&mut pod);
        shorten_grace_period(meta, 60);
        assert_eq!(meta["deletionGracePeriodSeconds"], 30);
        assert_eq!(meta["deletionTimestamp"], "2026-01-01T00:00:30Z");
        // The deletion began at 00:00:00: the deadline moves to start + 5 s.
        shorten_grace_period(meta, 5);
        assert_eq!(meta["deletionGracePeriodSeconds"], 5);
        assert_eq!(meta["deletionTimestamp"], "2026-01-01T00:00:05Z");
        shorten_grace_period(meta, 0);
        assert_eq!(meta["deletionGracePeriodSeconds"], 0);
        assert_eq!(meta["deletionTimestamp"], "2026-01-01T00:00:00Z");
    }

    #[test]
    fn list_bodies_are_the_head_plus_items() {
        let head = json!({"kind": "PodList", "metadata": {"resourceVersion": "3"}});
        let items = vec![b"{\"a\":1}".to_vec(), b"{\"b\":{}}".to_vec()];
        let body: Value = serde_json::from_slice(&list_body(&head, &items)).unwrap();
        assert_eq!(
            body,
            json!({"kind": "PodList", "metadata": {"resourceVersion": "3"}, "items": [{"a": 1}, {"b": {}}]})
        );
        let body: Value = serde_json::from_slice(&list_body(&json!({}), &[])).unwrap();
        assert_eq!(body, json!({"items": []}));
    }

    #[test]
    fn qos_classes() {
        let guaranteed = json!({"spec": {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(qos_class(&guaranteed), "Guaranteed");
        let burstable =
            json!({"spec": {"containers": [{"resources": {"requests": {"cpu": "1"}}}]}});
        assert_eq!(qos_class(&burstable), "Burstable");
        assert_eq!(
            qos_class(&json!({"spec": {"containers": [{}]}})),
            "BestEffort"
        );
    }
}
