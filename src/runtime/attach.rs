//! Attaching to a running container's own streams (`kubectl attach`, `kubectl run
//! -i`): the contract between a container's shim and the agent.
//!
//! Every shim listens on `attach.sock` in the container's state directory (mode 0600,
//! root only). A connected client gets the container's output from then on and may
//! write to its stdin, if the container has one. Messages both ways are frames:
//! one channel byte, a big-endian `u32` length, the payload.
//!
//! - shim → client: `STDOUT` and `STDERR` data (a terminal's output is `STDOUT`).
//!   The connection closes when the container's output ends (it exited).
//! - client → shim: `STDIN` data, `RESIZE` (width, height as big-endian `u16`s) and
//!   `CLOSE_STDIN` (empty). A container with `stdinOnce` loses its stdin for good
//!   when the first client that attached closes its stdin or goes away.
//!
//! What a container gets is asked for with annotations on its bundle
//! ([`stdio_annotations`]): `skiff.dev/stdin`, `skiff.dev/stdin-once`, `skiff.dev/tty`.
//!
//! Owns: the frame format, the annotation names, the shim's `Hub` and the agent's
//! async client.
//! May call: the socket in a container's state directory.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// The attach socket, in the container's state directory.
pub const SOCKET: &str = "attach.sock";
/// The container gets a stdin pipe (`"true"`).
pub const STDIN_ANNOTATION: &str = "skiff.dev/stdin";
/// The stdin closes when the first attached client is done with it (`"true"`).
pub const STDIN_ONCE_ANNOTATION: &str = "skiff.dev/stdin-once";
/// The container's stdio is a terminal (`"true"`).
pub const TTY_ANNOTATION: &str = "skiff.dev/tty";

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const RESIZE: u8 = 4;
pub const CLOSE_STDIN: u8 = 255;
/// The largest payload a frame may carry.
pub const MAX_FRAME: usize = 1024 * 1024;
const HEADER: usize = 5;

/// The annotations that ask the shim for these streams (only the ones that are on).
pub fn stdio_annotations(stdin: bool, stdin_once: bool, tty: bool) -> Vec<(String, String)> {
    [
        (STDIN_ANNOTATION, stdin),
        (STDIN_ONCE_ANNOTATION, stdin && stdin_once),
        (TTY_ANNOTATION, tty),
    ]
    .into_iter()
    .filter(|(_, on)| *on)
    .map(|(k, _)| (k.to_string(), "true".to_string()))
    .collect()
}

/// Whether `annotations` turn `key` on.
pub fn annotation_on<'a>(
    annotations: impl IntoIterator<Item = (&'a String, &'a String)>,
    key: &str,
) -> bool {
    annotations
        .into_iter()
        .any(|(k, v)| k == key && v == "true")
}

/// One frame, encoded.
pub fn encode(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER + payload.len());
    frame.push(channel);
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A resize frame's payload.
pub fn resize_payload(width: u16, height: u16) -> Vec<u8> {
    let mut payload = width.to_be_bytes().to_vec();
    payload.extend_from_slice(&height.to_be_bytes());
    payload
}

/// Width and height from a resize payload.
pub fn parse_resize(payload: &[u8]) -> Option<(u16, u16)> {
    let bytes: [u8; 4] = payload.try_into().ok()?;
    Some((
        u16::from_be_bytes([bytes[0], bytes[1]]),
        u16::from_be_bytes([bytes[2], bytes[3]]),
    ))
}

/// Takes the complete frames off the front of `buffer`. `Err` for a frame larger
/// than [`MAX_FRAME`] (the peer is not speaking this protocol).
pub fn decode(buffer: &mut Vec<u8>) -> Result<Vec<(u8, Vec<u8>)>, String> {
    let mut frames = Vec::new();
    let mut at = 0;
    while buffer.len() - at >= HEADER {
        let len = u32::from_be_bytes(buffer[at + 1..at + HEADER].try_into().expect("4 bytes"));
        let len = len as usize;
        if len > MAX_FRAME {
            return Err(format!("attach frame of {len} bytes is too large"));
        }
        if buffer.len() - at < HEADER + len {
            break;
        }
        frames.push((buffer[at], buffer[at + HEADER..at + HEADER + len].to_vec()));
        at += HEADER + len;
    }
    buffer.drain(..at);
    Ok(frames)
}

/// The socket's path, short enough for `sun_path` however deep `state_dir` is:
/// through `/proc/self/fd` of an open handle on the directory (kept in the pair).
pub fn short_path(state_dir: &Path) -> std::io::Result<(std::fs::File, PathBuf)> {
    let dir = std::fs::File::open(state_dir)?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/{SOCKET}", dir.as_raw_fd()));
    Ok((dir, path))
}

/// The agent's side: a connection to a container's shim.
pub struct AttachClient {
    stream: UnixStream,
}

impl AttachClient {
    /// Connects to the shim of the container whose state directory is `state_dir`.
    pub async fn connect(state_dir: &Path) -> std::io::Result<AttachClient> {
        let (_dir, path) = short_path(state_dir)?;
        let stream = UnixStream::connect(&path).await?;
        Ok(AttachClient { stream })
    }

    /// Splits into a frame reader and writer.
    pub fn split(self) -> (FrameReader, FrameWriter) {
        let (read, write) = self.stream.into_split();
        (
            FrameReader {
                read,
                buffer: Vec::new(),
                ready: std::collections::VecDeque::new(),
            },
            FrameWriter { write },
        )
    }
}

pub struct FrameReader {
    read: tokio::net::unix::OwnedReadHalf,
    buffer: Vec<u8>,
    ready: std::collections::VecDeque<(u8, Vec<u8>)>,
}

impl FrameReader {
    /// The next frame; `None` when the shim closed the connection.
    pub async fn next(&mut self) -> std::io::Result<Option<(u8, Vec<u8>)>> {
        loop {
            if let Some(frame) = self.ready.pop_front() {
                return Ok(Some(frame));
            }
            let mut chunk = [0u8; 32 * 1024];
            let n = self.read.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buffer.extend_from_slice(&chunk[..n]);
            let frames = decode(&mut self.buffer).map_err(std::io::Error::other)?;
            self.ready.extend(frames);
        }
    }
}

pub struct FrameWriter {
    write: tokio::net::unix::OwnedWriteHalf,
}

impl FrameWriter {
    pub async fn send(&mut self, channel: u8, payload: &[u8]) -> std::io::Result<()> {
        self.write.write_all(&encode(channel, payload)).await
    }
}

// ---------------------------------------------------------------------------------
// The shim's side (single-threaded, driven by the shim's poll loop).

/// How long the shim waits for a client to take output before dropping it.
const CLIENT_SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// The most stdin kept while the container does not read it.
const MAX_PENDING_STDIN: usize = 1024 * 1024;

/// The container's end of attach: the listener, attached clients and the stdin.
pub struct Hub {
    listener: std::os::unix::net::UnixListener,
    clients: Vec<Client>,
    /// Where stdin goes: the pipe's write end or the terminal (non-blocking).
    stdin: Option<std::os::fd::OwnedFd>,
    pending: Vec<u8>,
    stdin_once: bool,
    /// Whether some client has used the stdin (with `stdin_once`, the only one).
    stdin_claimed: bool,
    terminal: Option<std::os::fd::OwnedFd>,
}

struct Client {
    stream: std::os::unix::net::UnixStream,
    buffer: Vec<u8>,
    owns_stdin: bool,
}

impl Hub {
    /// Listens on `state_dir/attach.sock` (mode 0600).
    pub fn bind(
        state_dir: &Path,
        stdin: Option<std::os::fd::OwnedFd>,
        stdin_once: bool,
        terminal: Option<std::os::fd::OwnedFd>,
    ) -> std::io::Result<Hub> {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = short_path(state_dir)?;
        let _ = std::fs::remove_file(&path);
        let listener = std::os::unix::net::UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        listener.set_nonblocking(true)?;
        if let Some(fd) = &stdin {
            set_nonblocking(fd)?;
        }
        Ok(Hub {
            listener,
            clients: Vec::new(),
            stdin,
            pending: Vec::new(),
            stdin_once,
            stdin_claimed: false,
            terminal,
        })
    }

    /// The descriptors to poll for input: the listener, then each client.
    pub fn poll_fds(&self) -> Vec<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        std::iter::once(self.listener.as_fd())
            .chain(self.clients.iter().map(|c| c.stream.as_fd()))
            .collect()
    }

    /// Handles what `poll` found ready (flags in the order of [`Hub::poll_fds`]).
    pub fn on_ready(&mut self, ready: &[bool]) {
        let clients = self.clients.len();
        let mut gone = Vec::new();
        for i in 0..clients {
            if ready.get(i + 1).copied().unwrap_or(false) && !self.read_client(i) {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            self.drop_client(i);
        }
        if ready.first().copied().unwrap_or(false) {
            self.accept();
        }
        self.flush_stdin();
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_write_timeout(Some(CLIENT_SEND_TIMEOUT));
            self.clients.push(Client {
                stream,
                buffer: Vec::new(),
                owns_stdin: false,
            });
        }
    }

    /// Reads what client `i` sent; `false` when it is gone.
    fn read_client(&mut self, i: usize) -> bool {
        use std::io::Read;
        let mut chunk = [0u8; 32 * 1024];
        let n = match self.clients[i].stream.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        self.clients[i].buffer.extend_from_slice(&chunk[..n]);
        let Ok(frames) = decode(&mut self.clients[i].buffer) else {
            return false;
        };
        for (channel, payload) in frames {
            match channel {
                STDIN | CLOSE_STDIN if !self.may_use_stdin(i) => {}
                STDIN if self.pending.len() + payload.len() <= MAX_PENDING_STDIN => {
                    self.pending.extend_from_slice(&payload);
                }
                CLOSE_STDIN if self.stdin_once => self.close_stdin(),
                RESIZE => {
                    if let (Some(fd), Some((w, h))) = (&self.terminal, parse_resize(&payload)) {
                        let _ = super::exec::resize(fd, w, h);
                    }
                }
                _ => {}
            }
        }
        true
    }

    /// Claims the stdin for client `i` if it is free; whether `i` may write to it.
    fn may_use_stdin(&mut self, i: usize) -> bool {
        if self.stdin.is_none() {
            return false;
        }
        if !self.stdin_claimed {
            self.stdin_claimed = true;
            self.clients[i].owns_stdin = true;
        }
        self.clients[i].owns_stdin || !self.stdin_once
    }

    fn drop_client(&mut self, i: usize) {
        let client = self.clients.remove(i);
        if client.owns_stdin && self.stdin_once {
            self.close_stdin();
        }
    }

    /// Closes the container's stdin once what is pending is written (or lost).
    fn close_stdin(&mut self) {
        self.flush_stdin();
        self.pending.clear();
        self.stdin = None;
    }

    /// Writes pending stdin as far as the container takes it.
    pub fn flush_stdin(&mut self) {
        let Some(fd) = &self.stdin else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            match nix::unistd::write(fd, &self.pending) {
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(_) => {
                    // The reader is gone: nobody will read stdin again.
                    self.pending.clear();
                    self.stdin = None;
                    return;
                }
            }
        }
    }

    /// Sends output to every client; drops the ones that do not take it.
    pub fn broadcast(&mut self, channel: u8, data: &[u8]) {
        use std::io::Write;
        if self.clients.is_empty() || data.is_empty() {
            return;
        }
        let frame = encode(channel, data);
        let mut gone = Vec::new();
        for (i, client) in self.clients.iter_mut().enumerate() {
            if client.stream.write_all(&frame).is_err() {
                gone.push(i);
            }
        }
        for i in gone.into_iter().rev() {
            self.drop_client(i);
        }
    }

    /// Ends every attachment (the container's output is over) and the stdin.
    pub fn close(&mut self) {
        self.clients.clear();
        self.stdin = None;
        self.terminal = None;
    }
}

#[cfg(test)]
impl Hub {
    /// Whether client `i` has bytes waiting (tests drive `on_ready` by hand).
    fn client_has_data(&self, i: usize) -> bool {
        let mut byte = [0u8; 1];
        self.clients.get(i).is_some_and(|c| {
            use nix::sys::socket::{recv, MsgFlags};
            let flags = MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT;
            matches!(recv(c.stream.as_raw_fd(), &mut byte, flags), Ok(n) if n > 0)
        })
    }
}

fn set_nonblocking(fd: &impl std::os::fd::AsFd) -> std::io::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
    fcntl(fd.as_fd(), FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_in_pieces() {
        let mut wire = encode(STDOUT, b"hello");
        wire.extend(encode(CLOSE_STDIN, b""));
        wire.extend(encode(RESIZE, &resize_payload(80, 24)));
        let mut buffer = wire[..7].to_vec();
        assert_eq!(decode(&mut buffer).unwrap(), vec![]);
        buffer.extend_from_slice(&wire[7..]);
        let frames = decode(&mut buffer).unwrap();
        assert_eq!(frames[0], (STDOUT, b"hello".to_vec()));
        assert_eq!(frames[1], (CLOSE_STDIN, Vec::new()));
        assert_eq!(parse_resize(&frames[2].1), Some((80, 24)));
        assert!(buffer.is_empty());
        let mut huge = vec![STDIN, 0xff, 0xff, 0xff, 0xff];
        assert!(decode(&mut huge).is_err());
    }

    #[test]
    fn annotations_name_only_what_is_on() {
        let on = stdio_annotations(true, true, false);
        assert_eq!(
            on,
            vec![
                (STDIN_ANNOTATION.to_string(), "true".to_string()),
                (STDIN_ONCE_ANNOTATION.to_string(), "true".to_string())
            ]
        );
        assert!(stdio_annotations(false, true, false).is_empty());
        let map: std::collections::BTreeMap<String, String> = on.into_iter().collect();
        assert!(annotation_on(&map, STDIN_ANNOTATION));
        assert!(!annotation_on(&map, TTY_ANNOTATION));
    }

    /// Polls the hub until `done` or a few seconds passed.
    fn pump(hub: &mut Hub, mut done: impl FnMut(&mut Hub) -> bool) -> bool {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            let ready = vec![true; hub.poll_fds().len()];
            // Non-blocking listener; clients are read only when they sent something.
            let readable: Vec<bool> = ready
                .iter()
                .enumerate()
                .map(|(i, _)| i == 0 || hub.client_has_data(i - 1))
                .collect();
            hub.on_ready(&readable);
            if done(hub) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn the_hub_passes_input_on_and_closes_stdin_once() {
        use std::io::{Read, Write};
        let dir = tempfile::tempdir().expect("tempdir");
        let (read_end, write_end) = nix::unistd::pipe().expect("pipe");
        let mut hub = Hub::bind(dir.path(), Some(write_end), true, None).expect("bind");
        let (_handle, path) = short_path(dir.path()).expect("path");
        let mut first = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        assert!(pump(&mut hub, |h| h.clients.len() == 1));
        first.write_all(&encode(STDIN, b"hello\n")).expect("write");
        assert!(pump(&mut hub, |h| h.stdin_claimed && h.pending.is_empty()));
        let mut second = std::os::unix::net::UnixStream::connect(&path).expect("connect");
        assert!(pump(&mut hub, |h| h.clients.len() == 2));
        // Only the first client feeds a stdinOnce container.
        second
            .write_all(&encode(STDIN, b"ignored\n"))
            .expect("write");
        first.write_all(&encode(CLOSE_STDIN, b"")).expect("write");
        assert!(pump(&mut hub, |h| h.stdin.is_none()));
        let mut input = String::new();
        std::fs::File::from(read_end)
            .read_to_string(&mut input)
            .expect("read");
        assert_eq!(input, "hello\n");
        // Output goes to every client still attached.
        hub.broadcast(STDOUT, b"out");
        let mut buffer = vec![0u8; 8];
        second.read_exact(&mut buffer).expect("read");
        assert_eq!(
            decode(&mut buffer).expect("frame"),
            vec![(STDOUT, b"out".to_vec())]
        );
        hub.close();
        let mut rest = Vec::new();
        assert_eq!(second.read_to_end(&mut rest).expect("eof"), 0);
    }
}
