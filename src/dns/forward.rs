//! The forwarder: questions outside the cluster zone go to the host's resolvers,
//! over UDP (TCP when the answer is truncated), each upstream in turn, with a
//! small cache in front. Answers are cached for their smallest TTL (at most
//! [`MAX_CACHE_TTL`]), negative ones for the SOA's minimum; failures never.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The longest an answer stays cached.
pub const MAX_CACHE_TTL: u32 = 30;
/// How many answers the cache holds.
pub const CACHE_ENTRIES: usize = 1024;
/// How long one upstream gets to answer.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// The payload size offered upstream (the DNS flag day's safe size).
const EDNS_PAYLOAD: u16 = 1232;

/// An upstream's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Forwarded {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
}

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("no upstream resolvers")]
    NoUpstreams,
    #[error("upstream {upstream}: {message}")]
    Upstream {
        upstream: SocketAddr,
        message: String,
    },
}

type Key = (LowerName, RecordType, DNSClass);

struct Cached {
    answer: Forwarded,
    stored: Instant,
    expires: Instant,
}

pub struct Forwarder {
    upstreams: Vec<SocketAddr>,
    cache: Mutex<HashMap<Key, Cached>>,
}

impl Forwarder {
    pub fn new(upstreams: Vec<SocketAddr>) -> Self {
        Forwarder {
            upstreams,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn upstreams(&self) -> &[SocketAddr] {
        &self.upstreams
    }

    /// The answer to `name`/`qtype`/`class`: from the cache, else from the first
    /// upstream that answers with something else than SERVFAIL or REFUSED.
    pub async fn resolve(
        &self,
        name: &Name,
        qtype: RecordType,
        class: DNSClass,
    ) -> Result<Forwarded, ForwardError> {
        let key = (LowerName::new(name), qtype, class);
        if let Some(answer) = self.cached(&key) {
            return Ok(answer);
        }
        let mut last = Err(ForwardError::NoUpstreams);
        for upstream in &self.upstreams {
            last = exchange(*upstream, name, qtype, class).await;
            match &last {
                Ok(answer)
                    if !matches!(answer.code, ResponseCode::ServFail | ResponseCode::Refused) =>
                {
                    self.store(key, answer.clone());
                    break;
                }
                Ok(answer) => {
                    tracing::debug!(%upstream, %name, code = %answer.code, "upstream failed")
                }
                Err(e) => tracing::debug!(error = %e, "upstream failed"),
            }
        }
        last
    }

    fn cached(&self, key: &Key) -> Option<Forwarded> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache.get(key)?;
        let now = Instant::now();
        if entry.expires <= now {
            return None;
        }
        let age = now.duration_since(entry.stored).as_secs() as u32;
        let mut answer = entry.answer.clone();
        for record in answer
            .answers
            .iter_mut()
            .chain(answer.authority.iter_mut())
            .chain(answer.additionals.iter_mut())
        {
            let ttl = record.ttl().saturating_sub(age);
            record.set_ttl(ttl);
        }
        Some(answer)
    }

    fn store(&self, key: Key, answer: Forwarded) {
        let ttl = cache_ttl(&answer);
        if ttl == 0 {
            return;
        }
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, entry| entry.expires > now);
        }
        if cache.len() >= CACHE_ENTRIES {
            // Full of live answers: drop the one closest to expiring.
            if let Some(oldest) = cache
                .iter()
                .min_by_key(|(_, entry)| entry.expires)
                .map(|(key, _)| key.clone())
            {
                cache.remove(&oldest);
            }
        }
        cache.insert(
            key,
            Cached {
                answer,
                stored: now,
                expires: now + Duration::from_secs(ttl.into()),
            },
        );
    }

    #[cfg(test)]
    fn cache_len(&self) -> usize {
        self.cache.lock().unwrap().len()
    }
}

/// How long an answer may be cached: its smallest TTL, or the SOA minimum of a
/// negative answer; never longer than [`MAX_CACHE_TTL`].
fn cache_ttl(answer: &Forwarded) -> u32 {
    let ttl = if answer.answers.is_empty() {
        answer
            .authority
            .iter()
            .find_map(|r| match r.data() {
                RData::SOA(soa) => Some(soa.minimum().min(r.ttl())),
                _ => None,
            })
            .unwrap_or(super::TTL)
    } else {
        answer.answers.iter().map(Record::ttl).min().unwrap_or(0)
    };
    ttl.min(MAX_CACHE_TTL)
}

/// One question to one upstream: UDP, then TCP when the answer was truncated.
async fn exchange(
    upstream: SocketAddr,
    name: &Name,
    qtype: RecordType,
    class: DNSClass,
) -> Result<Forwarded, ForwardError> {
    let fail = |message: String| ForwardError::Upstream { upstream, message };
    let id: u16 = rand::random();
    let request = request_bytes(id, name, qtype, class).map_err(|e| fail(e.to_string()))?;
    let answers = |message: &Message| {
        message
            .queries()
            .first()
            .is_some_and(|q| q.name() == name && q.query_type() == qtype)
    };
    let response = tokio::time::timeout(UPSTREAM_TIMEOUT, async {
        let response = udp_exchange(upstream, id, &request, &answers).await?;
        if response.truncated() {
            return tcp_exchange(upstream, id, &request).await;
        }
        Ok(response)
    })
    .await
    .map_err(|_| fail("timed out".into()))?
    .map_err(fail)?;
    let mut response = response;
    Ok(Forwarded {
        code: response.response_code(),
        answers: response.take_answers(),
        authority: response.take_name_servers(),
        additionals: response.take_additionals(),
    })
}

fn request_bytes(
    id: u16,
    name: &Name,
    qtype: RecordType,
    class: DNSClass,
) -> Result<Vec<u8>, hickory_proto::ProtoError> {
    let mut query = Query::query(name.clone(), qtype);
    query.set_query_class(class);
    let mut message = Message::new();
    message
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(query);
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    message.set_edns(edns);
    message.to_vec()
}

async fn udp_exchange(
    upstream: SocketAddr,
    id: u16,
    request: &[u8],
    answers: &impl Fn(&Message) -> bool,
) -> Result<Message, String> {
    let local: IpAddr = match upstream {
        SocketAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        SocketAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let socket = UdpSocket::bind((local, 0))
        .await
        .map_err(|e| format!("binding a udp socket: {e}"))?;
    socket
        .connect(upstream)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    socket
        .send(request)
        .await
        .map_err(|e| format!("sending: {e}"))?;
    let mut buffer = vec![0u8; 4096];
    loop {
        let len = socket
            .recv(&mut buffer)
            .await
            .map_err(|e| format!("receiving: {e}"))?;
        // Anything but the answer to our id and question is ignored (late or spoofed).
        if let Ok(message) = Message::from_vec(&buffer[..len]) {
            if message.id() == id
                && message.message_type() == MessageType::Response
                && answers(&message)
            {
                return Ok(message);
            }
        }
    }
}

async fn tcp_exchange(upstream: SocketAddr, id: u16, request: &[u8]) -> Result<Message, String> {
    let mut stream = TcpStream::connect(upstream)
        .await
        .map_err(|e| format!("connecting over tcp: {e}"))?;
    let mut framed = Vec::with_capacity(request.len() + 2);
    framed.extend_from_slice(&(request.len() as u16).to_be_bytes());
    framed.extend_from_slice(request);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| format!("sending over tcp: {e}"))?;
    let len = stream
        .read_u16()
        .await
        .map_err(|e| format!("receiving over tcp: {e}"))?;
    let mut buffer = vec![0u8; len.into()];
    stream
        .read_exact(&mut buffer)
        .await
        .map_err(|e| format!("receiving over tcp: {e}"))?;
    let message = Message::from_vec(&buffer).map_err(|e| format!("decoding: {e}"))?;
    if message.id() != id {
        return Err(format!("answer for id {} instead of {id}", message.id()));
    }
    Ok(message)
}

#[cfg(test)]
mod tests;
