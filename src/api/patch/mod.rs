//! PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge
//! patch and server-side apply, chosen by Content-Type.

pub mod apply;
pub mod strategic;

use serde_json::Value;

use super::status::ApiError;

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
    match patch_type {
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
        PatchType::Json => {
            let operations: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            let mut doc = original.clone();
            json_patch::patch(&mut doc, &operations).map_err(|e| {
                ApiError::internal(format!("json patch failed: {e}")).into_unprocessable()
            })?;
            Ok(doc)
        }
        PatchType::Strategic => strategic::strategic_merge(original, patch, kind).map_err(|e| {
            ApiError::bad_request(format!("unable to apply strategic merge patch: {e}"))
        }),
        PatchType::Apply => Err(ApiError::internal(
            "apply patches are handled by server-side apply",
        )),
    }
}

impl ApiError {
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
