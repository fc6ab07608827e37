//! Events as `kubectl describe` shows them: core/v1 Events with `count`,
//! `firstTimestamp`/`lastTimestamp` and `source.component`, aggregated so that a
//! repeat of the same reason and message on the same object bumps the count instead
//! of adding a row. Controllers, the scheduler and node agents all report through it
//! (their expiry after the TTL is a controller: `controllers::events`).
//!
//! May call: the API through the component's kube client; nothing else in skiff.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// (object uid, type, reason, message) → (namespace, event name, count)
type Seen = HashMap<(String, &'static str, String, String), (String, String, i32)>;

const MAX_REMEMBERED: usize = 4096;

/// Events written at once; more wait for a slot.
const IN_FLIGHT: usize = 16;
/// Events waiting beyond this are dropped (with a debug log), as client-go's event
/// broadcaster drops when its queue is full: a storm of events never slows the
/// controllers that report it.
const MAX_QUEUED: usize = 2000;

/// Publishes events in the background; failures are logged, never returned: an event
/// is never worth failing or slowing a reconcile for.
#[derive(Clone)]
pub struct Recorder {
    client: kube::Client,
    component: String,
    seen: Arc<Mutex<Seen>>,
    slots: Arc<tokio::sync::Semaphore>,
    queued: Arc<AtomicUsize>,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str) -> Self {
        Recorder {
            client,
            component: component.to_string(),
            seen: Arc::default(),
            slots: Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT)),
            queued: Arc::default(),
        }
    }

    /// Queues the event and returns; it is written shortly after.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        if self.queued.fetch_add(1, Ordering::SeqCst) >= MAX_QUEUED {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            tracing::debug!(reason, "event queue full; dropping an event");
            return;
        }
        let recorder = self.clone();
        let (regarding, reason, message) =
            (regarding.clone(), reason.to_string(), message.to_string());
        tokio::spawn(async move {
            let slot = recorder.slots.acquire().await;
            let result = recorder
                .try_publish(&regarding, kind, &reason, &message)
                .await;
            drop(slot);
            recorder.queued.fetch_sub(1, Ordering::SeqCst);
            if let Err(error) = result {
                tracing::debug!(%error, reason, "recording an event failed");
            }
        });
    }

    async fn try_publish(
        &self,
        regarding: &ObjectReference,
        kind: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), kube::Error> {
        let namespace = regarding
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into());
        let key = (
            regarding.uid.clone().unwrap_or_default(),
            kind.as_str(),
            reason.to_string(),
            message.to_string(),
        );
        let now = Time(Utc::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let previous = self.seen.lock().ok().and_then(|s| s.get(&key).cloned());
        if let Some((ns, name, count)) = previous {
            let patch = json!({"count": count + 1, "lastTimestamp": now});
            let bumped = Api::<Event>::namespaced(self.client.clone(), &ns)
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await;
            if bumped.is_ok() {
                self.remember(key, ns, name, count + 1);
                return Ok(());
            }
        }
        let object_name = regarding.name.clone().unwrap_or_default();
        let name = format!(
            "{object_name}.{:x}",
            Utc::now().timestamp_nanos_opt().unwrap_or_default()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: regarding.clone(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(kind.as_str().to_string()),
            source: Some(EventSource {
                component: Some(self.component.clone()),
                host: None,
            }),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.component.clone()),
            ..Default::default()
        };
        api.create(&PostParams::default(), &event).await?;
        self.remember(key, namespace, name, 1);
        Ok(())
    }

    fn remember(
        &self,
        key: (String, &'static str, String, String),
        ns: String,
        name: String,
        count: i32,
    ) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= MAX_REMEMBERED {
                seen.clear();
            }
            seen.insert(key, (ns, name, count));
        }
    }
}
