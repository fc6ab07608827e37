//! The kinds the collector watches, and which of them an ownerReference names.

use std::sync::LazyLock;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, Endpoints, Event, Namespace, Node, PersistentVolume, PersistentVolumeClaim, Pod,
    Secret, Service, ServiceAccount,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::ApiResource;

/// Index of a kind in [`KINDS`].
pub type KindId = usize;

pub struct Kind {
    pub resource: ApiResource,
    pub namespaced: bool,
}

impl Kind {
    /// `pods.` or `deployments.apps`, as namespace conditions name resources.
    pub fn qualified_plural(&self) -> String {
        format!("{}.{}", self.resource.plural, self.resource.group)
    }
}

fn namespaced<K: kube::Resource<DynamicType = ()>>() -> Kind {
    Kind {
        resource: ApiResource::erase::<K>(&()),
        namespaced: true,
    }
}

fn cluster<K: kube::Resource<DynamicType = ()>>() -> Kind {
    Kind {
        resource: ApiResource::erase::<K>(&()),
        namespaced: false,
    }
}

/// Every kind skiff serves (core and events.k8s.io Events are one kind in storage).
pub static KINDS: LazyLock<Vec<Kind>> = LazyLock::new(|| {
    vec![
        namespaced::<Pod>(),
        namespaced::<Service>(),
        namespaced::<Endpoints>(),
        namespaced::<ConfigMap>(),
        namespaced::<Secret>(),
        namespaced::<Event>(),
        namespaced::<ServiceAccount>(),
        namespaced::<Deployment>(),
        namespaced::<ReplicaSet>(),
        namespaced::<Job>(),
        namespaced::<CronJob>(),
        namespaced::<DaemonSet>(),
        namespaced::<ControllerRevision>(),
        namespaced::<EndpointSlice>(),
        namespaced::<Lease>(),
        namespaced::<PersistentVolumeClaim>(),
        cluster::<PersistentVolume>(),
        cluster::<StorageClass>(),
        cluster::<Node>(),
        cluster::<Namespace>(),
    ]
});

/// The kind an ownerReference's apiVersion and kind name, if skiff serves it.
pub fn resolve(api_version: &str, kind: &str) -> Option<KindId> {
    let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
    KINDS
        .iter()
        .position(|k| k.resource.group == group && k.resource.kind == kind)
}

pub fn is_namespace(kind: KindId) -> bool {
    KINDS
        .get(kind)
        .is_some_and(|k| k.resource.kind == "Namespace")
}

pub fn is_namespaced(kind: KindId) -> bool {
    KINDS.get(kind).is_some_and(|k| k.namespaced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_owner_kinds_by_group_and_kind() {
        let rs = resolve("apps/v1", "ReplicaSet").unwrap();
        assert_eq!(KINDS[rs].resource.plural, "replicasets");
        let node = resolve("v1", "Node").unwrap();
        assert!(!is_namespaced(node));
        assert!(is_namespace(resolve("v1", "Namespace").unwrap()));
        let job = resolve("batch/v1", "Job").unwrap();
        assert_eq!(KINDS[job].resource.plural, "jobs");
        assert!(is_namespaced(resolve("batch/v1", "CronJob").unwrap()));
        assert_eq!(resolve("batch/v1", "Deployment"), None);
        let ds = resolve("apps/v1", "DaemonSet").unwrap();
        assert_eq!(KINDS[ds].resource.plural, "daemonsets");
        let revisions = resolve("apps/v1", "ControllerRevision").unwrap();
        assert_eq!(KINDS[revisions].resource.plural, "controllerrevisions");
        assert_eq!(resolve("v1", "ReplicaSet"), None);
    }

    #[test]
    fn names_resources_like_namespace_conditions() {
        let pods = resolve("v1", "Pod").unwrap();
        assert_eq!(KINDS[pods].qualified_plural(), "pods.");
        let deploys = resolve("apps/v1", "Deployment").unwrap();
        assert_eq!(KINDS[deploys].qualified_plural(), "deployments.apps");
    }
}
