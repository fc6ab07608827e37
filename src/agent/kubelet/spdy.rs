//! SPDY/3.1 framing, as far as Kubernetes' streaming protocols use it (kubectl
//! port-forward over `SPDY/3.1` and `SPDY/3.1+portforward.k8s.io`): control frames
//! `SYN_STREAM`, `SYN_REPLY`, `RST_STREAM`, `SETTINGS`, `PING`, `GOAWAY`, `HEADERS`,
//! `WINDOW_UPDATE`, data frames, and the name/value header blocks, zlib-compressed
//! with the SPDY/3 dictionary in one context per direction.
//!
//! [`Decoder`] takes bytes as they arrive (any chunking) and yields whole frames;
//! [`Encoder`] turns frames into bytes. Both own their direction's zlib context, so
//! each connection has one of each.
//!
//! Header blocks we send are compressed without referring to the dictionary (a
//! zlib stream without a preset dictionary is valid for the reader, which primes
//! its window with the dictionary either way); blocks we receive may use it (Go's
//! writer does), so the inflater's window is primed with it.
//!
//! Owns: the wire format only. May call: flate2.

use std::fmt;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The protocol version in every control frame.
pub const VERSION: u16 = 3;
/// `FLAG_FIN` on data, `SYN_STREAM`, `SYN_REPLY` and `HEADERS` frames.
pub const FLAG_FIN: u8 = 0x01;
/// Control frame types.
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;
/// The largest frame payload (24-bit length).
pub const MAX_PAYLOAD: usize = 0x00ff_ffff;
/// `RST_STREAM` status codes we send.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;
pub const RST_CANCEL: u32 = 5;

/// The words of the SPDY/3 header dictionary (draft-mbelshe-httpbis-spdy-00,
/// section 2.6.10.1), each written as a 32-bit big-endian length and its bytes.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's tail, written as it is.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
    "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
    "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
    "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct ",
    "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
    "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,",
    "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The Adler-32 of the dictionary, which a zlib stream that uses it names.
pub const DICTIONARY_ID: u32 = 0xe3c6_a7c2;

/// The SPDY/3 header compression dictionary (1423 bytes).
pub fn dictionary() -> Vec<u8> {
    let mut out = Vec::with_capacity(1423);
    for word in DICTIONARY_WORDS {
        out.extend_from_slice(&(word.len() as u32).to_be_bytes());
        out.extend_from_slice(word.as_bytes());
    }
    out.extend_from_slice(DICTIONARY_TAIL.as_bytes());
    out
}

/// Header names (lowercase on the wire) and their values.
pub type Headers = Vec<(String, String)>;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream: u32,
        associated: u32,
        priority: u8,
        flags: u8,
        headers: Headers,
    },
    SynReply {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    RstStream {
        stream: u32,
        status: u32,
    },
    Settings {
        flags: u8,
        entries: Vec<(u8, u32, u32)>,
    },
    Ping(u32),
    GoAway {
        last_stream: u32,
        status: u32,
    },
    Headers {
        stream: u32,
        flags: u8,
        headers: Headers,
    },
    WindowUpdate {
        stream: u32,
        delta: u32,
    },
    Data {
        stream: u32,
        flags: u8,
        data: Vec<u8>,
    },
    /// A control frame of a type this codec does not know (skipped, as the spec says).
    Unknown {
        kind: u16,
    },
}

impl Frame {
    /// The value of header `name` (case-insensitive) of a frame that has headers.
    pub fn header(&self, name: &str) -> Option<&str> {
        let headers = match self {
            Frame::SynStream { headers, .. }
            | Frame::SynReply { headers, .. }
            | Frame::Headers { headers, .. } => headers,
            _ => return None,
        };
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A framing or compression error: the session cannot go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpdyError {
    #[error("spdy: unsupported version {0}")]
    Version(u16),
    #[error("spdy: {kind} frame too short ({len} bytes)")]
    Short { kind: &'static str, len: usize },
    #[error("spdy: header block: {0}")]
    HeaderBlock(String),
    #[error("spdy: frame payload of {0} bytes is over the limit")]
    TooLarge(usize),
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Parses frames out of a byte stream; keeps the inflater shared by all header
/// blocks of the stream.
pub struct Decoder {
    buffer: Vec<u8>,
    inflate: Inflater,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            buffer: Vec::new(),
            inflate: Inflater::new(),
        }
    }

    /// Adds bytes as they arrived.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, `None` until one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, SpdyError> {
        if self.buffer.len() < 8 {
            return Ok(None);
        }
        let length = (u32_at(&self.buffer, 4) & 0x00ff_ffff) as usize;
        if self.buffer.len() < 8 + length {
            return Ok(None);
        }
        let head: Vec<u8> = self.buffer[..8].to_vec();
        let payload: Vec<u8> = self.buffer[8..8 + length].to_vec();
        self.buffer.drain(..8 + length);
        let flags = head[4];
        if head[0] & 0x80 == 0 {
            return Ok(Some(Frame::Data {
                stream: u32_at(&head, 0) & 0x7fff_ffff,
                flags,
                data: payload,
            }));
        }
        let version = u16::from_be_bytes([head[0], head[1]]) & 0x7fff;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let need = |name: &'static str, min: usize| {
            if payload.len() < min {
                Err(SpdyError::Short {
                    kind: name,
                    len: payload.len(),
                })
            } else {
                Ok(())
            }
        };
        let stream = |at: usize| u32_at(&payload, at) & 0x7fff_ffff;
        let frame = match kind {
            SYN_STREAM => {
                need("SYN_STREAM", 10)?;
                Frame::SynStream {
                    stream: stream(0),
                    associated: stream(4),
                    priority: payload[8] >> 5,
                    flags,
                    headers: self.inflate.headers(&payload[10..])?,
                }
            }
            SYN_REPLY => {
                need("SYN_REPLY", 4)?;
                Frame::SynReply {
                    stream: stream(0),
                    flags,
                    headers: self.inflate.headers(&payload[4..])?,
                }
            }
            HEADERS => {
                need("HEADERS", 4)?;
                Frame::Headers {
                    stream: stream(0),
                    flags,
                    headers: self.inflate.headers(&payload[4..])?,
                }
            }
            RST_STREAM => {
                need("RST_STREAM", 8)?;
                Frame::RstStream {
                    stream: stream(0),
                    status: u32_at(&payload, 4),
                }
            }
            SETTINGS => {
                need("SETTINGS", 4)?;
                let count = u32_at(&payload, 0) as usize;
                need("SETTINGS", 4 + count.saturating_mul(8))?;
                let entries = (0..count)
                    .map(|i| {
                        let at = 4 + i * 8;
                        let id_word = u32_at(&payload, at);
                        (
                            (id_word >> 24) as u8,
                            id_word & 0x00ff_ffff,
                            u32_at(&payload, at + 4),
                        )
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            PING => {
                need("PING", 4)?;
                Frame::Ping(u32_at(&payload, 0))
            }
            GOAWAY => {
                need("GOAWAY", 4)?;
                Frame::GoAway {
                    last_stream: stream(0),
                    status: if payload.len() >= 8 {
                        u32_at(&payload, 4)
                    } else {
                        0
                    },
                }
            }
            WINDOW_UPDATE => {
                need("WINDOW_UPDATE", 8)?;
                Frame::WindowUpdate {
                    stream: stream(0),
                    delta: u32_at(&payload, 4) & 0x7fff_ffff,
                }
            }
            kind => Frame::Unknown { kind },
        };
        Ok(Some(frame))
    }
}

/// The receiving direction's zlib context.
struct Inflater {
    inner: Decompress,
    /// Bytes of the zlib header (2, plus 4 with a preset dictionary) still to skip.
    header: Option<Vec<u8>>,
}

impl Inflater {
    fn new() -> Inflater {
        // A raw inflater whose window holds the dictionary: it reads a stored block
        // of the dictionary first (the zlib header is handled by hand, below).
        let mut inner = Decompress::new(false);
        let dictionary = dictionary();
        let len = dictionary.len() as u16;
        let mut primer = vec![0x00];
        primer.extend_from_slice(&len.to_le_bytes());
        primer.extend_from_slice(&(!len).to_le_bytes());
        primer.extend_from_slice(&dictionary);
        let mut sink = vec![0u8; dictionary.len() + 16];
        let primed = inner.decompress(&primer, &mut sink, FlushDecompress::Sync);
        debug_assert!(primed.is_ok() && inner.total_out() == dictionary.len() as u64);
        Inflater {
            inner,
            header: Some(Vec::new()),
        }
    }

    /// Inflates one header block and parses it.
    fn headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let mut input = block;
        if let Some(seen) = self.header.as_mut() {
            // The stream's first bytes: CMF, FLG and, with FDICT, the dictionary id.
            while seen.len() < 2 && !input.is_empty() {
                seen.push(input[0]);
                input = &input[1..];
            }
            if seen.len() >= 2 {
                let (cmf, flg) = (seen[0], seen[1]);
                if cmf & 0x0f != 8 || (u16::from(cmf) << 8 | u16::from(flg)) % 31 != 0 {
                    return Err(SpdyError::HeaderBlock(format!(
                        "not a zlib stream (header {cmf:#04x} {flg:#04x})"
                    )));
                }
                let total = if flg & 0x20 != 0 { 6 } else { 2 };
                while seen.len() < total && !input.is_empty() {
                    seen.push(input[0]);
                    input = &input[1..];
                }
                if seen.len() == total {
                    if total == 6 && u32_at(seen, 2) != DICTIONARY_ID {
                        return Err(SpdyError::HeaderBlock(format!(
                            "unknown preset dictionary {:#010x}",
                            u32_at(seen, 2)
                        )));
                    }
                    self.header = None;
                }
            }
        }
        let mut out = Vec::new();
        let mut chunk = vec![0u8; 4096];
        loop {
            let before_in = self.inner.total_in();
            let before_out = self.inner.total_out();
            let status = self
                .inner
                .decompress(input, &mut chunk, FlushDecompress::Sync)
                .map_err(|e| SpdyError::HeaderBlock(format!("inflate: {e}")))?;
            let used = (self.inner.total_in() - before_in) as usize;
            let made = (self.inner.total_out() - before_out) as usize;
            out.extend_from_slice(&chunk[..made]);
            input = &input[used..];
            if out.len() > MAX_PAYLOAD {
                return Err(SpdyError::TooLarge(out.len()));
            }
            if status == Status::StreamEnd || (input.is_empty() && made < chunk.len()) {
                break;
            }
            if used == 0 && made == 0 {
                break;
            }
        }
        parse_headers(&out)
    }
}

/// Parses an inflated name/value block.
pub fn parse_headers(block: &[u8]) -> Result<Headers, SpdyError> {
    let bad = |what: &str| SpdyError::HeaderBlock(format!("truncated {what}"));
    let mut at = 0usize;
    let mut take = |n: usize, what: &str| -> Result<&[u8], SpdyError> {
        let slice = block.get(at..at + n).ok_or_else(|| bad(what))?;
        at += n;
        Ok(slice)
    };
    let count = u32_at(take(4, "pair count")?, 0) as usize;
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let len = u32_at(take(4, "name length")?, 0) as usize;
        let name = String::from_utf8_lossy(take(len, "name")?).to_lowercase();
        let len = u32_at(take(4, "value length")?, 0) as usize;
        let value = String::from_utf8_lossy(take(len, "value")?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

/// Writes a name/value block (uncompressed); names are lowercased.
pub fn write_headers(headers: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    for (name, value) in headers {
        let name = name.to_lowercase();
        out.extend_from_slice(&(name.len() as u32).to_be_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(&(value.len() as u32).to_be_bytes());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// Encodes frames; keeps the deflater shared by all header blocks it sends.
pub struct Encoder {
    deflate: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl fmt::Debug for Encoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encoder").finish()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        Encoder {
            deflate: Compress::new(Compression::default(), true),
        }
    }

    /// Compresses a header block, flushed so that it is readable on its own.
    fn compress(&mut self, headers: &[(String, String)]) -> Vec<u8> {
        let mut input: &[u8] = &write_headers(headers);
        let mut out = Vec::with_capacity(input.len() + 64);
        loop {
            out.reserve(input.len() + 64);
            let before = self.deflate.total_in();
            // Writing into a Vec's spare capacity cannot fail.
            let _ = self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync);
            let used = (self.deflate.total_in() - before) as usize;
            input = &input[used..];
            // Sync-flushed output ends with the empty stored block 00 00 ff ff.
            if input.is_empty() && out.ends_with(&[0x00, 0x00, 0xff, 0xff]) {
                return out;
            }
        }
    }

    /// The bytes of one frame.
    pub fn encode(&mut self, frame: &Frame) -> Vec<u8> {
        let control = |kind: u16, flags: u8, payload: Vec<u8>| {
            let mut out = Vec::with_capacity(8 + payload.len());
            out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&((u32::from(flags) << 24) | payload.len() as u32).to_be_bytes());
            out.extend_from_slice(&payload);
            out
        };
        match frame {
            Frame::Data {
                stream,
                flags,
                data,
            } => {
                let mut out = Vec::with_capacity(8 + data.len());
                out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(
                    &((u32::from(*flags) << 24) | data.len() as u32).to_be_bytes(),
                );
                out.extend_from_slice(data);
                out
            }
            Frame::SynStream {
                stream,
                associated,
                priority,
                flags,
                headers,
            } => {
                let mut payload = Vec::new();
                payload.extend_from_slice(&stream.to_be_bytes());
                payload.extend_from_slice(&associated.to_be_bytes());
                payload.push(priority << 5);
                payload.push(0);
                payload.extend_from_slice(&self.compress(headers));
                control(SYN_STREAM, *flags, payload)
            }
            Frame::SynReply {
                stream,
                flags,
                headers,
            } => {
                let mut payload = stream.to_be_bytes().to_vec();
                payload.extend_from_slice(&self.compress(headers));
                control(SYN_REPLY, *flags, payload)
            }
            Frame::Headers {
                stream,
                flags,
                headers,
            } => {
                let mut payload = stream.to_be_bytes().to_vec();
                payload.extend_from_slice(&self.compress(headers));
                control(HEADERS, *flags, payload)
            }
            Frame::RstStream { stream, status } => {
                let mut payload = stream.to_be_bytes().to_vec();
                payload.extend_from_slice(&status.to_be_bytes());
                control(RST_STREAM, 0, payload)
            }
            Frame::Settings { flags, entries } => {
                let mut payload = (entries.len() as u32).to_be_bytes().to_vec();
                for (entry_flags, id, value) in entries {
                    payload
                        .extend_from_slice(&((u32::from(*entry_flags) << 24) | id).to_be_bytes());
                    payload.extend_from_slice(&value.to_be_bytes());
                }
                control(SETTINGS, *flags, payload)
            }
            Frame::Ping(id) => control(PING, 0, id.to_be_bytes().to_vec()),
            Frame::GoAway {
                last_stream,
                status,
            } => {
                let mut payload = last_stream.to_be_bytes().to_vec();
                payload.extend_from_slice(&status.to_be_bytes());
                control(GOAWAY, 0, payload)
            }
            Frame::WindowUpdate { stream, delta } => {
                let mut payload = stream.to_be_bytes().to_vec();
                payload.extend_from_slice(&delta.to_be_bytes());
                control(WINDOW_UPDATE, 0, payload)
            }
            Frame::Unknown { kind } => control(*kind, 0, Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use flate2::Compress;

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn adler32(bytes: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for byte in bytes {
            a = (a + u32::from(*byte)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn the_dictionary_is_the_one_the_spec_names() {
        let dictionary = dictionary();
        assert_eq!(dictionary.len(), 1423);
        assert_eq!(adler32(&dictionary), DICTIONARY_ID);
        assert!(dictionary.starts_with(b"\x00\x00\x00\x07options\x00\x00\x00\x04head"));
    }

    #[test]
    fn frames_round_trip_through_one_shared_context() {
        let mut encoder = Encoder::new();
        let mut decoder = Decoder::new();
        let frames = vec![
            Frame::SynStream {
                stream: 1,
                associated: 0,
                priority: 0,
                flags: 0,
                headers: headers(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::Data {
                stream: 1,
                flags: FLAG_FIN,
                data: Vec::new(),
            },
            Frame::SynStream {
                stream: 3,
                associated: 0,
                priority: 2,
                flags: 0,
                headers: headers(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream: 3,
                flags: 0,
                headers: Vec::new(),
            },
            Frame::Data {
                stream: 3,
                flags: 0,
                data: b"GET / HTTP/1.1\r\n\r\n".to_vec(),
            },
            Frame::RstStream {
                stream: 5,
                status: RST_CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, 7, 65536), (1, 4, 100)],
            },
            Frame::Ping(7),
            Frame::GoAway {
                last_stream: 3,
                status: 0,
            },
            Frame::Headers {
                stream: 3,
                flags: FLAG_FIN,
                headers: headers(&[("x", "y\0z")]),
            },
            Frame::WindowUpdate {
                stream: 3,
                delta: 1 << 20,
            },
        ];
        let mut wire = Vec::new();
        for frame in &frames {
            wire.extend(encoder.encode(frame));
        }
        // Arriving a few bytes at a time changes nothing.
        let mut decoded = Vec::new();
        for chunk in wire.chunks(5) {
            decoder.push(chunk);
            while let Some(frame) = decoder.next_frame().expect("decode") {
                decoded.push(frame);
            }
        }
        assert_eq!(decoded, frames);
        assert_eq!(decoded[2].header("StreamType"), Some("data"));
        assert_eq!(decoded[2].header("nope"), None);
    }

    #[test]
    fn header_blocks_that_use_the_dictionary_are_read() {
        // What Go's writer does: a zlib stream with FDICT set and the dictionary
        // preset, sync-flushed per block.
        let mut deflate = Compress::new(Compression::default(), false);
        let block = write_headers(&headers(&[
            ("streamtype", "data"),
            ("port", "8080"),
            ("requestid", "1"),
            ("content-type", "text/plain"),
        ]));
        // A preset dictionary is the window the block starts with: deflating the
        // dictionary first (output dropped) makes the block's output refer into it.
        let mut primed = Vec::new();
        let dictionary = dictionary();
        let _ = deflate.compress_vec(
            &dictionary,
            &mut Vec::with_capacity(4096),
            FlushCompress::Sync,
        );
        primed.reserve(4096);
        let _ = deflate.compress_vec(&block, &mut primed, FlushCompress::Sync);
        let mut stream = vec![0x78, 0xbb];
        stream.extend_from_slice(&DICTIONARY_ID.to_be_bytes());
        stream.extend_from_slice(&primed);
        let mut payload = 1u32.to_be_bytes().to_vec();
        payload.extend_from_slice(&stream);
        let mut frame = vec![0x80, 0x03, 0x00, 0x02];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        let mut decoder = Decoder::new();
        decoder.push(&frame);
        let frame = decoder.next_frame().expect("decode").expect("a frame");
        assert_eq!(frame.header("port"), Some("8080"));
        assert_eq!(frame.header("content-type"), Some("text/plain"));
    }

    #[test]
    fn broken_input_is_an_error() {
        let mut decoder = Decoder::new();
        decoder.push(&[0x80, 0x02, 0x00, 0x01, 0, 0, 0, 0]);
        assert_eq!(decoder.next_frame(), Err(SpdyError::Version(2)));
        let mut decoder = Decoder::new();
        decoder.push(&[0x80, 0x03, 0x00, 0x06, 0, 0, 0, 2, 0, 0]);
        assert!(matches!(
            decoder.next_frame(),
            Err(SpdyError::Short { kind: "PING", .. })
        ));
        let mut decoder = Decoder::new();
        decoder.push(&[0x80, 0x03, 0x00, 0x02, 0, 0, 0, 6, 0, 0, 0, 1, 0x12, 0x34]);
        assert!(matches!(
            decoder.next_frame(),
            Err(SpdyError::HeaderBlock(_))
        ));
        // Incomplete frames wait for more bytes.
        let mut decoder = Decoder::new();
        decoder.push(&[0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x04, b'a']);
        assert_eq!(decoder.next_frame(), Ok(None));
        decoder.push(b"bcd");
        assert_eq!(
            decoder.next_frame(),
            Ok(Some(Frame::Data {
                stream: 1,
                flags: 0,
                data: b"abcd".to_vec()
            }))
        );
    }
}
