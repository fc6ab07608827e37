//! Event expiry: deletes events whose last occurrence is older than the TTL. The
//! recorder every component reports through lives in `component::events`.
//!
//! May call: the API through `Context`'s client.

use std::sync::Arc;

use chrono::Utc;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, DeleteParams, ListParams};

pub use crate::component::events::{EventType, Recorder};

use super::Context;

/// Deletes events whose last occurrence is older than the TTL, once a minute.
pub async fn expire_forever(ctx: Arc<Context>) {
    let ttl =
        chrono::Duration::from_std(ctx.settings.event_ttl).unwrap_or(chrono::Duration::hours(1));
    let api: Api<Event> = Api::all(ctx.client.clone());
    loop {
        let mut params = ListParams::default().limit(500);
        while let Ok(list) = crate::client::lenient::list(&api, &params).await {
            let cutoff = Utc::now() - ttl;
            for event in list.items {
                let last = event
                    .last_timestamp
                    .as_ref()
                    .map(|t| t.0)
                    .or(event.event_time.as_ref().map(|t| t.0))
                    .or(event.metadata.creation_timestamp.as_ref().map(|t| t.0));
                if last.is_some_and(|t| t < cutoff) {
                    if let (Some(ns), Some(name)) =
                        (&event.metadata.namespace, &event.metadata.name)
                    {
                        let _ = Api::<Event>::namespaced(ctx.client.clone(), ns)
                            .delete(name, &DeleteParams::default())
                            .await;
                    }
                }
            }
            match list.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => break,
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(60)).await;
    }
}
