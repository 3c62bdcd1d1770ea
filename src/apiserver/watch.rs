//! Watch: a chunked stream of one JSON event per line over the store's watch,
//! with upstream's resourceVersion semantics, selectors (objects moving in or out of
//! a selector become ADDED/DELETED), bookmarks, `sendInitialEvents` and Table events.

use super::cache::CachedEvent;
use super::handlers::{Filter, collect, store_error};
use super::request::{Query, Rendering};
use super::{Server, stream_response};
use axum::body::Body;
use axum::response::Response;
use futures::StreamExt;
use rind_api::registry::Resource;
use rind_api::status::ApiError;
use rind_api::table::{IncludeObject, partial_metadata, table};
use rind_store::{StoreError, WatchEvent};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a watch lasts without `timeoutSeconds` (upstream: 30–60 minutes).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

struct Watch {
    resource: &'static Resource,
    filter: Filter,
    rendering: Rendering,
    include: IncludeObject,
    bookmarks: bool,
    tx: mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
}

impl Watch {
    /// Sends one event; false when the client has gone.
    async fn send(&self, kind: &str, object: Value) -> bool {
        let object = match (self.rendering, kind) {
            (Rendering::Table, "ADDED" | "MODIFIED" | "DELETED") => {
                let rv = object
                    .get("metadata")
                    .and_then(|m| m.get("resourceVersion"))
                    .cloned()
                    .unwrap_or(Value::Null);
                table(
                    self.resource,
                    &[object],
                    json!({"resourceVersion": rv}),
                    self.include,
                )
            }
            (Rendering::Metadata, "ADDED" | "MODIFIED" | "DELETED") => partial_metadata(&object),
            _ => object,
        };
        let line = rind_api::json::watch_event(kind, &object);
        self.tx.send(Ok(line)).await.is_ok()
    }

    /// Sends a shared event's object as `kind`: plain JSON watchers reuse the line the
    /// first of them serialized; other renderings transform a copy.
    async fn send_cached(&self, kind: &str, event: &CachedEvent) -> Result<bool, ApiError> {
        if self.rendering == Rendering::Object {
            let line = event.json_line(kind)?.to_vec();
            return Ok(self.tx.send(Ok(line)).await.is_ok());
        }
        Ok(self.send(kind, event.object()?.clone()).await)
    }

    fn bookmark(&self, revision: i64, initial_events_end: bool) -> Value {
        let mut metadata = json!({"resourceVersion": revision.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        json!({"kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": metadata})
    }

    /// Sends an ERROR event carrying upstream's `Status`.
    async fn error(&self, err: ApiError) {
        let line = rind_api::json::watch_event_raw("ERROR", &err.to_status().to_compact());
        // A client that has gone needs no error.
        let _ = self.tx.send(Ok(line)).await;
    }

    /// Turns one store event into at most one watch event.
    async fn forward(&self, event: &CachedEvent) -> Result<bool, ApiError> {
        match &event.event {
            WatchEvent::Put { .. } => {
                let now = self.filter.matches(event.object()?);
                let before = match event.prev_object()? {
                    Some(prev) => self.filter.matches(prev),
                    None => false,
                };
                match (before, now) {
                    (true, true) => self.send_cached("MODIFIED", event).await,
                    (false, true) => self.send_cached("ADDED", event).await,
                    // Left the selector: to this watcher it is gone.
                    (true, false) => self.send_cached("DELETED", event).await,
                    (false, false) => Ok(true),
                }
            }
            WatchEvent::Delete { .. } => {
                if !self.filter.matches(event.object()?) {
                    return Ok(true);
                }
                self.send_cached("DELETED", event).await
            }
            WatchEvent::Progress { revision } if self.bookmarks => {
                Ok(self.send("BOOKMARK", self.bookmark(*revision, false)).await)
            }
            WatchEvent::Progress { .. } => Ok(true),
        }
    }
}

pub async fn serve(
    server: Arc<Server>,
    resource: &'static Resource,
    ns: Option<&str>,
    name: Option<&str>,
    rendering: Rendering,
    query: &Query,
) -> Result<Response, ApiError> {
    // As upstream's handler: `timeoutSeconds=0` (or none) is the server's default, a
    // negative one has already run out.
    let timeout = match query.int("timeoutSeconds")? {
        None | Some(0) => DEFAULT_TIMEOUT,
        Some(seconds) => Duration::from_secs(seconds.max(0).unsigned_abs()),
    };
    crate::request::check_list_options(query, true)?;
    let mut filter = Filter::from_query(resource, query)?;
    if let Some(name) = name {
        filter.select_name(name)?;
    }
    let send_initial = query.flag("sendInitialEvents");
    let requested_rv = query.get("resourceVersion").map(str::to_string);
    // No resourceVersion (or "0") means "current state, then changes", like a list+watch.
    let initial_list = send_initial || matches!(requested_rv.as_deref(), None | Some("0"));
    let start_revision = match (&requested_rv, initial_list) {
        // Upstream's watch cache returns the versioner's error unconverted, and the
        // handler makes a 500 without a reason of it.
        (Some(rv), false) => rind_api::query::parse_resource_version(rv)
            .map(|rv| i64::try_from(rv).unwrap_or(i64::MAX))
            .map_err(ApiError::unconverted)?,
        _ => 0,
    };
    let (tx, rx) = mpsc::channel::<Result<Vec<u8>, std::io::Error>>(64);
    let watch = Watch {
        resource,
        filter,
        rendering,
        include: IncludeObject::parse(query.get("includeObject")),
        bookmarks: query.flag("allowWatchBookmarks"),
        tx,
    };
    let ns = ns.map(str::to_string);
    let initial = if initial_list {
        let (items, revision, _) = collect(
            &server,
            resource,
            ns.as_deref(),
            &watch.filter,
            0,
            &Query::default(),
        )
        .await?;
        Some((items, revision))
    } else {
        None
    };
    let after = initial.as_ref().map_or(start_revision, |(_, rev)| *rev);
    let prefix = resource.prefix(ns.as_deref());
    let stream = server.watch_cache.watch(resource, &prefix, after).await;
    tokio::spawn(async move {
        let run = async {
            let mut stream = match stream {
                Ok(stream) => stream,
                Err(e) => {
                    watch.error(store_error(e, resource, "")).await;
                    return;
                }
            };
            if let Some((items, revision)) = initial {
                for item in items {
                    if !watch.send("ADDED", item).await {
                        return;
                    }
                }
                if send_initial && !watch.send("BOOKMARK", watch.bookmark(revision, true)).await {
                    return;
                }
            }
            loop {
                // A client that hung up ends the watch at once, even on a quiet prefix.
                let event = tokio::select! {
                    _ = watch.tx.closed() => return,
                    event = stream.next() => match event {
                        Some(event) => event,
                        None => return,
                    },
                };
                let outcome = match event {
                    Ok(event) => watch.forward(&event).await,
                    Err(StoreError::Compacted {
                        requested,
                        compacted,
                    }) => Err(ApiError::expired(format!(
                        "too old resource version: {requested} ({compacted})"
                    ))),
                    Err(e) => Err(store_error(e, resource, "")),
                };
                match outcome {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(err) => {
                        watch.error(err).await;
                        return;
                    }
                }
            }
        };
        // The watch ends at its timeout; the client then re-watches from its last version.
        let _ = tokio::time::timeout(timeout, run).await;
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok(stream_response("application/json", body))
}
