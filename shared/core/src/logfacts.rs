//! Lambda facts hidden in log lines: what analyze reads from log rows besides their templates.
//!
//! - [`record`]: a line read as a record: JSON logs (Powertools, `tracing` JSON, Lambda's
//!   JSON log format) by their fields, text lines by Lambda's layouts; level, message, error.
//! - [`report`]: `REPORT` lines (text and `platform.report`) parsed, and their facts per
//!   function version: durations, memory pressure, cold starts, init cost.
//! - [`trace`]: multi-line stack traces (Python, Node.js, Java, Rust panics) as one event
//!   with its exception and frames.
//! - [`timeouts`]: whether timeouts cluster in time or spread with traffic.
//!
//! Here: the failures one row reports ([`Failures`]), counted once per request
//! ([`FailureCounts`]), and traces grouped by exception type and top frame ([`TraceGroup`]).
//! What analyze makes of them: `docs/cycle.md` (analyze), `docs/logfacts.md`.

pub mod record;
pub mod report;
pub mod timeouts;
pub mod trace;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use record::{Format, Level, LogRecord};
pub use report::{Report, ReportFacts, ReportLine, parse_report, version_of_stream};
pub use timeouts::{TimeoutPattern, TimeoutWindow, timeout_pattern};
pub use trace::{Frame, Language, StackTrace, parse_trace};

/// The runtime's timeout line.
const TIMEOUT_MARKERS: [&str; 1] = ["Task timed out after"];

/// Out of memory: the sandbox killed at its memory size (`signal: killed`,
/// `Runtime.OutOfMemory`), or a language heap exhausted (Node.js, Java, Python), which more
/// memory also relieves (the runtimes size their heaps from it).
const OUT_OF_MEMORY_MARKERS: [&str; 5] = [
    "signal: killed",
    "Runtime.OutOfMemory",
    "JavaScript heap out of memory",
    "java.lang.OutOfMemoryError",
    "MemoryError",
];

/// The runtime process exited (a crash, `exit(1)`, a signal): `Runtime.ExitError`.
const EXIT_MARKERS: [&str; 3] = [
    "Runtime.ExitError",
    "Runtime exited with error",
    "Runtime exited without providing a reason",
];

/// A service the function calls throttled it: the AWS SDKs' throttling error codes and
/// messages (DynamoDB, Lambda, S3, API Gateway, the query protocols' `Throttling`).
const THROTTLE_MARKERS: [&str; 7] = [
    "Throttling",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "SlowDown",
    "Rate exceeded",
    "Rate Exceeded",
];

/// The failures one log row reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Failures {
    /// The invocation timed out (`Task timed out after`, a report's `Status: timeout`).
    pub timeout: bool,
    /// It ran out of memory (see [`OUT_OF_MEMORY_MARKERS`]).
    pub out_of_memory: bool,
    /// The runtime exited (`Runtime.ExitError`) other than for memory.
    pub exit_error: bool,
    /// A downstream service throttled it.
    pub throttled: bool,
}

impl Failures {
    /// What `record` (and the report in it, if any) says.
    pub fn of(record: &LogRecord, report: Option<&Report>) -> Self {
        let texts = [
            Some(record.message.as_str()),
            record.error_type.as_deref(),
            record.error_message.as_deref(),
            report.and_then(|r| r.error_type.as_deref()),
        ];
        let any = |markers: &[&str]| {
            texts
                .iter()
                .flatten()
                .any(|t| markers.iter().any(|m| t.contains(m)))
        };
        let out_of_memory = any(&OUT_OF_MEMORY_MARKERS);
        Self {
            timeout: any(&TIMEOUT_MARKERS)
                || report.is_some_and(|r| r.status.as_deref() == Some("timeout")),
            out_of_memory,
            exit_error: !out_of_memory && any(&EXIT_MARKERS),
            throttled: any(&THROTTLE_MARKERS),
        }
    }

    fn merge(&mut self, other: Self) {
        self.timeout |= other.timeout;
        self.out_of_memory |= other.out_of_memory;
        self.exit_error = (self.exit_error || other.exit_error) && !self.out_of_memory;
        self.throttled |= other.throttled;
    }
}

/// Failed invocations among a component's error rows, one per request: rows that share a
/// request id (the runtime's error line, its `REPORT`, the application's own error) are one
/// event; a row without one is an event of its own.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct FailureCounts {
    /// Events.
    pub events: usize,
    /// Events that timed out.
    pub timeouts: usize,
    /// Events that ran out of memory.
    pub out_of_memory: usize,
    /// Events whose runtime exited other than for memory.
    pub exit_errors: usize,
    /// Events a downstream service throttled.
    pub throttled: usize,
    /// When each timed-out event was first logged, in time order.
    pub timeout_times: Vec<OffsetDateTime>,
}

impl FailureCounts {
    /// Counts `rows`: (request id, time, failures).
    pub fn count<'a>(
        rows: impl IntoIterator<Item = (Option<&'a str>, OffsetDateTime, Failures)>,
    ) -> Self {
        let mut by_request: BTreeMap<&str, (OffsetDateTime, Failures)> = BTreeMap::new();
        let mut single: Vec<(OffsetDateTime, Failures)> = Vec::new();
        for (request, at, failures) in rows {
            match request {
                Some(id) => {
                    let entry = by_request.entry(id).or_insert((at, Failures::default()));
                    entry.0 = entry.0.min(at);
                    entry.1.merge(failures);
                }
                None => single.push((at, failures)),
            }
        }
        let events: Vec<(OffsetDateTime, Failures)> =
            by_request.into_values().chain(single).collect();
        let count = |f: fn(&Failures) -> bool| events.iter().filter(|(_, e)| f(e)).count();
        let mut timeout_times: Vec<OffsetDateTime> = events
            .iter()
            .filter(|(_, f)| f.timeout)
            .map(|(at, _)| *at)
            .collect();
        timeout_times.sort();
        Self {
            events: events.len(),
            timeouts: count(|f| f.timeout),
            out_of_memory: count(|f| f.out_of_memory),
            exit_errors: count(|f| f.exit_error),
            throttled: count(|f| f.throttled),
            timeout_times,
        }
    }
}

/// Stack traces of one exception type raised at one place: the key is the type and the top
/// frame's file and function ([`StackTrace::key`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceGroup {
    /// The exception's type.
    pub exception: String,
    /// The language.
    pub language: Language,
    /// Rows with this trace.
    pub count: u64,
    /// The first trace's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The first trace's frames, innermost first (at most [`trace::MAX_FRAMES`]).
    pub frames: Vec<Frame>,
    /// The first trace's causes, nearest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
    /// The components that logged it, sorted.
    pub components: Vec<String>,
    /// The earliest row.
    #[serde(with = "time::serde::rfc3339")]
    pub first_seen: OffsetDateTime,
    /// The latest row.
    #[serde(with = "time::serde::rfc3339")]
    pub last_seen: OffsetDateTime,
}

impl TraceGroup {
    /// The innermost frame.
    pub fn top_frame(&self) -> Option<&Frame> {
        self.frames.first()
    }
}

/// Groups traces (trace, component, time) by [`StackTrace::key`], most rows first (then by
/// key); each group keeps its earliest trace's message and frames.
pub fn group_traces<'a>(
    traces: impl IntoIterator<Item = (&'a StackTrace, &'a str, OffsetDateTime)>,
) -> Vec<TraceGroup> {
    let mut groups: BTreeMap<String, TraceGroup> = BTreeMap::new();
    for (trace, component, at) in traces {
        let group = groups.entry(trace.key()).or_insert_with(|| TraceGroup {
            exception: trace.exception.clone(),
            language: trace.language,
            count: 0,
            message: trace.message.clone(),
            frames: trace.frames.clone(),
            causes: trace.causes.clone(),
            components: Vec::new(),
            first_seen: at,
            last_seen: at,
        });
        group.count += 1;
        if at < group.first_seen {
            group.message = trace.message.clone();
            group.frames = trace.frames.clone();
            group.causes = trace.causes.clone();
            group.first_seen = at;
        }
        group.last_seen = group.last_seen.max(at);
        if let Err(i) = group
            .components
            .binary_search_by(|c| c.as_str().cmp(component))
        {
            group.components.insert(i, component.to_owned());
        }
    }
    let mut groups: Vec<(String, TraceGroup)> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1.count.cmp(&a.1.count).then_with(|| a.0.cmp(&b.0)));
    groups.into_iter().map(|(_, g)| g).collect()
}

#[cfg(test)]
mod tests {
    use time::Duration;
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-11-22 05:00 UTC);
    const ID: &str = "8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f";
    const ID2: &str = "0b1c2d3e-4f50-4612-8a3b-9c8d7e6f5a4b";

    fn failures(line: &str) -> Failures {
        let record = record::read(line);
        let report = match parse_report(line) {
            ReportLine::Report(r) => Some(r),
            _ => None,
        };
        Failures::of(&record, report.as_ref())
    }

    #[test]
    fn each_failure_is_told_by_its_marker() {
        let f = failures(&format!(
            "2026-11-22T05:00:03.000Z {ID} Task timed out after 3.00 seconds"
        ));
        assert!(f.timeout && !f.out_of_memory && !f.exit_error);
        let f = failures(&format!(
            "REPORT RequestId: {ID}\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\tMemory Size: 128 MB\tMax Memory Used: 60 MB\tStatus: timeout"
        ));
        assert!(f.timeout);
        let f = failures(&format!(
            "RequestId: {ID} Error: Runtime exited with error: signal: killed\nRuntime.ExitError"
        ));
        assert!(
            f.out_of_memory && !f.exit_error,
            "a kill for memory is no crash"
        );
        let f = failures(&format!(
            "RequestId: {ID} Error: Runtime exited with error: exit status 1\nRuntime.ExitError"
        ));
        assert!(f.exit_error && !f.out_of_memory);
        let f = failures(
            r#"{"errorType":"Runtime.ExitError","errorMessage":"RequestId: r Error: Runtime exited with error: signal: segmentation fault"}"#,
        );
        assert!(f.exit_error);
        let f = failures(
            r#"{"time":"t","type":"platform.report","record":{"requestId":"r","metrics":{"durationMs":900,"billedDurationMs":900,"memorySizeMB":128,"maxMemoryUsedMB":128},"status":"error","errorType":"Runtime.OutOfMemory"}}"#,
        );
        assert!(f.out_of_memory);
        let f = failures(
            "<--- Last few GCs --->\nFATAL ERROR: Reached heap limit Allocation failed - JavaScript heap out of memory",
        );
        assert!(f.out_of_memory);
        let f = failures(&format!(
            "[ERROR]\t2026-11-22T05:00:03Z\t{ID}\tClientError: An error occurred (ProvisionedThroughputExceededException) when calling the PutItem operation"
        ));
        assert!(f.throttled);
        assert_eq!(failures("ERROR payment declined"), Failures::default());
    }

    #[test]
    fn rows_of_one_request_are_one_event() {
        let timeout = Failures {
            timeout: true,
            ..Failures::default()
        };
        let killed = Failures {
            out_of_memory: true,
            ..Failures::default()
        };
        let exited = Failures {
            exit_error: true,
            ..Failures::default()
        };
        let counts = FailureCounts::count([
            // The timeout line and its REPORT.
            (Some(ID), T0 + Duration::seconds(3), timeout),
            (Some(ID), T0 + Duration::seconds(2), timeout),
            // A kill for memory reported as an exit error first: out of memory only.
            (Some(ID2), T0, exited),
            (Some(ID2), T0, killed),
            // Rows without a request id count alone.
            (None, T0, timeout),
            (None, T0, Failures::default()),
        ]);
        assert_eq!(counts.events, 4);
        assert_eq!(counts.timeouts, 2);
        assert_eq!(counts.out_of_memory, 1);
        assert_eq!(counts.exit_errors, 0);
        assert_eq!(counts.timeout_times, [T0, T0 + Duration::seconds(2)]);
    }

    #[test]
    fn interleaved_traces_group_by_type_and_top_frame() {
        // Two requests' errors interleaved in time, each trace one event, with the line of
        // the top frame moved by a deployment in between.
        let rows = [
            "[ERROR] KeyError: 'sku'\rTraceback (most recent call last):\r  File \"/var/task/app.py\", line 10, in handler\r    return event['sku']",
            "2026-11-22T05:00:01.000Z\tr2\tERROR\tTypeError: x is undefined\n    at load (/var/task/index.js:3:9)",
            "[ERROR] KeyError: 'qty'\rTraceback (most recent call last):\r  File \"/var/task/app.py\", line 12, in handler\r    return event['qty']",
            "2026-11-22T05:00:03.000Z\tr4\tERROR\tTypeError: y is undefined\n    at load (/var/task/index.js:3:9)",
            "[ERROR] ValueError: bad\rTraceback (most recent call last):\r  File \"/var/task/app.py\", line 30, in handler\r    raise ValueError('bad')",
        ];
        let traces: Vec<StackTrace> = rows
            .iter()
            .map(|r| {
                let record = record::read(r);
                parse_trace(record.trace_text(), record.error_type.as_deref()).unwrap()
            })
            .collect();
        let groups = group_traces(traces.iter().enumerate().map(|(i, t)| {
            (
                t,
                if i % 2 == 0 { "py-fn" } else { "node-fn" },
                T0 + Duration::seconds(i as i64),
            )
        }));
        let summary: Vec<(&str, u64, &str)> = groups
            .iter()
            .map(|g| {
                (
                    g.exception.as_str(),
                    g.count,
                    g.top_frame().and_then(|f| f.file.as_deref()).unwrap(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("KeyError", 2, "/var/task/app.py"),
                ("TypeError", 2, "/var/task/index.js"),
                ("ValueError", 1, "/var/task/app.py"),
            ]
        );
        // The earliest trace is kept: line 10, message 'sku'.
        assert_eq!(groups[0].frames[0].line, Some(10));
        assert_eq!(groups[0].message.as_deref(), Some("'sku'"));
        assert_eq!(groups[0].components, ["py-fn"]);
        assert_eq!(groups[1].message.as_deref(), Some("x is undefined"));
        assert_eq!(groups[1].last_seen, T0 + Duration::seconds(3));
    }

    #[test]
    fn a_report_cut_anywhere_never_gives_a_wrong_number() {
        let full = format!(
            "REPORT RequestId: {ID}\tDuration: 812.40 ms\tBilled Duration: 813 ms\tMemory Size: 128 MB\tMax Memory Used: 127 MB\tInit Duration: 201.05 ms\tStatus: error\tError Type: Runtime.OutOfMemory"
        );
        let ReportLine::Report(whole) = parse_report(&full) else {
            panic!("the full line is a report");
        };
        let required_end = full.find("127 MB").unwrap() + "127 MB".len();
        let mut reports = 0;
        for (cut, _) in full.char_indices() {
            match parse_report(&full[..cut]) {
                ReportLine::Report(r) => {
                    reports += 1;
                    assert!(cut >= required_end, "cut at {cut}");
                    assert_eq!(r.duration_ms, whole.duration_ms, "cut at {cut}");
                    assert_eq!(r.billed_duration_ms, whole.billed_duration_ms);
                    assert_eq!(r.memory_size_mb, whole.memory_size_mb);
                    assert_eq!(r.max_memory_used_mb, whole.max_memory_used_mb);
                    assert!(
                        r.init_duration_ms.is_none_or(|i| i == 201.05),
                        "cut at {cut}"
                    );
                    // Text values cannot tell a cut: only a prefix of the truth.
                    for (part, truth) in
                        [(&r.status, "error"), (&r.error_type, "Runtime.OutOfMemory")]
                    {
                        assert!(part.as_deref().is_none_or(|p| truth.starts_with(p)));
                    }
                }
                ReportLine::Malformed(_) | ReportLine::NotReport => {}
            }
        }
        // Only cuts after the required fields read as reports.
        assert!(reports > 0);
    }

    use proptest::prelude::*;

    /// Fragments of every syntax the readers know, to be joined in any order.
    const FRAGMENTS: [&str; 40] = [
        "REPORT RequestId: ",
        "Duration: ",
        "Billed Duration: ",
        "Memory Size: ",
        "Max Memory Used: ",
        "Init Duration: ",
        "Status: ",
        "12.5",
        "-1",
        "NaN",
        "1e309",
        " ms",
        " MB",
        "\t",
        "\n",
        "\r",
        "{",
        "}",
        "\"type\":\"platform.report\"",
        "\"record\":{\"metrics\":{\"durationMs\":",
        "\"level\":",
        "\"ERROR\"",
        ",",
        "Traceback (most recent call last):",
        "  File \"/var/task/a.py\", line ",
        ", in ",
        "    at f (",
        "/var/task/i.js:3:9)",
        "panicked at ",
        "'",
        "Caused by: x.Y: z",
        "\tat a.B.c(B.java:1)",
        "stack backtrace:",
        "   3: ",
        "[ERROR] ",
        "\\ud800",
        "\u{fffd}",
        "é",
        "2026/11/22/[",
        "]",
    ];

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 512,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x10_6fac),
            ..ProptestConfig::default()
        })]

        /// Any text: no panic; what is read is within its bounds.
        #[test]
        fn any_text_is_read_within_bounds(
            text in prop_oneof![
                proptest::collection::vec(proptest::sample::select(&FRAGMENTS[..]), 0..24)
                    .prop_map(|parts| parts.concat()),
                any::<String>(),
            ]
        ) {
            let record = record::read(&text);
            prop_assert!(!record.message.contains('\r'));
            let report = match parse_report(&text) {
                ReportLine::Report(r) => {
                    for v in [r.duration_ms, r.billed_duration_ms, r.memory_size_mb, r.max_memory_used_mb]
                        .into_iter()
                        .chain(r.init_duration_ms)
                    {
                        prop_assert!(v.is_finite() && v >= 0.0);
                    }
                    Some(r)
                }
                _ => None,
            };
            let _ = Failures::of(&record, report.as_ref());
            if let Some(trace) = parse_trace(record.trace_text(), record.error_type.as_deref()) {
                prop_assert!(trace.frames.len() <= trace::MAX_FRAMES);
                prop_assert!(!trace.exception.is_empty());
            }
            if let Some(version) = version_of_stream(&text) {
                prop_assert!(version == "$LATEST" || version.bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }
}
