//! `GET /containerLogs/{namespace}/{pod}/{container}`: a container's CRI log file
//! (see `runtime::logs`) as the plain text `kubectl logs` prints.
//!
//! Entries are joined into lines (`P` parts up to their `F`), the rotated files
//! `<log>.N` … `<log>.1` come before the live one, and the query narrows the output
//! as the kubelet does: `sinceSeconds`/`sinceTime` drop lines that began earlier,
//! `tailLines` keeps the last N lines, `timestamps` prefixes each line with its
//! RFC 3339 time, `limitBytes` cuts the output. With `follow` the live file is polled
//! (following its rotation) until the client goes away, or the container stops
//! running or is replaced by a new run with another log file.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, FixedOffset, Utc};

use crate::runtime::logs::rotated;

/// How often a followed log is polled for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(100);
/// How often a follower checks that the container still runs with this log.
const FOLLOW_CHECK: Duration = Duration::from_secs(1);
/// The most rotated files looked for.
const MAX_ROTATED: u32 = 100;
/// Output is sent in chunks of about this size.
const CHUNK: usize = 32 * 1024;

/// The query of a log request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<usize>,
    /// Only lines that began at or after this time.
    pub since: Option<DateTime<Utc>>,
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    /// Parses the query parameters (`now` anchors `sinceSeconds`). Unknown
    /// parameters are ignored, as Kubernetes does.
    pub fn parse(query: &str, now: DateTime<Utc>) -> Result<LogOptions, String> {
        let mut options = LogOptions::default();
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            let value = value.as_ref();
            match key.as_ref() {
                "follow" => options.follow = flag(&key, value)?,
                "previous" => options.previous = flag(&key, value)?,
                "timestamps" => options.timestamps = flag(&key, value)?,
                "tailLines" => {
                    let n: i64 = number(&key, value)?;
                    // Negative means "all", as with kubectl's default --tail=-1.
                    options.tail_lines = usize::try_from(n).ok();
                }
                "limitBytes" => {
                    let n: i64 = number(&key, value)?;
                    if n <= 0 {
                        return Err(format!("limitBytes {value:?} must be greater than 0"));
                    }
                    options.limit_bytes = Some(n as u64);
                }
                "sinceSeconds" => {
                    let n: i64 = number(&key, value)?;
                    if n <= 0 {
                        return Err(format!("sinceSeconds {value:?} must be greater than 0"));
                    }
                    options.since = Some(now - chrono::Duration::seconds(n));
                }
                "sinceTime" => {
                    let time = DateTime::parse_from_rfc3339(value)
                        .map_err(|e| format!("invalid sinceTime {value:?}: {e}"))?;
                    options.since = Some(time.with_timezone(&Utc));
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

fn flag(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "" | "true" | "1" | "True" => Ok(true),
        "false" | "0" | "False" => Ok(false),
        _ => Err(format!("invalid {key} {value:?}: expected true or false")),
    }
}

fn number(key: &str, value: &str) -> Result<i64, String> {
    value
        .parse()
        .map_err(|_| format!("invalid {key} {value:?}: expected an integer"))
}

/// One CRI log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriEntry<'a> {
    pub time: DateTime<FixedOffset>,
    pub stream: &'a str,
    pub partial: bool,
    pub text: &'a [u8],
}

/// Parses `<time> <stream> <P|F> <text>` (newline already removed). Lines without a
/// tag count as full lines, as older CRI writers made them.
pub fn parse_entry(line: &[u8]) -> Option<CriEntry<'_>> {
    let (time, rest) = split_space(line)?;
    let time = DateTime::parse_from_rfc3339(std::str::from_utf8(time).ok()?).ok()?;
    let (stream, rest) = split_space(rest).unwrap_or((rest, &[]));
    let stream = std::str::from_utf8(stream).ok()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    let (partial, text) = match split_space(rest) {
        Some((b"P", text)) => (true, text),
        Some((b"F", text)) => (false, text),
        _ if rest == b"P" => (true, &[][..]),
        _ if rest == b"F" => (false, &[][..]),
        _ => (false, rest),
    };
    Some(CriEntry {
        time,
        stream,
        partial,
        text,
    })
}

fn split_space(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == b' ')?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

/// RFC 3339 with nanoseconds, trailing zeros trimmed (Go's `RFC3339Nano`).
pub fn rfc3339_nano(time: DateTime<FixedOffset>) -> String {
    let utc = time.with_timezone(&Utc);
    let nanos = format!("{:09}", utc.timestamp_subsec_nanos());
    let nanos = nanos.trim_end_matches('0');
    let fraction = if nanos.is_empty() {
        String::new()
    } else {
        format!(".{nanos}")
    };
    format!("{}{fraction}Z", utc.format("%Y-%m-%dT%H:%M:%S"))
}

/// Turns CRI entries into output lines: parts joined, filtered by time, prefixed
/// with the time when asked.
#[derive(Debug)]
struct Lines {
    since: Option<DateTime<Utc>>,
    timestamps: bool,
    /// The line being assembled from `P` parts, `None` when it is filtered out.
    pending: Option<Vec<u8>>,
    in_line: bool,
}

impl Lines {
    fn new(options: &LogOptions) -> Lines {
        Lines {
            since: options.since,
            timestamps: options.timestamps,
            pending: None,
            in_line: false,
        }
    }

    /// Feeds one file line; returns a finished output line.
    fn push(&mut self, raw: &[u8]) -> Option<Vec<u8>> {
        let entry = parse_entry(raw)?;
        if !self.in_line {
            self.in_line = true;
            let wanted = self.since.is_none_or(|since| entry.time >= since);
            self.pending = wanted.then(|| {
                let mut line = Vec::new();
                if self.timestamps {
                    line.extend_from_slice(rfc3339_nano(entry.time).as_bytes());
                    line.push(b' ');
                }
                line
            });
        }
        if let Some(line) = self.pending.as_mut() {
            line.extend_from_slice(entry.text);
        }
        if entry.partial {
            return None;
        }
        self.in_line = false;
        let mut line = self.pending.take()?;
        line.push(b'\n');
        Some(line)
    }

    /// At the end of a finite read: the unfinished line, as it is.
    fn finish(&mut self) -> Option<Vec<u8>> {
        self.in_line = false;
        self.pending.take().filter(|l| !l.is_empty())
    }
}

/// Where output goes: chunked, cut at `limitBytes`. `send` returns false once the
/// client is gone.
struct Sink<'a> {
    send: &'a mut dyn FnMut(Bytes) -> bool,
    buffer: Vec<u8>,
    left: Option<u64>,
    open: bool,
}

impl<'a> Sink<'a> {
    fn new(send: &'a mut dyn FnMut(Bytes) -> bool, limit: Option<u64>) -> Sink<'a> {
        Sink {
            send,
            buffer: Vec::new(),
            left: limit,
            open: true,
        }
    }

    /// Whether more output is wanted.
    fn wants_more(&self) -> bool {
        self.open && self.left != Some(0)
    }

    fn write(&mut self, line: &[u8]) {
        if !self.wants_more() {
            return;
        }
        let take = match self.left {
            Some(left) => {
                let take = line.len().min(left as usize);
                self.left = Some(left - take as u64);
                take
            }
            None => line.len(),
        };
        self.buffer.extend_from_slice(&line[..take]);
        if self.buffer.len() >= CHUNK || self.left == Some(0) {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if !self.buffer.is_empty() && self.open {
            let chunk = Bytes::from(std::mem::take(&mut self.buffer));
            self.open = (self.send)(chunk);
        }
    }
}

/// The files of a log, oldest first: `<log>.N` … `<log>.1` (those that exist), then
/// the live file.
pub fn log_files(path: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = (1..=MAX_ROTATED)
        .map(|n| rotated(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    files
}

/// Whether a follower should keep going: the container still runs and still
/// writes this log file.
pub type StillWriting<'a> = &'a mut dyn FnMut() -> bool;

/// Writes a log to `send` as `options` ask; with `follow`, keeps going while
/// `still_writing` says so and the client listens. `send` returns false once the
/// client is gone; an empty chunk only asks that (a follower sends one every poll).
/// Blocking: run it on a blocking thread.
pub fn stream_log(
    path: &Path,
    options: &LogOptions,
    send: &mut dyn FnMut(Bytes) -> bool,
    still_writing: StillWriting<'_>,
) -> std::io::Result<()> {
    let mut sink = Sink::new(send, options.limit_bytes);
    let mut lines = Lines::new(options);
    let mut tail = options.tail_lines.map(Tail::new);
    let files = log_files(path);
    let (rotated_files, live) = files.split_at(files.len() - 1);
    for file in rotated_files {
        let Ok(handle) = File::open(file) else {
            continue;
        };
        read_lines(BufReader::new(handle), &mut |raw| {
            emit(lines.push(raw), &mut tail, &mut sink)
        })?;
    }
    let live = match File::open(&live[0]) {
        Ok(handle) => Some(handle),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let mut reader = live.map(BufReader::new);
    let mut leftover = Vec::new();
    if let Some(reader) = reader.as_mut() {
        leftover = read_complete_lines(reader, &mut |raw| {
            emit(lines.push(raw), &mut tail, &mut sink)
        })?;
    }
    if let Some(tail) = tail.take() {
        for line in tail.lines {
            sink.write(&line);
        }
    }
    if options.follow {
        follow(path, reader, leftover, &mut lines, &mut sink, still_writing)?;
    } else {
        if !leftover.is_empty() {
            emit(lines.push(&leftover), &mut None, &mut sink);
        }
        emit(lines.finish(), &mut None, &mut sink);
    }
    sink.flush();
    Ok(())
}

/// The last N lines.
struct Tail {
    keep: usize,
    lines: VecDeque<Vec<u8>>,
}

impl Tail {
    fn new(keep: usize) -> Tail {
        Tail {
            keep,
            lines: VecDeque::new(),
        }
    }
}

/// Sends a finished line (or keeps it for the tail); tells whether to go on.
fn emit(line: Option<Vec<u8>>, tail: &mut Option<Tail>, sink: &mut Sink<'_>) -> bool {
    if let Some(line) = line {
        match tail {
            Some(tail) => {
                tail.lines.push_back(line);
                if tail.lines.len() > tail.keep {
                    tail.lines.pop_front();
                }
            }
            None => sink.write(&line),
        }
    }
    sink.wants_more()
}

/// Every line of a finished file (the last one even without its newline).
fn read_lines(
    mut reader: impl BufRead,
    each: &mut dyn FnMut(&[u8]) -> bool,
) -> std::io::Result<()> {
    let rest = read_complete_lines(&mut reader, each)?;
    if !rest.is_empty() {
        each(&rest);
    }
    Ok(())
}

/// The complete lines available now; returns the unfinished rest.
fn read_complete_lines(
    reader: &mut impl BufRead,
    each: &mut dyn FnMut(&[u8]) -> bool,
) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(Vec::new());
        }
        if line.last() != Some(&b'\n') {
            return Ok(line);
        }
        line.pop();
        if !each(&line) {
            return Ok(Vec::new());
        }
    }
}

/// Polls the live file for new lines, moving to the new file when it rotates, until
/// the container stops writing it or the client leaves.
fn follow(
    path: &Path,
    mut reader: Option<BufReader<File>>,
    mut pending: Vec<u8>,
    lines: &mut Lines,
    sink: &mut Sink<'_>,
    still_writing: StillWriting<'_>,
) -> std::io::Result<()> {
    let mut last_check = Instant::now();
    let mut stopping = false;
    loop {
        if let Some(r) = reader.as_mut() {
            pending = read_more(r, pending, &mut |raw| {
                emit(lines.push(raw), &mut None, sink)
            })?;
        }
        sink.flush();
        if !sink.wants_more() || stopping {
            return Ok(());
        }
        if rotated_away(path, reader.as_ref()) {
            // Whatever the writer added before the rename is read above; the next
            // round reads it again to be sure, then switches.
            if let Some(r) = reader.as_mut() {
                pending = read_more(r, pending, &mut |raw| {
                    emit(lines.push(raw), &mut None, sink)
                })?;
            }
            reader = File::open(path).ok().map(BufReader::new);
            pending.clear();
            continue;
        }
        if last_check.elapsed() >= FOLLOW_CHECK {
            last_check = Instant::now();
            // One more read after the container stopped, for its last words.
            stopping = !still_writing();
            if stopping {
                continue;
            }
        }
        std::thread::sleep(FOLLOW_POLL);
        // An empty chunk asks whether the client still listens (see `stream_log`).
        if !(sink.send)(Bytes::new()) {
            return Ok(());
        }
    }
}

/// Reads the complete lines that arrived, keeping an unfinished one for later.
fn read_more(
    reader: &mut BufReader<File>,
    mut pending: Vec<u8>,
    each: &mut dyn FnMut(&[u8]) -> bool,
) -> std::io::Result<Vec<u8>> {
    let rest = read_complete_lines(reader, &mut |raw| {
        if pending.is_empty() {
            each(raw)
        } else {
            pending.extend_from_slice(raw);
            let line = std::mem::take(&mut pending);
            each(&line)
        }
    })?;
    pending.extend_from_slice(&rest);
    Ok(pending)
}

/// Whether the file at `path` is no longer the one being read (rotated, replaced,
/// or there is none yet and one appeared).
fn rotated_away(path: &Path, reader: Option<&BufReader<File>>) -> bool {
    let current = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
    let open = reader
        .and_then(|r| r.get_ref().metadata().ok())
        .map(|m| (m.dev(), m.ino()));
    current.is_some() && current != open
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const T0: &str = "2024-05-01T10:00:00.100000000Z";
    const T1: &str = "2024-05-01T10:00:01.000000000Z";
    const T2: &str = "2024-05-01T10:00:02.123456789Z";

    fn at(seconds: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, 1, 10, 0, seconds)
            .single()
            .expect("time")
    }

    fn sample() -> String {
        format!("{T0} stdout F first\n{T1} stderr P sec\n{T1} stderr F ond\n{T2} stdout F third\n")
    }

    fn read(path: &Path, options: &LogOptions) -> String {
        let mut out = Vec::new();
        let mut send = |chunk: Bytes| {
            out.extend_from_slice(&chunk);
            true
        };
        stream_log(path, options, &mut send, &mut || false).expect("stream");
        String::from_utf8(out).expect("utf8")
    }

    fn write_log(dir: &Path, files: &[(&str, &str)]) -> PathBuf {
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write");
        }
        dir.join("0.log")
    }

    #[test]
    fn entries_parse_and_times_print_like_go() {
        let entry = parse_entry(b"2024-05-01T10:00:00.1Z stdout P a b").expect("entry");
        assert_eq!(
            (entry.stream, entry.partial, entry.text),
            ("stdout", true, &b"a b"[..])
        );
        let line = format!("{T0} stderr F ");
        let empty = parse_entry(line.as_bytes()).expect("entry");
        assert_eq!((empty.partial, empty.text), (false, &b""[..]));
        assert!(parse_entry(b"garbage").is_none());
        assert!(parse_entry(format!("{T0} stdin F x").as_bytes()).is_none());
        let time = |s: &str| DateTime::parse_from_rfc3339(s).expect("time");
        assert_eq!(rfc3339_nano(time(T0)), "2024-05-01T10:00:00.1Z");
        assert_eq!(rfc3339_nano(time(T1)), "2024-05-01T10:00:01Z");
        assert_eq!(rfc3339_nano(time(T2)), "2024-05-01T10:00:02.123456789Z");
        assert_eq!(
            rfc3339_nano(time("2024-05-01T12:00:00+02:00")),
            "2024-05-01T10:00:00Z"
        );
    }

    #[test]
    fn query_parsing() {
        let now = at(30);
        let o = LogOptions::parse(
            "follow=true&tailLines=2&timestamps=true&limitBytes=10&x=y&sinceSeconds=10",
            now,
        )
        .expect("parse");
        assert_eq!(
            o,
            LogOptions {
                follow: true,
                previous: false,
                timestamps: true,
                tail_lines: Some(2),
                since: Some(at(20)),
                limit_bytes: Some(10),
            }
        );
        let o = LogOptions::parse("sinceTime=2024-05-01T10%3A00%3A01Z&tailLines=-1", now)
            .expect("parse");
        assert_eq!((o.since, o.tail_lines), (Some(at(1)), None));
        assert!(LogOptions::parse("tailLines=x", now).is_err());
        assert!(LogOptions::parse("follow=maybe", now).is_err());
        assert!(LogOptions::parse("limitBytes=0", now).is_err());
        assert!(LogOptions::parse("sinceTime=yesterday", now).is_err());
        assert!(
            LogOptions::parse("previous=true", now)
                .expect("parse")
                .previous
        );
    }

    #[test]
    fn lines_are_joined_filtered_tailed_and_cut() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_log(dir.path(), &[("0.log", &sample())]);
        let all = LogOptions::default();
        assert_eq!(read(&path, &all), "first\nsecond\nthird\n");
        let tail = LogOptions {
            tail_lines: Some(2),
            ..all.clone()
        };
        assert_eq!(read(&path, &tail), "second\nthird\n");
        let none = LogOptions {
            tail_lines: Some(0),
            ..all.clone()
        };
        assert_eq!(read(&path, &none), "");
        let since = LogOptions {
            since: Some(at(1)),
            timestamps: true,
            ..all.clone()
        };
        assert_eq!(
            read(&path, &since),
            "2024-05-01T10:00:01Z second\n2024-05-01T10:00:02.123456789Z third\n"
        );
        let limited = LogOptions {
            limit_bytes: Some(9),
            ..all.clone()
        };
        assert_eq!(read(&path, &limited), "first\nsec");
        let missing = dir.path().join("nope.log");
        assert_eq!(read(&missing, &all), "");
    }

    #[test]
    fn rotated_files_come_first_and_partial_lines_span_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_log(
            dir.path(),
            &[
                ("0.log.2", &format!("{T0} stdout F one\n")),
                (
                    "0.log.1",
                    &format!("{T0} stdout F two\n{T0} stdout P thr\n"),
                ),
                ("0.log", &format!("{T1} stdout F ee\n{T1} stdout F four\n")),
            ],
        );
        assert_eq!(
            read(&path, &LogOptions::default()),
            "one\ntwo\nthree\nfour\n"
        );
        assert_eq!(log_files(&path).len(), 3);
        let tail = LogOptions {
            tail_lines: Some(3),
            ..LogOptions::default()
        };
        assert_eq!(read(&path, &tail), "two\nthree\nfour\n");
    }

    #[test]
    fn follow_streams_new_lines_across_rotation_until_the_writer_stops() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        std::fs::write(&path, format!("{T0} stdout F before\n")).expect("write");
        let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
        let follower_path = path.clone();
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let still = running.clone();
        let follower = std::thread::spawn(move || {
            let options = LogOptions {
                follow: true,
                tail_lines: Some(1),
                ..LogOptions::default()
            };
            let mut send = |chunk: Bytes| tx.send(chunk.to_vec()).is_ok();
            let mut still_writing = || still.load(std::sync::atomic::Ordering::SeqCst);
            stream_log(&follower_path, &options, &mut send, &mut still_writing)
        });
        let mut seen = String::new();
        let mut wait_for = |text: &str| {
            let deadline = Instant::now() + Duration::from_secs(10);
            while !seen.contains(text) {
                assert!(Instant::now() < deadline, "no {text:?} in {seen:?}");
                if let Ok(chunk) = rx.recv_timeout(Duration::from_millis(100)) {
                    seen.push_str(&String::from_utf8_lossy(&chunk));
                }
            }
            seen.clone()
        };
        wait_for("before\n");
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        write!(file, "{T1} stdout P hal").expect("write");
        file.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(250));
        writeln!(file, "f\n{T1} stdout F -tail").expect("write");
        wait_for("half-tail\n");
        std::fs::rename(&path, rotated(&path, 1)).expect("rotate");
        std::fs::write(&path, format!("{T2} stdout F rotated\n")).expect("write");
        wait_for("rotated\n");
        running.store(false, std::sync::atomic::Ordering::SeqCst);
        follower.join().expect("join").expect("stream");
        let seen = wait_for("rotated\n");
        assert_eq!(seen, "before\nhalf-tail\nrotated\n");
    }
}
