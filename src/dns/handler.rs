//! Answers DNS queries: names the cluster's index knows (or knows to be absent) are
//! answered authoritatively from it, everything else is forwarded unchanged to the
//! upstream resolvers (the pod's `Default` resolv.conf: the node's resolver).

use crate::forward::Upstream;
use crate::metrics::Metrics;
use crate::records::{Answer, DOMAIN, Data, Kind, Zone};
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Message, MessageType, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, AAAA, CNAME, PTR, SOA, SRV};
use hickory_server::proto::rr::{Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The TTL of cluster records (kind's CoreDNS `ttl 30`).
const TTL: u32 = 30;

/// The current index, swapped whole when the API changes, and its generation, which
/// counts the swaps: the UDP answer cache (`udp`) holds answers of one generation.
#[derive(Clone, Default)]
pub struct SharedZone {
    zone: Arc<RwLock<Arc<Zone>>>,
    generation: Arc<AtomicU64>,
}

impl SharedZone {
    pub fn get(&self) -> Arc<Zone> {
        self.zone.read().map(|z| z.clone()).unwrap_or_default()
    }

    pub fn set(&self, zone: Zone) {
        if let Ok(mut current) = self.zone.write() {
            *current = Arc::new(zone);
            // Bumped after the swap: whoever reads the new generation and then the
            // zone gets the new zone, so an answer is never older than its generation.
            self.generation.fetch_add(1, Ordering::Release);
        }
    }

    /// How many times the index has been replaced.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
pub struct Handler {
    pub zone: SharedZone,
    pub upstream: Upstream,
    pub metrics: Arc<Metrics>,
    /// The SOA serial: when the index was last built (seconds), so caches can tell.
    pub serial: Arc<std::sync::atomic::AtomicU32>,
}

fn kind_of(t: RecordType) -> Kind {
    match t {
        RecordType::A => Kind::A,
        RecordType::AAAA => Kind::Aaaa,
        RecordType::CNAME => Kind::Cname,
        RecordType::PTR => Kind::Ptr,
        RecordType::SRV => Kind::Srv,
        RecordType::ANY => Kind::Any,
        _ => Kind::Other,
    }
}

fn name(text: &str) -> Option<Name> {
    Name::from_ascii(format!("{text}.")).ok()
}

fn record(owner: &Name, data: &Data) -> Option<Record> {
    let rdata = match data {
        Data::A(ip) => RData::A(A(*ip)),
        Data::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        Data::Cname(target) => RData::CNAME(CNAME(name(target)?)),
        Data::Ptr(target) => RData::PTR(PTR(name(target)?)),
        Data::Srv {
            weight,
            port,
            target,
        } => RData::SRV(SRV::new(0, *weight, *port, name(target)?)),
    };
    Some(Record::from_rdata(owner.clone(), TTL, rdata))
}

impl Handler {
    /// The zone's SOA, shaped as CoreDNS's (`ns.dns.<zone>`, `hostmaster.<zone>`).
    fn soa(&self) -> Option<Record> {
        let serial = self.serial.load(std::sync::atomic::Ordering::Relaxed);
        let soa = SOA::new(
            name(&format!("ns.dns.{DOMAIN}"))?,
            name(&format!("hostmaster.{DOMAIN}"))?,
            serial,
            7200,
            1800,
            86400,
            TTL,
        );
        Some(Record::from_rdata(name(DOMAIN)?, TTL, RData::SOA(soa)))
    }

    /// What the index says about `request`'s one query: `NotOurs` for names that go
    /// upstream (and for requests that are not one well-formed query, which never reach
    /// the index).
    fn answer(zone: &Zone, request: &Request) -> Answer {
        let Ok(info) = request.request_info() else {
            return Answer::NotOurs;
        };
        let text = info.query.name().to_string();
        let text = text.trim_end_matches('.');
        let qtype = info.query.query_type();
        if qtype == RecordType::SOA && text == DOMAIN {
            Answer::Records(Vec::new())
        } else {
            zone.lookup(text, kind_of(qtype))
        }
    }

    /// Whether `request` is answered from the cluster's index rather than forwarded:
    /// only such answers are the same for the same question until the index changes.
    pub fn answers_locally(&self, request: &Request) -> bool {
        request.metadata.op_code == OpCode::Query
            && request.request_info().is_ok()
            && Self::answer(&self.zone.get(), request) != Answer::NotOurs
    }

    async fn forward<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response: R,
    ) -> Result<ResponseInfo, String> {
        self.metrics.forwarded();
        let tcp = request.protocol() == Protocol::Tcp;
        let bytes = self
            .upstream
            .exchange(request.as_slice(), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let reply = Message::from_vec(&bytes).map_err(|e| e.to_string())?;
        self.metrics.answered(reply.metadata.response_code);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &request.edns {
            builder.edns(edns);
        }
        let message = builder.build(
            reply.metadata,
            reply.answers.iter(),
            reply.authorities.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        response
            .send_response(message)
            .await
            .map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response: R,
    ) -> ResponseInfo {
        self.metrics.request();
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.recursion_available = true;
        let query = match request.request_info() {
            Ok(info) if request.metadata.op_code == OpCode::Query => info.query.clone(),
            _ => {
                meta.response_code = if request.metadata.op_code == OpCode::Query {
                    ResponseCode::FormErr
                } else {
                    ResponseCode::NotImp
                };
                self.metrics.answered(meta.response_code);
                let builder = MessageResponseBuilder::from_message_request(request);
                return send(&mut response, builder.build_no_records(meta), request).await;
            }
        };
        let text = query.name().to_string();
        let text = text.trim_end_matches('.');
        let qtype = query.query_type();
        let zone = self.zone.get();
        let found = match Self::answer(&zone, request) {
            Answer::NotOurs => {
                return match self.forward(request, response.clone()).await {
                    Ok(info) => info,
                    Err(err) => {
                        tracing::debug!(name = %text, "forwarding failed: {err}");
                        meta.response_code = ResponseCode::ServFail;
                        self.metrics.answered(meta.response_code);
                        let builder = MessageResponseBuilder::from_message_request(request);
                        send(&mut response, builder.build_no_records(meta), request).await
                    }
                };
            }
            Answer::NxDomain => None,
            Answer::Records(list) => Some(list),
        };
        meta.authoritative = true;
        meta.message_type = MessageType::Response;
        let owner = query.original().name().clone();
        let mut answers: Vec<Record> = Vec::new();
        let mut additionals: Vec<Record> = Vec::new();
        let mut authorities: Vec<Record> = Vec::new();
        match &found {
            None => {
                meta.response_code = ResponseCode::NXDomain;
                authorities.extend(self.soa());
            }
            Some(list) if list.is_empty() => {
                if qtype == RecordType::SOA && text == DOMAIN {
                    answers.extend(self.soa());
                } else {
                    authorities.extend(self.soa());
                }
            }
            Some(list) => {
                for data in list {
                    answers.extend(record(&owner, data));
                    // SRV targets come with their addresses, saving a second query.
                    if let Data::Srv { target, .. } = data
                        && let (Answer::Records(ips), Some(target_name)) =
                            (zone.lookup(target, Kind::Any), name(target))
                    {
                        for ip in ips
                            .iter()
                            .filter(|d| matches!(d, Data::A(_) | Data::Aaaa(_)))
                        {
                            additionals.extend(record(&target_name, ip));
                        }
                    }
                }
            }
        }
        self.metrics.answered(meta.response_code);
        let mut builder = MessageResponseBuilder::from_message_request(request);
        if let Some(edns) = &request.edns {
            builder.edns(edns);
        }
        let message = builder.build(
            meta,
            answers.iter(),
            authorities.iter(),
            std::iter::empty(),
            additionals.iter(),
        );
        send(&mut response, message, request).await
    }
}

async fn send<'a, R: ResponseHandler>(
    response: &mut R,
    message: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
    request: &Request,
) -> ResponseInfo {
    match response.send_response(message).await {
        Ok(info) => info,
        Err(err) => {
            tracing::debug!("sending a response: {err}");
            let mut meta = Metadata::response_from_request(&request.metadata);
            meta.response_code = ResponseCode::ServFail;
            hickory_server::proto::op::Header {
                metadata: meta,
                counts: Default::default(),
            }
            .into()
        }
    }
}
