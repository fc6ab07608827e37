//! A tiny resolver on loopback for the forwarder's and server's tests: UDP and TCP
//! on one port, a handful of fixed names, counting the questions it gets.
//!
//! - `www.example.com.` A 192.0.2.53 (TTL 300)
//! - `big.example.com.` A: truncated over UDP, three addresses over TCP
//! - `broken.example.com.`: SERVFAIL
//! - anything else: NXDOMAIN with an SOA (minimum 60)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::{A, SOA};
use hickory_proto::rr::{Name, RData, Record};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

pub struct Upstream {
    pub addr: SocketAddr,
    pub questions: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Upstream {
    pub fn questions(&self) -> usize {
        self.questions.load(Ordering::SeqCst)
    }
}

pub async fn start() -> Upstream {
    let (udp, tcp) = loop {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
            break (udp, tcp);
        }
    };
    let addr = udp.local_addr().unwrap();
    let questions = Arc::new(AtomicUsize::new(0));
    let counter = questions.clone();
    let udp_task = tokio::spawn(async move {
        let mut buffer = vec![0u8; 4096];
        while let Ok((len, peer)) = udp.recv_from(&mut buffer).await {
            counter.fetch_add(1, Ordering::SeqCst);
            let reply = answer(&buffer[..len], false);
            let _ = udp.send_to(&reply, peer).await;
        }
    });
    let counter = questions.clone();
    let tcp_task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = tcp.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let Ok(len) = stream.read_u16().await else {
                    return;
                };
                let mut buffer = vec![0u8; len.into()];
                if stream.read_exact(&mut buffer).await.is_err() {
                    return;
                }
                let reply = answer(&buffer, true);
                let _ = stream.write_u16(reply.len() as u16).await;
                let _ = stream.write_all(&reply).await;
            });
        }
    });
    Upstream {
        addr,
        questions,
        tasks: vec![udp_task, tcp_task],
    }
}

fn answer(request: &[u8], tcp: bool) -> Vec<u8> {
    let request = Message::from_vec(request).unwrap();
    let query = request.queries()[0].clone();
    let name = query.name().to_ascii().to_ascii_lowercase();
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_recursion_available(true)
        .add_query(query.clone());
    let a = |ip: [u8; 4]| Record::from_rdata(query.name().clone(), 300, RData::A(A(ip.into())));
    match name.as_str() {
        "www.example.com." => {
            response.add_answer(a([192, 0, 2, 53]));
        }
        "big.example.com." if tcp => {
            response.insert_answers(vec![
                a([192, 0, 2, 1]),
                a([192, 0, 2, 2]),
                a([192, 0, 2, 3]),
            ]);
        }
        "big.example.com." => {
            response.set_truncated(true);
        }
        "broken.example.com." => {
            response.set_response_code(ResponseCode::ServFail);
        }
        _ => {
            let soa = SOA::new(
                Name::from_ascii("ns.example.com.").unwrap(),
                Name::from_ascii("hostmaster.example.com.").unwrap(),
                1,
                3600,
                600,
                86400,
                60,
            );
            response.set_response_code(ResponseCode::NXDomain);
            response.add_name_server(Record::from_rdata(
                Name::from_ascii("example.com.").unwrap(),
                60,
                RData::SOA(soa),
            ));
        }
    }
    response.to_vec().unwrap()
}
