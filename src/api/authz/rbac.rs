//! The RBAC authorizer (rbac.authorization.k8s.io/v1), as Kubernetes' RBAC
//! authorizer decides: a request is allowed when some binding that names the caller
//! (user, group or service account) grants a rule covering the request: ClusterRoleBindings
//! everywhere, RoleBindings in their own namespace. Deny is the default; nothing denies
//! explicitly.
//!
//! The policy is kept from the store as the node graph is: one list of the RBAC
//! objects, then a watch of the whole key space (only RBAC keys decoded, so the
//! policy's revision keeps pace with the store); a refused check first waits (briefly) until
//! the policy has caught up with the store revision of the moment of the request, so
//! a binding just created is never refused for being too new.
//!
//! Owns: rule matching, subject matching, the policy cache.
//! May call: the store (read only).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::Notify;

use super::Attributes;
use crate::pki::Identity;
use crate::store::{Event, EventKind, ListRequest, Revision, Store, StoreError};

const PREFIX: &str = "/registry/rbac.authorization.k8s.io/";
const CATCH_UP: Duration = Duration::from_secs(2);
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// One rule of a Role or ClusterRole.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase", default)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    #[serde(rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
}

/// What is asked: a resource request, or a verb on a path outside the resource tree.
#[derive(Debug, Clone, Copy)]
pub enum Request<'a> {
    Resource(&'a Attributes),
    Path { verb: &'a str, path: &'a str },
}

impl Request<'_> {
    fn namespace(&self) -> &str {
        match self {
            Request::Resource(a) => &a.namespace,
            Request::Path { .. } => "",
        }
    }
}

fn covers(list: &[String], value: &str) -> bool {
    list.iter().any(|x| x == "*" || x == value)
}

impl Rule {
    /// Whether this rule grants the request (upstream's RuleAllows).
    pub fn allows(&self, request: &Request) -> bool {
        match request {
            Request::Resource(a) => {
                covers(&self.verbs, a.verb)
                    && covers(&self.api_groups, &a.group)
                    && self.covers_resource(&a.resource, &a.subresource)
                    && (self.resource_names.is_empty()
                        || self.resource_names.iter().any(|n| n == &a.name))
            }
            Request::Path { verb, path } => {
                covers(&self.verbs, verb)
                    && self.non_resource_urls.iter().any(|url| {
                        url == "*"
                            || url == path
                            || url
                                .strip_suffix('*')
                                .is_some_and(|prefix| path.starts_with(prefix))
                    })
            }
        }
    }

    fn covers_resource(&self, resource: &str, subresource: &str) -> bool {
        let combined = if subresource.is_empty() {
            resource.to_string()
        } else {
            format!("{resource}/{subresource}")
        };
        self.resources.iter().any(|r| {
            r == "*"
                || *r == combined
                || (!subresource.is_empty()
                    && (*r == format!("*/{subresource}") || *r == format!("{resource}/*")))
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Subject {
    kind: String,
    name: String,
    #[serde(default)]
    namespace: String,
}

#[derive(Debug, Clone, Deserialize)]
struct RoleRef {
    kind: String,
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Binding {
    #[serde(default)]
    subjects: Vec<Subject>,
    role_ref: RoleRef,
}

/// The user a decision is about: name and groups, with the groups every
/// authenticated user and every service account belongs to.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn from_identity(identity: &Identity) -> User {
        User::new(&identity.user, &identity.groups)
    }

    pub fn new(name: &str, groups: &[String]) -> User {
        let mut groups = groups.to_vec();
        let mut add = |g: String| {
            if !groups.contains(&g) {
                groups.push(g);
            }
        };
        if let Some((ns, _)) = name
            .strip_prefix(SERVICE_ACCOUNT_PREFIX)
            .and_then(|rest| rest.split_once(':'))
        {
            add("system:serviceaccounts".into());
            add(format!("system:serviceaccounts:{ns}"));
        }
        if name != "system:anonymous" {
            add("system:authenticated".into());
        }
        User {
            name: name.to_string(),
            groups,
        }
    }
}

/// Bindings indexed by the users and groups they name, so a decision looks only at
/// the bindings of the caller, however many other bindings exist.
#[derive(Default)]
struct Bindings {
    list: Vec<Binding>,
    /// User name (a service account as `system:serviceaccount:<ns>:<name>`) → indexes.
    by_user: HashMap<String, Vec<usize>>,
    by_group: HashMap<String, Vec<usize>>,
}

impl Bindings {
    /// Adds a binding; `namespace` completes service-account subjects without one.
    fn push(&mut self, binding: Binding, namespace: &str) {
        let index = self.list.len();
        for subject in &binding.subjects {
            let entry = match subject.kind.as_str() {
                "User" => self.by_user.entry(subject.name.clone()),
                "Group" => self.by_group.entry(subject.name.clone()),
                "ServiceAccount" => {
                    let ns = if subject.namespace.is_empty() {
                        namespace
                    } else {
                        &subject.namespace
                    };
                    let user = format!("{SERVICE_ACCOUNT_PREFIX}{ns}:{}", subject.name);
                    self.by_user.entry(user)
                }
                _ => continue,
            };
            let indexes = entry.or_default();
            if indexes.last() != Some(&index) {
                indexes.push(index);
            }
        }
        self.list.push(binding);
    }

    /// The bindings that name `user`, in the order they were added.
    fn naming(&self, user: &User) -> impl Iterator<Item = &Binding> {
        let groups = user.groups.iter().filter_map(|g| self.by_group.get(g));
        let mut indexes: Vec<usize> = self
            .by_user
            .get(&user.name)
            .into_iter()
            .chain(groups)
            .flatten()
            .copied()
            .collect();
        indexes.sort_unstable();
        indexes.dedup();
        indexes.into_iter().map(|i| &self.list[i])
    }
}

/// The RBAC objects, as decoded from the store.
#[derive(Default)]
pub struct Policy {
    cluster_roles: HashMap<String, Vec<Rule>>,
    /// (namespace, name) → rules.
    roles: HashMap<(String, String), Vec<Rule>>,
    cluster_bindings: Bindings,
    /// namespace → its RoleBindings.
    bindings: HashMap<String, Bindings>,
}

fn rules_of(object: &Value) -> Vec<Rule> {
    serde_json::from_value(object["rules"].clone()).unwrap_or_default()
}

impl Policy {
    /// Builds the policy from stored objects by key (`…/roles/<ns>/<name>` and so on).
    pub fn from_objects(objects: &BTreeMap<String, Value>) -> Policy {
        let mut policy = Policy::default();
        for (key, object) in objects {
            let Some(rest) = key.strip_prefix(PREFIX) else {
                continue;
            };
            let parts: Vec<&str> = rest.split('/').collect();
            let binding = || serde_json::from_value::<Binding>(object.clone()).ok();
            match parts.as_slice() {
                ["clusterroles", name] => {
                    policy
                        .cluster_roles
                        .insert(name.to_string(), rules_of(object));
                }
                ["roles", ns, name] => {
                    policy
                        .roles
                        .insert((ns.to_string(), name.to_string()), rules_of(object));
                }
                ["clusterrolebindings", _] => {
                    if let Some(b) = binding() {
                        policy.cluster_bindings.push(b, "");
                    }
                }
                ["rolebindings", ns, _] => {
                    if let Some(b) = binding() {
                        policy
                            .bindings
                            .entry(ns.to_string())
                            .or_default()
                            .push(b, ns);
                    }
                }
                _ => {}
            }
        }
        policy
    }

    fn rules_of_ref(&self, role_ref: &RoleRef, namespace: &str) -> &[Rule] {
        let rules = match role_ref.kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&role_ref.name),
            "Role" => self
                .roles
                .get(&(namespace.to_string(), role_ref.name.clone())),
            _ => None,
        };
        rules.map(Vec::as_slice).unwrap_or_default()
    }

    /// The rules of a Role (in `namespace`) or ClusterRole; none if it does not exist.
    pub fn role_rules(&self, kind: &str, name: &str, namespace: &str) -> Vec<Rule> {
        let role_ref = RoleRef {
            kind: kind.to_string(),
            name: name.to_string(),
        };
        self.rules_of_ref(&role_ref, namespace).to_vec()
    }

    /// Every rule that applies to `user` in `namespace` ("" = cluster scope only).
    pub fn rules_for(&self, user: &User, namespace: &str) -> Vec<&Rule> {
        let mut rules = Vec::new();
        for b in self.cluster_bindings.naming(user) {
            rules.extend(self.rules_of_ref(&b.role_ref, ""));
        }
        if !namespace.is_empty() {
            for b in self
                .bindings
                .get(namespace)
                .into_iter()
                .flat_map(|b| b.naming(user))
            {
                rules.extend(self.rules_of_ref(&b.role_ref, namespace));
            }
        }
        rules
    }

    pub fn allows(&self, user: &User, request: &Request) -> bool {
        self.rules_for(user, request.namespace())
            .iter()
            .any(|r| r.allows(request))
    }
}

/// The policy kept from the store; cheap to share, started on first use.
#[derive(Default)]
pub struct PolicyCache {
    objects: Mutex<BTreeMap<String, Value>>,
    policy: Mutex<Arc<Policy>>,
    applied: AtomicI64,
    changed: Notify,
    started: AtomicBool,
}

impl PolicyCache {
    pub fn new() -> Arc<Self> {
        Arc::new(PolicyCache {
            applied: AtomicI64::new(-1),
            ..Default::default()
        })
    }

    /// The policy as of now, once caught up with the store (or after a short wait).
    pub async fn current(self: &Arc<Self>, store: &Arc<dyn Store>) -> Arc<Policy> {
        self.start(store);
        self.caught_up(store.current_revision()).await;
        self.snapshot()
    }

    /// Decides `request` for `user`; a refusal is re-checked once the policy has
    /// caught up with the store revision of the moment of the question.
    pub async fn allows(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        user: &User,
        request: &Request<'_>,
    ) -> bool {
        let wanted = store.current_revision();
        self.start(store);
        if self.snapshot().allows(user, request) {
            return true;
        }
        if self.applied.load(Ordering::SeqCst) >= wanted {
            return false;
        }
        self.caught_up(wanted).await;
        self.snapshot().allows(user, request)
    }

    fn snapshot(&self) -> Arc<Policy> {
        self.policy.lock().map(|p| p.clone()).unwrap_or_default()
    }

    async fn caught_up(&self, wanted: Revision) {
        let wait = async {
            loop {
                let notified = self.changed.notified();
                if self.applied.load(Ordering::SeqCst) >= wanted {
                    return;
                }
                notified.await;
            }
        };
        let _ = tokio::time::timeout(CATCH_UP, wait).await;
    }

    fn start(self: &Arc<Self>, store: &Arc<dyn Store>) {
        if self.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let cache = Arc::downgrade(self);
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                let Some(cache) = cache.upgrade() else { return };
                if let Err(e) = cache.follow(&store).await {
                    tracing::debug!(error = %e, "rbac policy: relisting");
                }
                drop(cache);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    fn publish(&self, revision: Revision) {
        if let Ok(objects) = self.objects.lock() {
            let policy = Arc::new(Policy::from_objects(&objects));
            if let Ok(mut current) = self.policy.lock() {
                *current = policy;
            }
        }
        self.applied.store(revision, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Follows the whole key space (only RBAC keys are decoded), so the revision the
    /// policy has reached keeps pace with the store even while no RBAC object changes:
    /// a refusal then never waits for an RBAC event that is not coming. Events already
    /// waiting are applied together and the policy is rebuilt once for them, so a
    /// chart creating hundreds of bindings does not rebuild it hundreds of times.
    async fn follow(&self, store: &Arc<dyn Store>) -> Result<(), StoreError> {
        let revision = self.load(store).await?;
        let mut events = store.watch("/", revision).await?;
        while let Some(event) = events.next().await {
            let mut revision = self.applied.load(Ordering::SeqCst);
            let mut rbac_changed = false;
            let mut pending = Some(event);
            while let Some(event) = pending.take() {
                let event = event?;
                revision = event.entry.mod_rev;
                rbac_changed |= self.apply(&event);
                pending = events.next().now_or_never().flatten();
            }
            if rbac_changed {
                self.publish(revision);
            } else {
                self.applied.store(revision, Ordering::SeqCst);
                self.changed.notify_waiters();
            }
        }
        Ok(())
    }

    /// Applies one event to the RBAC objects; whether it was an RBAC key.
    fn apply(&self, event: &Event) -> bool {
        let key = &event.entry.key;
        if !key.starts_with(PREFIX) {
            return false;
        }
        if let Ok(mut objects) = self.objects.lock() {
            match event.kind {
                EventKind::Deleted => {
                    objects.remove(key);
                }
                _ => {
                    let value = serde_json::from_slice(&event.entry.value).unwrap_or_default();
                    objects.insert(key.clone(), value);
                }
            }
        }
        true
    }

    async fn load(&self, store: &Arc<dyn Store>) -> Result<Revision, StoreError> {
        let mut objects = BTreeMap::new();
        let mut request = ListRequest {
            prefix: PREFIX.into(),
            limit: 1000,
            ..Default::default()
        };
        let revision = loop {
            let page = store.list(request.clone()).await?;
            for entry in &page.entries {
                if let Ok(value) = serde_json::from_slice::<Value>(&entry.value) {
                    objects.insert(entry.key.clone(), value);
                }
            }
            request.at_revision = Some(page.revision);
            match page.entries.last() {
                Some(last) if page.more => request.start_after = Some(last.key.clone()),
                _ => break page.revision,
            }
        };
        if let Ok(mut current) = self.objects.lock() {
            *current = objects;
        }
        self.publish(revision);
        Ok(revision)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(verb: &'static str, group: &str, resource: &str, sub: &str, ns: &str) -> Attributes {
        Attributes {
            verb,
            group: group.into(),
            resource: resource.into(),
            subresource: sub.into(),
            namespace: ns.into(),
            ..Default::default()
        }
    }

    fn rule(v: Value) -> Rule {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn rules_match_verbs_groups_resources_subresources_and_names() {
        let pods =
            rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}));
        assert!(pods.allows(&Request::Resource(&attrs("list", "", "pods", "", "dev"))));
        assert!(!pods.allows(&Request::Resource(&attrs("delete", "", "pods", "", "dev"))));
        assert!(!pods.allows(&Request::Resource(&attrs("get", "", "pods", "log", "dev"))));
        assert!(!pods.allows(&Request::Resource(&attrs("get", "apps", "pods", "", "dev"))));
        let logs = rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods/*"]}));
        assert!(logs.allows(&Request::Resource(&attrs("get", "", "pods", "log", ""))));
        let scale = rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*/scale"]}));
        assert!(scale.allows(&Request::Resource(&attrs(
            "patch",
            "apps",
            "deployments",
            "scale",
            ""
        ))));
        assert!(!scale.allows(&Request::Resource(&attrs(
            "patch",
            "apps",
            "deployments",
            "",
            ""
        ))));
        let named = rule(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["a"]}),
        );
        let mut a = attrs("get", "", "configmaps", "", "ns");
        a.name = "a".into();
        assert!(named.allows(&Request::Resource(&a)));
        a.name = "b".into();
        assert!(!named.allows(&Request::Resource(&a)));
        // A named rule never grants a list, which names nothing.
        assert!(!named.allows(&Request::Resource(&attrs(
            "get",
            "",
            "configmaps",
            "",
            "ns"
        ))));
    }

    #[test]
    fn non_resource_rules_match_paths_and_prefixes() {
        let discovery =
            rule(json!({"verbs": ["get"], "nonResourceURLs": ["/api", "/apis/*", "/version"]}));
        let get = |path| Request::Path { verb: "get", path };
        assert!(discovery.allows(&get("/api")));
        assert!(discovery.allows(&get("/apis/apps/v1")));
        assert!(!discovery.allows(&get("/api/v1")));
        assert!(!discovery.allows(&Request::Path {
            verb: "post",
            path: "/version"
        }));
        // A resource rule never grants a path.
        let all = rule(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
        assert!(!all.allows(&get("/metrics")));
    }

    fn policy() -> Policy {
        let objects: BTreeMap<String, Value> = [
            (
                "roles/dev/pod-reader",
                json!({"rules": [{"verbs": ["get", "list", "watch"], "apiGroups": [""], "resources": ["pods"]}]}),
            ),
            (
                "rolebindings/dev/read-pods",
                json!({"roleRef": {"kind": "Role", "name": "pod-reader", "apiGroup": "rbac.authorization.k8s.io"},
                       "subjects": [{"kind": "ServiceAccount", "name": "ci"},
                                    {"kind": "Group", "name": "devs", "apiGroup": "rbac.authorization.k8s.io"}]}),
            ),
            (
                "clusterroles/node-viewer",
                json!({"rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["nodes"]}]}),
            ),
            (
                "clusterrolebindings/alice-nodes",
                json!({"roleRef": {"kind": "ClusterRole", "name": "node-viewer", "apiGroup": "rbac.authorization.k8s.io"},
                       "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}]}),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (format!("{PREFIX}{k}"), v))
        .collect();
        Policy::from_objects(&objects)
    }

    #[test]
    fn bindings_grant_their_roles_to_their_subjects_in_their_namespace() {
        let policy = policy();
        let ci = User::new("system:serviceaccount:dev:ci", &[]);
        assert!(ci
            .groups
            .contains(&"system:serviceaccounts:dev".to_string()));
        let list_pods = |ns: &str| attrs("list", "", "pods", "", ns);
        assert!(policy.allows(&ci, &Request::Resource(&list_pods("dev"))));
        assert!(!policy.allows(&ci, &Request::Resource(&list_pods("prod"))));
        assert!(!policy.allows(&ci, &Request::Resource(&list_pods(""))));
        assert!(!policy.allows(
            &ci,
            &Request::Resource(&attrs("get", "", "secrets", "", "dev"))
        ));
        let other_sa = User::new("system:serviceaccount:prod:ci", &[]);
        assert!(!policy.allows(&other_sa, &Request::Resource(&list_pods("dev"))));
        let dev = User::new("bob", &["devs".to_string()]);
        assert!(policy.allows(&dev, &Request::Resource(&list_pods("dev"))));
        let alice = User::new("alice", &[]);
        assert!(policy.allows(
            &alice,
            &Request::Resource(&attrs("list", "", "nodes", "", ""))
        ));
        assert!(!policy.allows(
            &alice,
            &Request::Resource(&attrs("delete", "", "nodes", "", ""))
        ));
        assert!(!policy.allows(&alice, &Request::Resource(&list_pods("dev"))));
    }

    #[tokio::test]
    async fn the_cache_follows_the_store_and_keeps_pace_with_other_writes() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            crate::store::SqliteStore::open(crate::store::SqliteOptions {
                path: dir.path().join("db"),
            })
            .unwrap(),
        );
        let put = |key: String, value: Value| crate::store::WriteOp::Create {
            key,
            value: value.to_string().into(),
        };
        let settle = |rev: Revision| {
            let store = store.clone();
            async move {
                while store.current_revision() < rev {
                    tokio::task::yield_now().await;
                }
            }
        };
        let cache = PolicyCache::new();
        let ci = User::new("system:serviceaccount:dev:ci", &[]);
        let list = attrs("list", "", "pods", "", "dev");
        assert!(!cache.allows(&store, &ci, &Request::Resource(&list)).await);
        for (key, value) in [
            (
                "roles/dev/r",
                json!({"rules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}]}),
            ),
            (
                "rolebindings/dev/b",
                json!({"roleRef": {"kind": "Role", "name": "r"},
                       "subjects": [{"kind": "ServiceAccount", "name": "ci"}]}),
            ),
        ] {
            let written = store
                .write(put(format!("{PREFIX}{key}"), value))
                .await
                .unwrap();
            settle(written.mod_rev).await;
        }
        // Asked right after the write: the check waits for the cache to catch up.
        assert!(cache.allows(&store, &ci, &Request::Resource(&list)).await);
        // Writes outside RBAC move the cache's revision too, so a refusal answers
        // without waiting for an RBAC event.
        let written = store
            .write(put("/registry/core/configmaps/dev/c".into(), json!({})))
            .await
            .unwrap();
        settle(written.mod_rev).await;
        let started = std::time::Instant::now();
        let secrets = attrs("get", "", "secrets", "", "dev");
        assert!(
            !cache
                .allows(&store, &ci, &Request::Resource(&secrets))
                .await
        );
        assert!(cache.applied.load(Ordering::SeqCst) >= written.mod_rev);
        assert!(
            started.elapsed() < CATCH_UP,
            "a refusal waited out the catch-up"
        );
    }
}
