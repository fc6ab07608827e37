//! The scheduler's cache: nodes, and what the pods bound (or assumed bound) to each
//! node take from it, kept up to date from watch events. A pod this scheduler has
//! just bound is *assumed* on its node until the watch shows the binding, so the
//! next decision already counts it.
//!
//! Owns: node slots, per-node usage, the pod table. May call: nothing (pure state).

use std::collections::HashMap;

use super::model::{Footprint, HostPort, NodeInfo, PodInfo, Requests};

/// What the pods on one node take from it.
#[derive(Debug, Default, Clone)]
pub struct NodeUsage {
    pub requests: Requests,
    pub nonzero: Requests,
    pub pods: i64,
    pub host_ports: Vec<HostPort>,
    /// Pods per owner (hashed controller uid) on this node.
    pub owners: HashMap<u64, u32>,
}

impl NodeUsage {
    fn add(&mut self, footprint: &Footprint) {
        self.requests.add(&footprint.requests);
        self.nonzero.add(&footprint.nonzero);
        self.pods += 1;
        self.host_ports.extend(footprint.host_ports.iter().cloned());
        if let Some(owner) = footprint.owner {
            *self.owners.entry(owner).or_default() += 1;
        }
    }

    fn remove(&mut self, footprint: &Footprint) {
        self.requests.subtract(&footprint.requests);
        self.nonzero.subtract(&footprint.nonzero);
        self.pods -= 1;
        for port in &footprint.host_ports {
            if let Some(i) = self.host_ports.iter().position(|p| p == port) {
                self.host_ports.swap_remove(i);
            }
        }
        if let Some(owner) = footprint.owner {
            if let Some(count) = self.owners.get_mut(&owner) {
                *count -= 1;
                if *count == 0 {
                    self.owners.remove(&owner);
                }
            }
        }
    }

    /// Pods of this owner on the node.
    pub fn owned_by(&self, owner: Option<u64>) -> u32 {
        owner
            .and_then(|o| self.owners.get(&o).copied())
            .unwrap_or(0)
    }
}

/// A node name's place in the cache: the node (once seen, until deleted) and the
/// usage of pods bound to that name (even before the node is seen).
#[derive(Debug, Default)]
struct Slot {
    node: Option<NodeInfo>,
    usage: NodeUsage,
    generation: u64,
}

#[derive(Debug)]
struct CachedPod {
    info: PodInfo,
    /// The slot of the node it is bound (or assumed) to.
    slot: Option<usize>,
    /// Bound by us, not yet confirmed by the watch.
    assumed: bool,
    generation: u64,
}

/// What applying a pod event means for the queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodChange {
    /// The pod waits for scheduling.
    pub pending: bool,
    /// Resources or ports were released on some node.
    pub freed: bool,
    /// What the pod needs or tolerates changed (or the pod is new).
    pub reshaped: bool,
}

#[derive(Debug, Default)]
pub struct Cache {
    slots: Vec<Slot>,
    slot_of: HashMap<String, usize>,
    free_slots: Vec<usize>,
    pods: HashMap<String, CachedPod>,
    node_generation: u64,
    pod_generation: u64,
}

impl Cache {
    /// Records a node; true when it is new or changed in a way that matters.
    pub fn apply_node(&mut self, node: NodeInfo) -> bool {
        let slot = self.slot_for(&node.name);
        let entry = &mut self.slots[slot];
        entry.generation = self.node_generation;
        if entry.node.as_ref() == Some(&node) {
            return false;
        }
        entry.node = Some(node);
        true
    }

    pub fn delete_node(&mut self, name: &str) {
        if let Some(&slot) = self.slot_of.get(name) {
            self.slots[slot].node = None;
            self.release_if_unused(slot);
        }
    }

    /// A node relist starts: nodes it does not list again are deleted at its end.
    pub fn begin_node_relist(&mut self) {
        self.node_generation += 1;
    }

    pub fn finish_node_relist(&mut self) {
        let stale: Vec<String> = self
            .slots
            .iter()
            .filter(|s| s.generation < self.node_generation)
            .filter_map(|s| s.node.as_ref().map(|n| n.name.clone()))
            .collect();
        for name in stale {
            self.delete_node(&name);
        }
    }

    /// Records a pod as the watch shows it.
    pub fn apply_pod(&mut self, info: PodInfo) -> PodChange {
        let generation = self.pod_generation;
        if let Some(cached) = self.pods.get_mut(&info.uid) {
            cached.generation = generation;
            // An older view of a pod we have just bound: keep the assumption.
            if cached.assumed && info.node_name.is_none() && !info.finished {
                cached.info.deleting |= info.deleting;
                return PodChange::default();
            }
        }
        if info.finished {
            let freed = self.delete_pod(&info.uid);
            return PodChange {
                freed,
                ..PodChange::default()
            };
        }
        let old = self.pods.remove(&info.uid);
        let old_slot = old.as_ref().and_then(|o| o.slot);
        if let (Some(slot), Some(old)) = (old_slot, &old) {
            self.slots[slot].usage.remove(&old.info.footprint);
        }
        let slot = info.node_name.as_deref().map(|n| self.slot_for(n));
        if let Some(slot) = slot {
            self.slots[slot].usage.add(&info.footprint);
        }
        if let Some(old_slot) = old_slot.filter(|&s| Some(s) != slot) {
            self.release_if_unused(old_slot);
        }
        let change = PodChange {
            pending: info.wants_scheduling(),
            freed: old_slot.is_some() && old_slot != slot,
            reshaped: old.as_ref().is_none_or(|o| {
                o.info.constraints != info.constraints || o.info.footprint != info.footprint
            }),
        };
        let uid = info.uid.clone();
        self.pods.insert(
            uid,
            CachedPod {
                info,
                slot,
                assumed: false,
                generation,
            },
        );
        change
    }

    /// Forgets a pod; true when that released resources on a node.
    pub fn delete_pod(&mut self, uid: &str) -> bool {
        let Some(old) = self.pods.remove(uid) else {
            return false;
        };
        let Some(slot) = old.slot else {
            return false;
        };
        self.slots[slot].usage.remove(&old.info.footprint);
        self.release_if_unused(slot);
        true
    }

    /// A pod relist starts: pods it does not list again are deleted at its end.
    pub fn begin_pod_relist(&mut self) {
        self.pod_generation += 1;
    }

    /// Deletes the pods the relist did not show; returns their uids and whether any
    /// of them released resources.
    pub fn finish_pod_relist(&mut self) -> (Vec<String>, bool) {
        let stale: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, p)| p.generation < self.pod_generation)
            .map(|(uid, _)| uid.clone())
            .collect();
        let mut freed = false;
        for uid in &stale {
            freed |= self.delete_pod(uid);
        }
        (stale, freed)
    }

    /// The pod if it still waits for scheduling (not assumed, not bound).
    pub fn pending_pod(&self, uid: &str) -> Option<&PodInfo> {
        self.pods
            .get(uid)
            .filter(|p| !p.assumed && p.slot.is_none() && p.info.wants_scheduling())
            .map(|p| &p.info)
    }

    /// Counts a pod on a node from now on: we are binding it there.
    pub fn assume(&mut self, uid: &str, slot: usize) {
        let Some(cached) = self.pods.get_mut(uid) else {
            return;
        };
        if cached.slot.is_some() || slot >= self.slots.len() {
            return;
        }
        self.slots[slot].usage.add(&cached.info.footprint);
        cached.slot = Some(slot);
        cached.assumed = true;
    }

    /// Undoes an assumption that the watch has not confirmed; true when it did.
    pub fn forget(&mut self, uid: &str) -> bool {
        let Some(cached) = self.pods.get_mut(uid).filter(|p| p.assumed) else {
            return false;
        };
        let slot = cached.slot.take();
        cached.assumed = false;
        let footprint = cached.info.footprint.clone();
        if let Some(slot) = slot {
            self.slots[slot].usage.remove(&footprint);
            self.release_if_unused(slot);
        }
        true
    }

    /// Known nodes with their slot and usage, in no particular order.
    pub fn nodes(&self) -> impl Iterator<Item = (usize, &NodeInfo, &NodeUsage)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.node.as_ref().map(|n| (i, n, &s.usage)))
    }

    pub fn node_name(&self, slot: usize) -> Option<&str> {
        self.slots.get(slot)?.node.as_ref().map(|n| n.name.as_str())
    }

    #[cfg(test)]
    pub fn usage_of(&self, node_name: &str) -> Option<&NodeUsage> {
        self.slot_of.get(node_name).map(|&s| &self.slots[s].usage)
    }

    pub fn pod_count(&self) -> usize {
        self.pods.len()
    }

    fn slot_for(&mut self, name: &str) -> usize {
        if let Some(&slot) = self.slot_of.get(name) {
            return slot;
        }
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.slots[slot] = Slot::default();
                slot
            }
            None => {
                self.slots.push(Slot::default());
                self.slots.len() - 1
            }
        };
        self.slots[slot].generation = self.node_generation;
        self.slot_of.insert(name.to_string(), slot);
        slot
    }

    /// Frees a slot that has neither a node nor pods.
    fn release_if_unused(&mut self, slot: usize) {
        let entry = &self.slots[slot];
        if entry.node.is_some() || entry.usage.pods > 0 {
            return;
        }
        self.slot_of.retain(|_, s| *s != slot);
        self.free_slots.push(slot);
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::scheduler::model::{Allocatable, PodInfo};

    pub fn node(name: &str, milli_cpu: i64) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            labels: Default::default(),
            ready: true,
            unschedulable: false,
            taints: vec![],
            allocatable: Allocatable {
                milli_cpu,
                memory: 8 << 30,
                ephemeral_storage: None,
                pods: 110,
            },
        }
    }

    pub fn pod(name: &str, milli_cpu: i64) -> PodInfo {
        let mut p = PodInfo {
            uid: format!("uid-{name}"),
            namespace: "default".into(),
            name: name.into(),
            ours: true,
            ..Default::default()
        };
        p.footprint.requests.milli_cpu = milli_cpu;
        p.footprint.nonzero.milli_cpu = milli_cpu.max(100);
        p
    }

    fn bound(name: &str, milli_cpu: i64, node: &str) -> PodInfo {
        let mut p = pod(name, milli_cpu);
        p.node_name = Some(node.into());
        p
    }

    fn cpu_used(cache: &Cache, node: &str) -> i64 {
        cache
            .usage_of(node)
            .map(|u| u.requests.milli_cpu)
            .unwrap_or(0)
    }

    #[test]
    fn bound_pods_count_against_their_node_until_deleted() {
        let mut cache = Cache::default();
        cache.apply_node(node("n1", 1000));
        assert!(!cache.apply_pod(bound("a", 300, "n1")).pending);
        cache.apply_pod(bound("b", 200, "n1"));
        assert_eq!(cpu_used(&cache, "n1"), 500);
        assert!(cache.delete_pod("uid-a"));
        assert_eq!(cpu_used(&cache, "n1"), 200);
        let mut done = bound("b", 200, "n1");
        done.finished = true;
        assert!(cache.apply_pod(done).freed);
        assert_eq!(cpu_used(&cache, "n1"), 0);
    }

    #[test]
    fn pods_on_unknown_nodes_are_counted_when_the_node_appears() {
        let mut cache = Cache::default();
        cache.apply_pod(bound("a", 300, "later"));
        assert!(cache.apply_node(node("later", 1000)));
        assert!(!cache.apply_node(node("later", 1000)));
        let (_, _, usage) = cache.nodes().next().unwrap();
        assert_eq!(usage.requests.milli_cpu, 300);
    }

    #[test]
    fn assumed_pods_survive_stale_events_and_can_be_forgotten() {
        let mut cache = Cache::default();
        cache.apply_node(node("n1", 1000));
        assert!(cache.apply_pod(pod("a", 300)).pending);
        let slot = cache.nodes().next().unwrap().0;
        cache.assume("uid-a", slot);
        assert!(cache.pending_pod("uid-a").is_none());
        assert_eq!(cpu_used(&cache, "n1"), 300);
        // The event of an update made before the binding: still assumed.
        assert!(!cache.apply_pod(pod("a", 300)).pending);
        assert_eq!(cpu_used(&cache, "n1"), 300);
        assert!(cache.forget("uid-a"));
        assert_eq!(cpu_used(&cache, "n1"), 0);
        assert!(cache.pending_pod("uid-a").is_some());
    }

    #[test]
    fn the_watch_confirms_an_assumption() {
        let mut cache = Cache::default();
        cache.apply_node(node("n1", 1000));
        cache.apply_pod(pod("a", 300));
        let slot = cache.nodes().next().unwrap().0;
        cache.assume("uid-a", slot);
        cache.apply_pod(bound("a", 300, "n1"));
        assert!(!cache.forget("uid-a"));
        assert_eq!(cpu_used(&cache, "n1"), 300);
    }

    #[test]
    fn relists_drop_what_they_no_longer_show() {
        let mut cache = Cache::default();
        cache.apply_node(node("n1", 1000));
        cache.apply_node(node("n2", 1000));
        cache.apply_pod(bound("a", 300, "n1"));
        cache.apply_pod(bound("b", 300, "n1"));
        cache.begin_pod_relist();
        cache.apply_pod(bound("b", 300, "n1"));
        let (gone, freed) = cache.finish_pod_relist();
        assert_eq!(gone, vec!["uid-a".to_string()]);
        assert!(freed);
        assert_eq!(cpu_used(&cache, "n1"), 300);
        cache.begin_node_relist();
        cache.apply_node(node("n2", 1000));
        cache.finish_node_relist();
        let names: Vec<&str> = cache.nodes().map(|(_, n, _)| n.name.as_str()).collect();
        assert_eq!(names, vec!["n2"]);
    }

    #[test]
    fn empty_slots_are_reused() {
        let mut cache = Cache::default();
        cache.apply_node(node("n1", 1000));
        cache.delete_node("n1");
        cache.apply_node(node("n2", 1000));
        assert_eq!(cache.slots.len(), 1);
        assert_eq!(cache.node_name(0), Some("n2"));
    }
}
