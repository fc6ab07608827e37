//! The collector's work queue: each item queued once however often it is added,
//! never handed to two workers at once (an item added while being worked on is
//! queued again when that work is done), with per-item back-off on failure.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

const BASE_DELAY: Duration = Duration::from_millis(200);
const MAX_DELAY: Duration = Duration::from_secs(30);

struct State<T> {
    order: VecDeque<T>,
    queued: HashSet<T>,
    active: HashSet<T>,
    /// Added while active: queue again when done.
    dirty: HashSet<T>,
    failures: HashMap<T, u32>,
}

impl<T> Default for State<T> {
    fn default() -> Self {
        State {
            order: VecDeque::new(),
            queued: HashSet::new(),
            active: HashSet::new(),
            dirty: HashSet::new(),
            failures: HashMap::new(),
        }
    }
}

pub struct Queue<T> {
    state: Mutex<State<T>>,
    ready: Notify,
}

impl<T: Clone + Eq + Hash + Send + 'static> Queue<T> {
    pub fn new() -> Self {
        Queue {
            state: Mutex::new(State::default()),
            ready: Notify::new(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State<T>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn add(&self, item: T) {
        let mut state = self.state();
        if state.active.contains(&item) {
            state.dirty.insert(item);
        } else if state.queued.insert(item.clone()) {
            state.order.push_back(item);
            drop(state);
            self.ready.notify_one();
        }
    }

    /// Adds `item` after `delay`.
    pub fn add_after(self: &Arc<Self>, item: T, delay: Duration) {
        let queue = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(item);
        });
    }

    /// The next item to work on; call [`Queue::done`] when finished with it.
    pub async fn next(&self) -> T {
        loop {
            let ready = self.ready.notified();
            if let Some(item) = self.pop() {
                return item;
            }
            ready.await;
        }
    }

    fn pop(&self) -> Option<T> {
        let mut state = self.state();
        let item = state.order.pop_front()?;
        state.queued.remove(&item);
        state.active.insert(item.clone());
        let more = !state.order.is_empty();
        drop(state);
        if more {
            // Only one waiter wakes per notification: pass the baton on.
            self.ready.notify_one();
        }
        Some(item)
    }

    pub fn done(&self, item: &T) {
        let again = {
            let mut state = self.state();
            state.active.remove(item);
            state.dirty.remove(item)
        };
        if again {
            self.add(item.clone());
        }
    }

    /// Forgets the failures of `item`.
    pub fn succeeded(&self, item: &T) {
        self.state().failures.remove(item);
    }

    /// Counts a failure of `item`; returns how long to wait before retrying it.
    pub fn failed(&self, item: &T) -> Duration {
        let mut state = self.state();
        let failures = state.failures.entry(item.clone()).or_insert(0);
        *failures = failures.saturating_add(1);
        backoff(*failures)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.state().order.len()
    }
}

/// 200 ms doubling per failure, at most 30 s.
fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    BASE_DELAY.saturating_mul(factor).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn deduplicates_and_never_hands_out_an_item_twice_at_once() {
        let q = Queue::new();
        q.add("a");
        q.add("a");
        q.add("b");
        assert_eq!(q.len(), 2);
        let a = q.next().await;
        assert_eq!(a, "a");
        q.add("a");
        assert_eq!(q.len(), 1, "an active item waits for its work to end");
        assert_eq!(q.next().await, "b");
        q.done(&"b");
        q.done(&a);
        assert_eq!(q.next().await, "a");
    }

    #[tokio::test]
    async fn wakes_a_waiting_worker() {
        let q = Arc::new(Queue::new());
        let worker = tokio::spawn({
            let q = q.clone();
            async move { q.next().await }
        });
        tokio::task::yield_now().await;
        q.add(7);
        assert_eq!(worker.await.unwrap(), 7);
    }

    #[test]
    fn backs_off_exponentially_up_to_a_cap() {
        let q: Queue<&str> = Queue::new();
        assert_eq!(q.failed(&"a"), Duration::from_millis(200));
        assert_eq!(q.failed(&"a"), Duration::from_millis(400));
        assert_eq!(q.failed(&"a"), Duration::from_millis(800));
        q.succeeded(&"a");
        assert_eq!(q.failed(&"a"), Duration::from_millis(200));
        assert_eq!(backoff(40), MAX_DELAY);
    }
}
