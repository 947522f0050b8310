//! Direct (front → back) event handlers: the trait an application implements, and the two
//! built-in handlers the demo uses, `echo` and `broadcast`.
//!
//! A handler gets the verified event (stamp checked, data opened if it was sealed) and a
//! [`Hub`] to answer with. Each `meta.uuid` is handled once: a front that resends a queued
//! event gets `true` again without the handler running twice. A handler that fails makes the
//! request fail with `internal`, and the event may then be sent again.

use std::future::Future;
use std::pin::Pin;

use protocol::DirectEvent;

use super::hub::{Hub, PublishOptions};

/// What a handler returns.
pub type HandlerFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send + 'static>>;

/// Handles direct events of one name. Any `Fn(DirectEvent, Hub) -> impl Future<Output =
/// anyhow::Result<()>>` is one.
pub trait DirectHandler: Send + Sync + 'static {
    /// Handles one verified event.
    fn call(&self, event: DirectEvent, hub: Hub) -> HandlerFuture;
}

impl<F, Fut> DirectHandler for F
where
    F: Fn(DirectEvent, Hub) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    fn call(&self, event: DirectEvent, hub: Hub) -> HandlerFuture {
        Box::pin(self(event, hub))
    }
}

/// The options of an answer to `event`: linked by `requestUuid`, sealed if the request was.
pub fn answer_options(event: &DirectEvent) -> PublishOptions {
    PublishOptions {
        expires_in: None,
        request_uuid: Some(event.meta.uuid),
        encrypted: event.meta.encrypted == Some(true),
    }
}

/// `echo`: sends the event's data back to the sender's tab, with `requestUuid` set to the
/// request's `meta.uuid`.
pub async fn echo(event: DirectEvent, hub: Hub) -> anyhow::Result<()> {
    let options = answer_options(&event);
    let meta = event.meta;
    hub.publish_to_session(meta.front_uuid, meta.session_uuid, &meta.name, event.data, options)
        .await?;
    Ok(())
}

/// `broadcast`: sends the event's data to every tab of the sender's front.
pub async fn broadcast(event: DirectEvent, hub: Hub) -> anyhow::Result<()> {
    let options = answer_options(&event);
    let meta = event.meta;
    hub.publish_to_front(meta.front_uuid, &meta.name, event.data, options).await?;
    Ok(())
}
