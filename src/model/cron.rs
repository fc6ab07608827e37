//! CronJob schedules: the standard five-field cron syntax (minute, hour, day of
//! month, month, day of week; lists, ranges, steps, `*`/`?`, month and weekday names)
//! and the descriptors `@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`,
//! `@midnight`, `@hourly` and `@every <duration>`, as upstream's parser (robfig/cron
//! `ParseStandard`) reads them, with its error texts; and the next time a schedule
//! fires after an instant, in a time zone (`tz::Zone`).
//!
//! As in cron, when both day of month and day of week are restricted a day matching
//! either fires; when either is `*` both must match.
//!
//! Owns: `Schedule`, `parse`, `Schedule::next_after`. Calls `model::tz`.

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

use super::tz::Zone;

#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    /// Bit sets of the allowed values; `*_star` when the field was `*` or `?`.
    Spec {
        minutes: u64,
        hours: u64,
        dom: u64,
        months: u64,
        dow: u64,
        dom_star: bool,
        dow_star: bool,
    },
    /// `@every <duration>`: fixed intervals, in whole seconds.
    Every(i64),
}

struct Bounds {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: Bounds = Bounds {
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: Bounds = Bounds {
    min: 0,
    max: 23,
    names: &[],
};
const DOM: Bounds = Bounds {
    min: 1,
    max: 31,
    names: &[],
};
const MONTHS: Bounds = Bounds {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DOW: Bounds = Bounds {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Parses a schedule; the error is upstream's message.
pub fn parse(spec: &str) -> Result<Schedule, String> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err("empty spec string".into());
    }
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        return Err("time zones in the schedule are not supported".into());
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return parse_descriptor(descriptor, spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    let (minutes, _) = parse_field(fields[0], &MINUTES)?;
    let (hours, _) = parse_field(fields[1], &HOURS)?;
    let (dom, dom_star) = parse_field(fields[2], &DOM)?;
    let (months, _) = parse_field(fields[3], &MONTHS)?;
    let (dow, dow_star) = parse_field(fields[4], &DOW)?;
    Ok(Schedule::Spec {
        minutes,
        hours,
        dom,
        months,
        dow,
        dom_star,
        dow_star,
    })
}

fn every_field(b: &Bounds) -> u64 {
    bits(b.min, b.max, 1)
}

fn parse_descriptor(descriptor: &str, spec: &str) -> Result<Schedule, String> {
    let daily = |hours: u64, dow: u64| Schedule::Spec {
        minutes: 1,
        hours,
        dom: every_field(&DOM),
        months: every_field(&MONTHS),
        dow,
        dom_star: true,
        dow_star: dow == every_field(&DOW),
    };
    let on_first = |months: u64| Schedule::Spec {
        minutes: 1,
        hours: 1,
        dom: 1 << 1,
        months,
        dow: every_field(&DOW),
        dom_star: false,
        dow_star: true,
    };
    Ok(match descriptor {
        "yearly" | "annually" => on_first(1 << 1),
        "monthly" => on_first(every_field(&MONTHS)),
        "weekly" => daily(1, 1),
        "daily" | "midnight" => daily(1, every_field(&DOW)),
        "hourly" => daily(every_field(&HOURS), every_field(&DOW)),
        other => match other.strip_prefix("every ") {
            Some(duration) => {
                let seconds = parse_go_duration(duration.trim()).ok_or_else(|| {
                    format!(
                        "failed to parse duration {spec}: time: invalid duration {}",
                        crate::model::quote::go_quote(duration.trim())
                    )
                })?;
                // Upstream rounds below a second up to one second.
                Schedule::Every(seconds.max(1))
            }
            None => return Err(format!("unrecognized descriptor: {spec}")),
        },
    })
}

/// Go's `time.ParseDuration`, to whole seconds (fractions truncated).
fn parse_go_duration(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut rest = s;
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_end..];
        nanos += number * scale;
    }
    Some((nanos / 1e9) as i64)
}

fn bits(min: u32, max: u32, step: u32) -> u64 {
    (min..=max)
        .step_by(step as usize)
        .fold(0, |acc, v| acc | 1 << v)
}

/// One field: a comma-separated list of ranges. Returns the bit set and whether the
/// field was a bare `*`/`?` (step 1).
fn parse_field(field: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let mut set = 0;
    let mut star = false;
    for range in field.split(',') {
        let (bits, is_star) = parse_range(range, b)?;
        set |= bits;
        star |= is_star;
    }
    Ok((set, star))
}

fn parse_range(expr: &str, b: &Bounds) -> Result<(u64, bool), String> {
    let range_and_step: Vec<&str> = expr.split('/').collect();
    let low_and_high: Vec<&str> = range_and_step[0].split('-').collect();
    let single = low_and_high.len() == 1;
    let (start, mut end, mut star) = if low_and_high[0] == "*" || low_and_high[0] == "?" {
        (b.min, b.max, true)
    } else {
        let start = parse_value(low_and_high[0], b)?;
        let end = match low_and_high.len() {
            1 => start,
            2 => parse_value(low_and_high[1], b)?,
            _ => return Err(format!("too many hyphens: {expr}")),
        };
        (start, end, false)
    };
    let step = match range_and_step.len() {
        1 => 1,
        2 => {
            let step = parse_int(range_and_step[1])?;
            if single {
                end = b.max;
            }
            if step > 1 {
                star = false;
            }
            step
        }
        _ => return Err(format!("too many slashes: {expr}")),
    };
    if start < b.min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({}): {expr}",
            b.min
        ));
    }
    if end > b.max {
        return Err(format!(
            "end of range ({end}) above maximum ({}): {expr}",
            b.max
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    if step == 0 {
        return Err(format!("step of range should be a positive number: {expr}"));
    }
    Ok((bits(start, end, step), star))
}

fn parse_value(s: &str, b: &Bounds) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = b.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + b.min);
    }
    parse_int(s)
}

fn parse_int(s: &str) -> Result<u32, String> {
    let n: i64 = s.parse().map_err(|_| {
        format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {}: invalid syntax",
            crate::model::quote::go_quote(s)
        )
    })?;
    if n < 0 {
        return Err(format!("negative number ({n}) not allowed: {s}"));
    }
    u32::try_from(n).map_err(|_| format!("end of range ({n}) above maximum: {s}"))
}

/// How far ahead `next_after` looks before giving up (upstream: five years).
const SEARCH_YEARS: i64 = 5;

impl Schedule {
    /// The first time strictly after `after` the schedule fires, read in `zone`'s
    /// wall-clock time; `None` when it never fires within five years (`30 2 31 2 *`).
    pub fn next_after(&self, after: DateTime<Utc>, zone: &Zone) -> Option<DateTime<Utc>> {
        match self {
            Schedule::Every(seconds) => {
                let t = after.timestamp() + seconds;
                DateTime::from_timestamp(t, 0)
            }
            Schedule::Spec { .. } => self.next_spec(after, zone),
        }
    }

    fn next_spec(&self, after: DateTime<Utc>, zone: &Zone) -> Option<DateTime<Utc>> {
        let Schedule::Spec {
            minutes,
            hours,
            dom,
            months,
            dow,
            dom_star,
            dow_star,
        } = *self
        else {
            return None;
        };
        // The next whole minute.
        let mut t = after.timestamp().div_euclid(60) * 60 + 60;
        let limit = t + SEARCH_YEARS * 366 * 86400;
        while t <= limit {
            let offset = i64::from(zone.offset_at(t));
            let local = DateTime::from_timestamp(t + offset, 0)?;
            let day_ok = {
                let dom_match = dom & (1 << local.day()) != 0;
                let dow_match = dow & (1 << local.weekday().num_days_from_sunday()) != 0;
                if dom_star || dow_star {
                    dom_match && dow_match
                } else {
                    dom_match || dow_match
                }
            };
            let date_ok = months & (1 << local.month()) != 0 && day_ok;
            if !date_ok || hours & (1 << local.hour()) == 0 {
                // On to the next local hour.
                t += i64::from(60 - local.minute()) * 60;
                continue;
            }
            if minutes & (1 << local.minute()) == 0 {
                t += 60;
                continue;
            }
            return DateTime::from_timestamp(t, 0);
        }
        None
    }

    /// The latest time at or before `now` the schedule fired after `since`, and how
    /// many times it fired in (`since`, `now`] (upstream's mostRecentScheduleTime; the
    /// count stops at `cap`).
    pub fn most_recent(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
        zone: &Zone,
        cap: usize,
    ) -> (Option<DateTime<Utc>>, usize) {
        let mut last = None;
        let mut count = 0;
        let mut t = since;
        while let Some(next) = self.next_after(t, zone) {
            if next > now {
                break;
            }
            last = Some(next);
            count += 1;
            t = next;
            if count >= cap {
                // Jump: only the most recent matters now.
                let from = now - Duration::minutes(1) - Duration::seconds(1);
                if from > t {
                    t = from;
                }
            }
        }
        (last, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn next(spec: &str, after: &str) -> String {
        parse(spec)
            .unwrap()
            .next_after(utc(after), &Zone::utc())
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    }

    #[test]
    fn standard_fields_and_descriptors() {
        assert_eq!(
            next("*/1 * * * *", "2026-12-07T20:34:46Z"),
            "2026-12-07T20:35:00+00:00"
        );
        assert_eq!(
            next("*/15 * * * *", "2026-12-07T20:45:00Z"),
            "2026-12-07T21:00:00+00:00"
        );
        assert_eq!(
            next("30 2 * * 1-5", "2026-12-05T10:00:00Z"),
            "2026-12-07T02:30:00+00:00"
        );
        assert_eq!(
            next("0 0 1 jan *", "2026-12-07T00:00:00Z"),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(
            next("0 9 * * SUN,sat", "2026-12-07T00:00:00Z"),
            "2026-12-12T09:00:00+00:00"
        );
        // Day of month OR day of week when both are restricted.
        assert_eq!(
            next("0 0 13 * 5", "2026-12-07T00:00:00Z"),
            "2026-12-11T00:00:00+00:00"
        );
        assert_eq!(
            next("@hourly", "2026-12-07T20:34:46Z"),
            "2026-12-07T21:00:00+00:00"
        );
        assert_eq!(
            next("@daily", "2026-12-07T20:34:46Z"),
            "2026-12-08T00:00:00+00:00"
        );
        assert_eq!(
            next("@weekly", "2026-12-07T20:34:46Z"),
            "2026-12-13T00:00:00+00:00"
        );
        assert_eq!(
            next("@monthly", "2026-12-07T20:34:46Z"),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@yearly", "2026-12-07T20:34:46Z"),
            "2027-01-01T00:00:00+00:00"
        );
        assert_eq!(
            next("@every 1h30m", "2026-12-07T20:00:00Z"),
            "2026-12-07T21:30:00+00:00"
        );
        assert_eq!(next("0 0 30 2 *", "2026-12-07T20:34:46Z"), "");
    }

    #[test]
    fn errors_read_as_upstream() {
        assert_eq!(
            parse("* * *").unwrap_err(),
            "expected exactly 5 fields, found 3: [* * *]"
        );
        assert_eq!(
            parse("60 * * * *").unwrap_err(),
            "end of range (60) above maximum (59): 60"
        );
        assert_eq!(
            parse("* * 0 * *").unwrap_err(),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            parse("5-1 * * * *").unwrap_err(),
            "beginning of range (5) beyond end of range (1): 5-1"
        );
        assert_eq!(
            parse("x * * * *").unwrap_err(),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(
            parse("*/0 * * * *").unwrap_err(),
            "step of range should be a positive number: */0"
        );
        assert_eq!(
            parse("* * * * 7").unwrap_err(),
            "end of range (7) above maximum (6): 7"
        );
        assert_eq!(
            parse("@often").unwrap_err(),
            "unrecognized descriptor: @often"
        );
        assert_eq!(parse("").unwrap_err(), "empty spec string");
    }

    #[test]
    fn time_zones_shift_the_wall_clock() {
        let schedule = parse("0 9 * * *").unwrap();
        // A fixed +05:30 zone through a POSIX-only footer-less zone.
        let zone = Zone::utc();
        assert_eq!(
            schedule
                .next_after(utc("2026-12-07T08:00:00Z"), &zone)
                .unwrap(),
            utc("2026-12-07T09:00:00Z")
        );
        if let Ok(berlin) = crate::model::tz::load("Europe/Berlin") {
            assert_eq!(
                schedule
                    .next_after(utc("2026-12-07T09:00:00Z"), &berlin)
                    .unwrap(),
                utc("2026-12-08T08:00:00Z")
            );
            assert_eq!(
                schedule
                    .next_after(utc("2026-07-07T08:00:00Z"), &berlin)
                    .unwrap(),
                utc("2026-07-08T07:00:00Z")
            );
        }
    }

    #[test]
    fn most_recent_counts_missed_runs() {
        let schedule = parse("*/10 * * * *").unwrap();
        let (last, missed) = schedule.most_recent(
            utc("2026-12-07T20:00:00Z"),
            utc("2026-12-07T20:35:00Z"),
            &Zone::utc(),
            100,
        );
        assert_eq!(last, Some(utc("2026-12-07T20:30:00Z")));
        assert_eq!(missed, 3);
        let (last, missed) = schedule.most_recent(
            utc("2026-12-07T20:00:00Z"),
            utc("2026-12-07T20:05:00Z"),
            &Zone::utc(),
            100,
        );
        assert_eq!((last, missed), (None, 0));
        let every_minute = parse("* * * * *").unwrap();
        let (last, missed) = every_minute.most_recent(
            utc("2026-01-01T00:00:00Z"),
            utc("2026-12-07T20:35:10Z"),
            &Zone::utc(),
            100,
        );
        assert_eq!(last, Some(utc("2026-12-07T20:35:00Z")));
        assert!(missed >= 100);
    }
}
