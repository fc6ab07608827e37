//! The scheduling queue: pods waiting for an attempt, highest priority first, then
//! oldest first; pods that fit nowhere park until the cluster changes (after a
//! back-off of 1 s doubling to 10 s) or 10 s pass, whichever comes first. A pod's
//! repeated failure is reported again only when its reason changes or a minute has
//! passed (upstream's event series are not rewritten on each repeat either).
//!
//! Owns: the order of attempts and the back-off. May call: nothing (pure state; time
//! is passed in).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use super::model::PodInfo;

const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A parked pod is retried after this even if nothing changed.
pub const FLUSH_AFTER: Duration = Duration::from_secs(10);
/// The same failure is reported again after this.
const REPORT_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// Queue order: priority (highest first), creation time, uid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    priority: Reverse<i32>,
    created_ms: i64,
    uid: String,
}

impl Rank {
    fn of(pod: &PodInfo) -> Rank {
        Rank {
            priority: Reverse(pod.constraints.priority),
            created_ms: pod.created_ms,
            uid: pod.uid.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Active,
    /// Being attempted or bound right now.
    InFlight,
    Parked {
        since: Instant,
        /// The cluster's change count when it parked.
        epoch: u64,
        /// Retry after the back-off even if nothing changes.
        retry: bool,
    },
}

#[derive(Debug)]
struct Entry {
    rank: Rank,
    state: State,
    attempts: u32,
    /// The last failure reported, and when.
    reported: Option<(String, Instant)>,
}

#[derive(Debug, Default)]
pub struct Queue {
    active: BTreeSet<Rank>,
    entries: HashMap<String, Entry>,
    /// Counts cluster changes that may let parked pods fit.
    epoch: u64,
}

impl Queue {
    /// A pod waits for scheduling. A parked pod whose requirements changed goes back
    /// to the active queue; one in flight is left alone.
    pub fn add(&mut self, pod: &PodInfo, changed: bool) {
        let rank = Rank::of(pod);
        let Some(entry) = self.entries.get_mut(&pod.uid) else {
            self.active.insert(rank.clone());
            self.entries.insert(
                pod.uid.clone(),
                Entry {
                    rank,
                    state: State::Active,
                    attempts: 0,
                    reported: None,
                },
            );
            return;
        };
        match entry.state {
            State::InFlight => {}
            State::Active => {
                if entry.rank != rank {
                    self.active.remove(&entry.rank);
                    self.active.insert(rank.clone());
                    entry.rank = rank;
                }
            }
            State::Parked { .. } if changed => {
                self.active.insert(rank.clone());
                entry.rank = rank;
                entry.state = State::Active;
            }
            State::Parked { .. } => {}
        }
    }

    /// The pod no longer waits (bound, deleted, or not ours).
    pub fn remove(&mut self, uid: &str) {
        if let Some(entry) = self.entries.remove(uid) {
            if entry.state == State::Active {
                self.active.remove(&entry.rank);
            }
        }
    }

    pub fn has_active(&self) -> bool {
        !self.active.is_empty()
    }

    /// The next pod to attempt; it is in flight until parked, retried or removed.
    pub fn pop(&mut self) -> Option<String> {
        let rank = self.active.pop_first()?;
        if let Some(entry) = self.entries.get_mut(&rank.uid) {
            entry.state = State::InFlight;
            entry.attempts += 1;
        }
        Some(rank.uid)
    }

    /// The pod fits nowhere: wait for a change or the flush.
    pub fn park(&mut self, uid: &str, now: Instant) {
        self.park_with(uid, now, false);
    }

    /// Binding failed: try again after the back-off.
    pub fn retry(&mut self, uid: &str, now: Instant) {
        self.park_with(uid, now, true);
    }

    fn park_with(&mut self, uid: &str, now: Instant, retry: bool) {
        if let Some(entry) = self.entries.get_mut(uid) {
            if entry.state == State::Active {
                self.active.remove(&entry.rank);
            }
            entry.state = State::Parked {
                since: now,
                epoch: self.epoch,
                retry,
            };
        }
    }

    /// Whether this failure deserves a report (an event) now: it is new for the pod,
    /// or the last report is a minute old. Remembers it when so.
    pub fn should_report(&mut self, uid: &str, message: &str, now: Instant) -> bool {
        let Some(entry) = self.entries.get_mut(uid) else {
            return false;
        };
        let repeat = entry.reported.as_ref().is_some_and(|(last, at)| {
            last == message && now.saturating_duration_since(*at) < REPORT_AGAIN_AFTER
        });
        if !repeat {
            entry.reported = Some((message.to_string(), now));
        }
        !repeat
    }

    /// The cluster changed (a node came or changed, a pod went): parked pods may fit.
    pub fn cluster_changed(&mut self) {
        self.epoch += 1;
    }

    /// Moves parked pods whose time has come to the active queue; returns how many.
    pub fn activate_due(&mut self, now: Instant) -> usize {
        let mut moved = 0;
        for entry in self.entries.values_mut() {
            let State::Parked {
                since,
                epoch,
                retry,
            } = entry.state
            else {
                continue;
            };
            let waited = now.saturating_duration_since(since);
            let woken = retry || epoch < self.epoch;
            if waited >= FLUSH_AFTER || (woken && waited >= backoff(entry.attempts)) {
                entry.state = State::Active;
                self.active.insert(entry.rank.clone());
                moved += 1;
            }
        }
        moved
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[cfg(test)]
    pub fn parked(&self) -> usize {
        self.entries
            .values()
            .filter(|e| matches!(e.state, State::Parked { .. }))
            .count()
    }
}

/// 1 s after the first failed attempt, doubling up to 10 s.
fn backoff(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(4);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, priority: i32, created_ms: i64) -> PodInfo {
        let mut p = PodInfo {
            uid: uid.into(),
            created_ms,
            ..Default::default()
        };
        p.constraints.priority = priority;
        p
    }

    #[test]
    fn higher_priority_then_older_first() {
        let mut q = Queue::default();
        q.add(&pod("young", 0, 20), false);
        q.add(&pod("old", 0, 10), false);
        q.add(&pod("important", 100, 30), false);
        assert_eq!(q.pop().as_deref(), Some("important"));
        assert_eq!(q.pop().as_deref(), Some("old"));
        assert_eq!(q.pop().as_deref(), Some("young"));
        assert_eq!(q.pop(), None);
    }

    #[test]
    fn in_flight_pods_are_not_queued_twice() {
        let mut q = Queue::default();
        q.add(&pod("a", 0, 1), false);
        assert_eq!(q.pop().as_deref(), Some("a"));
        q.add(&pod("a", 0, 1), true);
        assert!(!q.has_active());
        q.remove("a");
        assert_eq!(q.len(), 0);
    }

    #[test]
    fn parked_pods_wait_for_a_change_and_the_backoff() {
        let start = Instant::now();
        let mut q = Queue::default();
        q.add(&pod("a", 0, 1), false);
        q.pop();
        q.park("a", start);
        assert_eq!(q.activate_due(start + Duration::from_secs(5)), 0);
        q.cluster_changed();
        assert_eq!(q.activate_due(start + Duration::from_millis(500)), 0);
        assert_eq!(q.activate_due(start + Duration::from_secs(1)), 1);
        assert_eq!(q.pop().as_deref(), Some("a"));
        // Second failure: two seconds of back-off.
        q.park("a", start);
        q.cluster_changed();
        assert_eq!(q.activate_due(start + Duration::from_millis(1500)), 0);
        assert_eq!(q.activate_due(start + Duration::from_secs(2)), 1);
    }

    #[test]
    fn parked_pods_are_flushed_after_ten_seconds() {
        let start = Instant::now();
        let mut q = Queue::default();
        q.add(&pod("a", 0, 1), false);
        q.pop();
        q.park("a", start);
        assert_eq!(q.parked(), 1);
        assert_eq!(q.activate_due(start + FLUSH_AFTER), 1);
        assert!(q.has_active());
    }

    #[test]
    fn a_changed_parked_pod_is_retried_at_once() {
        let mut q = Queue::default();
        q.add(&pod("a", 0, 1), false);
        q.pop();
        q.park("a", Instant::now());
        q.add(&pod("a", 0, 1), false);
        assert!(!q.has_active());
        q.add(&pod("a", 5, 1), true);
        assert_eq!(q.pop().as_deref(), Some("a"));
    }

    #[test]
    fn backoff_doubles_to_ten_seconds() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(9), Duration::from_secs(10));
    }

    #[test]
    fn repeated_failures_are_reported_once_a_minute() {
        let start = Instant::now();
        let mut q = Queue::default();
        q.add(&pod("a", 0, 1), false);
        assert!(q.should_report("a", "0/1 nodes", start));
        assert!(!q.should_report("a", "0/1 nodes", start + Duration::from_secs(30)));
        assert!(q.should_report("a", "0/2 nodes", start + Duration::from_secs(31)));
        assert!(q.should_report("a", "0/2 nodes", start + Duration::from_secs(91)));
        assert!(!q.should_report("gone", "0/2 nodes", start));
    }
}
