//! The `Store` backend on a real etcd, over its v3 gRPC API.
//!
//! Conditional writes are single etcd transactions, so every check-and-write is atomic
//! on the server; each `watch` call opens its own bidirectional Watch stream.

use super::{KeyValue, ListPage, Store, StoreError, StoreResult, WatchEvent, WatchStream};
use async_trait::async_trait;
use futures::{StreamExt, stream};
use pb::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, PutRequest, RangeRequest, RequestOp,
    StatusRequest, TxnRequest, TxnResponse, WatchCreateRequest, WatchRequest, WatchResponse,
    compare, kv_client::KvClient, maintenance_client::MaintenanceClient, request_op, response_op,
    watch_client::WatchClient, watch_request,
};
use pb::mvccpb::{self, event::EventType};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

#[cfg(test)]
mod tests;
mod unary;

/// Code generated from `proto/` by build.rs.
#[allow(clippy::all, clippy::pedantic, dead_code)]
mod pb {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
}

/// How long to wait for a TCP (and TLS) connection to an etcd member.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `connect` waits for a member's status answer.
const STATUS_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 pings keep idle watch streams alive through NAT and detect dead members.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);

/// The largest etcd answer we decode (etcd's own send limit).
const MAX_ANSWER: usize = i32::MAX as usize;

/// Client certificate authentication to etcd, as kubeadm sets it up.
pub struct EtcdTls {
    pub ca_pem: Vec<u8>,
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

pub struct EtcdStore {
    /// The watch streams' connection (load-balanced over the endpoints); the generated
    /// clients are cheap handles onto it.
    channel: Channel,
    /// KV calls: their own HTTP/2 connection, driven from the calling task.
    unary: unary::Unary,
    /// See `Store::compacted_revision`.
    compacted: std::sync::atomic::AtomicI64,
}

impl EtcdStore {
    /// Connects to the etcd members at `endpoints` (URLs such as
    /// `https://127.0.0.1:2379`) and checks that one answers.
    pub async fn connect(
        endpoints: &[String],
        tls: Option<EtcdTls>,
    ) -> Result<Arc<EtcdStore>, StoreError> {
        if endpoints.is_empty() {
            return Err(StoreError::Unavailable("no etcd endpoints given".into()));
        }
        let connector = tls
            .as_ref()
            .map(|tls| unary::tls_connector(&tls.ca_pem, &tls.cert_pem, &tls.key_pem))
            .transpose()
            .map_err(|err| StoreError::Unavailable(format!("etcd TLS setup: {err}")))?;
        let tls = tls.map(|tls| {
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(tls.ca_pem))
                .identity(Identity::from_pem(tls.cert_pem, tls.key_pem))
        });
        let mut members = Vec::with_capacity(endpoints.len());
        let mut unary_members = Vec::with_capacity(endpoints.len());
        for url in endpoints {
            unary_members.push(unary::Member::parse(url, tls.is_some()).map_err(|err| {
                StoreError::Unavailable(format!("invalid etcd endpoint {url}: {err}"))
            })?);
            let mut endpoint = Endpoint::from_shared(url.clone())
                .map_err(|err| {
                    StoreError::Unavailable(format!("invalid etcd endpoint {url}: {err}"))
                })?
                .connect_timeout(CONNECT_TIMEOUT)
                .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
                .keep_alive_while_idle(true);
            if let Some(tls) = &tls {
                endpoint = endpoint.tls_config(tls.clone()).map_err(|err| {
                    let mut text = format!("etcd TLS setup for {url}: {err}");
                    append_causes(&mut text, std::error::Error::source(&err));
                    StoreError::Unavailable(text)
                })?;
            }
            members.push(endpoint);
        }
        let store = Arc::new(EtcdStore {
            compacted: std::sync::atomic::AtomicI64::new(0),
            channel: Channel::balance_list(members.into_iter()),
            unary: unary::Unary::new(
                unary_members,
                connector,
                CONNECT_TIMEOUT,
                KEEPALIVE_INTERVAL,
            ),
        });
        // Asked over the KV calls' connection: it is the one every request depends on.
        let mut maintenance = MaintenanceClient::new(store.unary.clone());
        let unavailable = |cause: String| {
            StoreError::Unavailable(format!(
                "etcd at {} does not answer: {cause}",
                endpoints.join(",")
            ))
        };
        // A member that accepts connections but never answers must not hang startup.
        match tokio::time::timeout(STATUS_TIMEOUT, maintenance.status(StatusRequest {})).await {
            Ok(Ok(_)) => Ok(store),
            Ok(Err(status)) => Err(unavailable(describe(&status))),
            Err(_) => Err(unavailable(format!("no status within {STATUS_TIMEOUT:?}"))),
        }
    }

    fn kv(&self) -> KvClient<unary::Unary> {
        // tonic's default 4 MiB answer limit breaks a LIST of a few thousand pods; etcd
        // itself sends answers up to 2 GiB.
        KvClient::new(self.unary.clone()).max_decoding_message_size(MAX_ANSWER)
    }

    async fn txn(&self, request: TxnRequest) -> StoreResult<TxnResponse> {
        Ok(self
            .kv()
            .txn(request)
            .await
            .map_err(map_status)?
            .into_inner())
    }
}

/// The first key under `prefix`; etcd rejects an empty key, and "\0" is the smallest.
fn prefix_start(prefix: &str) -> Vec<u8> {
    if prefix.is_empty() {
        vec![0]
    } else {
        prefix.as_bytes().to_vec()
    }
}

/// The end of the key range holding every key that starts with `prefix`: the prefix
/// with its last byte below 0xff incremented (etcd's convention); "\0" means no end.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// A status's code and etcd's message, plus the transport cause when there is one.
fn describe(status: &tonic::Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    append_causes(&mut text, std::error::Error::source(status));
    text
}

/// Appends the causes of an error that its message does not already name.
fn append_causes(text: &mut String, mut source: Option<&(dyn std::error::Error + 'static)>) {
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
}

/// etcd reports unreadable revisions as OutOfRange with these messages; everything else
/// means the store cannot serve the request.
fn map_status_at(status: tonic::Status, revision: i64) -> StoreError {
    if status.code() == tonic::Code::OutOfRange {
        if status.message().contains("compacted") {
            // etcd's error does not say how far it compacted.
            return StoreError::Compacted {
                requested: revision,
                compacted: 0,
            };
        }
        if status.message().contains("future revision") {
            return StoreError::FutureRevision(revision);
        }
    }
    StoreError::Unavailable(describe(&status))
}

fn map_status(status: tonic::Status) -> StoreError {
    StoreError::Unavailable(describe(&status))
}

fn from_etcd(kv: mvccpb::KeyValue) -> KeyValue {
    KeyValue {
        key: String::from_utf8_lossy(&kv.key).into_owned(),
        value: kv.value,
        create_revision: kv.create_revision,
        mod_revision: kv.mod_revision,
    }
}

fn compare(
    key: &str,
    target: compare::CompareTarget,
    result: compare::CompareResult,
    value: compare::TargetUnion,
) -> Compare {
    Compare {
        result: result as i32,
        target: target as i32,
        key: key.as_bytes().to_vec(),
        target_union: Some(value),
        range_end: Vec::new(),
    }
}

/// True while `key` exists (etcd's version counts writes since creation).
fn exists(key: &str) -> Compare {
    compare(
        key,
        compare::CompareTarget::Version,
        compare::CompareResult::Greater,
        compare::TargetUnion::Version(0),
    )
}

fn mod_revision_is(key: &str, revision: i64) -> Compare {
    compare(
        key,
        compare::CompareTarget::Mod,
        compare::CompareResult::Equal,
        compare::TargetUnion::ModRevision(revision),
    )
}

fn op(request: request_op::Request) -> RequestOp {
    RequestOp {
        request: Some(request),
    }
}

fn put_op(key: &str, value: Vec<u8>) -> RequestOp {
    op(request_op::Request::RequestPut(PutRequest {
        key: key.as_bytes().to_vec(),
        value,
        ..Default::default()
    }))
}

fn get_op(key: &str) -> RequestOp {
    op(request_op::Request::RequestRange(RangeRequest {
        key: key.as_bytes().to_vec(),
        ..Default::default()
    }))
}

fn revision_of(response: &TxnResponse) -> i64 {
    response.header.as_ref().map_or(0, |header| header.revision)
}

/// Why a guarded write's transaction failed, from the key read in its failure branch.
fn guard_failure(key: &str, expected: i64, response: TxnResponse) -> StoreError {
    let current = response
        .responses
        .into_iter()
        .find_map(|response| match response.response {
            Some(response_op::Response::ResponseRange(range)) => range.kvs.into_iter().next(),
            _ => None,
        });
    match current {
        None => StoreError::NotFound(key.to_string()),
        Some(current) => StoreError::Conflict {
            key: key.to_string(),
            expected,
            actual: current.mod_revision,
        },
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> StoreResult<Option<KeyValue>> {
        let response = self
            .kv()
            .range(RangeRequest {
                key: key.as_bytes().to_vec(),
                ..Default::default()
            })
            .await
            .map_err(map_status)?
            .into_inner();
        Ok(response.kvs.into_iter().next().map(from_etcd))
    }

    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        revision: Option<i64>,
    ) -> StoreResult<ListPage> {
        // The smallest key after `start_after` is `start_after` + "\0".
        let start = match start_after {
            Some(after) if after >= prefix => {
                let mut start = after.as_bytes().to_vec();
                start.push(0);
                start
            }
            _ => prefix_start(prefix),
        };
        let requested = revision.unwrap_or(0);
        let response = self
            .kv()
            .range(RangeRequest {
                key: start,
                range_end: prefix_end(prefix.as_bytes()),
                limit: i64::try_from(limit).unwrap_or(i64::MAX),
                revision: requested,
                ..Default::default()
            })
            .await
            .map_err(|status| map_status_at(status, requested))?
            .into_inner();
        // The header carries the store's current revision, not the one read at.
        let current = response.header.map_or(0, |header| header.revision);
        Ok(ListPage {
            items: response.kvs.into_iter().map(from_etcd).collect(),
            revision: if requested > 0 { requested } else { current },
            more: response.more,
            count: usize::try_from(response.count).unwrap_or_default(),
        })
    }

    async fn create(&self, key: &str, value: Vec<u8>) -> StoreResult<i64> {
        let response = self
            .txn(TxnRequest {
                compare: vec![compare(
                    key,
                    compare::CompareTarget::Create,
                    compare::CompareResult::Equal,
                    compare::TargetUnion::CreateRevision(0),
                )],
                success: vec![put_op(key, value)],
                failure: Vec::new(),
            })
            .await?;
        if !response.succeeded {
            return Err(StoreError::AlreadyExists(key.to_string()));
        }
        Ok(revision_of(&response))
    }

    async fn update(&self, key: &str, value: Vec<u8>, expected_revision: i64) -> StoreResult<i64> {
        let response = self
            .txn(TxnRequest {
                // A missing key has mod revision 0: the existence check keeps an
                // expected revision of 0 from creating it.
                compare: vec![exists(key), mod_revision_is(key, expected_revision)],
                success: vec![put_op(key, value)],
                failure: vec![get_op(key)],
            })
            .await?;
        if !response.succeeded {
            return Err(guard_failure(key, expected_revision, response));
        }
        Ok(revision_of(&response))
    }

    async fn delete(
        &self,
        key: &str,
        expected_revision: Option<i64>,
    ) -> StoreResult<(KeyValue, i64)> {
        let mut guards = vec![exists(key)];
        guards.extend(expected_revision.map(|expected| mod_revision_is(key, expected)));
        let response = self
            .txn(TxnRequest {
                compare: guards,
                success: vec![op(request_op::Request::RequestDeleteRange(
                    DeleteRangeRequest {
                        key: key.as_bytes().to_vec(),
                        range_end: Vec::new(),
                        prev_kv: true,
                    },
                ))],
                failure: vec![get_op(key)],
            })
            .await?;
        if !response.succeeded {
            return Err(guard_failure(key, expected_revision.unwrap_or(0), response));
        }
        let revision = revision_of(&response);
        let prev = response
            .responses
            .into_iter()
            .find_map(|response| match response.response {
                Some(response_op::Response::ResponseDeleteRange(deleted)) => {
                    deleted.prev_kvs.into_iter().next()
                }
                _ => None,
            })
            .ok_or_else(|| {
                StoreError::Unavailable(format!("etcd deleted {key} without its previous value"))
            })?;
        Ok((from_etcd(prev), revision))
    }

    async fn watch(&self, prefix: &str, after_revision: i64) -> StoreResult<WatchStream> {
        self.open_watch(prefix, after_revision, true).await
    }

    async fn watch_without_prev(
        &self,
        prefix: &str,
        after_revision: i64,
    ) -> StoreResult<WatchStream> {
        self.open_watch(prefix, after_revision, false).await
    }

    async fn revision(&self) -> StoreResult<i64> {
        // Any linearizable read reports the current revision in its header; reading the
        // single key "\0" is the cheapest.
        let response = self
            .kv()
            .range(RangeRequest {
                key: vec![0],
                count_only: true,
                ..Default::default()
            })
            .await
            .map_err(map_status)?
            .into_inner();
        Ok(response.header.map_or(0, |header| header.revision))
    }

    async fn compact(&self, revision: i64) -> StoreResult<()> {
        let result = self
            .kv()
            .compact(CompactionRequest {
                revision,
                physical: false,
            })
            .await
            .map_err(|status| map_status_at(status, revision));
        use std::sync::atomic::Ordering;
        match result {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::SeqCst);
                Ok(())
            }
            Err(err @ StoreError::Compacted { .. }) => {
                // Another API server compacted at least this far already.
                self.compacted.fetch_max(revision, Ordering::SeqCst);
                Err(err)
            }
            Err(err) => Err(err),
        }
    }

    fn compacted_revision(&self) -> i64 {
        self.compacted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl EtcdStore {
    /// A watch of `prefix` after `after_revision`; `with_prev` asks etcd for the value
    /// each event replaced (a read of the previous revision per event on its side).
    async fn open_watch(
        &self,
        prefix: &str,
        after_revision: i64,
        with_prev: bool,
    ) -> StoreResult<WatchStream> {
        // The request side must stay open for the watch's lifetime: etcd ends the whole
        // stream when it closes. It lives in the returned stream's state.
        let (requests, request_rx) = mpsc::channel(1);
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(
                WatchCreateRequest {
                    key: prefix_start(prefix),
                    range_end: prefix_end(prefix.as_bytes()),
                    start_revision: after_revision + 1,
                    progress_notify: true,
                    prev_kv: with_prev,
                    ..Default::default()
                },
            )),
        };
        requests
            .send(create)
            .await
            .map_err(|_| StoreError::Unavailable("etcd watch request channel closed".into()))?;
        let mut responses = WatchClient::new(self.channel.clone())
            .max_decoding_message_size(MAX_ANSWER)
            .watch(ReceiverStream::new(request_rx))
            .await
            .map_err(map_status)?
            .into_inner();
        // etcd confirms the watch before sending anything else for it.
        match responses.message().await.map_err(map_status)? {
            Some(response) if response.created => {}
            Some(response) => {
                return Err(StoreError::Unavailable(format!(
                    "etcd did not confirm the watch on {prefix}: {response:?}"
                )));
            }
            None => {
                return Err(StoreError::Unavailable(
                    "etcd closed the watch stream before confirming it".into(),
                ));
            }
        }
        let events = stream::unfold(Some((responses, requests)), move |state| async move {
            let (mut responses, requests) = state?;
            let batch = match responses.message().await {
                Ok(Some(response)) => watch_events(response, after_revision, with_prev),
                Ok(None) => Err(StoreError::Unavailable(
                    "etcd closed the watch stream".into(),
                )),
                Err(status) => Err(map_status(status)),
            };
            match batch {
                Ok(events) => Some((Ok(events), Some((responses, requests)))),
                // An error ends the watch: the caller must start a new one.
                Err(err) => Some((Err(err), None)),
            }
        });
        Ok(events
            .flat_map(|batch| match batch {
                Ok(events) => stream::iter(events.into_iter().map(Ok)).left_stream(),
                Err(err) => stream::once(async { Err(err) }).right_stream(),
            })
            .boxed())
    }
}

/// The store events in one etcd watch response, or why the watch ended.
fn watch_events(
    response: WatchResponse,
    after_revision: i64,
    with_prev: bool,
) -> StoreResult<Vec<WatchEvent>> {
    if response.compact_revision != 0 {
        return Err(StoreError::Compacted {
            requested: after_revision,
            compacted: response.compact_revision,
        });
    }
    if response.canceled {
        return Err(StoreError::Unavailable(format!(
            "etcd canceled the watch: {}",
            response.cancel_reason
        )));
    }
    let revision = response.header.map_or(0, |header| header.revision);
    if response.events.is_empty() {
        return Ok(vec![WatchEvent::Progress { revision }]);
    }
    response
        .events
        .into_iter()
        .map(|event| {
            let kv = event.kv.unwrap_or_default();
            let prev = event.prev_kv.map(from_etcd);
            if event.r#type == EventType::Delete as i32 {
                let prev = match prev {
                    Some(prev) => prev,
                    // Not asked for: the watcher knows the value itself.
                    None if !with_prev => KeyValue {
                        key: String::from_utf8_lossy(&kv.key).into_owned(),
                        ..KeyValue::default()
                    },
                    // Without the deleted value the event is useless; etcd drops it
                    // when that revision was compacted, so the watcher must re-list.
                    None => {
                        return Err(StoreError::Compacted {
                            requested: kv.mod_revision - 1,
                            compacted: 0,
                        });
                    }
                };
                Ok(WatchEvent::Delete {
                    prev,
                    revision: kv.mod_revision,
                })
            } else {
                Ok(WatchEvent::Put {
                    kv: from_etcd(kv),
                    prev,
                })
            }
        })
        .collect()
}
