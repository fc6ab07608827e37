//! Request bodies: JSON, YAML and the Kubernetes protobuf envelope, by Content-Type.

use serde_json::Value;

use super::protobuf;
use super::status::ApiError;

/// Most bytes a request body may have (Kubernetes' limit is 3 MiB).
pub const MAX_BODY: usize = 3 * 1024 * 1024;

pub fn media_type(content_type: &str) -> &str {
    content_type.split(';').next().unwrap_or("").trim()
}

/// Decodes an object body.
pub fn decode(content_type: &str, body: &[u8]) -> Result<Value, ApiError> {
    match media_type(content_type) {
        "application/json" | "" | "*/*" => decode_json(body),
        "application/yaml" | "application/apply-patch+yaml" => decode_yaml(body),
        "application/vnd.kubernetes.protobuf" => protobuf::decode_object(body)
            .map_err(|e| ApiError::bad_request(format!("unable to decode protobuf body: {e}"))),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

pub fn decode_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("unable to decode JSON body: {e}")))
}

/// YAML (a superset of JSON, so JSON bodies with a YAML type work too).
pub fn decode_yaml(body: &[u8]) -> Result<Value, ApiError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the request body is not UTF-8"))?;
    if let Ok(value) = serde_json::from_str(text) {
        return Ok(value);
    }
    serde_saphyr::from_str(text)
        .map_err(|e| ApiError::bad_request(format!("unable to decode YAML body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_decode_alike() {
        let yaml = decode("application/yaml", b"a: 1\nb: [x]\n").unwrap();
        let json = decode("application/json; charset=utf-8", br#"{"a":1,"b":["x"]}"#).unwrap();
        assert_eq!(yaml, json);
        assert_eq!(decode("text/plain", b"").unwrap_err().code, 415);
        assert_eq!(decode("application/json", b"{").unwrap_err().code, 400);
    }
}
