//! The serviceaccounts controller: every namespace has a `default` ServiceAccount —
//! created when the namespace appears and again whenever it is deleted; nothing is
//! done in a namespace being terminated. An existing account is never changed.
//!
//! Shared with `rootca`: both reconcile one namespace at a time, woken by the
//! namespace watch and by a watch of the one object they keep in each namespace.
//!
//! May call: the API (namespaces, serviceaccounts).

use std::fmt::Debug;
use std::future::Future;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use serde::de::DeserializeOwned;

use super::{requeue_after_error, Context, Result};

const NAME: &str = "serviceaccount";
pub const DEFAULT_ACCOUNT: &str = "default";

pub async fn run(ctx: Arc<Context>) {
    run_per_namespace::<ServiceAccount, _, _>(NAME, DEFAULT_ACCOUNT, ctx, |ns, ctx| async move {
        ensure_default_account(&ctx, &ns).await
    })
    .await;
}

async fn ensure_default_account(ctx: &Context, namespace: &str) -> Result<()> {
    let accounts: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), namespace);
    if accounts.get_opt(DEFAULT_ACCOUNT).await?.is_some() {
        return Ok(());
    }
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_ACCOUNT.into()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    ignore_races(
        accounts
            .create(&PostParams::default(), &account)
            .await
            .map(drop),
    )
}

/// A write that lost to a concurrent one, or to the namespace going away, is done.
pub(super) fn ignore_races(result: kube::Result<()>) -> Result<()> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("being terminated") => {
            Ok(())
        }
        other => Ok(other?),
    }
}

/// True while a namespace is being deleted: nothing may be created in it.
pub(super) fn terminating(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_some()
        || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating")
}

/// Runs `ensure(namespace)` for every live namespace, again whenever the namespace or
/// its object `object_name` of kind `K` changes or disappears.
pub(super) async fn run_per_namespace<K, F, Fut>(
    name: &'static str,
    object_name: &'static str,
    ctx: Arc<Context>,
    ensure: F,
) where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
    F: Fn(String, Arc<Context>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<()>> + Send + 'static,
{
    let client = ctx.client.clone();
    let ensure = Arc::new(ensure);
    let kept = watcher::Config::default().fields(&format!("metadata.name={object_name}"));
    crate::client::lenient::controller(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches_stream(
        crate::client::lenient::watcher(Api::<K>::all(client), kept).touched_objects(),
        |obj: K| obj.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)),
    )
    .run(
        move |ns, ctx| {
            let ensure = ensure.clone();
            super::spawned(async move {
                if !terminating(&ns) {
                    ensure(ns.name_any(), ctx).await?;
                }
                Ok(Action::await_change())
            })
        },
        move |_, e, _| requeue_after_error(name, e),
        ctx,
    )
    .for_each(|_| futures::future::ready(()))
    .await;
}
