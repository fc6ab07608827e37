//! The downward API: a pod's own fields (`fieldRef`) and its containers' resources
//! (`resourceFieldRef`) as the kubelet renders them, for environment variables and
//! for `downwardAPI` volume items (labels and annotations as sorted `key="value"`
//! lines with Go's `%q` quoting; resources divided by the divisor and rounded up,
//! limits not set falling back to the node's allocatable).
//!
//! Pure: may call nothing but the machine's capacity.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, ResourceFieldSelector};

use crate::model::quote::go_quote;

/// Why a downward API item cannot be rendered.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DownwardError {
    #[error("unsupported fieldPath {0:?}")]
    Field(String),
    #[error("resourceFieldRef {resource:?} needs a containerName")]
    NoContainer { resource: String },
    #[error("container {0:?} not found in the pod")]
    Container(String),
    #[error("unsupported resource {0:?}")]
    Resource(String),
    #[error("invalid divisor {0:?}")]
    Divisor(String),
}

/// Labels or annotations as the kubelet writes them: sorted `key="value"` lines.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The value in `metadata.labels['key']`-style paths.
fn subscript<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    path.strip_prefix(prefix)?
        .strip_prefix("['")?
        .strip_suffix("']")
}

/// A field of the pod, as an environment variable's `fieldRef` names it.
pub fn env_field(pod: &Pod, path: &str, pod_ip: Option<&str>, host_ip: &str) -> Option<String> {
    match path {
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone(),
        "spec.serviceAccountName" => pod.spec.as_ref()?.service_account_name.clone(),
        "status.podIP" | "status.podIPs" => pod_ip.map(str::to_string),
        "status.hostIP" | "status.hostIPs" => Some(host_ip.to_string()),
        _ => volume_field(pod, path).ok(),
    }
}

/// A field of the pod, as a `downwardAPI` volume item's `fieldRef` names it: only
/// metadata (name, namespace, uid, labels, annotations, one label or annotation).
pub fn volume_field(pod: &Pod, path: &str) -> Result<String, DownwardError> {
    let meta = &pod.metadata;
    let one = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "metadata.labels" => format_map(meta.labels.as_ref()),
        "metadata.annotations" => format_map(meta.annotations.as_ref()),
        _ => {
            if let Some(key) = subscript(path, "metadata.labels") {
                one(&meta.labels, key)
            } else if let Some(key) = subscript(path, "metadata.annotations") {
                one(&meta.annotations, key)
            } else {
                return Err(DownwardError::Field(path.to_string()));
            }
        }
    })
}

/// What the node offers, used for limits a container does not set.
#[derive(Debug, Clone, Copy)]
pub struct Allocatable {
    pub cpu_millis: f64,
    pub memory_bytes: f64,
    pub ephemeral_bytes: f64,
}

impl Allocatable {
    /// This machine's CPUs, memory and root file system size.
    pub fn of_machine() -> Allocatable {
        let capacity = crate::agent::machine_capacity();
        let parse = |q: &str| crate::model::quantity::parse_quantity(q).unwrap_or(0.0);
        let disk = nix::sys::statvfs::statvfs("/")
            .map(|s| s.blocks() as f64 * s.fragment_size() as f64)
            .unwrap_or(0.0);
        Allocatable {
            cpu_millis: parse(&capacity.cpu) * 1000.0,
            memory_bytes: parse(&capacity.memory),
            ephemeral_bytes: disk,
        }
    }
}

/// A container resource, as `resourceFieldRef` names it (`limits.cpu`,
/// `requests.memory`, …; bare `cpu` etc. mean limits), divided by the divisor and
/// rounded up as the kubelet does. Unset limits are the node's allocatable; unset
/// requests are the limit if one is set, else 0 (1 for cpu rounded up from 0 is 0).
pub fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&str>,
    node: &Allocatable,
) -> Result<String, DownwardError> {
    let unsupported = || DownwardError::Resource(resource.to_string());
    let (section, name) = match resource.split_once('.') {
        Some((s, n)) => (s, n),
        None => ("limits", resource),
    };
    let resources = container.resources.as_ref();
    let get = |m: Option<&BTreeMap<String, _>>| -> Option<f64> {
        let q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity = m?.get(name)?;
        crate::model::quantity::parse_quantity(&q.0).ok()
    };
    let limit = get(resources.and_then(|r| r.limits.as_ref()));
    let request = get(resources.and_then(|r| r.requests.as_ref()));
    let node_value = match name {
        "cpu" => node.cpu_millis / 1000.0,
        "memory" => node.memory_bytes,
        "ephemeral-storage" => node.ephemeral_bytes,
        _ => return Err(unsupported()),
    };
    let value = match section {
        "limits" => limit.unwrap_or(node_value),
        "requests" => request.or(limit).unwrap_or(0.0),
        _ => return Err(unsupported()),
    };
    let divisor_text = divisor.filter(|d| !d.is_empty()).unwrap_or("1");
    let divisor = crate::model::quantity::parse_quantity(divisor_text)
        .ok()
        .filter(|d| *d > 0.0)
        .ok_or_else(|| DownwardError::Divisor(divisor_text.to_string()))?;
    let scaled = if name == "cpu" {
        // The kubelet divides milli-values: ceil(millis(value) / millis(divisor)).
        (value * 1000.0).ceil() / (divisor * 1000.0).ceil()
    } else {
        value.ceil() / divisor.ceil()
    };
    Ok(format!("{}", scaled.ceil() as i64))
}

/// A `resourceFieldRef` of a volume item: names its container.
pub fn volume_resource(
    pod: &Pod,
    selector: &ResourceFieldSelector,
    node: &Allocatable,
) -> Result<String, DownwardError> {
    let name = selector
        .container_name
        .as_deref()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| DownwardError::NoContainer {
            resource: selector.resource.clone(),
        })?;
    let spec = pod.spec.as_ref();
    let container = spec
        .into_iter()
        .flat_map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .find(|c| c.name == name)
        .ok_or_else(|| DownwardError::Container(name.to_string()))?;
    let divisor = selector.divisor.as_ref().map(|d| d.0.as_str());
    resource_value(container, &selector.resource, divisor, node)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u-1",
                "labels": {"zone": "b", "app": "web"},
                "annotations": {"note": "say \"hi\"\nbye", "path": "C:\\x"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "resources": {
                "limits": {"cpu": "500m", "memory": "128Mi"},
                "requests": {"memory": "64Mi"}}}]}}))
        .unwrap()
    }

    const NODE: Allocatable = Allocatable {
        cpu_millis: 4000.0,
        memory_bytes: 8.0 * 1024.0 * 1024.0 * 1024.0,
        ephemeral_bytes: 1e10,
    };

    #[test]
    fn labels_and_annotations_render_like_the_kubelet() {
        let p = pod();
        assert_eq!(
            volume_field(&p, "metadata.labels").unwrap(),
            "app=\"web\"\nzone=\"b\""
        );
        assert_eq!(
            volume_field(&p, "metadata.annotations").unwrap(),
            "note=\"say \\\"hi\\\"\\nbye\"\npath=\"C:\\\\x\""
        );
        assert_eq!(volume_field(&p, "metadata.labels['app']").unwrap(), "web");
        assert_eq!(volume_field(&p, "metadata.labels['none']").unwrap(), "");
        assert_eq!(volume_field(&p, "metadata.uid").unwrap(), "u-1");
        assert_eq!(volume_field(&p, "metadata.namespace").unwrap(), "ns");
        assert_eq!(
            volume_field(&p, "spec.nodeName"),
            Err(DownwardError::Field("spec.nodeName".into()))
        );
        assert_eq!(format_map(None), "");
    }

    #[test]
    fn environment_fields_include_spec_and_status() {
        let p = pod();
        assert_eq!(
            env_field(&p, "metadata.name", None, "h").as_deref(),
            Some("p")
        );
        assert_eq!(
            env_field(&p, "spec.nodeName", None, "h").as_deref(),
            Some("n1")
        );
        assert_eq!(
            env_field(&p, "status.podIP", Some("10.42.0.2"), "h").as_deref(),
            Some("10.42.0.2")
        );
        assert_eq!(
            env_field(&p, "status.hostIP", None, "h").as_deref(),
            Some("h")
        );
        assert_eq!(
            env_field(&p, "metadata.labels['zone']", None, "h").as_deref(),
            Some("b")
        );
    }

    #[test]
    fn go_quoting_escapes_control_characters() {
        assert_eq!(go_quote("a\u{1}b"), "\"a\\x01b\"");
        assert_eq!(go_quote("é"), "\"é\"");
    }

    #[test]
    fn resources_divide_and_round_up() {
        let p = pod();
        let c = &p.spec.as_ref().unwrap().containers[0];
        let v = |r: &str, d: Option<&str>| resource_value(c, r, d, &NODE).unwrap();
        assert_eq!(v("limits.cpu", None), "1");
        assert_eq!(v("limits.cpu", Some("1m")), "500");
        assert_eq!(v("limits.memory", None), "134217728");
        assert_eq!(v("limits.memory", Some("1Mi")), "128");
        assert_eq!(v("requests.memory", Some("1Mi")), "64");
        // A request not set is the limit; a limit not set is the node's.
        assert_eq!(v("requests.cpu", Some("1m")), "500");
        assert_eq!(v("limits.ephemeral-storage", Some("1G")), "10");
        assert_eq!(v("requests.ephemeral-storage", None), "0");
        assert_eq!(v("memory", Some("1Mi")), "128");
        assert!(resource_value(c, "limits.gpu", None, &NODE).is_err());
        assert!(resource_value(c, "limits.cpu", Some("0"), &NODE).is_err());
    }

    #[test]
    fn volume_resources_need_a_container() {
        let p = pod();
        let sel = |c: Option<&str>| ResourceFieldSelector {
            container_name: c.map(str::to_string),
            resource: "limits.cpu".into(),
            divisor: None,
        };
        assert_eq!(volume_resource(&p, &sel(Some("c")), &NODE).unwrap(), "1");
        assert!(matches!(
            volume_resource(&p, &sel(None), &NODE),
            Err(DownwardError::NoContainer { .. })
        ));
        assert_eq!(
            volume_resource(&p, &sel(Some("x")), &NODE),
            Err(DownwardError::Container("x".into()))
        );
    }
}
