//! The DNS server: a hickory-server [`RequestHandler`] that answers the cluster
//! zone from the current [`Zone`] (authoritative) and forwards everything else
//! (recursion available), on one UDP socket and one TCP listener.
//!
//! The zone is replaced whole ([`ClusterDns::set_zone`]); until the first one
//! arrives, questions inside the cluster domain get SERVFAIL (clients retry)
//! rather than a wrong NXDOMAIN. Source addresses are the clients' own: the
//! server listens on the address the pods ask, nothing is translated.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use hickory_proto::xfer::Protocol;
use hickory_server::authority::MessageResponseBuilder;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::ServerFuture;

use super::forward::Forwarder;
use super::zone::Zone;
use super::DnsError;

/// How long an idle TCP client may hold its connection.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest UDP answer to a client without EDNS (RFC 1035).
const PLAIN_UDP_LIMIT: usize = 512;
/// The largest UDP answer we offer to EDNS clients.
const EDNS_PAYLOAD: u16 = 1232;

/// What the server answers with: the current zone and the forwarder.
pub struct ClusterDns {
    domain: LowerName,
    zone: RwLock<Option<Arc<Zone>>>,
    forwarder: Forwarder,
}

/// One reply, before it is encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub code: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
}

impl Reply {
    fn failure() -> Self {
        Reply {
            code: ResponseCode::ServFail,
            authoritative: false,
            answers: vec![],
            authority: vec![],
            additionals: vec![],
        }
    }
}

impl ClusterDns {
    /// `domain` is the cluster domain (questions under it wait for a zone).
    pub fn new(domain: &str, forwarder: Forwarder) -> Result<Arc<Self>, DnsError> {
        let name = Name::from_ascii(format!("{}.", domain.trim_end_matches('.')))
            .map_err(|e| DnsError::Domain(domain.into(), e.to_string()))?;
        Ok(Arc::new(ClusterDns {
            domain: LowerName::new(&name),
            zone: RwLock::new(None),
            forwarder,
        }))
    }

    /// Serves `zone` from now on.
    pub fn set_zone(&self, zone: Zone) {
        *self.zone.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(zone));
    }

    fn zone(&self) -> Option<Arc<Zone>> {
        self.zone.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The reply to one question.
    pub async fn answer(&self, name: &Name, qtype: RecordType, class: DNSClass) -> Reply {
        if class == DNSClass::IN {
            match self.zone() {
                Some(zone) => {
                    if let Some(answer) = zone.lookup(name, qtype) {
                        let mut reply = Reply {
                            code: answer.code,
                            authoritative: true,
                            answers: answer.answers,
                            authority: answer.authority,
                            additionals: answer.additionals,
                        };
                        if let Some(target) = answer.chase {
                            self.chase(&mut reply, &target, qtype, class).await;
                        }
                        return reply;
                    }
                }
                None if self.domain.zone_of(&LowerName::new(name)) => return Reply::failure(),
                None => {}
            }
        }
        match self.forwarder.resolve(name, qtype, class).await {
            Ok(forwarded) => Reply {
                code: forwarded.code,
                authoritative: false,
                answers: forwarded.answers,
                authority: forwarded.authority,
                additionals: forwarded.additionals,
            },
            Err(e) => {
                tracing::debug!(%name, error = %e, "forwarding failed");
                Reply::failure()
            }
        }
    }

    /// Adds the records of an ExternalName's outside target to `reply`.
    async fn chase(&self, reply: &mut Reply, target: &Name, qtype: RecordType, class: DNSClass) {
        match self.forwarder.resolve(target, qtype, class).await {
            Ok(forwarded) => {
                reply.answers.extend(forwarded.answers);
                if forwarded.code == ResponseCode::NXDomain {
                    reply.code = ResponseCode::NXDomain;
                }
            }
            Err(e) => tracing::debug!(%target, error = %e, "chasing an external name failed"),
        }
    }
}

/// The hickory-server request handler over a [`ClusterDns`].
#[derive(Clone)]
pub struct Handler(pub Arc<ClusterDns>);

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut header = Header::response_from_request(request.header());
        header.set_recursion_available(true);
        let mut reply = Reply::failure();
        if request.message_type() != MessageType::Query || request.op_code() != OpCode::Query {
            reply.code = ResponseCode::NotImp;
        } else if let Ok(info) = request.request_info() {
            let query = info.query.original();
            reply = self
                .0
                .answer(query.name(), query.query_type(), query.query_class())
                .await;
        } else {
            reply.code = ResponseCode::FormErr;
        }
        let limit = match (request.protocol(), request.edns()) {
            (Protocol::Udp, Some(edns)) => usize::from(edns.max_payload().clamp(512, EDNS_PAYLOAD)),
            (Protocol::Udp, None) => PLAIN_UDP_LIMIT,
            _ => usize::MAX,
        };
        let query = request.queries().first().map(|q| q.original());
        let truncated = fit(&mut reply, limit, query);
        header.set_response_code(reply.code);
        header.set_authoritative(reply.authoritative);
        header.set_truncated(truncated);
        let mut response = MessageResponseBuilder::from_message_request(request).build(
            header,
            reply.answers.iter(),
            reply.authority.iter(),
            std::iter::empty(),
            reply.additionals.iter(),
        );
        if request.edns().is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(EDNS_PAYLOAD);
            response.set_edns(edns);
        }
        match response_handle.send_response(response).await {
            Ok(info) => info,
            Err(e) => {
                tracing::debug!(error = %e, "sending a dns response failed");
                header.into()
            }
        }
    }
}

/// Trims `reply` to fit `limit` bytes: additionals go first, then answers from the
/// end, and the reply is marked truncated so the client asks again over TCP.
/// Returns whether it was truncated. A cheap uncompressed bound decides first;
/// only replies that may not fit are encoded to measure.
fn fit(reply: &mut Reply, limit: usize, query: Option<&Query>) -> bool {
    if limit == usize::MAX {
        return false;
    }
    // Header, question and the OPT record.
    let overhead = 12 + query.map_or(256, |q| q.name().len() + 1 + 4) + 11;
    let bound: usize = reply
        .answers
        .iter()
        .chain(&reply.authority)
        .chain(&reply.additionals)
        .map(encoded_bound)
        .sum();
    if overhead + bound <= limit {
        return false;
    }
    let encoded = |reply: &Reply| {
        let mut message = Message::new();
        if let Some(query) = query {
            message.add_query(query.clone());
        }
        message.insert_answers(reply.answers.clone());
        message.insert_name_servers(reply.authority.clone());
        message.insert_additionals(reply.additionals.clone());
        // The OPT record: 11 bytes.
        message.to_vec().map(|b| b.len() + 11).unwrap_or(usize::MAX)
    };
    if encoded(reply) <= limit {
        return false;
    }
    reply.additionals.clear();
    if encoded(reply) <= limit {
        return false;
    }
    while !reply.answers.is_empty() && encoded(reply) > limit {
        reply.answers.pop();
    }
    true
}

/// An upper bound of `record`'s encoded size (names uncompressed), without
/// encoding it for the common types.
fn encoded_bound(record: &Record) -> usize {
    let name = |n: &Name| n.len() + 1;
    let data = match record.data() {
        RData::A(_) => 4,
        RData::AAAA(_) => 16,
        RData::SRV(srv) => 6 + name(srv.target()),
        RData::PTR(n) => name(n),
        RData::CNAME(n) => name(n),
        RData::NS(n) => name(n),
        RData::SOA(soa) => name(soa.mname()) + name(soa.rname()) + 20,
        _ => return record.to_bytes().map_or(usize::MAX / 4, |b| b.len()),
    };
    name(record.name()) + 10 + data
}

/// Binds the UDP socket and TCP listener of `addr`.
pub fn bind(addr: SocketAddr) -> Result<(std::net::UdpSocket, std::net::TcpListener), DnsError> {
    let error = |source| DnsError::Bind { addr, source };
    let udp = std::net::UdpSocket::bind(addr).map_err(error)?;
    let tcp = std::net::TcpListener::bind(addr).map_err(error)?;
    udp.set_nonblocking(true).map_err(error)?;
    tcp.set_nonblocking(true).map_err(error)?;
    Ok((udp, tcp))
}

/// Serves `dns` on the bound sockets until the returned server is dropped or shut
/// down. Must run inside a Tokio runtime.
pub fn serve(
    dns: Arc<ClusterDns>,
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
) -> Result<ServerFuture<Handler>, DnsError> {
    let addr = udp.local_addr().map_err(|source| DnsError::Bind {
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
        source,
    })?;
    let error = |source| DnsError::Bind { addr, source };
    let mut server = ServerFuture::new(Handler(dns));
    server.register_socket(tokio::net::UdpSocket::from_std(udp).map_err(error)?);
    server.register_listener(
        tokio::net::TcpListener::from_std(tcp).map_err(error)?,
        TCP_TIMEOUT,
    );
    Ok(server)
}

#[cfg(test)]
mod tests;
