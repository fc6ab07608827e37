//! Lenient watches: a list or watch event whose object no longer decodes into its
//! typed struct (a stored object from an older schema, a bug) is logged once and
//! skipped, and the rest of the list or stream goes on. kube-runtime's own watcher
//! decodes a whole list page as one `ObjectList<K>`, so a single bad item fails the
//! list and the watcher relists forever: every controller, the scheduler and the node
//! agent would stall on one object.
//!
//! How: the watch runs over [`Lenient<K>`], whose `Deserialize` never fails for a
//! well-formed JSON object. It captures the object's text as a `RawValue` (a fast
//! validating scan, no tree built) and decodes that once into `K`; only when that
//! fails does it decode the metadata alone, so the bad item still has a name and a
//! resourceVersion for the log and the watcher's bookmark. Good objects are decoded
//! exactly once, as before.
//!
//! Owns: `watcher` (drop-in for `kube::runtime::watcher`), `controller` (drop-in
//! for `Controller::new`) and `list` (drop-in for `Api::list`). May call: kube only.

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{LazyLock, Mutex};

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ListParams, ObjectList};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{Controller, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// An object as listed or watched: decoded, or the reason it does not decode.
#[derive(Clone, Debug)]
pub enum Lenient<K> {
    Ok(K),
    Bad(Box<Undecodable>),
}

/// What is known of an object that does not decode.
#[derive(Clone, Debug, Default)]
pub struct Undecodable {
    /// Its metadata when that much decodes (empty otherwise).
    pub metadata: ObjectMeta,
    pub error: String,
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Lenient<K> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<serde_json::value::RawValue>::deserialize(deserializer)?;
        Ok(decode(raw.get()))
    }
}

/// Decodes one object's JSON text, never failing.
pub fn decode<K: DeserializeOwned>(text: &str) -> Lenient<K> {
    match serde_json::from_str::<K>(text) {
        Ok(object) => Lenient::Ok(object),
        Err(error) => {
            #[derive(Deserialize)]
            struct MetadataOnly {
                #[serde(default)]
                metadata: ObjectMeta,
            }
            let metadata = serde_json::from_str::<MetadataOnly>(text)
                .map(|m| m.metadata)
                .unwrap_or_default();
            Lenient::Bad(Box::new(Undecodable {
                metadata,
                error: error.to_string(),
            }))
        }
    }
}

impl<K: Resource> Resource for Lenient<K> {
    type DynamicType = K::DynamicType;
    // Dynamic, so `Api::namespaced_with` takes it whatever `K`'s scope.
    type Scope = kube::core::DynamicResourceScope;

    fn kind(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::kind(dt)
    }
    fn group(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::group(dt)
    }
    fn version(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::version(dt)
    }
    fn plural(dt: &Self::DynamicType) -> std::borrow::Cow<'_, str> {
        K::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        match self {
            Lenient::Ok(object) => object.meta(),
            Lenient::Bad(bad) => &bad.metadata,
        }
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Lenient::Ok(object) => object.meta_mut(),
            Lenient::Bad(bad) => &mut bad.metadata,
        }
    }
}

/// `kube::runtime::watcher` over `api`, minus the objects that do not decode: each is
/// logged once (kind, namespace/name, the decode error) and left out.
pub fn watcher<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    K::DynamicType: Default + Clone + Eq + Hash,
{
    let kind = K::kind(&Default::default()).into_owned();
    watcher::watcher(lenient_api(api.clone()), config)
        .filter_map(move |event| futures::future::ready(keep_decoded(event, &kind)))
}

/// A cache of `K` fed by [`watcher`] in its own task, waking `changed` on every
/// event: what a level-triggered loop waits on and then reads.
pub fn notifying_cache<K>(
    api: Api<K>,
    config: watcher::Config,
    changed: std::sync::Arc<tokio::sync::Notify>,
) -> Store<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Clone + Eq + Hash,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config))
        .default_backoff()
        .touched_objects();
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        while let Some(event) = stream.next().await {
            if event.is_ok() {
                changed.notify_one();
            }
        }
    });
    reader
}

/// `api.list(params)`, minus the objects that do not decode (each logged once).
pub async fn list<K>(api: &Api<K>, params: &ListParams) -> Result<ObjectList<K>, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let kind = K::kind(&Default::default()).into_owned();
    let listed = lenient_api(api.clone()).list(params).await?;
    Ok(ObjectList {
        types: listed.types,
        metadata: listed.metadata,
        items: listed
            .items
            .into_iter()
            .filter_map(|item| decoded(item, &kind))
            .collect(),
    })
}

/// The same collection as `api`, read leniently.
fn lenient_api<K>(api: Api<K>) -> Api<Lenient<K>>
where
    K: Resource,
    K::DynamicType: Default,
{
    let dyntype = Default::default();
    let namespace = api.namespace().map(str::to_owned);
    let client = api.into_client();
    match &namespace {
        Some(ns) => Api::namespaced_with(client, ns, &dyntype),
        None => Api::all_with(client, &dyntype),
    }
}

/// `Controller::new(api, config)`, its own watch lenient.
pub fn controller<K>(api: Api<K>, config: watcher::Config) -> Controller<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Clone + Eq + Hash + Debug + Unpin,
{
    let (reader, writer): (Store<K>, _) = reflector::store();
    let trigger = reflector::reflector(writer, watcher(api, config)).applied_objects();
    Controller::for_stream(trigger, reader)
}

/// The objects (kind, namespace, name, resourceVersion) already logged, so a relist
/// or another component's watch does not log them again.
static LOGGED: LazyLock<Mutex<HashSet<LoggedKey>>> = LazyLock::new(Mutex::default);

type LoggedKey = (String, String, String, String);

/// The event with its object decoded, or `None` (logged) when it does not decode.
fn keep_decoded<K: Resource>(
    event: watcher::Result<Event<Lenient<K>>>,
    kind: &str,
) -> Option<watcher::Result<Event<K>>> {
    let keep = |object: Lenient<K>| decoded(object, kind);
    Some(Ok(match event {
        Err(error) => return Some(Err(error)),
        Ok(Event::Init) => Event::Init,
        Ok(Event::InitDone) => Event::InitDone,
        Ok(Event::InitApply(object)) => Event::InitApply(keep(object)?),
        Ok(Event::Apply(object)) => Event::Apply(keep(object)?),
        Ok(Event::Delete(object)) => Event::Delete(keep(object)?),
    }))
}

fn decoded<K>(object: Lenient<K>, kind: &str) -> Option<K> {
    match object {
        Lenient::Ok(object) => Some(object),
        Lenient::Bad(bad) => {
            log_once(kind, &bad);
            None
        }
    }
}

/// Logs `bad` unless this version of it was logged before; says whether it logged.
fn log_once(kind: &str, bad: &Undecodable) -> bool {
    let meta = &bad.metadata;
    let key = (
        kind.to_string(),
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
        meta.resource_version.clone().unwrap_or_default(),
    );
    let first = LOGGED.lock().map(|mut l| l.insert(key)).unwrap_or(true);
    if first {
        tracing::warn!(
            kind,
            namespace = meta.namespace.as_deref().unwrap_or(""),
            name = meta.name.as_deref().unwrap_or(""),
            error = %bad.error,
            "skipping a stored object that does not decode"
        );
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use kube::core::{ObjectList, WatchEvent};

    const GOOD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"good","namespace":"default","resourceVersion":"5"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
    const BAD: &str = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bad","namespace":"default","resourceVersion":"6"},"spec":{"containers":[{"name":"c","image":"busybox","ports":[{"containerPort":"eighty"}]}]}}"#;

    fn names(list: &ObjectList<Lenient<Pod>>) -> Vec<(bool, String)> {
        list.items
            .iter()
            .map(|item| {
                (
                    matches!(item, Lenient::Ok(_)),
                    item.meta().name.clone().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn a_list_with_an_undecodable_item_keeps_the_others() {
        let text = format!(
            r#"{{"apiVersion":"v1","kind":"PodList","metadata":{{"resourceVersion":"9"}},"items":[{GOOD},{BAD},{GOOD}]}}"#
        );
        assert!(serde_json::from_str::<ObjectList<Pod>>(&text).is_err());
        let list: ObjectList<Lenient<Pod>> = serde_json::from_str(&text).unwrap();
        assert_eq!(
            names(&list),
            [
                (true, "good".into()),
                (false, "bad".into()),
                (true, "good".into())
            ]
        );
    }

    #[test]
    fn an_undecodable_watch_event_keeps_its_name_resource_version_and_error() {
        let line = format!(r#"{{"type":"MODIFIED","object":{BAD}}}"#);
        let event: WatchEvent<Lenient<Pod>> = serde_json::from_str(&line).unwrap();
        let WatchEvent::Modified(Lenient::Bad(bad)) = event else {
            panic!("expected an undecodable MODIFIED event");
        };
        assert_eq!(bad.metadata.name.as_deref(), Some("bad"));
        assert_eq!(bad.metadata.resource_version.as_deref(), Some("6"));
        assert!(bad.error.contains("invalid type"), "{}", bad.error);
    }

    #[test]
    fn an_object_whose_metadata_does_not_decode_is_still_skipped() {
        let text = r#"{"metadata":{"name":["not","a","string"]},"spec":7}"#;
        let Lenient::Bad(bad) = decode::<Pod>(text) else {
            panic!("expected undecodable");
        };
        assert_eq!(bad.metadata, ObjectMeta::default());
    }

    #[test]
    fn undecodable_objects_are_dropped_and_logged_once_the_rest_pass() {
        let good: Lenient<Pod> = decode(GOOD);
        let bad: Lenient<Pod> = decode(BAD);
        let keep = |e| keep_decoded(Ok(e), "TestPod");
        assert!(matches!(
            keep(Event::InitApply(good.clone())),
            Some(Ok(Event::InitApply(_)))
        ));
        assert!(keep(Event::InitApply(bad.clone())).is_none());
        assert!(keep(Event::Apply(bad.clone())).is_none());
        assert!(keep(Event::Delete(bad.clone())).is_none());
        assert!(matches!(
            keep(Event::Delete(good)),
            Some(Ok(Event::Delete(_)))
        ));
        assert!(matches!(keep(Event::InitDone), Some(Ok(Event::InitDone))));
        let Lenient::Bad(bad) = bad else { panic!() };
        assert!(!log_once("TestPod", &bad), "one bad object, logged once");
    }
}
