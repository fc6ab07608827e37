//! IANA time zones from the system's TZif files (`/usr/share/zoneinfo`, RFC 8536), as
//! Go's `time.LoadLocation` reads them for CronJobs' `spec.timeZone`: the UTC offset
//! in force at any instant, from the file's transitions and, past the last one, its
//! POSIX TZ footer (`CET-1CEST,M3.5.0,M10.5.0/3`).
//!
//! Owns: `Zone`, `load`, `valid_name`. Calls nothing else in skiff.

use std::path::Path;

use chrono::{Datelike, NaiveDate};

/// Where the system keeps its zone files (Go's first choice on Linux).
pub const ZONEINFO_DIR: &str = "/usr/share/zoneinfo";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TzError {
    /// Go's message for a name it cannot load.
    #[error("unknown time zone {0}")]
    Unknown(String),
}

/// One time zone: offsets (seconds east of UTC) by instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Zone {
    pub name: String,
    /// (transition instant, offset from then on), sorted.
    transitions: Vec<(i64, i32)>,
    /// Offset before the first transition.
    initial: i32,
    /// The footer's rule for instants after the last transition.
    rule: Option<Rule>,
}

/// A POSIX TZ rule: standard offset, and optionally DST with its start and end.
#[derive(Debug, Clone, PartialEq)]
struct Rule {
    std_offset: i32,
    dst: Option<(i32, DateRule, i32, DateRule, i32)>,
}

/// `Mm.w.d` (the only form tzdata footers use): month, week 1-5 (5 = last), weekday.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DateRule {
    month: u32,
    week: u32,
    weekday: u32,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".into(),
            transitions: Vec::new(),
            initial: 0,
            rule: None,
        }
    }

    /// Seconds east of UTC in force at Unix time `at`.
    pub fn offset_at(&self, at: i64) -> i32 {
        let after_last = self.transitions.last().is_none_or(|(t, _)| at >= *t);
        if after_last {
            if let Some(rule) = &self.rule {
                return rule.offset_at(at);
            }
        }
        match self.transitions.partition_point(|(t, _)| *t <= at) {
            0 => self.initial,
            i => self.transitions[i - 1].1,
        }
    }
}

impl Rule {
    fn offset_at(&self, at: i64) -> i32 {
        let Some((dst_offset, start, start_time, end, end_time)) = self.dst else {
            return self.std_offset;
        };
        // The year as local standard time sees it.
        let local = chrono::DateTime::from_timestamp(at + i64::from(self.std_offset), 0)
            .map(|d| d.year())
            .unwrap_or(1970);
        // Transition instants: start is given in standard local time, end in DST time.
        let begins = start.instant(local, start_time) - i64::from(self.std_offset);
        let ends = end.instant(local, end_time) - i64::from(dst_offset);
        let in_dst = if begins < ends {
            at >= begins && at < ends
        } else {
            // Southern hemisphere: DST spans the new year.
            at >= begins || at < ends
        };
        if in_dst {
            dst_offset
        } else {
            self.std_offset
        }
    }
}

impl DateRule {
    /// Seconds since the epoch of local midnight on the rule's day plus `time`.
    fn instant(&self, year: i32, time: i32) -> i64 {
        let first = NaiveDate::from_ymd_opt(year, self.month, 1).unwrap_or_default();
        let first_weekday = first.weekday().num_days_from_sunday();
        let mut day = 1 + (7 + self.weekday - first_weekday) % 7 + 7 * (self.week - 1);
        let days_in_month = days_in_month(year, self.month);
        while day > days_in_month {
            day -= 7;
        }
        let date = NaiveDate::from_ymd_opt(year, self.month, day).unwrap_or(first);
        date.and_hms_opt(0, 0, 0)
            .unwrap_or_default()
            .and_utc()
            .timestamp()
            + i64::from(time)
    }
}

fn days_in_month(year: i32, month: u32) -> u32 {
    let next = if month == 12 {
        NaiveDate::from_ymd_opt(year + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(year, month + 1, 1)
    };
    next.and_then(|n| n.pred_opt()).map_or(31, |d| d.day())
}

/// Whether `name` may name a zone file (Go's checks before it opens one): no empty,
/// `.`, `..` or `-`-led parts, only `[A-Za-z0-9_+-]` and `/`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && !part.starts_with('-')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'.'))
        })
}

/// Loads a zone as Go's `time.LoadLocation` does: `""` and `UTC` are UTC, `Local` is
/// refused here (CronJobs must name a zone), anything else is read from `dir`.
pub fn load_from(dir: &Path, name: &str) -> Result<Zone, TzError> {
    let unknown = || TzError::Unknown(name.to_string());
    if name.is_empty() || name == "UTC" {
        return Ok(Zone::utc());
    }
    if !valid_name(name) || name.eq_ignore_ascii_case("local") {
        return Err(unknown());
    }
    let data = std::fs::read(dir.join(name)).map_err(|_| unknown())?;
    let mut zone = parse_tzif(&data).ok_or_else(unknown)?;
    zone.name = name.to_string();
    Ok(zone)
}

/// [`load_from`] the system's zoneinfo directory.
pub fn load(name: &str) -> Result<Zone, TzError> {
    load_from(Path::new(ZONEINFO_DIR), name)
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let slice = self.data.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(slice)
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_be_bytes(self.take(8)?.try_into().ok()?))
    }
}

struct Header {
    version: u8,
    isutcnt: usize,
    isstdcnt: usize,
    leapcnt: usize,
    timecnt: usize,
    typecnt: usize,
    charcnt: usize,
}

fn header(r: &mut Reader) -> Option<Header> {
    if r.take(4)? != b"TZif" {
        return None;
    }
    let version = r.take(1)?[0];
    r.take(15)?;
    let mut counts = [0usize; 6];
    for c in &mut counts {
        *c = r.u32()? as usize;
    }
    Some(Header {
        version,
        isutcnt: counts[0],
        isstdcnt: counts[1],
        leapcnt: counts[2],
        timecnt: counts[3],
        typecnt: counts[4],
        charcnt: counts[5],
    })
}

/// Parses a TZif file (v1, or the 64-bit block and footer of v2+).
fn parse_tzif(data: &[u8]) -> Option<Zone> {
    let mut r = Reader { data, at: 0 };
    let mut h = header(&mut r)?;
    let mut time_size = 4;
    if h.version >= b'2' {
        // Skip the v1 block; the second header describes 64-bit data.
        r.take(h.timecnt * 5 + h.typecnt * 6 + h.charcnt + h.leapcnt * 8 + h.isstdcnt + h.isutcnt)?;
        h = header(&mut r)?;
        time_size = 8;
    }
    let mut times = Vec::with_capacity(h.timecnt);
    for _ in 0..h.timecnt {
        times.push(if time_size == 8 {
            r.i64()?
        } else {
            i64::from(r.i32()?)
        });
    }
    let indices = r.take(h.timecnt)?.to_vec();
    let mut types = Vec::with_capacity(h.typecnt);
    for _ in 0..h.typecnt {
        let offset = r.i32()?;
        r.take(2)?;
        types.push(offset);
    }
    if types.is_empty() {
        return None;
    }
    r.take(h.charcnt + h.leapcnt * (time_size + 4) + h.isstdcnt + h.isutcnt)?;
    let transitions = times
        .into_iter()
        .zip(indices)
        .map(|(t, i)| Some((t, *types.get(usize::from(i))?)))
        .collect::<Option<Vec<_>>>()?;
    let rule = if h.version >= b'2' {
        let footer = std::str::from_utf8(&data[r.at..]).ok()?;
        parse_posix(footer.trim_matches('\n'))
    } else {
        None
    };
    Some(Zone {
        name: String::new(),
        transitions,
        initial: types[0],
        rule,
    })
}

/// Parses a POSIX TZ string (`std offset [dst [offset] [,start[/time],end[/time]]]`).
fn parse_posix(s: &str) -> Option<Rule> {
    let mut p = Posix {
        s: s.as_bytes(),
        at: 0,
    };
    p.name()?;
    let std_offset = -p.offset()?;
    if p.done() {
        return Some(Rule {
            std_offset,
            dst: None,
        });
    }
    p.name()?;
    let dst_offset = if p.peek() == Some(b',') {
        std_offset + 3600
    } else {
        -p.offset()?
    };
    p.expect(b',')?;
    let start = p.date()?;
    let start_time = p.time_suffix()?;
    p.expect(b',')?;
    let end = p.date()?;
    let end_time = p.time_suffix()?;
    Some(Rule {
        std_offset,
        dst: Some((dst_offset, start, start_time, end, end_time)),
    })
}

struct Posix<'a> {
    s: &'a [u8],
    at: usize,
}

impl Posix<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }
    fn done(&self) -> bool {
        self.at >= self.s.len()
    }
    fn expect(&mut self, b: u8) -> Option<()> {
        (self.peek()? == b).then(|| self.at += 1)
    }
    fn name(&mut self) -> Option<()> {
        if self.peek()? == b'<' {
            while self.peek()? != b'>' {
                self.at += 1;
            }
            self.at += 1;
        } else {
            let start = self.at;
            while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
                self.at += 1;
            }
            if self.at - start < 3 {
                return None;
            }
        }
        Some(())
    }
    fn number(&mut self) -> Option<i32> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) {
            self.at += 1;
        }
        std::str::from_utf8(&self.s[start..self.at])
            .ok()?
            .parse()
            .ok()
    }
    /// `[+-]hh[:mm[:ss]]` in seconds.
    fn offset(&mut self) -> Option<i32> {
        let sign = match self.peek()? {
            b'-' => {
                self.at += 1;
                -1
            }
            b'+' => {
                self.at += 1;
                1
            }
            _ => 1,
        };
        let mut seconds = self.number()? * 3600;
        for unit in [60, 1] {
            if self.peek() == Some(b':') {
                self.at += 1;
                seconds += self.number()? * unit;
            }
        }
        Some(sign * seconds)
    }
    fn date(&mut self) -> Option<DateRule> {
        self.expect(b'M')?;
        let month = self.number()? as u32;
        self.expect(b'.')?;
        let week = self.number()? as u32;
        self.expect(b'.')?;
        let weekday = self.number()? as u32;
        ((1..=12).contains(&month) && (1..=5).contains(&week) && weekday <= 6).then_some(DateRule {
            month,
            week,
            weekday,
        })
    }
    /// `/time` (may be negative or beyond 24h), default 02:00.
    fn time_suffix(&mut self) -> Option<i32> {
        if self.peek() == Some(b'/') {
            self.at += 1;
            self.offset()
        } else {
            Some(7200)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn posix_rules_follow_european_and_southern_dst() {
        let berlin = parse_posix("CET-1CEST,M3.5.0,M10.5.0/3").unwrap();
        assert_eq!(berlin.offset_at(at("2040-01-15T12:00:00Z")), 3600);
        assert_eq!(berlin.offset_at(at("2040-07-15T12:00:00Z")), 7200);
        // 2040-03-25 is the last Sunday of March: DST from 01:00 UTC.
        assert_eq!(berlin.offset_at(at("2040-03-25T00:59:59Z")), 3600);
        assert_eq!(berlin.offset_at(at("2040-03-25T01:00:00Z")), 7200);
        let sydney = parse_posix("AEST-10AEDT,M10.1.0,M4.1.0/3").unwrap();
        assert_eq!(sydney.offset_at(at("2040-01-15T00:00:00Z")), 39600);
        assert_eq!(sydney.offset_at(at("2040-07-15T00:00:00Z")), 36000);
        let kolkata = parse_posix("IST-5:30").unwrap();
        assert_eq!(kolkata.offset_at(0), 19800);
        assert_eq!(parse_posix("<-03>3").unwrap().offset_at(0), -10800);
    }

    #[test]
    fn system_zones_load_and_bad_names_are_unknown() {
        assert_eq!(load("").unwrap(), Zone::utc());
        assert_eq!(
            load("Mars/Olympus"),
            Err(TzError::Unknown("Mars/Olympus".into()))
        );
        assert!(load("../etc/passwd").is_err());
        assert!(load("Local").is_err());
        if Path::new(ZONEINFO_DIR).join("Europe/Berlin").exists() {
            let berlin = load("Europe/Berlin").unwrap();
            assert_eq!(berlin.offset_at(at("2026-01-15T12:00:00Z")), 3600);
            assert_eq!(berlin.offset_at(at("2026-07-15T12:00:00Z")), 7200);
            assert_eq!(berlin.offset_at(at("2060-07-15T12:00:00Z")), 7200);
            let ny = load("America/New_York").unwrap();
            assert_eq!(ny.offset_at(at("2026-01-15T12:00:00Z")), -18000);
        }
    }
}
