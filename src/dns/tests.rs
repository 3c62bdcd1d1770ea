//! The DNS server against a real API server on loopback (no controllers: the test
//! writes the EndpointSlices itself), queried over UDP and TCP with real DNS messages,
//! and a fake upstream resolver for forwarded names.

use super::{Metrics, forward::Upstream, serve};
use hickory_server::proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_server::proto::rr::{Name, RData, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UdpSocket;

fn query(name: &str, kind: RecordType) -> Vec<u8> {
    let mut message = Message::new(7, MessageType::Query, OpCode::Query);
    message.metadata.recursion_desired = true;
    message.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    message.to_vec().unwrap()
}

async fn ask(server: SocketAddr, name: &str, kind: RecordType) -> Message {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&query(name, kind), server).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("no answer within 5 s")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn ask_tcp(server: SocketAddr, name: &str, kind: RecordType) -> Message {
    let mut stream = tokio::net::TcpStream::connect(server).await.unwrap();
    let bytes = query(name, kind);
    stream
        .write_all(&u16::try_from(bytes.len()).unwrap().to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0u8; usize::from(len)];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addresses(message: &Message) -> Vec<String> {
    let mut out: Vec<String> = message
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0.to_string()),
            RData::AAAA(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

/// A resolver outside the cluster that knows one name.
async fn fake_upstream() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(request) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut reply = Message::new(request.metadata.id, MessageType::Response, OpCode::Query);
            reply.add_queries(request.queries.clone());
            let known = request.queries[0].name().to_ascii() == "node.test.";
            if known {
                reply.add_answer(hickory_server::proto::rr::Record::from_rdata(
                    request.queries[0].name().clone(),
                    60,
                    RData::A(hickory_server::proto::rr::rdata::A(
                        "192.0.2.1".parse().unwrap(),
                    )),
                ));
            } else {
                reply.metadata.response_code = ResponseCode::NXDomain;
            }
            let _ = socket.send_to(&reply.to_vec().unwrap(), from).await;
        }
    });
    addr
}

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let object: K = serde_json::from_value(value).unwrap();
    api.create(&PostParams::default(), &object).await.unwrap()
}

/// Polls `check` until it holds or one second passes: answers follow the API within
/// a second.
async fn within_a_second<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{what}: not within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_follow_the_api() {
    let api_server = rind_testing::start().await;
    let client = rind_testing::client(&api_server).await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let web = create(
        &services,
        serde_json::json!({
            "metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        }),
    )
    .await;
    let web_ip = web.spec.unwrap().cluster_ip.unwrap();
    create(
        &services,
        serde_json::json!({
            "metadata": {"name": "db"},
            "spec": {"clusterIP": "None", "ports": [{"name": "pg", "port": 5432}]},
        }),
    )
    .await;
    create(
        &slices,
        serde_json::json!({
            "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.0.5"], "conditions": {"ready": true}, "hostname": "db-0"},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.7"], "conditions": {"ready": false}},
            ],
            "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}],
        }),
    )
    .await;

    let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dns = udp.local_addr().unwrap();
    let dns_tcp = tcp.local_addr().unwrap();
    let upstream = Upstream {
        servers: vec![fake_upstream().await],
    };
    let metrics = Arc::new(Metrics::default());
    let task = tokio::spawn(serve(client.clone(), upstream, udp, tcp, metrics.clone()));
    rind_testing::eventually("the DNS server to load the cluster", || async {
        metrics
            .ready
            .load(std::sync::atomic::Ordering::Relaxed)
            .then_some(())
    })
    .await;

    let answer = ask(dns, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(answer.metadata.response_code, ResponseCode::NoError);
    assert!(answer.metadata.authoritative);
    assert_eq!(addresses(&answer), [web_ip.as_str()]);
    let over_tcp = ask_tcp(dns_tcp, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&over_tcp), [web_ip.as_str()]);

    let srv = ask(
        dns,
        "_http._tcp.web.default.svc.cluster.local.",
        RecordType::SRV,
    )
    .await;
    match &srv.answers[0].data {
        RData::SRV(srv) => {
            assert_eq!(srv.port, 80);
            assert_eq!(srv.target.to_ascii(), "web.default.svc.cluster.local.");
        }
        other => panic!("not an SRV: {other:?}"),
    }
    let mut with_additionals = srv.clone();
    with_additionals.answers = srv.additionals.clone();
    assert_eq!(addresses(&with_additionals), [web_ip.as_str()]);

    let ip: IpAddr = web_ip.parse().unwrap();
    let ptr = ask(
        dns,
        &format!("{}.", crate::records::reverse_name(ip)),
        RecordType::PTR,
    )
    .await;
    match &ptr.answers[0].data {
        RData::PTR(name) => assert_eq!(name.0.to_ascii(), "web.default.svc.cluster.local."),
        other => panic!("not a PTR: {other:?}"),
    }

    let headless = ask(dns, "db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&headless), ["10.244.0.5", "10.244.0.6"]);
    let stable = ask(dns, "db-0.db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&stable), ["10.244.0.5"]);
    let pod = ask(dns, "10-244-3-4.default.pod.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&pod), ["10.244.3.4"]);

    // Unknown cluster names are NXDOMAIN at once, with the zone's SOA.
    let started = Instant::now();
    let missing = ask(dns, "nothing.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(missing.metadata.response_code, ResponseCode::NXDomain);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(matches!(missing.authorities[0].data, RData::SOA(_)));

    // Other names go to the upstream resolver.
    let forwarded = ask(dns, "node.test.", RecordType::A).await;
    assert_eq!(addresses(&forwarded), ["192.0.2.1"]);
    let unknown = ask(dns, "other.test.", RecordType::A).await;
    assert_eq!(unknown.metadata.response_code, ResponseCode::NXDomain);

    // Answers follow the API within a second: a new Service, a deleted one, an
    // endpoint that becomes ready.
    let late = create(
        &services,
        serde_json::json!({"metadata": {"name": "late"}, "spec": {"ports": [{"port": 8080}]}}),
    )
    .await;
    let late_ip = late.spec.unwrap().cluster_ip.unwrap();
    within_a_second("a new Service", || async {
        addresses(&ask(dns, "late.default.svc.cluster.local.", RecordType::A).await)
            == [late_ip.clone()]
    })
    .await;
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    within_a_second("a deleted Service", || async {
        ask(dns, "web.default.svc.cluster.local.", RecordType::A)
            .await
            .metadata
            .response_code
            == ResponseCode::NXDomain
    })
    .await;
    let mut slice = slices.get("db-1").await.unwrap();
    if let Some(endpoint) = slice.endpoints.iter_mut().flatten().nth(2) {
        endpoint.conditions.get_or_insert_default().ready = Some(true);
    }
    slices
        .replace("db-1", &PostParams::default(), &slice)
        .await
        .unwrap();
    within_a_second("an endpoint turning ready", || async {
        addresses(&ask(dns, "db.default.svc.cluster.local.", RecordType::A).await).len() == 3
    })
    .await;
    task.abort();
}
