use super::*;
use crate::dns::test_upstream;

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn addresses(answer: &Forwarded) -> Vec<String> {
    answer
        .answers
        .iter()
        .map(|r| r.data().to_string())
        .collect()
}

#[tokio::test]
async fn forwards_and_caches_positive_answers() {
    let upstream = test_upstream::start().await;
    let forwarder = Forwarder::new(vec![upstream.addr]);
    let first = forwarder
        .resolve(&name("www.example.com."), RecordType::A, DNSClass::IN)
        .await
        .unwrap();
    assert_eq!(first.code, ResponseCode::NoError);
    assert_eq!(addresses(&first), ["192.0.2.53"]);
    let again = forwarder
        .resolve(&name("WWW.example.com."), RecordType::A, DNSClass::IN)
        .await
        .unwrap();
    assert_eq!(addresses(&again), ["192.0.2.53"]);
    // Cached for at most MAX_CACHE_TTL although the upstream said 300.
    assert!(again.answers[0].ttl() <= 300);
    assert_eq!(upstream.questions(), 1);
}

#[tokio::test]
async fn truncated_answers_are_asked_again_over_tcp() {
    let upstream = test_upstream::start().await;
    let forwarder = Forwarder::new(vec![upstream.addr]);
    let answer = forwarder
        .resolve(&name("big.example.com."), RecordType::A, DNSClass::IN)
        .await
        .unwrap();
    assert_eq!(addresses(&answer), ["192.0.2.1", "192.0.2.2", "192.0.2.3"]);
    assert_eq!(upstream.questions(), 2);
}

#[tokio::test]
async fn negative_answers_are_cached_with_their_soa() {
    let upstream = test_upstream::start().await;
    let forwarder = Forwarder::new(vec![upstream.addr]);
    for _ in 0..2 {
        let answer = forwarder
            .resolve(&name("gone.example.com."), RecordType::A, DNSClass::IN)
            .await
            .unwrap();
        assert_eq!(answer.code, ResponseCode::NXDomain);
        assert_eq!(answer.authority[0].record_type(), RecordType::SOA);
    }
    assert_eq!(upstream.questions(), 1);
}

#[tokio::test]
async fn a_failing_upstream_is_skipped_and_failures_are_not_cached() {
    let good = test_upstream::start().await;
    // A port nobody answers on: the forwarder times out there and moves on.
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let forwarder = Forwarder::new(vec![silent.local_addr().unwrap(), good.addr]);
    let answer = forwarder
        .resolve(&name("www.example.com."), RecordType::A, DNSClass::IN)
        .await
        .unwrap();
    assert_eq!(addresses(&answer), ["192.0.2.53"]);

    let broken = forwarder
        .resolve(&name("broken.example.com."), RecordType::A, DNSClass::IN)
        .await
        .unwrap();
    assert_eq!(broken.code, ResponseCode::ServFail);
    assert_eq!(forwarder.cache_len(), 1);
}

#[tokio::test]
async fn no_upstreams_is_an_error() {
    let forwarder = Forwarder::new(vec![]);
    let result = forwarder
        .resolve(&name("www.example.com."), RecordType::A, DNSClass::IN)
        .await;
    assert!(matches!(result, Err(ForwardError::NoUpstreams)));
}

#[test]
fn cache_ttl_is_the_smallest_and_capped() {
    let a = |ttl| {
        Record::from_rdata(
            name("a."),
            ttl,
            RData::A(hickory_proto::rr::rdata::A([1, 2, 3, 4].into())),
        )
    };
    let answer = |answers| Forwarded {
        code: ResponseCode::NoError,
        answers,
        authority: vec![],
        additionals: vec![],
    };
    assert_eq!(cache_ttl(&answer(vec![a(20), a(7)])), 7);
    assert_eq!(cache_ttl(&answer(vec![a(3600)])), MAX_CACHE_TTL);
    assert_eq!(cache_ttl(&answer(vec![])), super::super::TTL);
}
