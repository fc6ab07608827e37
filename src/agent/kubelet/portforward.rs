//! `/portForward/{namespace}/{pod}`: kubectl port-forward, as the kubelet serves it
//! (see docs/adr/0020-port-forward.md).
//!
//! Three transports, one forwarding core:
//! - SPDY/3.1 after an HTTP upgrade (`Upgrade: SPDY/3.1`, `X-Stream-Protocol-Version:
//!   portforward.k8s.io`): kubectl 1.27–1.30, and newer ones when the WebSocket is
//!   refused;
//! - the same SPDY/3.1 frames tunnelled through a WebSocket whose subprotocol is
//!   `SPDY/3.1+portforward.k8s.io` (kubectl 1.31+); binary messages are a byte
//!   stream, each frame we send is one message;
//! - the WebSocket channel protocol (`v4.channel.k8s.io` / `portforward.k8s.io`,
//!   `?ports=80,8080`): channel 2i carries port i's data, 2i+1 its errors, and the
//!   first message on every channel is the port (2 bytes, little endian).
//!
//! In SPDY, every local connection of the client is a pair of streams with the same
//! `requestID` header: `streamType: error` and `streamType: data`, `port: <n>`.
//! Once both are there the agent connects to `localhost:<port>` inside the pod's
//! network namespace and copies bytes both ways; when the pod's side ends, the data
//! stream and the error stream are finished (FIN). A port that refuses gets the
//! kubelet's words on the error stream (`error forwarding port 8080 to pod
//! default/web: …`) and both streams are finished; other connections go on.
//!
//! Owns: the stream bookkeeping and the byte pumps. May call: `spdy` (framing) and
//! the kernel (`setns` on a fresh thread to open a socket in the pod's network).

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::spdy::{self, Decoder, Encoder, Frame, FLAG_FIN};

/// The WebSocket subprotocol that carries SPDY/3.1 (kubectl 1.31+).
pub const SPDY_OVER_WEBSOCKET: &str = "SPDY/3.1+portforward.k8s.io";
/// `X-Stream-Protocol-Version` of port-forward over SPDY.
pub const STREAM_PROTOCOL: &str = "portforward.k8s.io";
/// The channel protocols of the plain WebSocket port-forward.
pub const CHANNEL_PROTOCOLS: [&str; 2] = ["v4.channel.k8s.io", "portforward.k8s.io"];
/// How long opening a connection in the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest data frame we send.
const CHUNK: usize = 32 * 1024;

/// A pod whose ports are forwarded.
#[derive(Debug, Clone)]
pub struct PodPorts {
    /// `namespace/name`, for messages.
    pub pod: String,
    /// The pod's network namespace (`/proc/<pid>/ns/net`); `None`: this process's.
    pub netns: Option<PathBuf>,
}

impl PodPorts {
    /// A connection to `localhost:port` in the pod's network, or the kubelet's
    /// message for the error stream.
    pub async fn connect(&self, port: u16) -> Result<TcpStream, String> {
        let netns = self.netns.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // setns changes the calling thread for good: a thread of its own, which ends
        // right after, keeps the runtime's threads in the host's network.
        let spawned = std::thread::Builder::new()
            .name("portforward-connect".into())
            .spawn(move || {
                let _ = tx.send(connect_blocking(netns.as_deref(), port));
            });
        let result = match spawned {
            Ok(_) => rx
                .await
                .unwrap_or_else(|_| Err("the connecting thread died".into())),
            Err(e) => Err(format!("starting a thread: {e}")),
        };
        result
            .and_then(|stream| {
                stream.set_nonblocking(true).map_err(|e| e.to_string())?;
                TcpStream::from_std(stream).map_err(|e| e.to_string())
            })
            .map_err(|e| format!("error forwarding port {port} to pod {}: {e}", self.pod))
    }
}

/// Connects to localhost (IPv4, then IPv6) after entering `netns`.
fn connect_blocking(
    netns: Option<&std::path::Path>,
    port: u16,
) -> Result<std::net::TcpStream, String> {
    if let Some(path) = netns {
        let file = std::fs::File::open(path).map_err(|e| {
            format!(
                "opening the pod's network namespace {}: {e}",
                path.display()
            )
        })?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(|e| {
            format!(
                "entering the pod's network namespace {}: {e}",
                path.display()
            )
        })?;
    }
    let v4 = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    let v6 = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port);
    match std::net::TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(stream) => Ok(stream),
        Err(e4) => std::net::TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|e6| {
            format!(
                "failed to connect to localhost:{port} inside the pod's network namespace: \
                 IPv4: {e4}; IPv6: {e6}"
            )
        }),
    }
}

/// What the client sent on a data stream.
#[derive(Debug)]
enum Inbound {
    Data(Bytes),
    /// The client finished sending (half close).
    Fin,
}

/// One half-made or running pair of streams.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: u16,
}

/// Serves one SPDY/3.1 port-forward connection: `incoming` carries the client's
/// bytes as they arrive, `outgoing` takes the bytes of each frame we send. Returns
/// when the client goes (end of `incoming`, GOAWAY) or the stream is broken.
pub async fn spdy_session(
    mut incoming: mpsc::Receiver<Bytes>,
    outgoing: mpsc::Sender<Bytes>,
    target: Arc<PodPorts>,
) {
    let (frames, mut to_encode) = mpsc::channel::<Frame>(64);
    let encoder = tokio::spawn(async move {
        let mut encoder = Encoder::new();
        while let Some(frame) = to_encode.recv().await {
            if outgoing
                .send(Bytes::from(encoder.encode(&frame)))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let mut decoder = Decoder::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut inbound: HashMap<u32, mpsc::Sender<Inbound>> = HashMap::new();
    let mut forwards = tokio::task::JoinSet::new();
    'session: while let Some(chunk) = incoming.recv().await {
        decoder.push(&chunk);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(pod = %target.pod, error = %e, "port-forward: bad frame");
                    let _ = frames
                        .send(Frame::GoAway {
                            last_stream: 0,
                            status: spdy::RST_PROTOCOL_ERROR,
                        })
                        .await;
                    break 'session;
                }
            };
            match frame {
                Frame::SynStream { stream, .. } => {
                    let kind = frame.header("streamtype").unwrap_or_default().to_string();
                    let port = frame.header("port").and_then(|p| p.parse::<u16>().ok());
                    let request = frame.header("requestid").unwrap_or_default().to_string();
                    let (Some(port), true) = (port, matches!(kind.as_str(), "error" | "data"))
                    else {
                        let _ = frames
                            .send(Frame::RstStream {
                                stream,
                                status: spdy::RST_REFUSED_STREAM,
                            })
                            .await;
                        continue;
                    };
                    let _ = frames
                        .send(Frame::SynReply {
                            stream,
                            flags: 0,
                            headers: Vec::new(),
                        })
                        .await;
                    let pair = pairs.entry(request.clone()).or_default();
                    pair.port = port;
                    if kind == "error" {
                        pair.error = Some(stream);
                    } else {
                        pair.data = Some(stream);
                    }
                    if let (Some(error), Some(data)) = (pair.error, pair.data) {
                        let port = pair.port;
                        pairs.remove(&request);
                        let (tx, rx) = mpsc::channel(16);
                        inbound.insert(data, tx);
                        forwards.spawn(forward(
                            target.clone(),
                            port,
                            data,
                            error,
                            rx,
                            frames.clone(),
                        ));
                    }
                }
                Frame::Data {
                    stream,
                    flags,
                    data,
                } => {
                    let Some(tx) = inbound.get(&stream) else {
                        // The error stream's (empty) end, or a stream already done.
                        continue;
                    };
                    if !data.is_empty() && tx.send(Inbound::Data(Bytes::from(data))).await.is_err()
                    {
                        inbound.remove(&stream);
                        continue;
                    }
                    if flags & FLAG_FIN != 0 {
                        let _ = tx.send(Inbound::Fin).await;
                        inbound.remove(&stream);
                    }
                }
                Frame::RstStream { stream, .. } => {
                    // Dropping the sender tells the pump to stop.
                    inbound.remove(&stream);
                    pairs.retain(|_, p| p.error != Some(stream) && p.data != Some(stream));
                }
                Frame::Ping(id) => {
                    let _ = frames.send(Frame::Ping(id)).await;
                }
                Frame::GoAway { .. } => break 'session,
                _ => {}
            }
        }
        // Reap finished forwards as we go.
        while forwards.try_join_next().is_some() {}
    }
    drop(inbound);
    forwards.abort_all();
    drop(frames);
    let _ = encoder.await;
}

/// Forwards one connection: `data`/`error` are the pair's stream ids.
async fn forward(
    target: Arc<PodPorts>,
    port: u16,
    data: u32,
    error: u32,
    mut inbound: mpsc::Receiver<Inbound>,
    frames: mpsc::Sender<Frame>,
) {
    let fin = |stream: u32| Frame::Data {
        stream,
        flags: FLAG_FIN,
        data: Vec::new(),
    };
    let socket = match target.connect(port).await {
        Ok(socket) => socket,
        Err(message) => {
            tracing::debug!(pod = %target.pod, port, %message, "port-forward");
            let _ = frames
                .send(Frame::Data {
                    stream: error,
                    flags: 0,
                    data: message.into_bytes(),
                })
                .await;
            let _ = frames.send(fin(error)).await;
            let _ = frames.send(fin(data)).await;
            return;
        }
    };
    let _ = socket.set_nodelay(true);
    let (mut read, mut write) = socket.into_split();
    let out = frames.clone();
    let mut from_pod = tokio::spawn(async move {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match read.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let frame = Frame::Data {
                        stream: data,
                        flags: 0,
                        data: buf[..n].to_vec(),
                    };
                    if out.send(frame).await.is_err() {
                        return;
                    }
                }
            }
        }
    });
    let mut client_open = true;
    loop {
        tokio::select! {
            _ = &mut from_pod => break,
            message = inbound.recv(), if client_open => match message {
                Some(Inbound::Data(bytes)) => {
                    if write.write_all(&bytes).await.is_err() {
                        // The pod stopped reading; what it still sends goes on.
                        client_open = false;
                    }
                }
                Some(Inbound::Fin) => {
                    let _ = write.shutdown().await;
                    client_open = false;
                }
                None => {
                    // Reset by the client, or the session ended.
                    from_pod.abort();
                    return;
                }
            },
        }
    }
    let _ = frames.send(fin(data)).await;
    let _ = frames.send(fin(error)).await;
}

/// The `ports` of a channel-protocol request (`ports=80,8080` or repeated).
pub fn parse_ports(query: &str) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key != "ports" && key != "port" {
            continue;
        }
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.parse::<u16>() {
                Ok(port) if port > 0 => ports.push(port),
                _ => return Err(format!("unable to parse {part:?} as a port: invalid port")),
            }
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    Ok(ports)
}

/// Serves the channel protocol: each port of `ports` is connected once; its data
/// on channel 2i, its errors on 2i+1. `incoming` carries the client's binary
/// messages, `outgoing` takes ours. Ends when every connection is done or the
/// client goes.
pub async fn channel_session(
    mut incoming: mpsc::Receiver<Bytes>,
    outgoing: mpsc::Sender<Bytes>,
    target: Arc<PodPorts>,
    ports: Vec<u16>,
) {
    let message = |channel: u8, data: &[u8]| {
        let mut out = Vec::with_capacity(data.len() + 1);
        out.push(channel);
        out.extend_from_slice(data);
        Bytes::from(out)
    };
    for (i, port) in ports.iter().enumerate() {
        for channel in [2 * i as u8, 2 * i as u8 + 1] {
            if outgoing
                .send(message(channel, &port.to_le_bytes()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
    let mut writers = HashMap::new();
    let mut pumps = tokio::task::JoinSet::new();
    for (i, port) in ports.iter().enumerate() {
        let (data, error) = (2 * i as u8, 2 * i as u8 + 1);
        match target.connect(*port).await {
            Ok(socket) => {
                let (mut read, write) = socket.into_split();
                writers.insert(data, write);
                let out = outgoing.clone();
                pumps.spawn(async move {
                    let mut buf = vec![0u8; CHUNK];
                    while let Ok(n) = read.read(&mut buf).await {
                        if n == 0 || out.send(message(data, &buf[..n])).await.is_err() {
                            return;
                        }
                    }
                });
            }
            Err(e) => {
                let _ = outgoing.send(message(error, e.as_bytes())).await;
            }
        }
    }
    loop {
        tokio::select! {
            done = pumps.join_next() => if done.is_none() { break },
            received = incoming.recv() => match received {
                Some(bytes) if bytes.len() > 1 => {
                    if let Some(writer) = writers.get_mut(&bytes[0]) {
                        if writer.write_all(&bytes[1..]).await.is_err() {
                            writers.remove(&bytes[0]);
                        }
                    }
                }
                Some(_) => {}
                None => break,
            },
        }
    }
    pumps.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syn(stream: u32, kind: &str, port: u16, request: &str) -> Frame {
        Frame::SynStream {
            stream,
            associated: 0,
            priority: 0,
            flags: 0,
            headers: vec![
                ("streamType".into(), kind.into()),
                ("port".into(), port.to_string()),
                ("requestID".into(), request.into()),
            ],
        }
    }

    /// A session on local ports, driven frame by frame.
    struct Client {
        encoder: Encoder,
        decoder: Decoder,
        to_server: mpsc::Sender<Bytes>,
        from_server: mpsc::Receiver<Bytes>,
    }

    impl Client {
        fn start() -> Client {
            let (to_server, incoming) = mpsc::channel(16);
            let (outgoing, from_server) = mpsc::channel(16);
            let target = Arc::new(PodPorts {
                pod: "default/web".into(),
                netns: None,
            });
            tokio::spawn(spdy_session(incoming, outgoing, target));
            Client {
                encoder: Encoder::new(),
                decoder: Decoder::new(),
                to_server,
                from_server,
            }
        }

        async fn send(&mut self, frame: Frame) {
            let bytes = self.encoder.encode(&frame);
            self.to_server.send(Bytes::from(bytes)).await.expect("send");
        }

        async fn next(&mut self) -> Frame {
            loop {
                if let Some(frame) = self.decoder.next_frame().expect("decode") {
                    return frame;
                }
                let bytes = tokio::time::timeout(Duration::from_secs(10), self.from_server.recv())
                    .await
                    .expect("a frame in time")
                    .expect("session open");
                self.decoder.push(&bytes);
            }
        }
    }

    #[tokio::test]
    async fn a_pair_of_streams_reaches_the_port_and_back() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut request = Vec::new();
            socket.read_to_end(&mut request).await.expect("read");
            socket.write_all(b"echo:").await.expect("write");
            socket.write_all(&request).await.expect("write");
        });
        let mut client = Client::start();
        client.send(syn(1, "error", port, "0")).await;
        assert_eq!(
            client.next().await,
            Frame::SynReply {
                stream: 1,
                flags: 0,
                headers: Vec::new()
            }
        );
        client
            .send(Frame::Data {
                stream: 1,
                flags: FLAG_FIN,
                data: Vec::new(),
            })
            .await;
        client.send(syn(3, "data", port, "0")).await;
        assert!(matches!(
            client.next().await,
            Frame::SynReply { stream: 3, .. }
        ));
        client.send(Frame::Ping(1)).await;
        assert_eq!(client.next().await, Frame::Ping(1));
        client
            .send(Frame::Data {
                stream: 3,
                flags: FLAG_FIN,
                data: b"hello".to_vec(),
            })
            .await;
        let mut received = Vec::new();
        let mut finished = Vec::new();
        while finished.len() < 2 {
            match client.next().await {
                Frame::Data {
                    stream: 3,
                    flags,
                    data,
                } => {
                    received.extend(data);
                    if flags & FLAG_FIN != 0 {
                        finished.push(3);
                    }
                }
                Frame::Data {
                    stream: 1,
                    flags: FLAG_FIN,
                    data,
                } => {
                    assert!(data.is_empty(), "no error expected");
                    finished.push(1);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, b"echo:hello");
    }

    #[tokio::test]
    async fn a_refused_port_is_reported_on_the_error_stream() {
        // A port nobody listens on: bind, learn the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let mut client = Client::start();
        client.send(syn(1, "error", port, "7")).await;
        client.send(syn(3, "data", port, "7")).await;
        let mut error = Vec::new();
        let mut finished = 0;
        while finished < 2 {
            match client.next().await {
                Frame::SynReply { .. } => {}
                Frame::Data {
                    stream: 1,
                    flags,
                    data,
                } => {
                    error.extend(data);
                    finished += usize::from(flags & FLAG_FIN != 0);
                }
                Frame::Data {
                    stream: 3,
                    flags: FLAG_FIN,
                    ..
                } => finished += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        let error = String::from_utf8(error).expect("utf-8");
        assert!(
            error.starts_with(&format!(
                "error forwarding port {port} to pod default/web: "
            )),
            "{error}"
        );
        assert!(error.contains("refused"), "{error}");
        // The session goes on: the next pair reaches a port that listens.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let open = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            socket.write_all(b"still here").await.expect("write");
        });
        client.send(syn(9, "error", open, "8")).await;
        client.send(syn(11, "data", open, "8")).await;
        let mut received = Vec::new();
        loop {
            match client.next().await {
                Frame::Data {
                    stream: 11,
                    flags,
                    data,
                } => {
                    received.extend(data);
                    if flags & FLAG_FIN != 0 {
                        break;
                    }
                }
                Frame::SynReply { .. } => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(received, b"still here");
        assert_eq!(
            client.next().await,
            Frame::Data {
                stream: 9,
                flags: FLAG_FIN,
                data: Vec::new()
            }
        );
        // A stream without the headers a port-forward needs is refused.
        client
            .send(Frame::SynStream {
                stream: 5,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: vec![("streamtype".into(), "other".into())],
            })
            .await;
        assert_eq!(
            client.next().await,
            Frame::RstStream {
                stream: 5,
                status: spdy::RST_REFUSED_STREAM
            }
        );
    }

    #[tokio::test]
    async fn the_channel_protocol_prefixes_ports_and_carries_data() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 4];
            socket.read_exact(&mut buf).await.expect("read");
            socket.write_all(&buf).await.expect("write");
        });
        let (to_server, incoming) = mpsc::channel(16);
        let (outgoing, mut from_server) = mpsc::channel(16);
        let target = Arc::new(PodPorts {
            pod: "default/web".into(),
            netns: None,
        });
        let session = tokio::spawn(channel_session(incoming, outgoing, target, vec![port]));
        let mut next = async || from_server.recv().await.expect("message").to_vec();
        let le = port.to_le_bytes();
        assert_eq!(next().await, vec![0, le[0], le[1]]);
        assert_eq!(next().await, vec![1, le[0], le[1]]);
        to_server
            .send(Bytes::from_static(b"\x00ping"))
            .await
            .expect("send");
        assert_eq!(next().await, b"\x00ping".to_vec());
        tokio::time::timeout(Duration::from_secs(10), session)
            .await
            .expect("ends when the pod closes")
            .expect("join");
        assert_eq!(parse_ports("ports=80,8080").expect("ports"), vec![80, 8080]);
        assert!(parse_ports("ports=x").is_err());
        assert!(parse_ports("").is_err());
    }
}
