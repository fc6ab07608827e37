//! Container logs in the CRI format kubelet and `kubectl logs` read:
//! `2016-10-06T00:17:09.669794202Z stdout F message` — a timestamp, the stream, `F`
//! for a full line or `P` for a part of a longer one, and the text without its
//! newline. Files rotate by size to `<log>.1`, `<log>.2`, ….

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};

use super::config::LogConfig;

/// Lines longer than this are split into `P` entries (containerd's default).
pub const MAX_LINE_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// One log entry: a full line, or a part of a line that goes on in the next entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub text: Vec<u8>,
    pub partial: bool,
}

/// Cuts a byte stream into entries: one per line, long lines in `max_line` pieces.
#[derive(Debug)]
pub struct LineSplitter {
    pending: Vec<u8>,
    max_line: usize,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> LineSplitter {
        LineSplitter {
            pending: Vec::new(),
            max_line: max_line.max(1),
        }
    }

    /// The entries completed by `data`; an unfinished line waits for more.
    pub fn push(&mut self, data: &[u8]) -> Vec<Entry> {
        self.pending.extend_from_slice(data);
        let mut entries = Vec::new();
        loop {
            let newline = self.pending.iter().position(|&b| b == b'\n');
            match newline {
                Some(end) if end <= self.max_line => {
                    let mut line: Vec<u8> = self.pending.drain(..=end).collect();
                    line.pop();
                    entries.push(Entry {
                        text: line,
                        partial: false,
                    });
                }
                _ if self.pending.len() > self.max_line => {
                    let piece = self.pending.drain(..self.max_line).collect();
                    entries.push(Entry {
                        text: piece,
                        partial: true,
                    });
                }
                _ => return entries,
            }
        }
    }

    /// At end of stream: what is left, as a full line (the stream ended it).
    pub fn finish(&mut self) -> Option<Entry> {
        if self.pending.is_empty() {
            return None;
        }
        Some(Entry {
            text: std::mem::take(&mut self.pending),
            partial: false,
        })
    }
}

/// Formats one CRI log line, newline included.
pub fn format_line(time: DateTime<Utc>, stream: Stream, entry: &Entry) -> Vec<u8> {
    let tag = if entry.partial { 'P' } else { 'F' };
    let mut line = format!(
        "{} {} {} ",
        time.format("%Y-%m-%dT%H:%M:%S%.9fZ"),
        stream.name(),
        tag
    )
    .into_bytes();
    line.extend_from_slice(&entry.text);
    line.push(b'\n');
    line
}

/// Appends CRI lines to a container's log file, rotating it by size.
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    file: File,
    size: u64,
}

impl LogWriter {
    /// Opens (creating it and its directory) the log file for appending.
    pub fn open(config: &LogConfig) -> std::io::Result<LogWriter> {
        if let Some(dir) = config.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = open_append(&config.path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: config.path.clone(),
            max_bytes: config.max_bytes.max(1),
            max_files: config.max_files,
            file,
            size,
        })
    }

    /// Writes one entry, rotating first when it would not fit.
    pub fn write(
        &mut self,
        time: DateTime<Utc>,
        stream: Stream,
        entry: &Entry,
    ) -> std::io::Result<()> {
        let line = format_line(time, stream, entry);
        if self.size > 0 && self.size + line.len() as u64 > self.max_bytes {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// `<log>.(n-2)` → `<log>.(n-1)`, …, `<log>` → `<log>.1`, then a new `<log>`; the
    /// oldest file falls off. With one file, the log starts over.
    fn rotate(&mut self) -> std::io::Result<()> {
        let keep = self.max_files.saturating_sub(1);
        if keep > 0 {
            remove_if_exists(&rotated(&self.path, keep))?;
            for n in (1..keep).rev() {
                rename_if_exists(&rotated(&self.path, n), &rotated(&self.path, n + 1))?;
            }
            std::fs::rename(&self.path, rotated(&self.path, 1))?;
        } else {
            remove_if_exists(&self.path)?;
        }
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// `<log>.<n>`.
pub fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> std::io::Result<()> {
    match std::fs::rename(from, to) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn full(text: &str) -> Entry {
        Entry {
            text: text.as_bytes().to_vec(),
            partial: false,
        }
    }

    fn part(text: &str) -> Entry {
        Entry {
            text: text.as_bytes().to_vec(),
            partial: true,
        }
    }

    #[test]
    fn lines_are_split_at_newlines_across_reads() {
        let mut splitter = LineSplitter::new(100);
        assert_eq!(splitter.push(b"hel"), vec![]);
        assert_eq!(splitter.push(b"lo\nwor"), vec![full("hello")]);
        assert_eq!(splitter.push(b"ld\n\nx"), vec![full("world"), full("")]);
        assert_eq!(splitter.finish(), Some(full("x")));
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn long_lines_become_partial_entries() {
        let mut splitter = LineSplitter::new(4);
        assert_eq!(
            splitter.push(b"abcdefghij\nxy"),
            vec![part("abcd"), part("efgh"), full("ij")]
        );
        assert_eq!(splitter.push(b"zw\n"), vec![full("xyzw")]);
    }

    #[test]
    fn cri_line_format() {
        let time = Utc
            .timestamp_opt(1_475_713_029, 669_794_202)
            .single()
            .expect("time");
        let line = format_line(time, Stream::Stdout, &full("hello"));
        assert_eq!(
            String::from_utf8(line).expect("utf8"),
            "2016-10-06T00:17:09.669794202Z stdout F hello\n"
        );
        let line = format_line(time, Stream::Stderr, &part("he"));
        assert!(String::from_utf8(line)
            .expect("utf8")
            .ends_with("Z stderr P he\n"));
    }

    #[test]
    fn files_rotate_by_size_and_the_oldest_falls_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("pods/p/c/0.log");
        let config = LogConfig {
            path: path.clone(),
            max_bytes: 60,
            max_files: 3,
        };
        let mut writer = LogWriter::open(&config).expect("open");
        let now = Utc::now();
        for i in 0..8 {
            // Each line is 30 + 10 + 9 + 1 = 50 bytes, so every file holds one.
            writer
                .write(now, Stream::Stdout, &full(&format!("line {i:04}")))
                .expect("write");
        }
        let read = |p: &Path| std::fs::read_to_string(p).expect("read");
        assert!(read(&path).ends_with("line 0007\n"));
        assert!(read(&rotated(&path, 1)).ends_with("line 0006\n"));
        assert!(read(&rotated(&path, 2)).ends_with("line 0005\n"));
        assert!(!rotated(&path, 3).exists());
        assert_eq!(read(&path).lines().count(), 1);
    }

    #[test]
    fn one_file_starts_over_and_reopening_appends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let config = LogConfig {
            path: path.clone(),
            max_bytes: 100,
            max_files: 1,
        };
        let now = Utc::now();
        {
            let mut writer = LogWriter::open(&config).expect("open");
            writer
                .write(now, Stream::Stdout, &full("a"))
                .expect("write");
        }
        let mut writer = LogWriter::open(&config).expect("reopen");
        writer
            .write(now, Stream::Stdout, &full("b"))
            .expect("write");
        assert_eq!(
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count(),
            2
        );
        writer
            .write(now, Stream::Stdout, &full("c"))
            .expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.lines().count(), 1);
        assert!(text.ends_with(" stdout F c\n"));
        assert!(!rotated(&path, 1).exists());
    }
}
