//! The resource types the API serves: names, scope, discovery facts, storage keys.
//! One static table; discovery, OpenAPI, routing and the handlers all read it.

/// A subresource a resource offers.
#[derive(Debug, Clone, Copy)]
pub struct Subresource {
    pub name: &'static str,
    /// group, version, kind of what the subresource returns.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

#[derive(Debug)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    /// Plural lowercase name as used in URLs.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// The storage location (group/plural), shared when two API groups serve one type.
    pub storage: &'static str,
    /// Field selectors allowed on lists and watches, beyond metadata.name/namespace.
    pub field_selectors: &'static [&'static str],
    /// Whether metadata.generation tracks spec changes.
    pub has_generation: bool,
    /// Whether a status subresource splits status writes from spec writes.
    pub has_status: bool,
}

pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

const fn sub(
    name: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        group: "",
        version: "v1",
        kind,
        verbs,
    }
}

const GET_PATCH_UPDATE: &[&str] = &["get", "patch", "update"];

const SCALE: Subresource = Subresource {
    name: "scale",
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    verbs: GET_PATCH_UPDATE,
};

/// `pods/eviction` (see `eviction`): kubectl drain finds it in discovery.
const EVICTION: Subresource = Subresource {
    name: "eviction",
    group: "policy",
    version: "v1",
    kind: "Eviction",
    verbs: &["create"],
};
/// The verbs of the `proxy` subresources (`resource_proxy`).
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

const fn status(kind: &'static str) -> Subresource {
    sub("status", kind, GET_PATCH_UPDATE)
}

const fn apps_status(kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group: "apps",
        version: "v1",
        kind,
        verbs: GET_PATCH_UPDATE,
    }
}

const fn batch_status(kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group: "batch",
        version: "v1",
        kind,
        verbs: GET_PATCH_UPDATE,
    }
}

const META_FIELDS: &[&str] = &[];
const POD_FIELDS: &[&str] = &[
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
];
const EVENT_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
];

const fn core(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> Resource {
    Resource {
        group: "",
        version: "v1",
        plural,
        singular,
        kind,
        namespaced,
        short_names,
        categories: &[],
        subresources: &[],
        storage: "",
        field_selectors: META_FIELDS,
        has_generation: false,
        has_status: false,
    }
}

/// An RBAC kind (rbac.authorization.k8s.io/v1): no status, no generation.
const fn rbac(
    plural: &'static str,
    singular: &'static str,
    kind: &'static str,
    namespaced: bool,
) -> Resource {
    Resource {
        group: RBAC_GROUP,
        ..core(plural, singular, kind, namespaced, &[])
    }
}

pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

pub static RESOURCES: &[Resource] = &[
    Resource {
        categories: &["all"],
        // log, exec, attach and portforward are relayed to the node agent (`proxy`).
        subresources: &[
            status("Pod"),
            sub("binding", "Binding", &["create"]),
            sub("log", "Pod", &["get"]),
            sub("exec", "PodExecOptions", &["create", "get"]),
            EVICTION,
            sub("attach", "PodAttachOptions", &["create", "get"]),
            sub("portforward", "PodPortForwardOptions", &["create", "get"]),
            sub("ephemeralcontainers", "Pod", GET_PATCH_UPDATE),
            sub("proxy", "PodProxyOptions", PROXY_VERBS),
        ],
        field_selectors: POD_FIELDS,
        has_status: true,
        ..core("pods", "pod", "Pod", true, &["po"])
    },
    Resource {
        categories: &["all"],
        subresources: &[
            status("Service"),
            sub("proxy", "ServiceProxyOptions", PROXY_VERBS),
        ],
        field_selectors: &["spec.clusterIP", "spec.type"],
        has_status: true,
        ..core("services", "service", "Service", true, &["svc"])
    },
    core("endpoints", "endpoints", "Endpoints", true, &["ep"]),
    Resource {
        subresources: &[
            status("Namespace"),
            sub("finalize", "Namespace", &["update"]),
        ],
        field_selectors: &["status.phase"],
        has_status: true,
        ..core("namespaces", "namespace", "Namespace", false, &["ns"])
    },
    Resource {
        subresources: &[
            status("Node"),
            sub("proxy", "NodeProxyOptions", PROXY_VERBS),
        ],
        field_selectors: &["spec.unschedulable"],
        has_status: true,
        ..core("nodes", "node", "Node", false, &["no"])
    },
    core("configmaps", "configmap", "ConfigMap", true, &["cm"]),
    Resource {
        field_selectors: &["type"],
        ..core("secrets", "secret", "Secret", true, &[])
    },
    Resource {
        field_selectors: EVENT_FIELDS,
        storage: "events",
        ..core("events", "event", "Event", true, &["ev"])
    },
    Resource {
        // TokenRequest (`api::tokenrequest`).
        subresources: &[Subresource {
            name: "token",
            group: "authentication.k8s.io",
            version: "v1",
            kind: "TokenRequest",
            verbs: &["create"],
        }],
        ..core(
            "serviceaccounts",
            "serviceaccount",
            "ServiceAccount",
            true,
            &["sa"],
        )
    },
    Resource {
        subresources: &[status("PersistentVolumeClaim")],
        has_status: true,
        ..core(
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            "PersistentVolumeClaim",
            true,
            &["pvc"],
        )
    },
    Resource {
        subresources: &[status("PersistentVolume")],
        has_status: true,
        ..core(
            "persistentvolumes",
            "persistentvolume",
            "PersistentVolume",
            false,
            &["pv"],
        )
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "deployments",
        singular: "deployment",
        kind: "Deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: &["all"],
        subresources: &[apps_status("Deployment"), SCALE],
        storage: "",
        field_selectors: META_FIELDS,
        has_generation: true,
        has_status: true,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "replicasets",
        singular: "replicaset",
        kind: "ReplicaSet",
        namespaced: true,
        short_names: &["rs"],
        categories: &["all"],
        subresources: &[apps_status("ReplicaSet"), SCALE],
        storage: "",
        field_selectors: &["status.replicas"],
        has_generation: true,
        has_status: true,
    },
    Resource {
        group: "batch",
        version: "v1",
        plural: "jobs",
        singular: "job",
        kind: "Job",
        namespaced: true,
        short_names: &[],
        categories: &["all"],
        subresources: &[batch_status("Job")],
        storage: "",
        field_selectors: META_FIELDS,
        has_generation: true,
        has_status: true,
    },
    Resource {
        group: "batch",
        version: "v1",
        plural: "cronjobs",
        singular: "cronjob",
        kind: "CronJob",
        namespaced: true,
        short_names: &["cj"],
        categories: &["all"],
        subresources: &[batch_status("CronJob")],
        storage: "",
        field_selectors: META_FIELDS,
        has_generation: true,
        has_status: true,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "daemonsets",
        singular: "daemonset",
        kind: "DaemonSet",
        namespaced: true,
        short_names: &["ds"],
        categories: &["all"],
        subresources: &[apps_status("DaemonSet")],
        storage: "",
        field_selectors: META_FIELDS,
        has_generation: true,
        has_status: true,
    },
    Resource {
        group: "apps",
        version: "v1",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        kind: "ControllerRevision",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage: "",
        field_selectors: META_FIELDS,
        has_generation: false,
        has_status: false,
    },
    Resource {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage: "",
        field_selectors: &["addressType"],
        has_generation: false,
        has_status: false,
    },
    Resource {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
        storage: "",
        field_selectors: META_FIELDS,
        has_generation: false,
        has_status: false,
    },
    Resource {
        group: "storage.k8s.io",
        version: "v1",
        plural: "storageclasses",
        singular: "storageclass",
        kind: "StorageClass",
        namespaced: false,
        short_names: &["sc"],
        categories: &[],
        subresources: &[],
        storage: "",
        field_selectors: META_FIELDS,
        has_generation: false,
        has_status: false,
    },
    Resource {
        group: "events.k8s.io",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
        // Both event APIs read and write one store of core/v1 events.
        storage: "events",
        field_selectors: EVENT_FIELDS,
        has_generation: false,
        has_status: false,
    },
    rbac("roles", "role", "Role", true),
    rbac("rolebindings", "rolebinding", "RoleBinding", true),
    rbac("clusterroles", "clusterrole", "ClusterRole", false),
    rbac(
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        false,
    ),
];

/// The API groups served, in discovery order, with their one version each.
pub const GROUPS: &[(&str, &str)] = &[
    ("apps", "v1"),
    ("batch", "v1"),
    ("events.k8s.io", "v1"),
    ("discovery.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
    (RBAC_GROUP, "v1"),
    ("storage.k8s.io", "v1"),
];

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    /// `deployments.apps`, as Kubernetes names a resource in messages.
    pub fn qualified_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn storage_root(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        match self.storage {
            "" => format!("/registry/{group}/{}/", self.plural),
            shared => format!("/registry/core/{shared}/"),
        }
    }

    /// The store key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/{name}", self.storage_root()),
            _ => format!("{}{name}", self.storage_root()),
        }
    }

    /// The store prefix of a list: one namespace, or every namespace when `None`.
    pub fn prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("{}{ns}/", self.storage_root()),
            _ => self.storage_root(),
        }
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    pub fn supports_field(&self, field: &str) -> bool {
        field == "metadata.name"
            || (self.namespaced && field == "metadata.namespace")
            || self.field_selectors.contains(&field)
    }

    pub fn supported_fields(&self) -> Vec<&'static str> {
        let mut fields = vec!["metadata.name"];
        if self.namespaced {
            fields.push("metadata.namespace");
        }
        fields.extend_from_slice(self.field_selectors);
        fields
    }
}

/// Every field path selectors may name for the resources stored under `root` (core
/// and events.k8s.io Events share one).
pub fn field_paths(root: &str) -> Vec<&'static str> {
    let mut paths: Vec<&'static str> = RESOURCES
        .iter()
        .filter(|r| r.prefix(None) == root)
        .flat_map(|r| r.supported_fields())
        .collect();
    paths.sort_unstable();
    paths.dedup();
    paths
}

/// The resource served at `group/version/plural`.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The resource for an object's apiVersion and kind.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static Resource> {
    RESOURCES
        .iter()
        .find(|r| r.api_version() == api_version && r.kind == kind)
}

pub fn in_group(group: &str) -> impl Iterator<Item = &'static Resource> + '_ {
    RESOURCES.iter().filter(move |r| r.group == group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_separate_namespaces_and_share_event_storage() {
        let pods = find("", "v1", "pods").unwrap();
        assert_eq!(
            pods.key(Some("default"), "web"),
            "/registry/core/pods/default/web"
        );
        assert_eq!(pods.prefix(Some("default")), "/registry/core/pods/default/");
        assert_eq!(pods.prefix(None), "/registry/core/pods/");
        let ns = find("", "v1", "namespaces").unwrap();
        assert_eq!(
            ns.key(None, "kube-system"),
            "/registry/core/namespaces/kube-system"
        );
        let core_events = find("", "v1", "events").unwrap();
        let new_events = find("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(core_events.prefix(None), new_events.prefix(None));
        assert_eq!(
            find_kind("apps/v1", "Deployment").unwrap().qualified_name(),
            "deployments.apps"
        );
    }
}
