//! Compression detection by magic bytes and streaming decompression (gzip, zstd, or
//! none), shared by archive import and layer unpacking.

use std::io::{self, BufRead, Read};

use flate2::bufread::MultiGzDecoder;
use ruzstd::decoding::{FrameDecoder, StreamingDecoder};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const BZIP2_MAGIC: &[u8] = b"BZh";
const XZ_MAGIC: &[u8] = &[0xfd, b'7', b'z', b'X', b'Z', 0x00];
const LZ4_MAGIC: &[u8] = &[0x04, 0x22, 0x4d, 0x18];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

/// Looks at the start of a stream; bzip2, xz and lz4 are recognised only to be
/// refused with a clear message.
pub fn detect(head: &[u8]) -> Result<Compression, String> {
    if head.starts_with(GZIP_MAGIC) {
        Ok(Compression::Gzip)
    } else if head.starts_with(ZSTD_MAGIC) {
        Ok(Compression::Zstd)
    } else if head.starts_with(BZIP2_MAGIC) {
        Err("bzip2 compression is not supported (use gzip or zstd)".to_string())
    } else if head.starts_with(XZ_MAGIC) {
        Err("xz compression is not supported (use gzip or zstd)".to_string())
    } else if head.starts_with(LZ4_MAGIC) {
        Err("lz4 compression is not supported (use gzip or zstd)".to_string())
    } else {
        Ok(Compression::None)
    }
}

/// Detects the compression of `reader` and returns a reader of the decompressed
/// bytes, with what was detected.
pub fn decompress<'a, R: BufRead + 'a>(
    mut reader: R,
) -> io::Result<(Box<dyn Read + 'a>, Compression)> {
    let head = fill_at_least(&mut reader, 6)?;
    let compression = detect(&head).map_err(|m| io::Error::new(io::ErrorKind::InvalidData, m))?;
    let out: Box<dyn Read + 'a> = match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(ZstdReader::new(reader)?),
    };
    Ok((out, compression))
}

/// Peeks up to `n` bytes without consuming them (a BufRead may hand out fewer per
/// fill; that is fine for magic numbers of files this small).
fn fill_at_least<R: BufRead>(reader: &mut R, n: usize) -> io::Result<Vec<u8>> {
    let buf = reader.fill_buf()?;
    Ok(buf[..buf.len().min(n)].to_vec())
}

/// A zstd decoder that reads every concatenated frame, not only the first.
struct ZstdReader<R: BufRead> {
    decoder: Option<StreamingDecoder<R, FrameDecoder>>,
}

impl<R: BufRead> ZstdReader<R> {
    fn new(reader: R) -> io::Result<Self> {
        Ok(ZstdReader {
            decoder: Some(StreamingDecoder::new(reader).map_err(zstd_error)?),
        })
    }
}

fn zstd_error(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("zstd: {e}"))
}

impl<R: BufRead> Read for ZstdReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Ok(0);
            };
            let n = decoder.read(buf)?;
            if n > 0 || buf.is_empty() {
                return Ok(n);
            }
            // End of a frame: go on with the next one, if any.
            let Some(finished) = self.decoder.take() else {
                return Ok(0);
            };
            let mut source = finished.into_inner();
            if source.fill_buf()?.is_empty() {
                return Ok(0);
            }
            self.decoder = Some(StreamingDecoder::new(source).map_err(zstd_error)?);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    fn roundtrip(bytes: &[u8]) -> (Vec<u8>, Compression) {
        let (mut r, c) = decompress(io::BufReader::new(bytes)).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        (out, c)
    }

    #[test]
    fn detects_and_decompresses() {
        let data = b"hello layer".repeat(1000);
        assert_eq!(roundtrip(&data), (data.clone(), Compression::None));
        assert_eq!(roundtrip(&gzip(&data)), (data.clone(), Compression::Gzip));
        assert_eq!(roundtrip(&zstd(&data)), (data.clone(), Compression::Zstd));
        assert_eq!(roundtrip(b""), (Vec::new(), Compression::None));
    }

    #[test]
    fn reads_concatenated_members_and_frames() {
        let mut two = gzip(b"one ");
        two.extend(gzip(b"two"));
        assert_eq!(roundtrip(&two).0, b"one two");
        let mut frames = zstd(b"one ");
        frames.extend(zstd(b"two"));
        assert_eq!(roundtrip(&frames).0, b"one two");
    }

    #[test]
    fn refuses_unsupported_compression() {
        assert!(decompress(io::BufReader::new(&b"BZh91AY&SY"[..])).is_err());
        assert!(detect(XZ_MAGIC).is_err());
    }
}
