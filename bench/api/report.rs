//! Latency percentiles and the Markdown results table.

use std::time::Duration;

/// Milliseconds, for latency samples (may be negative for "after ack" deltas).
pub fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Nearest-rank percentile of unsorted samples; NaN when there are none.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(samples: &[f64]) -> f64 {
    percentile(samples, 50.0)
}

/// "p50 1.23 ms · p99 4.56 ms (n=2000)".
pub fn p50_p99(samples: &[f64]) -> String {
    format!(
        "p50 {} · p99 {} (n={})",
        fmt_ms(percentile(samples, 50.0)),
        fmt_ms(percentile(samples, 99.0)),
        samples.len()
    )
}

pub fn fmt_ms(value: f64) -> String {
    match value.abs() {
        v if v >= 100.0 => format!("{value:.0} ms"),
        v if v >= 10.0 => format!("{value:.1} ms"),
        _ => format!("{value:.2} ms"),
    }
}

/// Bytes in KiB below 1 MiB, in MiB above.
pub fn fmt_mib(bytes: u64) -> String {
    let kib = bytes as f64 / 1024.0;
    if kib < 1024.0 {
        format!("{kib:.1} KiB")
    } else {
        format!("{:.1} MiB", kib / 1024.0)
    }
}

pub fn fmt_rate(count: usize, elapsed: Duration) -> String {
    format!("{:.0}/s", count as f64 / elapsed.as_secs_f64())
}

struct Row {
    measurement: String,
    result: String,
    goal: String,
}

/// The results table, filled as the scenarios run, plus free-form notes.
#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
    notes: Vec<String>,
}

impl Report {
    /// Adds a row and echoes it to stderr so progress is visible during the run.
    pub fn row(&mut self, measurement: &str, result: String, goal: &str) {
        eprintln!("  {measurement}: {result}");
        self.rows.push(Row {
            measurement: measurement.to_string(),
            result,
            goal: goal.to_string(),
        });
    }

    pub fn note(&mut self, note: String) {
        eprintln!("  note: {note}");
        self.notes.push(note);
    }

    pub fn markdown(&self) -> String {
        let mut out = String::from("| Measurement | Result | Goal / reference |\n|---|---|---|\n");
        for row in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} |\n",
                row.measurement, row.result, row.goal
            ));
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                out.push_str(&format!("- {note}\n"));
            }
        }
        out
    }
}
