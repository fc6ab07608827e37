use std::net::IpAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;
use crate::dns::snapshot::{Endpoint, Service, ServiceKind, ServicePort, Snapshot};
use crate::dns::test_upstream;

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn snapshot() -> Snapshot {
    let mut many = Service {
        name: "many".into(),
        namespace: "default".into(),
        kind: ServiceKind::Headless,
        ports: vec![],
        endpoints: vec![],
    };
    for i in 1..=60 {
        many.endpoints.push(Endpoint {
            addresses: vec![ip(&format!("10.42.1.{i}"))],
            hostname: None,
        });
    }
    Snapshot {
        services: vec![
            Service {
                name: "kubernetes".into(),
                namespace: "default".into(),
                kind: ServiceKind::ClusterIp(vec![ip("10.43.0.1")]),
                ports: vec![ServicePort {
                    name: "https".into(),
                    protocol: "TCP".into(),
                    port: 443,
                }],
                endpoints: vec![],
            },
            Service {
                name: "ext".into(),
                namespace: "default".into(),
                kind: ServiceKind::ExternalName("www.example.com".into()),
                ports: vec![],
                endpoints: vec![],
            },
            many,
        ],
    }
}

/// A server on 127.0.0.1:<free port> forwarding to a test upstream.
struct Running {
    addr: SocketAddr,
    dns: Arc<ClusterDns>,
    upstream: test_upstream::Upstream,
    _server: ServerFuture<Handler>,
}

async fn running(with_zone: bool) -> Running {
    let upstream = test_upstream::start().await;
    let dns = ClusterDns::new("cluster.local", Forwarder::new(vec![upstream.addr])).unwrap();
    if with_zone {
        dns.set_zone(Zone::build("cluster.local", ip("10.43.0.10"), &snapshot(), 1).unwrap());
    }
    let (udp, tcp) = loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = udp.local_addr().unwrap();
        if let Ok(tcp) = std::net::TcpListener::bind(addr) {
            udp.set_nonblocking(true).unwrap();
            tcp.set_nonblocking(true).unwrap();
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let server = serve(dns.clone(), udp, tcp).unwrap();
    Running {
        addr,
        dns,
        upstream,
        _server: server,
    }
}

fn request(name: &str, qtype: RecordType, edns: bool) -> Message {
    let mut message = Message::new();
    message
        .set_id(rand::random())
        .set_recursion_desired(true)
        .add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        message.set_edns(e);
    }
    message
}

async fn ask_udp(addr: SocketAddr, message: &Message) -> Message {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket
        .send_to(&message.to_vec().unwrap(), addr)
        .await
        .unwrap();
    let mut buffer = vec![0u8; 65535];
    let len = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buffer))
        .await
        .expect("an answer in time")
        .unwrap();
    let response = Message::from_vec(&buffer[..len]).unwrap();
    assert_eq!(response.id(), message.id());
    response
}

async fn ask_tcp(addr: SocketAddr, message: &Message) -> Message {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let bytes = message.to_vec().unwrap();
    stream.write_u16(bytes.len() as u16).await.unwrap();
    stream.write_all(&bytes).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buffer = vec![0u8; len.into()];
    stream.read_exact(&mut buffer).await.unwrap();
    Message::from_vec(&buffer).unwrap()
}

fn data(message: &Message) -> Vec<String> {
    message
        .answers()
        .iter()
        .map(|r| r.data().to_string())
        .collect()
}

#[tokio::test]
async fn answers_the_zone_authoritatively_over_udp_and_tcp() {
    let server = running(true).await;
    let question = request(
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
        false,
    );
    for response in [
        ask_udp(server.addr, &question).await,
        ask_tcp(server.addr, &question).await,
    ] {
        assert_eq!(response.response_code(), ResponseCode::NoError);
        assert!(response.authoritative());
        assert!(response.recursion_available());
        assert_eq!(data(&response), ["10.43.0.1"]);
        assert_eq!(response.answers()[0].ttl(), crate::dns::TTL);
    }
    assert_eq!(server.upstream.questions(), 0);
}

#[tokio::test]
async fn unknown_cluster_names_are_nxdomain_with_the_soa() {
    let server = running(true).await;
    let response = ask_udp(
        server.addr,
        &request("nope.default.svc.cluster.local.", RecordType::A, true),
    )
    .await;
    assert_eq!(response.response_code(), ResponseCode::NXDomain);
    assert_eq!(response.name_servers()[0].record_type(), RecordType::SOA);
    assert!(response.extensions().is_some());
}

#[tokio::test]
async fn srv_answers_carry_the_target_address() {
    let server = running(true).await;
    let response = ask_tcp(
        server.addr,
        &request(
            "_https._tcp.kubernetes.default.svc.cluster.local.",
            RecordType::SRV,
            false,
        ),
    )
    .await;
    assert_eq!(
        data(&response),
        ["0 100 443 kubernetes.default.svc.cluster.local."]
    );
    assert_eq!(response.additionals()[0].data().to_string(), "10.43.0.1");
}

#[tokio::test]
async fn other_names_are_forwarded_not_authoritative() {
    let server = running(true).await;
    let response = ask_udp(
        server.addr,
        &request("www.example.com.", RecordType::A, false),
    )
    .await;
    assert_eq!(response.response_code(), ResponseCode::NoError);
    assert!(!response.authoritative());
    assert_eq!(data(&response), ["192.0.2.53"]);
    let missing = ask_udp(
        server.addr,
        &request("gone.example.com.", RecordType::A, false),
    )
    .await;
    assert_eq!(missing.response_code(), ResponseCode::NXDomain);
}

#[tokio::test]
async fn external_names_are_a_cname_and_the_targets_addresses() {
    let server = running(true).await;
    let response = ask_udp(
        server.addr,
        &request("ext.default.svc.cluster.local.", RecordType::A, false),
    )
    .await;
    assert_eq!(data(&response), ["www.example.com.", "192.0.2.53"]);
    assert_eq!(response.answers()[0].record_type(), RecordType::CNAME);
}

#[tokio::test]
async fn before_the_first_snapshot_cluster_names_fail_and_others_forward() {
    let server = running(false).await;
    let cluster = ask_udp(
        server.addr,
        &request(
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
            false,
        ),
    )
    .await;
    assert_eq!(cluster.response_code(), ResponseCode::ServFail);
    let outside = ask_udp(
        server.addr,
        &request("www.example.com.", RecordType::A, false),
    )
    .await;
    assert_eq!(data(&outside), ["192.0.2.53"]);
    // The zone arrives: answered from then on.
    server
        .dns
        .set_zone(Zone::build("cluster.local", ip("10.43.0.10"), &snapshot(), 2).unwrap());
    let cluster = ask_udp(
        server.addr,
        &request(
            "kubernetes.default.svc.cluster.local.",
            RecordType::A,
            false,
        ),
    )
    .await;
    assert_eq!(data(&cluster), ["10.43.0.1"]);
}

#[tokio::test]
async fn large_answers_are_truncated_over_plain_udp_and_whole_over_tcp() {
    let server = running(true).await;
    let question = request("many.default.svc.cluster.local.", RecordType::A, false);
    let udp = ask_udp(server.addr, &question).await;
    assert!(udp.truncated());
    assert!(udp.answers().len() < 60);
    assert!(udp.to_vec().unwrap().len() <= 512);
    let tcp = ask_tcp(server.addr, &question).await;
    assert!(!tcp.truncated());
    assert_eq!(tcp.answers().len(), 60);
    // EDNS clients get up to 1232 bytes: all 60 A records fit (about 16 bytes each).
    let edns = ask_udp(
        server.addr,
        &request("many.default.svc.cluster.local.", RecordType::A, true),
    )
    .await;
    assert_eq!(edns.answers().len(), 60);
}

#[tokio::test]
async fn updates_and_other_opcodes_are_not_implemented() {
    let server = running(true).await;
    let mut message = request("cluster.local.", RecordType::SOA, false);
    message.set_op_code(OpCode::Update);
    let response = ask_udp(server.addr, &message).await;
    assert_eq!(response.response_code(), ResponseCode::NotImp);
}

#[test]
fn the_size_bound_is_never_below_the_encoded_size() {
    let zone = Zone::build("cluster.local", ip("10.43.0.10"), &snapshot(), 1).unwrap();
    let mut records = vec![];
    for (name, qtype) in [
        ("kubernetes.default.svc.cluster.local.", RecordType::A),
        (
            "_https._tcp.kubernetes.default.svc.cluster.local.",
            RecordType::SRV,
        ),
        ("1.0.43.10.in-addr.arpa.", RecordType::PTR),
        ("ext.default.svc.cluster.local.", RecordType::CNAME),
        ("cluster.local.", RecordType::ANY),
        ("dns-version.cluster.local.", RecordType::TXT),
        ("fd00-1--2.default.pod.cluster.local.", RecordType::AAAA),
    ] {
        let answer = zone
            .lookup(&Name::from_ascii(name).unwrap(), qtype)
            .unwrap();
        assert!(!answer.answers.is_empty(), "{name}");
        records.extend(answer.answers);
    }
    for record in records {
        let exact = record.to_bytes().unwrap().len();
        assert!(encoded_bound(&record) >= exact, "{record}");
    }
}
