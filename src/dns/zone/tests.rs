use super::*;
use crate::dns::snapshot::{Endpoint, ServicePort};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn port(name: &str, protocol: &str, port: u16) -> ServicePort {
    ServicePort {
        name: name.into(),
        protocol: protocol.into(),
        port,
    }
}

fn service(name: &str, namespace: &str, kind: ServiceKind) -> Service {
    Service {
        name: name.into(),
        namespace: namespace.into(),
        kind,
        ports: vec![],
        endpoints: vec![],
    }
}

/// kubernetes (ClusterIP), db (headless with a named pod and an unnamed one), dual
/// (dual-stack), empty (headless, nothing ready), ext (ExternalName), alias
/// (ExternalName into the zone).
fn zone() -> Zone {
    let mut kubernetes = service(
        "kubernetes",
        "default",
        ServiceKind::ClusterIp(vec![ip("10.43.0.1")]),
    );
    kubernetes.ports = vec![port("https", "TCP", 443), port("", "TCP", 8080)];
    let mut db = service("db", "data", ServiceKind::Headless);
    db.ports = vec![port("pg", "TCP", 5432), port("dns", "UDP", 53)];
    db.endpoints = vec![
        Endpoint {
            addresses: vec![ip("10.42.0.5")],
            hostname: Some("db-0".into()),
        },
        Endpoint {
            addresses: vec![ip("10.42.0.6")],
            hostname: None,
        },
    ];
    let dual = service(
        "dual",
        "default",
        ServiceKind::ClusterIp(vec![ip("10.43.0.20"), ip("fd00:43::20")]),
    );
    let empty = service("empty", "data", ServiceKind::Headless);
    let ext = service(
        "ext",
        "default",
        ServiceKind::ExternalName("www.example.com".into()),
    );
    let alias = service(
        "alias",
        "default",
        ServiceKind::ExternalName("kubernetes.default.svc.cluster.local".into()),
    );
    let snapshot = Snapshot {
        services: vec![kubernetes, db, dual, empty, ext, alias],
    };
    Zone::build("cluster.local", ip("10.43.0.10"), &snapshot, 1).unwrap()
}

fn lookup(zone: &Zone, text: &str, qtype: RecordType) -> Answer {
    zone.lookup(&name(text), qtype).expect("the zone's name")
}

/// The answers' data as text, sorted.
fn data(answer: &Answer) -> Vec<String> {
    let mut data: Vec<String> = answer
        .answers
        .iter()
        .map(|r| r.data().to_string())
        .collect();
    data.sort();
    data
}

fn assert_nodata(answer: &Answer) {
    assert_eq!(answer.code, ResponseCode::NoError);
    assert!(answer.answers.is_empty(), "{answer:?}");
    assert_eq!(answer.authority.len(), 1);
    assert_eq!(answer.authority[0].record_type(), RecordType::SOA);
}

fn assert_nxdomain(answer: &Answer) {
    assert_eq!(answer.code, ResponseCode::NXDomain, "{answer:?}");
    assert!(answer.answers.is_empty());
    assert_eq!(answer.authority[0].record_type(), RecordType::SOA);
}

#[test]
fn cluster_ip_service_a_record() {
    let answer = lookup(
        &zone(),
        "kubernetes.default.svc.cluster.local.",
        RecordType::A,
    );
    assert_eq!(answer.code, ResponseCode::NoError);
    assert_eq!(data(&answer), ["10.43.0.1"]);
    assert_eq!(answer.answers[0].ttl(), TTL);
    assert!(answer.authority.is_empty());
}

#[test]
fn names_are_case_insensitive_and_keep_the_askers_spelling() {
    let answer = lookup(
        &zone(),
        "Kubernetes.DEFAULT.svc.Cluster.Local.",
        RecordType::A,
    );
    assert_eq!(data(&answer), ["10.43.0.1"]);
    assert_eq!(
        answer.answers[0].name().to_string(),
        "Kubernetes.DEFAULT.svc.Cluster.Local."
    );
}

#[test]
fn dual_stack_service_has_a_and_aaaa() {
    let zone = zone();
    let a = lookup(&zone, "dual.default.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&a), ["10.43.0.20"]);
    let aaaa = lookup(&zone, "dual.default.svc.cluster.local.", RecordType::AAAA);
    assert_eq!(data(&aaaa), ["fd00:43::20"]);
}

#[test]
fn ipv4_only_service_has_no_aaaa_but_exists() {
    assert_nodata(&lookup(
        &zone(),
        "kubernetes.default.svc.cluster.local.",
        RecordType::AAAA,
    ));
}

#[test]
fn cluster_ip_srv_for_named_ports_only() {
    let zone = zone();
    let answer = lookup(
        &zone,
        "_https._tcp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        data(&answer),
        ["0 100 443 kubernetes.default.svc.cluster.local."]
    );
    assert_eq!(answer.additionals.len(), 1);
    assert_eq!(answer.additionals[0].data().to_string(), "10.43.0.1");
    // The unnamed port 8080 has no SRV, and the wrong protocol is no name.
    assert_nxdomain(&lookup(
        &zone,
        "_https._udp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    ));
    // The protocol level exists as a parent: NODATA.
    assert_nodata(&lookup(
        &zone,
        "_tcp.kubernetes.default.svc.cluster.local.",
        RecordType::SRV,
    ));
}

#[test]
fn cluster_ip_ptr() {
    let answer = lookup(&zone(), "1.0.43.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&answer), ["kubernetes.default.svc.cluster.local."]);
    let v6 = zone()
        .lookup(&Name::from(ip("fd00:43::20")), RecordType::PTR)
        .unwrap();
    assert_eq!(data(&v6), ["dual.default.svc.cluster.local."]);
}

#[test]
fn unknown_reverse_names_are_forwarded() {
    assert!(zone()
        .lookup(&name("8.8.8.8.in-addr.arpa."), RecordType::PTR)
        .is_none());
}

#[test]
fn headless_service_answers_every_ready_endpoint() {
    let answer = lookup(&zone(), "db.data.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&answer), ["10.42.0.5", "10.42.0.6"]);
}

#[test]
fn headless_endpoint_hostnames() {
    let zone = zone();
    let named = lookup(&zone, "db-0.db.data.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&named), ["10.42.0.5"]);
    let generated = lookup(&zone, "10-42-0-6.db.data.svc.cluster.local.", RecordType::A);
    assert_eq!(data(&generated), ["10.42.0.6"]);
    assert_nxdomain(&lookup(
        &zone,
        "db-1.db.data.svc.cluster.local.",
        RecordType::A,
    ));
}

#[test]
fn headless_srv_per_endpoint_and_port() {
    let answer = lookup(
        &zone(),
        "_pg._tcp.db.data.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(
        data(&answer),
        [
            "0 50 5432 10-42-0-6.db.data.svc.cluster.local.",
            "0 50 5432 db-0.db.data.svc.cluster.local."
        ]
    );
    let mut additionals: Vec<String> = answer
        .additionals
        .iter()
        .map(|r| format!("{} {}", r.name(), r.data()))
        .collect();
    additionals.sort();
    assert_eq!(
        additionals,
        [
            "10-42-0-6.db.data.svc.cluster.local. 10.42.0.6",
            "db-0.db.data.svc.cluster.local. 10.42.0.5"
        ]
    );
    let udp = lookup(
        &zone(),
        "_dns._udp.db.data.svc.cluster.local.",
        RecordType::SRV,
    );
    assert_eq!(udp.answers.len(), 2);
}

#[test]
fn headless_ptr_names_the_endpoint() {
    let zone = zone();
    let named = lookup(&zone, "5.0.42.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&named), ["db-0.db.data.svc.cluster.local."]);
    let generated = lookup(&zone, "6.0.42.10.in-addr.arpa.", RecordType::PTR);
    assert_eq!(data(&generated), ["10-42-0-6.db.data.svc.cluster.local."]);
    // The reverse name exists: other types are NODATA.
    assert_nodata(&lookup(&zone, "6.0.42.10.in-addr.arpa.", RecordType::A));
}

#[test]
fn headless_service_without_ready_endpoints_is_nxdomain() {
    assert_nxdomain(&lookup(
        &zone(),
        "empty.data.svc.cluster.local.",
        RecordType::A,
    ));
}

#[test]
fn external_name_is_a_cname_for_every_type_and_chased_outside() {
    let zone = zone();
    for qtype in [
        RecordType::A,
        RecordType::AAAA,
        RecordType::CNAME,
        RecordType::TXT,
    ] {
        let answer = lookup(&zone, "ext.default.svc.cluster.local.", qtype);
        assert_eq!(answer.code, ResponseCode::NoError);
        assert_eq!(data(&answer), ["www.example.com."], "{qtype}");
        assert_eq!(answer.answers[0].record_type(), RecordType::CNAME);
        let chase = (qtype != RecordType::CNAME).then(|| name("www.example.com."));
        assert_eq!(answer.chase, chase, "{qtype}");
    }
}

#[test]
fn external_name_into_the_zone_is_followed() {
    let answer = lookup(&zone(), "alias.default.svc.cluster.local.", RecordType::A);
    assert_eq!(answer.answers.len(), 2);
    assert_eq!(answer.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(answer.answers[1].data().to_string(), "10.43.0.1");
    assert_eq!(answer.chase, None);
}

#[test]
fn pod_names_resolve_without_api_data() {
    let zone = zone();
    let v4 = lookup(
        &zone,
        "10-42-0-9.anything.pod.cluster.local.",
        RecordType::A,
    );
    assert_eq!(data(&v4), ["10.42.0.9"]);
    assert_nodata(&lookup(
        &zone,
        "10-42-0-9.anything.pod.cluster.local.",
        RecordType::AAAA,
    ));
    let v6 = lookup(
        &zone,
        "fd00-42--9.anything.pod.cluster.local.",
        RecordType::AAAA,
    );
    assert_eq!(data(&v6), ["fd00:42::9"]);
    assert_nxdomain(&lookup(
        &zone,
        "not-an-ip.anything.pod.cluster.local.",
        RecordType::A,
    ));
    assert_nodata(&lookup(&zone, "anything.pod.cluster.local.", RecordType::A));
    assert_nodata(&lookup(&zone, "pod.cluster.local.", RecordType::A));
}

#[test]
fn empty_non_terminals_are_nodata() {
    let zone = zone();
    for parent in [
        "default.svc.cluster.local.",
        "svc.cluster.local.",
        "cluster.local.",
    ] {
        assert_nodata(&lookup(&zone, parent, RecordType::A));
    }
}

#[test]
fn unknown_names_in_the_zone_are_nxdomain() {
    let zone = zone();
    for unknown in [
        "nope.default.svc.cluster.local.",
        "kubernetes.nope.svc.cluster.local.",
        "nope.cluster.local.",
        "a.b.kubernetes.default.svc.cluster.local.",
    ] {
        assert_nxdomain(&lookup(&zone, unknown, RecordType::A));
    }
}

#[test]
fn names_outside_the_zone_are_not_ours() {
    assert!(zone()
        .lookup(&name("example.com."), RecordType::A)
        .is_none());
    assert!(zone().lookup(&name("local."), RecordType::A).is_none());
}

#[test]
fn apex_soa_ns_and_schema_version() {
    let zone = zone();
    let soa = lookup(&zone, "cluster.local.", RecordType::SOA);
    assert_eq!(soa.answers.len(), 1);
    assert_eq!(soa.answers[0].record_type(), RecordType::SOA);
    let ns = lookup(&zone, "cluster.local.", RecordType::NS);
    assert_eq!(data(&ns), ["ns.dns.cluster.local."]);
    let ns_a = lookup(&zone, "ns.dns.cluster.local.", RecordType::A);
    assert_eq!(data(&ns_a), ["10.43.0.10"]);
    let version = lookup(&zone, "dns-version.cluster.local.", RecordType::TXT);
    assert_eq!(data(&version), ["1.1.0"]);
}

#[test]
fn any_returns_every_record_of_the_name() {
    let answer = lookup(&zone(), "dual.default.svc.cluster.local.", RecordType::ANY);
    assert_eq!(data(&answer), ["10.43.0.20", "fd00:43::20"]);
}

#[test]
fn other_domains_work() {
    let snapshot = Snapshot {
        services: vec![service(
            "web",
            "prod",
            ServiceKind::ClusterIp(vec![ip("10.0.0.7")]),
        )],
    };
    let zone = Zone::build("edge.example.", ip("10.0.0.10"), &snapshot, 1).unwrap();
    let answer = zone
        .lookup(&name("web.prod.svc.edge.example."), RecordType::A)
        .unwrap();
    assert_eq!(data(&answer), ["10.0.0.7"]);
    assert!(zone
        .lookup(&name("web.prod.svc.cluster.local."), RecordType::A)
        .is_none());
    assert!(Zone::build("", ip("10.0.0.10"), &snapshot, 1).is_err());
}
