//! DNS over UDP: one receive loop with a cache of whole answers, in wire format, in
//! front of the general handler (`handler`).
//!
//! Nearly every query a cluster sends is one of a few questions asked again and again
//! (the same Service names, the same search-path misses), and an answer from the index
//! depends only on the query's bytes and the index. So the first time a query's bytes
//! (all but the 2-byte ID: flags, question with its letter case, EDNS record) are
//! answered locally, the answer's bytes are kept; the same bytes asked again get the
//! kept answer with the new query's ID, without parsing, allocating or spawning
//! anything. Since every byte but the ID is the key, an answer served from the cache
//! is byte for byte what the general handler gives that query (same flags, TTLs,
//! authority SOA, EDNS reply, letter case, truncation).
//!
//! The cache holds answers of one generation of the index (`SharedZone`): the first
//! query after the index is rebuilt empties it, so answers follow the API as soon as
//! the index does. Forwarded answers (names outside the cluster) are never kept, nor
//! is anything that is not a NOERROR or NXDOMAIN answer that fits untruncated.
//! Everything not in the cache goes through the general handler in its own task, as
//! hickory-server's UDP loop did, so a slow upstream never holds up the loop.

use crate::handler::Handler;
use crate::metrics::Metrics;
use hickory_server::net::NetError;
use hickory_server::net::runtime::TokioTime;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{
    Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode,
};
use hickory_server::proto::rr::Record;
use hickory_server::proto::serialize::binary::{
    BinDecodable, BinDecoder, BinEncodable, BinEncoder,
};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::net::UdpSocket;

/// The largest query read (hickory-server's UDP buffer too): queries are a name and
/// an EDNS record, far below it.
const MAX_QUERY: usize = 4096;
/// Keys longer than this are not kept (a query is one name: at most ~300 bytes with
/// EDNS options).
const MAX_KEY: usize = 512;
/// Answers longer than this are not kept (EDNS's recommended UDP size: larger answers
/// are rare and cheap enough to build each time).
const MAX_ANSWER: usize = 1232;
/// The cache's bytes (keys and answers) at most; past it, it starts over. A few
/// thousand distinct questions fit, more than a cluster asks between two changes.
const BUDGET: usize = 1 << 20;

/// One kept answer: all its bytes after the ID, and its response code for the metrics.
struct Kept {
    answer: Box<[u8]>,
    code: ResponseCode,
}

/// Answers of one generation of the index, by the bytes of their query after the ID.
#[derive(Default)]
pub(crate) struct AnswerCache {
    generation: u64,
    entries: HashMap<Box<[u8]>, Kept>,
    bytes: usize,
}

impl AnswerCache {
    /// Drops everything older than `generation`.
    fn at(&mut self, generation: u64) {
        if self.generation != generation {
            self.entries.clear();
            self.entries.shrink_to(64);
            self.bytes = 0;
            self.generation = generation;
        }
    }

    /// Writes the kept answer to `query` (ID patched in) into `out`.
    fn answer(&mut self, generation: u64, query: &[u8], out: &mut Vec<u8>) -> Option<ResponseCode> {
        self.at(generation);
        let kept = self.entries.get(query.get(2..)?)?;
        out.clear();
        out.extend_from_slice(&query[..2]);
        out.extend_from_slice(&kept.answer);
        Some(kept.code)
    }

    /// Keeps `answer` to `query`, both whole messages, computed from the index at
    /// `generation` (or later), if worth keeping.
    fn keep(&mut self, generation: u64, query: &[u8], answer: &[u8]) {
        if generation > self.generation {
            self.at(generation);
        }
        if generation != self.generation || query.len() > MAX_KEY || answer.len() > MAX_ANSWER {
            return;
        }
        let Some(code) = cacheable(answer) else {
            return;
        };
        if self.bytes + query.len() + answer.len() > BUDGET {
            self.entries.clear();
            self.bytes = 0;
        }
        let (Some(key), Some(answer)) = (query.get(2..), answer.get(2..)) else {
            return;
        };
        self.bytes += key.len() + answer.len();
        self.entries.insert(
            key.into(),
            Kept {
                answer: answer.into(),
                code,
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// The response code of a whole answer worth keeping: a response, untruncated,
/// NOERROR or NXDOMAIN.
fn cacheable(answer: &[u8]) -> Option<ResponseCode> {
    let header = Header::read(&mut BinDecoder::new(answer)).ok()?;
    let meta = header.metadata;
    let code = meta.response_code;
    (meta.message_type == MessageType::Response
        && !meta.truncation
        && matches!(code, ResponseCode::NoError | ResponseCode::NXDomain))
    .then_some(code)
}

/// A response handler that encodes the answer as hickory-server's UDP handler does
/// (at most the client's EDNS payload size, else 512 bytes; truncated past it) and
/// keeps the bytes instead of sending them.
#[derive(Clone, Default)]
pub(crate) struct Capture(Arc<Mutex<Option<Vec<u8>>>>);

impl Capture {
    pub(crate) fn take(&self) -> Option<Vec<u8>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

#[async_trait::async_trait]
impl ResponseHandler for Capture {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let id = response.metadata().id;
        let max = response.edns().map_or(512, |edns| edns.max_payload());
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        encoder.set_max_size(max);
        let info = match response.destructive_emit(&mut encoder) {
            Ok(info) => info,
            Err(err) => {
                // As hickory-server does: an answer that cannot be encoded is a bare
                // SERVFAIL.
                tracing::warn!("encoding an answer: {err}");
                bytes.clear();
                let header = servfail(id);
                let mut encoder = BinEncoder::new(&mut bytes);
                header.emit(&mut encoder).map_err(NetError::from)?;
                ResponseInfo::from(header)
            }
        };
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(bytes);
        Ok(info)
    }
}

fn servfail(id: u16) -> Header {
    let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
    metadata.response_code = ResponseCode::ServFail;
    Header {
        metadata,
        counts: HeaderCounts::default(),
    }
}

/// The general handler's answer to the UDP query `bytes` from `from`, and whether it
/// came from the index (and may be kept). `None`: no answer is due (not a query, or
/// too short to have a header), as hickory-server drops those.
pub(crate) async fn general(
    handler: &Handler,
    bytes: Vec<u8>,
    from: SocketAddr,
) -> Option<(Vec<u8>, bool)> {
    let header = Header::read(&mut BinDecoder::new(&bytes)).ok()?;
    if header.metadata.message_type == MessageType::Response {
        // Never answer a response (reflection attacks).
        return None;
    }
    let request = match Request::from_bytes(bytes, from, Protocol::Udp) {
        Ok(request) => request,
        Err(err) => {
            // A header but no parsable message: FORMERR without a question, as
            // hickory-server answers.
            tracing::debug!(%from, "unparsable query: {err}");
            let mut metadata = Metadata::response_from_request(&header.metadata);
            metadata.response_code = ResponseCode::FormErr;
            let mut out = Vec::with_capacity(12);
            Header {
                metadata,
                counts: HeaderCounts::default(),
            }
            .emit(&mut BinEncoder::new(&mut out))
            .ok()?;
            return Some((out, false));
        }
    };
    let local = handler.answers_locally(&request);
    let capture = Capture::default();
    handler
        .handle_request::<_, TokioTime>(&request, capture.clone())
        .await;
    Some((capture.take()?, local))
}

/// Serves DNS on `socket` until it fails.
pub async fn serve(socket: UdpSocket, handler: Handler) -> io::Result<()> {
    let socket = Arc::new(socket);
    let handler = Arc::new(handler);
    let cache: Arc<Mutex<AnswerCache>> = Arc::default();
    let metrics: &Metrics = &handler.metrics;
    let mut buf = vec![0u8; MAX_QUERY];
    let mut out: Vec<u8> = Vec::with_capacity(MAX_ANSWER + 2);
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // ICMP errors of earlier replies surface here; the socket is fine.
            Err(err)
                if matches!(
                    err.kind(),
                    io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(err) => return Err(err),
        };
        // A source that cannot be answered (port 0) is dropped, as hickory-server does.
        if from.port() == 0 || n < 12 {
            continue;
        }
        let query = &buf[..n];
        let generation = handler.zone.generation();
        let hit = cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .answer(generation, query, &mut out);
        if let Some(code) = hit {
            metrics.request();
            metrics.cache_hit();
            metrics.answered(code);
            if let Err(err) = socket.send_to(&out, from).await {
                tracing::debug!(%from, "sending an answer: {err}");
            }
            continue;
        }
        let (socket, handler, cache) = (socket.clone(), handler.clone(), cache.clone());
        let query = query.to_vec();
        tokio::spawn(async move {
            let key = query.clone();
            let Some((answer, local)) = general(&handler, query, from).await else {
                return;
            };
            if let Err(err) = socket.send_to(&answer, from).await {
                tracing::debug!(%from, "sending an answer: {err}");
            }
            if local {
                cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .keep(generation, &key, &answer);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::Upstream;
    use crate::handler::SharedZone;
    use crate::records::{Zone, reverse_name};
    use hickory_server::proto::op::{Edns, Message, Query};
    use hickory_server::proto::rr::{Name, RData, RecordType};
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;
    use std::sync::atomic::AtomicU32;
    use std::time::{Duration, Instant};

    fn zone(with_web: bool, headless_endpoints: usize) -> Zone {
        let mut services: Vec<Service> = vec![
            serde_json::from_value(json!({
                "metadata": {"name": "db", "namespace": "team"},
                "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]},
            }))
            .unwrap(),
            serde_json::from_value(json!({
                "metadata": {"name": "ext", "namespace": "team"},
                "spec": {"type": "ExternalName", "externalName": "example.test"},
            }))
            .unwrap(),
        ];
        if with_web {
            services.push(
                serde_json::from_value(json!({
                    "metadata": {"name": "web", "namespace": "team"},
                    "spec": {"clusterIP": "10.96.0.20",
                             "clusterIPs": ["10.96.0.20", "fd00:10:96::20"],
                             "ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
                }))
                .unwrap(),
            );
        }
        let endpoints: Vec<serde_json::Value> = (0..headless_endpoints)
            .map(|i| {
                json!({"addresses": [format!("10.244.1.{}", i + 1)],
                       "conditions": {"ready": true},
                       "hostname": format!("db-{i}")})
            })
            .collect();
        let slices: Vec<EndpointSlice> = vec![
            serde_json::from_value(json!({
                "metadata": {"name": "db-abc", "namespace": "team",
                             "labels": {"kubernetes.io/service-name": "db"}},
                "addressType": "IPv4",
                "endpoints": endpoints,
                "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
            }))
            .unwrap(),
        ];
        Zone::build(
            services.iter(),
            slices.iter(),
            ["team".to_string(), "default".to_string()],
        )
    }

    fn handler(zone: Zone, upstream: Upstream) -> Handler {
        let shared = SharedZone::default();
        shared.set(zone);
        Handler {
            zone: shared,
            upstream,
            metrics: Arc::default(),
            serial: Arc::new(AtomicU32::new(1_700_000_000)),
        }
    }

    /// A query as a stub resolver sends it; `edns`: the advertised payload size and
    /// the DNSSEC OK bit.
    fn query(id: u16, name: &str, kind: RecordType, edns: Option<(u16, bool)>) -> Vec<u8> {
        let mut message = Message::new(id, MessageType::Query, OpCode::Query);
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        if let Some((payload, dnssec_ok)) = edns {
            let mut edns = Edns::new();
            edns.set_max_payload(payload).set_dnssec_ok(dnssec_ok);
            message.set_edns(edns);
        }
        message.to_vec().unwrap()
    }

    fn with_id(bytes: &[u8], id: u16) -> Vec<u8> {
        let mut out = bytes.to_vec();
        out[..2].copy_from_slice(&id.to_be_bytes());
        out
    }

    const FROM: &str = "127.0.0.1:40000";

    /// The question a cached answer was made for, asked again with another ID, gets
    /// exactly the bytes the general handler gives that query.
    #[tokio::test]
    async fn cached_answers_are_the_general_handlers_bytes() {
        let h = handler(zone(true, 2), Upstream::default());
        let from: SocketAddr = FROM.parse().unwrap();
        let web_ptr = format!("{}.", reverse_name("10.96.0.20".parse().unwrap()));
        let web_ptr6 = format!("{}.", reverse_name("fd00:10:96::20".parse().unwrap()));
        // (name, type, EDNS (payload size, DNSSEC OK) if any, the expected code)
        type Case<'a> = (&'a str, RecordType, Option<(u16, bool)>, ResponseCode);
        let cases: Vec<Case> = vec![
            (
                "web.team.svc.cluster.local.",
                RecordType::A,
                None,
                ResponseCode::NoError,
            ),
            (
                "web.team.svc.cluster.local.",
                RecordType::AAAA,
                None,
                ResponseCode::NoError,
            ),
            (
                "_http._tcp.web.team.svc.cluster.local.",
                RecordType::SRV,
                None,
                ResponseCode::NoError,
            ),
            (
                "_pg._tcp.db.team.svc.cluster.local.",
                RecordType::SRV,
                None,
                ResponseCode::NoError,
            ),
            (
                "db.team.svc.cluster.local.",
                RecordType::A,
                None,
                ResponseCode::NoError,
            ),
            (
                "db-1.db.team.svc.cluster.local.",
                RecordType::A,
                None,
                ResponseCode::NoError,
            ),
            (
                web_ptr.as_str(),
                RecordType::PTR,
                None,
                ResponseCode::NoError,
            ),
            (
                web_ptr6.as_str(),
                RecordType::PTR,
                None,
                ResponseCode::NoError,
            ),
            (
                "ext.team.svc.cluster.local.",
                RecordType::A,
                None,
                ResponseCode::NoError,
            ),
            (
                "10-244-3-4.default.pod.cluster.local.",
                RecordType::A,
                None,
                ResponseCode::NoError,
            ),
            (
                "nothing.team.svc.cluster.local.",
                RecordType::A,
                None,
                ResponseCode::NXDomain,
            ),
            (
                "google.com.team.svc.cluster.local.",
                RecordType::AAAA,
                None,
                ResponseCode::NXDomain,
            ),
            (
                "team.svc.cluster.local.",
                RecordType::A,
                None,
                ResponseCode::NoError,
            ),
            (
                "cluster.local.",
                RecordType::SOA,
                None,
                ResponseCode::NoError,
            ),
            (
                "WeB.TeaM.Svc.Cluster.LOCAL.",
                RecordType::A,
                None,
                ResponseCode::NoError,
            ),
            (
                "NoThing.team.svc.cluster.local.",
                RecordType::A,
                None,
                ResponseCode::NXDomain,
            ),
            (
                "web.team.svc.cluster.local.",
                RecordType::A,
                Some((1232, false)),
                ResponseCode::NoError,
            ),
            (
                "web.team.svc.cluster.local.",
                RecordType::A,
                Some((4096, true)),
                ResponseCode::NoError,
            ),
            (
                "nothing.team.svc.cluster.local.",
                RecordType::A,
                Some((1232, true)),
                ResponseCode::NXDomain,
            ),
        ];
        let mut cache = AnswerCache::default();
        let generation = h.zone.generation();
        for (i, (name, kind, edns, code)) in cases.into_iter().enumerate() {
            let what = format!("{name} {kind} edns {edns:?}");
            let first = query(100, name, kind, edns);
            let (answer, local) = general(&h, first.clone(), from).await.unwrap();
            assert!(local, "{what}: answered from the index");
            cache.keep(generation, &first, &answer);
            assert_eq!(cache.len(), i + 1, "{what}: kept");

            let again = with_id(&first, 0xbeef);
            let mut fast = Vec::new();
            let fast_code = cache.answer(generation, &again, &mut fast);
            assert_eq!(fast_code, Some(code), "{what}");
            let (expected, _) = general(&h, again, from).await.unwrap();
            assert_eq!(
                fast, expected,
                "{what}: cached bytes differ from the general path"
            );

            // And the answer is what a client expects: its ID, its question as asked.
            let parsed = Message::from_vec(&fast).unwrap();
            assert_eq!(parsed.metadata.id, 0xbeef, "{what}");
            assert_eq!(parsed.metadata.response_code, code, "{what}");
            assert!(parsed.metadata.authoritative, "{what}");
            assert_eq!(parsed.queries[0].name().to_ascii(), name, "{what}");
            assert_eq!(parsed.edns.is_some(), edns.is_some(), "{what}");
        }
    }

    #[tokio::test]
    async fn what_is_not_kept() {
        let from: SocketAddr = FROM.parse().unwrap();
        // An answer over 512 bytes to a query without EDNS is truncated: not kept.
        let h = handler(zone(true, 60), Upstream::default());
        let generation = h.zone.generation();
        let mut cache = AnswerCache::default();
        let big = query(1, "db.team.svc.cluster.local.", RecordType::A, None);
        let (answer, local) = general(&h, big.clone(), from).await.unwrap();
        assert!(local);
        assert!(Message::from_vec(&answer).unwrap().metadata.truncation);
        cache.keep(generation, &big, &answer);
        assert_eq!(cache.len(), 0);

        // Answers of an older index are not kept, and a newer one empties the cache.
        let small = query(1, "web.team.svc.cluster.local.", RecordType::A, None);
        let (answer, _) = general(&h, small.clone(), from).await.unwrap();
        cache.keep(generation, &small, &answer);
        assert_eq!(cache.len(), 1);
        h.zone.set(zone(false, 1));
        cache.keep(generation, &small, &answer);
        let mut out = Vec::new();
        assert_eq!(cache.answer(h.zone.generation(), &small, &mut out), None);
        assert_eq!(cache.len(), 0);
        cache.keep(generation, &small, &answer);
        assert_eq!(cache.len(), 0, "an answer of the old index");

        // Forwarded names are not ours: never kept. (No upstream: SERVFAIL.)
        let outside = query(1, "example.test.", RecordType::A, None);
        let (answer, local) = general(&h, outside, from).await.unwrap();
        assert!(!local);
        assert_eq!(
            Message::from_vec(&answer).unwrap().metadata.response_code,
            ResponseCode::ServFail
        );

        // A response is never answered; garbage after a header is FORMERR.
        let mut response = small.clone();
        response[2] |= 0x80;
        assert!(general(&h, response, from).await.is_none());
        let mut garbage = small[..12].to_vec();
        garbage.extend_from_slice(&[0xff; 5]);
        let (answer, local) = general(&h, garbage, from).await.unwrap();
        assert!(!local);
        let header = Header::read(&mut BinDecoder::new(&answer)).unwrap();
        assert_eq!(header.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(header.metadata.id, 1);
    }

    async fn ask(socket: &UdpSocket, server: SocketAddr, bytes: &[u8]) -> Message {
        socket.send_to(bytes, server).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
            .await
            .expect("no answer within 5 s")
            .unwrap();
        Message::from_vec(&buf[..n]).unwrap()
    }

    /// The loop serves repeated questions from the cache, and the first question after
    /// the index changes from the new index.
    #[tokio::test]
    async fn the_loop_serves_from_the_cache_until_the_index_changes() {
        let h = handler(zone(true, 2), Upstream::default());
        let (zone_handle, metrics) = (h.zone.clone(), h.metrics.clone());
        let server = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = server.local_addr().unwrap();
        let task = tokio::spawn(serve(server, h));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let q = query(1, "web.team.svc.cluster.local.", RecordType::A, None);
        let started = Instant::now();
        let mut id = 1u16;
        loop {
            let answer = ask(&client, addr, &with_id(&q, id)).await;
            assert_eq!(answer.metadata.id, id);
            assert_eq!(answer.answers.len(), 1);
            if metrics.render().contains("rind_dns_cache_hits_total 1\n") {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "never served from the cache"
            );
            id += 1;
        }
        zone_handle.set(zone(false, 2));
        let answer = ask(&client, addr, &with_id(&q, 999)).await;
        assert_eq!(answer.metadata.id, 999);
        assert_eq!(answer.metadata.response_code, ResponseCode::NXDomain);
        assert!(matches!(answer.authorities[0].data, RData::SOA(_)));
        task.abort();
    }
}
