//! Scoring and the choice of a node among those that pass the filters. Nodes are
//! ranked, most important first, by: fewest PreferNoSchedule taints the pod does not
//! tolerate; fewest pods of the pod's owner (spreading replicas); most free CPU and
//! memory after placing the pod (least requested, upstream's default); and last a
//! hash of the pod's and the node's names, so ties break deterministically without
//! always landing on the same node.
//!
//! Owns: node ranking and selection. May call: the filters (pure).

use std::cmp::Reverse;
use std::collections::HashMap;

use super::cache::NodeUsage;
use super::filter::{check, untolerated_preferences, FitError};
use super::model::{fnv1a, NodeInfo, PodInfo};

/// A node's rank for one pod: higher is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Score {
    pub prefer_no_schedule: Reverse<usize>,
    pub same_owner: Reverse<u32>,
    /// The average free share of CPU and memory once the pod is placed, in
    /// hundredths of a percent (finer than upstream's 0..=100, for evener spreading).
    pub least_requested: i64,
    pub tie_break: u64,
}

pub fn score(pod: &PodInfo, node: &NodeInfo, usage: &NodeUsage) -> Score {
    Score {
        prefer_no_schedule: Reverse(untolerated_preferences(pod, node)),
        same_owner: Reverse(usage.owned_by(pod.footprint.owner)),
        least_requested: least_requested(pod, node, usage),
        tie_break: fnv1a(&[
            pod.namespace.as_bytes(),
            pod.name.as_bytes(),
            node.name.as_bytes(),
        ]),
    }
}

/// Upstream's LeastAllocated with equal CPU and memory weights, on requests that
/// count unset CPU and memory as small defaults.
fn least_requested(pod: &PodInfo, node: &NodeInfo, usage: &NodeUsage) -> i64 {
    let wanted = &pod.footprint.nonzero;
    let cpu = free_share(
        node.allocatable.milli_cpu,
        usage.nonzero.milli_cpu + wanted.milli_cpu,
    );
    let memory = free_share(
        node.allocatable.memory,
        usage.nonzero.memory + wanted.memory,
    );
    (cpu + memory) / 2
}

/// The unrequested share of `capacity`, 0..=10,000.
fn free_share(capacity: i64, requested: i64) -> i64 {
    if capacity <= 0 || requested > capacity {
        return 0;
    }
    // i128: bytes of memory times 10,000 would overflow i64 on huge nodes.
    let share = i128::from(capacity - requested) * 10_000 / i128::from(capacity);
    share as i64
}

/// The best node for `pod` (its slot), or why none fits.
pub fn place<'a>(
    pod: &PodInfo,
    nodes: impl Iterator<Item = (usize, &'a NodeInfo, &'a NodeUsage)>,
) -> Result<usize, FitError> {
    let mut best: Option<(Score, usize)> = None;
    let mut rejected = HashMap::new();
    let mut total = 0;
    for (slot, node, usage) in nodes {
        total += 1;
        match check(pod, node, usage) {
            Ok(()) => {
                let candidate = score(pod, node, usage);
                if best.is_none_or(|(leader, _)| candidate > leader) {
                    best = Some((candidate, slot));
                }
            }
            Err(misfit) => {
                misfit.for_each_reason(|reason| *rejected.entry(reason).or_insert(0) += 1)
            }
        }
    }
    best.map(|(_, slot)| slot)
        .ok_or_else(|| FitError::new(total, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scheduler::cache::tests::{node, pod};
    use crate::scheduler::cache::Cache;
    use crate::scheduler::model::{Effect, Taint};

    /// Schedules pods one after the other, assuming each, as the scheduler does.
    fn schedule_all(cache: &mut Cache, pods: Vec<PodInfo>) -> Vec<Result<String, String>> {
        pods.into_iter()
            .map(|p| {
                let uid = p.uid.clone();
                cache.apply_pod(p);
                let pending = cache.pending_pod(&uid).cloned().expect("pending");
                match place(&pending, cache.nodes()) {
                    Ok(slot) => {
                        let name = cache.node_name(slot).unwrap_or_default().to_string();
                        cache.assume(&uid, slot);
                        Ok(name)
                    }
                    Err(e) => Err(e.message()),
                }
            })
            .collect()
    }

    fn replica(name: &str) -> PodInfo {
        let mut p = pod(name, 100);
        p.footprint.owner = Some(fnv1a(&[b"rs-uid"]));
        p
    }

    #[test]
    fn three_replicas_spread_over_three_nodes() {
        let mut cache = Cache::default();
        for n in ["n1", "n2", "n3"] {
            cache.apply_node(node(n, 4000));
        }
        let mut placed = schedule_all(
            &mut cache,
            vec![replica("web-a"), replica("web-b"), replica("web-c")],
        )
        .into_iter()
        .map(|r| r.expect("scheduled"))
        .collect::<Vec<_>>();
        placed.sort();
        assert_eq!(placed, vec!["n1", "n2", "n3"]);
    }

    #[test]
    fn spreading_beats_load_but_least_requested_breaks_ties() {
        let mut cache = Cache::default();
        cache.apply_node(node("busy", 4000));
        cache.apply_node(node("idle", 4000));
        let mut heavy = pod("heavy", 3000);
        heavy.node_name = Some("busy".into());
        cache.apply_pod(heavy);
        let placed = schedule_all(&mut cache, vec![replica("a"), replica("b")]);
        assert_eq!(placed, vec![Ok("idle".to_string()), Ok("busy".to_string())]);
        let placed = schedule_all(&mut cache, vec![pod("lone", 100)]);
        assert_eq!(placed, vec![Ok("idle".to_string())]);
    }

    #[test]
    fn cordoned_nodes_are_skipped() {
        let mut cache = Cache::default();
        let mut cordoned = node("n1", 4000);
        cordoned.unschedulable = true;
        cache.apply_node(cordoned);
        cache.apply_node(node("n2", 1000));
        let placed = schedule_all(
            &mut cache,
            vec![pod("a", 100), pod("b", 100), pod("c", 100)],
        );
        assert!(placed.iter().all(|r| r.as_deref() == Ok("n2")));
    }

    #[test]
    fn a_pod_bigger_than_every_node_is_unschedulable() {
        let mut cache = Cache::default();
        let mut cordoned = node("n1", 4000);
        cordoned.unschedulable = true;
        cache.apply_node(cordoned);
        cache.apply_node(node("n2", 2000));
        cache.apply_node(node("n3", 2000));
        let placed = schedule_all(&mut cache, vec![pod("huge", 3000)]);
        assert_eq!(
            placed,
            vec![Err(
                "0/3 nodes are available: 1 node(s) were unschedulable, 2 Insufficient cpu."
                    .to_string()
            )]
        );
    }

    #[test]
    fn assumed_pods_fill_nodes_up() {
        let mut cache = Cache::default();
        cache.apply_node(node("n1", 1000));
        let placed = schedule_all(&mut cache, vec![pod("a", 600), pod("b", 600)]);
        assert_eq!(placed[0], Ok("n1".to_string()));
        assert_eq!(
            placed[1],
            Err("0/1 nodes are available: 1 Insufficient cpu.".to_string())
        );
    }

    #[test]
    fn prefer_no_schedule_lowers_the_rank() {
        let mut cache = Cache::default();
        let mut soft = node("soft", 8000);
        soft.taints = vec![Taint {
            key: "spot".into(),
            value: String::new(),
            effect: Effect::PreferNoSchedule,
        }];
        cache.apply_node(soft);
        cache.apply_node(node("plain", 1000));
        let placed = schedule_all(&mut cache, vec![pod("a", 100), pod("b", 100)]);
        assert!(placed.iter().all(|r| r.as_deref() == Ok("plain")));
    }

    #[test]
    fn ties_break_by_pod_name_not_always_the_same_node() {
        let mut cache = Cache::default();
        for n in ["n1", "n2", "n3", "n4"] {
            cache.apply_node(node(n, 4000));
        }
        let chosen: std::collections::BTreeSet<String> = (0..20)
            .filter_map(|i| {
                let p = pod(&format!("p{i}"), 0);
                place(&p, cache.nodes()).ok()
            })
            .filter_map(|slot| cache.node_name(slot).map(String::from))
            .collect();
        assert!(chosen.len() > 1);
        let p = pod("same", 0);
        assert_eq!(place(&p, cache.nodes()), place(&p, cache.nodes()));
    }
}
