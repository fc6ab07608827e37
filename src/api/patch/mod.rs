//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge
//! patch and server-side apply, chosen by Content-Type.
//!
//! Bounded as kube-apiserver bounds them: a JSON patch has at most
//! [`MAX_JSON_PATCH_OPERATIONS`] operations (413 beyond), and its `copy` operations
//! may add at most [`MAX_COPY_BYTES`] in total (422, as json-patch's
//! `AccumulatedCopySizeLimit`), so a small patch cannot double an object until the
//! server runs out of memory. Every patch must leave an object (422 otherwise).

pub mod apply;
pub mod strategic;

use serde_json::Value;

use super::status::ApiError;

/// kube-apiserver's `maxJSONPatchOperations`.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;
/// kube-apiserver's `JSONPatchMaxCopyBytes` (3 MiB, the request body limit).
pub const MAX_COPY_BYTES: usize = 3 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        match super::body::media_type(content_type) {
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/strategic-merge-patch+json" => Ok(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Ok(PatchType::Apply),
            other => Err(ApiError::unsupported_media_type(other)),
        }
    }
}

/// Applies a merge, JSON or strategic patch to `original` (an object of `kind`).
pub fn apply_patch(
    patch_type: PatchType,
    original: &Value,
    patch: &Value,
    kind: &str,
) -> Result<Value, ApiError> {
    let patched = match patch_type {
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "merge patch body must be a JSON object",
                ));
            }
            let mut doc = original.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchType::Json => json_patch_bounded(original, patch),
        PatchType::Strategic => strategic::strategic_merge(original, patch, kind).map_err(|e| {
            ApiError::bad_request(format!("unable to apply strategic merge patch: {e}"))
        }),
        PatchType::Apply => Err(ApiError::internal(
            "apply patches are handled by server-side apply",
        )),
    }?;
    if !patched.is_object() {
        return Err(ApiError::unprocessable(
            "the patched document is not an object: a patch must leave a JSON object",
        ));
    }
    Ok(patched)
}

/// Applies an RFC 6902 patch operation by operation, counting what `copy` adds.
fn json_patch_bounded(original: &Value, patch: &Value) -> Result<Value, ApiError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
    if operations.0.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(ApiError::too_large(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            operations.0.len()
        )));
    }
    let mut doc = original.clone();
    let mut copied = 0usize;
    for operation in &operations.0 {
        if let json_patch::PatchOperation::Copy(copy) = operation {
            let budget = MAX_COPY_BYTES - copied;
            let size = doc
                .pointer(copy.from.as_str())
                .map_or(Some(0), |v| encoded_size_within(v, budget));
            match size {
                Some(size) => copied += size,
                None => {
                    return Err(ApiError::unprocessable(format!(
                        "Unable to copy {}: the accumulated size increase of copy exceeds the limit {MAX_COPY_BYTES}",
                        copy.from
                    )))
                }
            }
        }
        json_patch::patch(&mut doc, std::slice::from_ref(operation))
            .map_err(|e| ApiError::unprocessable(e.to_string()))?;
    }
    Ok(doc)
}

/// The JSON size of `value` if at most `limit` bytes (stops counting beyond).
fn encoded_size_within(value: &Value, limit: usize) -> Option<usize> {
    struct Counter {
        count: usize,
        limit: usize,
    }
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.count += buf.len();
            if self.count > self.limit {
                return Err(std::io::Error::other("over the limit"));
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter { count: 0, limit };
    serde_json::to_writer(&mut counter, value).ok()?;
    Some(counter.count)
}

impl ApiError {
    /// 413: a request (or the object it would make) over a limit.
    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError {
            code: 413,
            reason: "RequestEntityTooLarge",
            message: message.into(),
            details: None,
        }
    }

    /// 422 with `message` (a patch the object cannot take).
    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiError::internal(message).into_unprocessable()
    }

    /// A JSON patch whose test or path failed is the client's mistake: 422.
    fn into_unprocessable(mut self) -> Self {
        self.code = 422;
        self.reason = "Invalid";
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_and_json_patches() {
        let original = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"replicas": 1}});
        let merged = apply_patch(
            PatchType::Merge,
            &original,
            &json!({"metadata": {"labels": {"a": null, "b": "2"}}, "spec": {"replicas": 5}}),
            "Deployment",
        )
        .unwrap();
        assert_eq!(
            merged,
            json!({"metadata": {"labels": {"b": "2"}}, "spec": {"replicas": 5}})
        );
        let patched = apply_patch(
            PatchType::Json,
            &original,
            &json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]),
            "Deployment",
        )
        .unwrap();
        assert_eq!(patched["spec"]["replicas"], 3);
        let failed = apply_patch(
            PatchType::Json,
            &original,
            &json!([{"op": "test", "path": "/spec/replicas", "value": 9}]),
            "Deployment",
        );
        assert_eq!(failed.unwrap_err().code, 422);
    }
}

#[cfg(test)]
mod fuzz;
