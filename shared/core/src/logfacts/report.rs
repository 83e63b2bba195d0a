//! Lambda's `REPORT` lines, one per invocation, and what they add up to per function version.
//!
//! Text (the default log format), fields tab- or space-separated, in any order:
//!
//! ```text
//! REPORT RequestId: 8f5c2a8e-… Duration: 102.25 ms Billed Duration: 103 ms Memory Size: 128 MB Max Memory Used: 70 MB Init Duration: 150.34 ms
//! ```
//!
//! `Duration`, `Billed Duration`, `Memory Size` and `Max Memory Used` (each with its unit)
//! must be there; `Init Duration` (a cold start), `Status` and `Error Type` (what the managed
//! runtimes append for a timeout or a crash) may be; other fields (`Restore Duration`,
//! `XRAY TraceId`, fields added later) are ignored. JSON (Lambda's JSON log format): a
//! `platform.report` event, `record.metrics.{durationMs, billedDurationMs, memorySizeMB,
//! maxMemoryUsedMB, initDurationMs}`, `record.status`, `record.errorType`.
//!
//! A line that starts as a report but lacks a required field, has a field without its value
//! or unit (a line cut short), or a value that is no non-negative number is
//! [`ReportLine::Malformed`]: skipped and counted, never guessed at.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::stats::{percentile, percentile_of_sorted};

/// Max memory used ÷ memory size from which an invocation is counted as at the memory limit.
/// Lambda reports whole MB and kills at the size: at 95 % a 5 % heavier request is killed.
pub const MEMORY_LIMIT_RATIO: f64 = 0.95;

/// One invocation's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The request.
    pub request_id: Option<String>,
    /// Time in the handler, ms.
    pub duration_ms: f64,
    /// Billed time, ms.
    pub billed_duration_ms: f64,
    /// Configured memory, MB.
    pub memory_size_mb: f64,
    /// Peak memory of the execution environment, MB.
    pub max_memory_used_mb: f64,
    /// Initialisation time of a cold start; none for a warm invocation.
    pub init_duration_ms: Option<f64>,
    /// `timeout`, `error`, `success` where the line says.
    pub status: Option<String>,
    /// The runtime's error type (`Runtime.OutOfMemory`, `Runtime.ExitError`) where the line says.
    pub error_type: Option<String>,
}

/// What a line is.
#[derive(Debug, Clone, PartialEq)]
pub enum ReportLine {
    /// Not a report.
    NotReport,
    /// A report.
    Report(Report),
    /// A report that cannot be read; the reason.
    Malformed(&'static str),
}

/// Reads a line (or the first report line of a multi-line message).
pub fn parse_report(message: &str) -> ReportLine {
    let trimmed = message.trim_start();
    if trimmed.starts_with('{') {
        return match serde_json::from_str::<Value>(trimmed.trim_end()) {
            Ok(value) if value.get("type").and_then(Value::as_str) == Some("platform.report") => {
                json_report(&value)
            }
            _ => ReportLine::NotReport,
        };
    }
    match report_line(trimmed) {
        Some(line) => text_report(&line["REPORT".len()..]),
        None => ReportLine::NotReport,
    }
}

/// The first line of `text` that starts (after blanks) with `REPORT RequestId:`. Byte loops:
/// analyze reads thousands of reports, and unoptimised test builds pay for every iterator
/// adapter.
fn report_line(text: &str) -> Option<&str> {
    const PREFIX: &str = "REPORT RequestId:";
    let bytes = text.as_bytes();
    let mut start = 0;
    loop {
        while start < bytes.len() && matches!(bytes[start], b' ' | b'\t') {
            start += 1;
        }
        let mut end = start;
        while end < bytes.len() && !matches!(bytes[end], b'\n' | b'\r') {
            end += 1;
        }
        // Line breaks and blanks are ASCII: character boundaries.
        let line = &text[start..end];
        if line.starts_with(PREFIX) {
            return Some(line);
        }
        if end >= bytes.len() {
            return None;
        }
        start = end + 1;
    }
}

/// A word of a field's label: a capitalised word of letters (`Max`, `XRAY`).
fn is_label_word(word: &str) -> bool {
    let bytes = word.as_bytes();
    !bytes.is_empty() && bytes[0].is_ascii_uppercase() && {
        let mut i = 1;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        i == bytes.len()
    }
}

/// One field of a text report: its label (a slice of the line, words as written) and
/// value tokens (the value, and for a number its unit).
struct Field<'a> {
    /// Words joined by single spaces.
    label: Cow<'a, str>,
    value: [Option<&'a str>; 2],
}

/// A label as written, its words joined by single spaces.
fn label(written: &str) -> Cow<'_, str> {
    if written
        .bytes()
        .all(|b| b != b'\t' && b != b'\n' && b != b'\r')
        && !written.contains("  ")
    {
        Cow::Borrowed(written)
    } else {
        let words: Vec<&str> = words(written).into_iter().map(|(_, w)| w).collect();
        Cow::Owned(words.join(" "))
    }
}

/// The words of `text` split at ASCII blanks, each with its byte offset. A plain loop over
/// bytes: analyze reads thousands of reports, and unoptimised test builds pay for every
/// iterator adapter.
fn words(text: &str) -> Vec<(usize, &str)> {
    let bytes = text.as_bytes();
    let mut words = Vec::with_capacity(32);
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if i > start {
            // ASCII blanks are character boundaries.
            words.push((start, &text[start..i]));
        }
    }
    words
}

fn text_report(fields_text: &str) -> ReportLine {
    // A field: label words, the last ending in `:`; a value; for a number, its unit.
    let mut fields: Vec<Field<'_>> = Vec::with_capacity(12);
    let mut label_start: Option<usize> = None;
    let mut open = false;
    for (at, token) in words(fields_text) {
        let awaiting_value = open && fields.last().is_some_and(|f| f.value[0].is_none());
        if let Some(stem) = token.strip_suffix(':')
            && is_label_word(stem)
            && !awaiting_value
        {
            let start = label_start.take().unwrap_or(at);
            fields.push(Field {
                label: label(&fields_text[start..at + stem.len()]),
                value: [None, None],
            });
            open = true;
            continue;
        }
        if open && let Some(field) = fields.last_mut() {
            if field.value[0].is_none() {
                field.value[0] = Some(token);
                continue;
            }
            open = false;
            if matches!(token, "ms" | "MB") {
                field.value[1] = Some(token);
                continue;
            }
        }
        if is_label_word(token) {
            label_start.get_or_insert(at);
        }
        // Anything else (a stray word) is ignored.
    }
    if label_start.is_some() || fields.last().is_some_and(|f| f.value[0].is_none()) {
        return ReportLine::Malformed("cut short: a field without its value");
    }
    let value = |name: &str| fields.iter().find(|f| f.label == name).map(|f| f.value);
    let number = |name: &str, unit: &str| -> Result<Option<f64>, &'static str> {
        match value(name) {
            None => Ok(None),
            Some([Some(number), Some(u)]) if u == unit => number_value(number).map(Some),
            Some(_) => Err("cut short: a number without its unit"),
        }
    };
    let text = |name: &str| value(name).and_then(|v| v[0]).map(str::to_owned);
    let read = || -> Result<Report, &'static str> {
        Ok(Report {
            request_id: text("RequestId"),
            duration_ms: number("Duration", "ms")?.ok_or("no Duration")?,
            billed_duration_ms: number("Billed Duration", "ms")?.ok_or("no Billed Duration")?,
            memory_size_mb: number("Memory Size", "MB")?.ok_or("no Memory Size")?,
            max_memory_used_mb: number("Max Memory Used", "MB")?.ok_or("no Max Memory Used")?,
            init_duration_ms: number("Init Duration", "ms")?,
            status: text("Status"),
            error_type: text("Error Type"),
        })
    };
    match read() {
        Ok(report) => ReportLine::Report(report),
        Err(reason) => ReportLine::Malformed(reason),
    }
}

/// A non-negative finite number.
fn number_value(text: &str) -> Result<f64, &'static str> {
    text.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or("a value is not a non-negative number")
}

fn json_report(value: &Value) -> ReportLine {
    let record = value.get("record");
    let metrics = record.and_then(|r| r.get("metrics"));
    let number = |key: &str| -> Result<Option<f64>, &'static str> {
        match metrics.and_then(|m| m.get(key)) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_f64()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(Some)
                .ok_or("a value is not a non-negative number"),
        }
    };
    let text = |key: &str| {
        record
            .and_then(|r| r.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let read = || -> Result<Report, &'static str> {
        let required = |key: &'static str, missing: &'static str| number(key)?.ok_or(missing);
        Ok(Report {
            request_id: text("requestId"),
            duration_ms: required("durationMs", "no Duration")?,
            billed_duration_ms: required("billedDurationMs", "no Billed Duration")?,
            memory_size_mb: required("memorySizeMB", "no Memory Size")?,
            max_memory_used_mb: required("maxMemoryUsedMB", "no Max Memory Used")?,
            init_duration_ms: number("initDurationMs")?,
            status: text("status"),
            error_type: text("errorType"),
        })
    };
    match read() {
        Ok(report) => ReportLine::Report(report),
        Err(reason) => ReportLine::Malformed(reason),
    }
}

/// The version a Lambda log stream is of: `2026/11/22/[$LATEST]0f1e…` → `$LATEST`,
/// `2026/11/22/[3]0f1e…` → `3`; none for any other name.
pub fn version_of_stream(stream: &str) -> Option<&str> {
    let open = stream.find('[')?;
    let rest = &stream[open + 1..];
    let version = &rest[..rest.find(']')?];
    let numbered = (1..=20).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_digit());
    (version == "$LATEST" || numbered).then_some(version)
}

/// p50, p95 and the largest of a measure.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    /// The median.
    pub p50: f64,
    /// The 95th percentile.
    pub p95: f64,
    /// The largest.
    pub max: f64,
}

impl Spread {
    /// Of finite values (a report's numbers are).
    fn of(mut values: Vec<f64>) -> Option<Self> {
        values.sort_unstable_by(f64::total_cmp);
        Some(Self {
            p50: percentile_of_sorted(&values, 50.0)?,
            p95: percentile_of_sorted(&values, 95.0)?,
            max: *values.last()?,
        })
    }
}

/// What the REPORT lines of one function version add up to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportFacts {
    /// The version (`$LATEST`, `3`); none when the lines' log stream did not say.
    pub version: Option<String>,
    /// REPORT lines read: the invocations seen.
    pub invocations: u64,
    /// Duration, ms.
    pub duration_ms: Spread,
    /// Billed duration, ms.
    pub billed_duration_ms: Spread,
    /// The configured memory, MB (the largest seen, should it have changed under `$LATEST`).
    pub memory_size_mb: f64,
    /// Max memory used, MB: the largest and the 95th percentile.
    pub max_memory_used_mb: Spread,
    /// Memory pressure: the largest max memory used ÷ memory size of one invocation.
    pub memory_pressure: f64,
    /// Invocations at or above [`MEMORY_LIMIT_RATIO`] of their memory.
    pub at_memory_limit: u64,
    /// Invocations with an `Init Duration` (cold starts).
    pub cold_starts: u64,
    /// cold_starts ÷ invocations.
    pub cold_start_share: f64,
    /// Mean init duration of the cold starts, ms.
    pub init_duration_mean_ms: Option<f64>,
    /// 95th percentile of the cold starts' init duration, ms.
    pub init_duration_p95_ms: Option<f64>,
    /// Lines with `Status: timeout`.
    pub timeouts: u64,
    /// Lines with `Error Type: Runtime.OutOfMemory`.
    pub out_of_memory: u64,
}

impl ReportFacts {
    /// The facts of `reports` (all of one version); none for no reports.
    pub fn of(version: Option<String>, reports: &[&Report]) -> Option<Self> {
        let column = |f: fn(&Report) -> f64| reports.iter().map(|r| f(r)).collect::<Vec<f64>>();
        let inits: Vec<f64> = reports.iter().filter_map(|r| r.init_duration_ms).collect();
        let n = reports.len() as u64;
        let ratio = |r: &Report| {
            if r.memory_size_mb > 0.0 {
                r.max_memory_used_mb / r.memory_size_mb
            } else {
                0.0
            }
        };
        let count = |f: &dyn Fn(&Report) -> bool| reports.iter().filter(|r| f(r)).count() as u64;
        Some(Self {
            version,
            invocations: n,
            duration_ms: Spread::of(column(|r| r.duration_ms))?,
            billed_duration_ms: Spread::of(column(|r| r.billed_duration_ms))?,
            memory_size_mb: column(|r| r.memory_size_mb).into_iter().reduce(f64::max)?,
            max_memory_used_mb: Spread::of(column(|r| r.max_memory_used_mb))?,
            memory_pressure: reports.iter().map(|r| ratio(r)).reduce(f64::max)?,
            at_memory_limit: count(&|r| ratio(r) >= MEMORY_LIMIT_RATIO),
            cold_starts: inits.len() as u64,
            cold_start_share: inits.len() as f64 / n as f64,
            init_duration_mean_ms: crate::stats::mean(&inits),
            init_duration_p95_ms: percentile(&inits, 95.0),
            timeouts: count(&|r| r.status.as_deref() == Some("timeout")),
            out_of_memory: count(&|r| r.error_type.as_deref() == Some("Runtime.OutOfMemory")),
        })
    }
}

/// The facts of each version, `$LATEST` first, then versions in number order, unknown last.
pub fn facts_by_version<'a>(
    reports: impl IntoIterator<Item = (Option<&'a str>, &'a Report)>,
) -> Vec<ReportFacts> {
    let mut by_version: BTreeMap<(u8, u64, Option<&str>), Vec<&Report>> = BTreeMap::new();
    for (version, report) in reports {
        let order = match version {
            Some("$LATEST") => (0, 0),
            Some(v) => (1, v.parse().unwrap_or(u64::MAX)),
            None => (2, 0),
        };
        by_version
            .entry((order.0, order.1, version))
            .or_default()
            .push(report);
    }
    by_version
        .into_iter()
        .filter_map(|((_, _, version), reports)| {
            ReportFacts::of(version.map(str::to_owned), &reports)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(line: &str) -> Report {
        match parse_report(line) {
            ReportLine::Report(r) => r,
            other => panic!("{other:?} for {line}"),
        }
    }

    fn malformed(line: &str) -> &'static str {
        match parse_report(line) {
            ReportLine::Malformed(reason) => reason,
            other => panic!("{other:?} for {line}"),
        }
    }

    const ID: &str = "8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f";

    #[test]
    fn a_cold_start_report_with_tabs() {
        let r = report(&format!(
            "REPORT RequestId: {ID}\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB\tInit Duration: 150.34 ms\t\n"
        ));
        assert_eq!(r.request_id.as_deref(), Some(ID));
        assert_eq!(r.duration_ms, 102.25);
        assert_eq!(r.billed_duration_ms, 103.0);
        assert_eq!(r.memory_size_mb, 128.0);
        assert_eq!(r.max_memory_used_mb, 70.0);
        assert_eq!(r.init_duration_ms, Some(150.34));
        assert_eq!(r.status, None);
    }

    #[test]
    fn a_warm_report_with_spaces_and_xray_has_no_init_duration() {
        let r = report(&format!(
            "REPORT RequestId: {ID} Duration: 2.53 ms Billed Duration: 3 ms Memory Size: 1024 MB Max Memory Used: 81 MB \nXRAY TraceId: 1-6740a1b3-4c2d9e8f7a6b5c4d3e2f1a0b SegmentId: 2c3d4e5f6a7b8c9d Sampled: true"
        ));
        assert_eq!(r.init_duration_ms, None);
        assert_eq!(r.memory_size_mb, 1024.0);
    }

    #[test]
    fn managed_runtime_suffixes_are_read() {
        let r = report(&format!(
            "REPORT RequestId: {ID}\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\tMemory Size: 128 MB\tMax Memory Used: 64 MB\tStatus: timeout"
        ));
        assert_eq!(r.status.as_deref(), Some("timeout"));
        let r = report(&format!(
            "REPORT RequestId: {ID}\tDuration: 812.40 ms\tBilled Duration: 813 ms\tMemory Size: 128 MB\tMax Memory Used: 128 MB\tInit Duration: 201.05 ms\tStatus: error\tError Type: Runtime.OutOfMemory"
        ));
        assert_eq!(r.status.as_deref(), Some("error"));
        assert_eq!(r.error_type.as_deref(), Some("Runtime.OutOfMemory"));
        assert_eq!(r.init_duration_ms, Some(201.05));
        // SnapStart's restore fields and fields not known yet are ignored.
        let r = report(&format!(
            "REPORT RequestId: {ID}\tDuration: 5.00 ms\tBilled Duration: 81 ms\tMemory Size: 512 MB\tMax Memory Used: 90 MB\tRestore Duration: 474.16 ms\tBilled Restore Duration: 75 ms\tFuture Field: 7 units"
        ));
        assert_eq!(r.billed_duration_ms, 81.0);
    }

    #[test]
    fn fields_in_another_order_and_a_report_after_an_error_line() {
        let r = report(&format!(
            "RequestId: {ID} Error: Runtime exited with error: signal: killed\nREPORT RequestId: {ID}\tMax Memory Used: 128 MB\tMemory Size: 128 MB\tBilled Duration: 813 ms\tDuration: 812.40 ms"
        ));
        assert_eq!(r.max_memory_used_mb, 128.0);
        assert_eq!(r.duration_ms, 812.40);
    }

    #[test]
    fn the_json_platform_report_is_read() {
        let r = report(
            r#"{"time":"2026-11-22T05:00:03.150Z","type":"platform.report","record":{"requestId":"8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f","metrics":{"durationMs":102.25,"billedDurationMs":103,"memorySizeMB":128,"maxMemoryUsedMB":70,"initDurationMs":150.34},"tracing":{"spanId":"2c3d","type":"X-Amzn-Trace-Id","value":"Root=1-6740a1b3"},"status":"success"}}"#,
        );
        assert_eq!(r.init_duration_ms, Some(150.34));
        assert_eq!(r.status.as_deref(), Some("success"));
        let r = report(
            r#"{"time":"t","type":"platform.report","record":{"requestId":"r","metrics":{"durationMs":3000.0,"billedDurationMs":3000,"memorySizeMB":128,"maxMemoryUsedMB":128},"status":"error","errorType":"Runtime.OutOfMemory","extra":[1,2]}}"#,
        );
        assert_eq!(r.error_type.as_deref(), Some("Runtime.OutOfMemory"));
        assert_eq!(r.init_duration_ms, None);
    }

    #[test]
    fn broken_reports_are_malformed_and_other_lines_are_not_reports() {
        let base = format!(
            "REPORT RequestId: {ID}\tDuration: 102.25 ms\tBilled Duration: 103 ms\tMemory Size: 128 MB\tMax Memory Used: 70 MB"
        );
        // Cut at every point that leaves a field incomplete.
        for cut in [
            "REPORT RequestId: ",
            "REPORT RequestId: 8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f\tDuration: 102.25",
            "REPORT RequestId: 8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f\tDuration: 102.25 ms\tBilled Dura",
            &format!("{base}\tInit Duration: 150.3"),
            &format!("{base}\tInit Duration:"),
            &format!("{base}\tInit"),
        ] {
            malformed(cut);
        }
        assert_eq!(
            malformed(&format!(
                "REPORT RequestId: {ID}\tDuration: 1.00 ms\tBilled Duration: 1 ms\tMemory Size: 128 MB"
            )),
            "no Max Memory Used"
        );
        assert_eq!(
            malformed(&base.replace("70 MB", "-70 MB")),
            "a value is not a non-negative number"
        );
        assert_eq!(
            malformed(&base.replace("102.25 ms", "NaN ms")),
            "a value is not a non-negative number"
        );
        malformed(r#"{"type":"platform.report","record":{"metrics":{"durationMs":"fast"}}}"#);
        malformed(r#"{"type":"platform.report","record":{}}"#);
        malformed(r#"{"type":"platform.report"}"#);
        for line in [
            "REPORT generated for customer 42",
            "START RequestId: x Version: $LATEST",
            r#"{"type":"platform.start","record":{"requestId":"x"}}"#,
            r#"{"type":"platform.report""#,
            "[1,2]",
            "",
            "REPORT",
        ] {
            assert_eq!(parse_report(line), ReportLine::NotReport, "{line}");
        }
    }

    #[test]
    fn the_version_comes_from_the_log_stream() {
        assert_eq!(
            version_of_stream("2026/11/22/[$LATEST]0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
            Some("$LATEST")
        );
        assert_eq!(
            version_of_stream("2026/11/22/[17]0f1e2d3c4b5a69788796a5b4c3d2e1f0"),
            Some("17")
        );
        for stream in ["2026/11/22/[live]abc", "2026/11/22/abc", "[", "[]", "x]["] {
            assert_eq!(version_of_stream(stream), None, "{stream}");
        }
    }

    #[test]
    fn facts_per_version() {
        let line = |ms: f64, used: u32, init: Option<f64>| {
            let init = init.map_or(String::new(), |i| format!("\tInit Duration: {i:.2} ms"));
            report(&format!(
                "REPORT RequestId: {ID}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\tMemory Size: 128 MB\tMax Memory Used: {used} MB{init}",
                ms.ceil()
            ))
        };
        let latest: Vec<Report> = (0..20)
            .map(|i| {
                line(
                    100.0 + f64::from(i),
                    60 + i,
                    (i < 5).then_some(300.0 + f64::from(i)),
                )
            })
            .collect();
        let three = [line(50.0, 125, None), line(70.0, 100, Some(250.0))];
        let facts = facts_by_version(
            three
                .iter()
                .map(|r| (Some("3"), r))
                .chain(latest.iter().map(|r| (Some("$LATEST"), r))),
        );
        assert_eq!(facts.len(), 2);
        let l = &facts[0];
        assert_eq!(l.version.as_deref(), Some("$LATEST"));
        assert_eq!(l.invocations, 20);
        assert_eq!(l.duration_ms.max, 119.0);
        assert_eq!(l.duration_ms.p50, 109.5);
        assert_eq!(l.cold_starts, 5);
        assert!((l.cold_start_share - 0.25).abs() < 1e-12);
        assert_eq!(l.init_duration_mean_ms, Some(302.0));
        assert_eq!(l.max_memory_used_mb.max, 79.0);
        assert!((l.memory_pressure - 79.0 / 128.0).abs() < 1e-12);
        assert_eq!(l.at_memory_limit, 0);
        let v3 = &facts[1];
        assert_eq!(v3.version.as_deref(), Some("3"));
        assert_eq!(v3.at_memory_limit, 1);
        assert!((v3.memory_pressure - 125.0 / 128.0).abs() < 1e-12);
        assert_eq!(v3.init_duration_p95_ms, Some(250.0));
    }
}
