//! CloudWatch Logs subscription deliveries (R3 real time): the `{"awslogs": {"data": …}}`
//! Lambda event decoded under size caps, its error lines picked out, mined per function
//! into a bounded [`StreamState`], and the templates that are new or whose rate jumped.
//!
//! What counts as an error line, and the rate-jump rule: see `docs/logmine.md`
//! ("Real time").

use std::collections::BTreeSet;
use std::io::Read;

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::event::EventError;
use crate::logfacts::record;
use crate::logmine::{MinerState, StreamConfig, TemplateId, TemplateMiner};
use crate::text::{Excerpt, prefix};

/// The most bytes a delivery's JSON may have once decompressed (1 MB); the gzip reader
/// stops there, so a decompression bomb costs at most this much memory.
pub const MAX_DECODED_BYTES: usize = 1024 * 1024;
/// The most base64 text read: the decoded cap, base64-expanded, with gzip's overhead.
pub const MAX_DATA_TEXT_BYTES: usize = MAX_DECODED_BYTES / 3 * 4 + 4096;
/// The bytes of one message mined (its start); longer ones are cut at a character boundary,
/// which bounds a template's size in the saved state.
pub const MAX_MINED_MESSAGE_BYTES: usize = 512;
/// Templates kept per function; the least recently seen are evicted past it.
pub const MAX_STREAM_TEMPLATES: usize = 64;
/// The most bytes of a saved state; past it the oldest templates are dropped (DynamoDB
/// items are at most 400 KB).
pub const MAX_STATE_BYTES: usize = 256 * 1024;
/// The rate window: counts are kept per template per 5 minutes of log time.
pub const RATE_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Lines of one template in one window needed before a jump is believed.
pub const JUMP_MIN_COUNT: u64 = 10;
/// How many times its baseline a window's count must be to be a jump.
pub const JUMP_FACTOR: f64 = 5.0;
/// Windows of history a template needs before its rate can jump (before that it is new).
pub const JUMP_MIN_HISTORY_WINDOWS: u64 = 3;
/// The weight of the window just closed in the baseline (about an hour of windows).
const BASELINE_WEIGHT: f64 = 1.0 / 12.0;

/// A subscription delivery's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum MessageType {
    /// Log events.
    #[serde(rename = "DATA_MESSAGE")]
    Data,
    /// CloudWatch Logs checking the destination is reachable; carries nothing to act on.
    #[serde(rename = "CONTROL_MESSAGE")]
    Control,
}

/// One log event of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct LogEvent {
    /// CloudWatch's id of the event.
    pub id: String,
    /// When it was logged, unix milliseconds.
    pub timestamp: i64,
    /// The line.
    pub message: String,
}

/// A decoded subscription delivery (the JSON inside `awslogs.data`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogsDelivery {
    /// Data or control.
    pub message_type: MessageType,
    /// The account that owns the log group.
    pub owner: String,
    /// The log group.
    pub log_group: String,
    /// The log stream (for Lambda, `YYYY/MM/DD/[version]hash`).
    pub log_stream: String,
    /// The subscription filters that matched.
    pub subscription_filters: Vec<String>,
    /// The events.
    pub log_events: Vec<LogEvent>,
}

/// Whether an event is a subscription delivery (it has an `awslogs` member).
pub fn is_delivery(event: &Value) -> bool {
    event.get("awslogs").is_some()
}

/// A field path of a delivery, to echo in an error: it holds the payload's own keys, so it
/// is shown as is only when short and printable (the fuzzer found a 1.3 kB one).
fn echoed_path(path: String) -> String {
    if path.len() <= 80 && path.chars().all(|c| c.is_ascii_graphic()) {
        path
    } else {
        Excerpt(&path).to_string()
    }
}

/// Decodes `{"awslogs": {"data": "<base64 of gzip of JSON>"}}`; every failure names what
/// is wrong (not base64, truncated gzip, over [`MAX_DECODED_BYTES`], a bad field).
pub fn decode_delivery(event: &Value) -> Result<LogsDelivery, EventError> {
    let bad = |problem: String| EventError(format!("awslogs: {problem}"));
    let data = event
        .get("awslogs")
        .and_then(|a| a.get("data"))
        .ok_or_else(|| bad("data is missing".into()))?
        .as_str()
        .ok_or_else(|| bad("data is not a string".into()))?;
    if data.len() > MAX_DATA_TEXT_BYTES {
        return Err(bad(format!(
            "data is {} bytes of base64, more than the {MAX_DATA_TEXT_BYTES} read",
            data.len()
        )));
    }
    let gzipped = base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|e| bad(format!("data is not base64: {e}")))?;
    if !gzipped.starts_with(&[0x1f, 0x8b]) {
        return Err(bad("data is not gzip (no gzip header)".into()));
    }
    let mut json = Vec::new();
    // One byte over the cap tells an oversized payload from one exactly at it.
    flate2::read::GzDecoder::new(gzipped.as_slice())
        .take(MAX_DECODED_BYTES as u64 + 1)
        .read_to_end(&mut json)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => bad("data is truncated gzip".into()),
            _ => bad(format!("data is not gzip: {e}")),
        })?;
    if json.len() > MAX_DECODED_BYTES {
        return Err(bad(format!(
            "data decompresses to more than {MAX_DECODED_BYTES} bytes"
        )));
    }
    let de = &mut serde_json::Deserializer::from_slice(&json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = echoed_path(e.path().to_string());
        bad(format!("{path}: {}", Excerpt(&e.into_inner().to_string())))
    })
}

/// The error in a log line, as mined: `None` when the line reports no error.
///
/// The line is read as a record ([`crate::logfacts::record`]): a JSON line by its fields
/// (with a level, an error is ERROR or FATAL, so a JSON line at INFO is no error whatever its
/// text says; without one, an `errorType` / `errorMessage` or their Powertools and
/// `tracing` equivalents), any other line by its markers ([`LogRecord::is_error`](crate::logfacts::LogRecord::is_error)); Lambda
/// platform lines (`START`, `END`, `REPORT`, `INIT_START`, `platform.*`) never are. The text
/// mined is the record's: `<error type>: <error message>` when it names a type, else the
/// message ([`LogRecord::mined_text`](crate::logfacts::LogRecord::mined_text)).
pub fn error_text(message: &str) -> Option<String> {
    let record = record::read(message);
    record
        .is_error()
        .then(|| cut(&record.mined_text()).to_owned())
}

/// The start of `text`, at most [`MAX_MINED_MESSAGE_BYTES`], cut at a character boundary.
fn cut(text: &str) -> &str {
    prefix(text, MAX_MINED_MESSAGE_BYTES)
}

/// A template's count in its current rate window, and its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateRate {
    /// The template (a live id of the miner).
    pub id: TemplateId,
    /// The current window (unix ms / [`RATE_WINDOW_MS`]).
    pub window: i64,
    /// Lines in the current window.
    pub count: u64,
    /// Lines per window before the current one, exponentially weighted.
    pub baseline: f64,
    /// Windows since the template was first seen, the current one included.
    pub windows: u64,
    /// The last window a jump of this template was reported in.
    pub jumped_in: Option<i64>,
}

impl TemplateRate {
    fn new(id: TemplateId, window: i64) -> Self {
        Self {
            id,
            window,
            count: 0,
            baseline: 0.0,
            windows: 1,
            jumped_in: None,
        }
    }

    /// Counts one line in `window`; a later window closes the current one into the baseline
    /// (empty windows in between weigh as zeros). A line from an earlier window (a late
    /// delivery) counts in the current one.
    fn count_in(&mut self, window: i64) {
        if window > self.window {
            let closed = self.count as f64;
            self.baseline += BASELINE_WEIGHT * (closed - self.baseline);
            let empty = (window - self.window - 1).min(1000);
            self.baseline *= (1.0 - BASELINE_WEIGHT).powi(empty as i32);
            self.windows = self.windows.saturating_add((window - self.window) as u64);
            self.window = window;
            self.count = 0;
        }
        self.count = self.count.saturating_add(1);
    }

    /// The rule: at least [`JUMP_MIN_HISTORY_WINDOWS`] windows of history, at least
    /// [`JUMP_MIN_COUNT`] lines in the current window, and at least [`JUMP_FACTOR`] times the
    /// baseline; reported once per window.
    fn jumped(&self) -> bool {
        self.windows > JUMP_MIN_HISTORY_WINDOWS
            && self.count >= JUMP_MIN_COUNT
            && self.count as f64 >= JUMP_FACTOR * self.baseline
            && self.jumped_in != Some(self.window)
    }
}

/// One function's saved streaming state: its miner and the templates' rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamState {
    /// The miner.
    pub miner: MinerState,
    /// Per live template, by id.
    pub rates: Vec<TemplateRate>,
}

/// Why a template is worth a cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogSignalKind {
    /// Never seen before for this function.
    New,
    /// Its count in the current window jumped (see [`TemplateRate`]).
    RateJump,
}

/// A template worth a cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogSignal {
    /// New or jumped.
    pub kind: LogSignalKind,
    /// The template text.
    pub template: String,
    /// Its lines in the current window.
    pub count: u64,
    /// Its baseline lines per window.
    pub baseline: f64,
    /// The earliest timestamp (unix ms) of its lines in this delivery.
    pub first_ms: i64,
}

/// What mining one delivery found.
#[derive(Debug, Clone, PartialEq)]
pub struct Mined {
    /// Error lines in the delivery.
    pub error_lines: usize,
    /// Templates new or jumped, the new first, then by text.
    pub signals: Vec<LogSignal>,
}

/// The miner configuration deliveries use: the shipped one, with fewer templates so that
/// a function's state stays small.
pub fn stream_config() -> StreamConfig {
    StreamConfig {
        max_templates: MAX_STREAM_TEMPLATES,
        max_cached_signatures: 1024,
        ..StreamConfig::DEFAULT
    }
}

/// Mines a delivery's error lines into `state` (a fresh one when `None`), returning the new
/// state and what it found. Timestamps are the events' own, so the result depends only on
/// the state and the delivery.
pub fn mine_delivery(
    state: Option<StreamState>,
    delivery: &LogsDelivery,
) -> Result<(StreamState, Mined), String> {
    let (mut miner, mut rates) = match state {
        Some(s) => (
            TemplateMiner::from_state(s.miner).map_err(|e| format!("saved miner: {e}"))?,
            s.rates,
        ),
        None => (TemplateMiner::new(stream_config()), Vec::new()),
    };
    let known: BTreeSet<TemplateId> = miner.templates().map(|(id, _, _)| id).collect();
    let mut touched: Vec<(TemplateId, i64)> = Vec::new();
    let mut error_lines = 0;
    for event in &delivery.log_events {
        let Some(text) = error_text(&event.message) else {
            continue;
        };
        let Some(id) = miner.observe(&text) else {
            continue;
        };
        error_lines += 1;
        let id = miner.resolve(id);
        let window = event.timestamp.div_euclid(RATE_WINDOW_MS);
        let rate = match rates.iter_mut().find(|r| r.id == id) {
            Some(rate) => rate,
            None => {
                rates.push(TemplateRate::new(id, window));
                rates.last_mut().expect("just pushed")
            }
        };
        rate.count_in(window);
        match touched.iter_mut().find(|(t, _)| *t == id) {
            Some((_, first)) => *first = (*first).min(event.timestamp),
            None => touched.push((id, event.timestamp)),
        }
    }
    // Ids merged or evicted while mining: follow merges, forget the evicted.
    let live: BTreeSet<TemplateId> = miner.templates().map(|(id, _, _)| id).collect();
    for rate in &mut rates {
        rate.id = miner.resolve(rate.id);
    }
    rates.retain(|r| live.contains(&r.id));
    rates.sort_by_key(|r| r.id);
    rates.dedup_by(|later, kept| {
        if later.id == kept.id {
            kept.count = kept.count.saturating_add(later.count);
            true
        } else {
            false
        }
    });

    let mut signals = Vec::new();
    let mut reported = BTreeSet::new();
    for (id, first_ms) in touched {
        let id = miner.resolve(id);
        let Some(rate) = rates.iter_mut().find(|r| r.id == id) else {
            continue;
        };
        if !reported.insert(id) {
            continue;
        }
        let kind = if !known.contains(&id) {
            LogSignalKind::New
        } else if rate.jumped() {
            LogSignalKind::RateJump
        } else {
            continue;
        };
        rate.jumped_in = Some(rate.window);
        signals.push(LogSignal {
            kind,
            template: miner.template(id).unwrap_or_default(),
            count: rate.count,
            baseline: rate.baseline,
            first_ms,
        });
    }
    signals.sort_by(|a, b| {
        (a.kind != LogSignalKind::New)
            .cmp(&(b.kind != LogSignalKind::New))
            .then_with(|| a.template.cmp(&b.template))
    });
    let state = bounded(StreamState {
        miner: miner.state(),
        rates,
    });
    Ok((
        state,
        Mined {
            error_lines,
            signals,
        },
    ))
}

/// The state, with the least recently seen templates dropped until it serialises within
/// [`MAX_STATE_BYTES`].
fn bounded(mut state: StreamState) -> StreamState {
    while encoded_len(&state) > MAX_STATE_BYTES && !state.miner.templates.is_empty() {
        let oldest = state
            .miner
            .templates
            .iter()
            .min_by_key(|t| (t.last_seen, t.id))
            .map(|t| t.id)
            .expect("not empty");
        state.miner.templates.retain(|t| t.id != oldest);
        state.miner.aliases.retain(|(_, to)| *to != oldest);
        state.rates.retain(|r| r.id != oldest);
    }
    state
}

fn encoded_len(state: &StreamState) -> usize {
    serde_json::to_vec(state).map_or(usize::MAX, |v| v.len())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use serde_json::json;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(bytes).unwrap();
        gz.finish().unwrap()
    }

    fn wrap(gz: &[u8]) -> Value {
        json!({"awslogs": {"data": base64::engine::general_purpose::STANDARD.encode(gz)}})
    }

    fn delivery(events: &[(i64, &str)]) -> LogsDelivery {
        LogsDelivery {
            message_type: MessageType::Data,
            owner: "123456789012".into(),
            log_group: "/aws/lambda/orders-api".into(),
            log_stream: "2026/11/22/[$LATEST]abc".into(),
            subscription_filters: vec!["selfbuild".into()],
            log_events: events
                .iter()
                .enumerate()
                .map(|(i, (t, m))| LogEvent {
                    id: i.to_string(),
                    timestamp: *t,
                    message: (*m).to_owned(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_sample_delivery_decodes() {
        let event: Value =
            serde_json::from_str(include_str!("../../../events/logs-new-error.json")).unwrap();
        let d = decode_delivery(&event).unwrap();
        assert_eq!(d.message_type, MessageType::Data);
        assert_eq!(d.log_group, "/aws/lambda/orders-api");
        assert!(
            d.log_events
                .iter()
                .any(|e| error_text(&e.message).is_some())
        );
    }

    #[test]
    fn long_or_unprintable_paths_are_echoed_as_excerpts() {
        assert_eq!(
            echoed_path("logEvents[3].message".into()),
            "logEvents[3].message"
        );
        let long = echoed_path(format!("logEvents.{}", "K".repeat(1300)));
        assert!(long.len() < 200, "{long}");
        let control = echoed_path("owner\u{1b}[2J".into());
        assert!(!control.contains('\u{1b}'), "{control}");
    }

    #[test]
    fn bad_payloads_are_named() {
        let err = |v: Value| decode_delivery(&v).unwrap_err().0;
        assert!(err(json!({"awslogs": {}})).contains("data is missing"));
        assert!(err(json!({"awslogs": {"data": "!!"}})).contains("not base64"));
        let gz = gzip(br#"{"messageType": "DATA_MESSAGE"}"#);
        assert!(err(wrap(&gz[..gz.len() / 2])).contains("truncated"));
        assert!(err(wrap(b"plain")).contains("not gzip"));
        let e = err(wrap(&gzip(br#"{"messageType": "DATA_MESSAGE"}"#)));
        assert!(e.contains("owner") || e.contains("missing field"), "{e}");
        let e = err(wrap(&gzip(br#"{"messageType": "OTHER"}"#)));
        assert!(e.contains("messageType"), "{e}");
    }

    #[test]
    fn a_decompression_bomb_is_refused_without_inflating_it() {
        // 64 MB of zeros compress to ~64 KB; the reader stops one byte past 1 MB.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![b' '; 1 << 20];
        for _ in 0..64 {
            gz.write_all(&zeros).unwrap();
        }
        let e = decode_delivery(&wrap(&gz.finish().unwrap())).unwrap_err().0;
        assert!(e.contains("more than 1048576 bytes"), "{e}");
    }

    #[test]
    fn error_lines_are_told_by_fields_and_markers() {
        for line in [
            "2026-11-22T05:00:00Z\tabc\tERROR\tpayment failed for order 42",
            "[ERROR]\t2026-11-22T05:00:00Z\tabc\tKeyError: 'sku'",
            "Traceback (most recent call last):\n  File \"/var/task/app.py\", line 3\nKeyError: 'sku'",
            "2026-11-22T05:00:00.000Z abc Task timed out after 3.00 seconds",
            "RequestId: abc Error: Runtime exited with error: signal: killed Runtime.ExitError",
            "thread 'main' panicked at src/main.rs:4:5:",
            "java.lang.NullPointerException: null",
            r#"{"level":"ERROR","message":"db down","service":"orders"}"#,
            r#"{"errorType":"TypeError","errorMessage":"x is undefined","trace":[]}"#,
        ] {
            assert!(error_text(line).is_some(), "{line}");
        }
        for line in [
            "START RequestId: abc Version: $LATEST",
            "REPORT RequestId: abc Duration: 2.00 ms Billed Duration: 3 ms",
            "2026-11-22T05:00:00Z\tabc\tINFO\tno errors here",
            r#"{"level":"INFO","message":"ERROR in the text but not the level"}"#,
            "an ErrorBoundary rendered",
        ] {
            assert!(error_text(line).is_none(), "{line}");
        }
        assert_eq!(
            error_text(r#"{"errorType":"TypeError","errorMessage":"x is undefined"}"#).unwrap(),
            "TypeError: x is undefined"
        );
    }

    const T0: i64 = 1_795_000_000_000;

    #[test]
    fn a_new_template_is_reported_once() {
        let d = delivery(&[(T0, "ERROR payment failed for order 42")]);
        let (state, mined) = mine_delivery(None, &d).unwrap();
        assert_eq!(mined.signals.len(), 1);
        assert_eq!(mined.signals[0].kind, LogSignalKind::New);
        let d = delivery(&[(T0 + 1000, "ERROR payment failed for order 43")]);
        let (_, mined) = mine_delivery(Some(state), &d).unwrap();
        assert!(mined.signals.is_empty(), "{mined:?}");
    }

    #[test]
    fn a_rate_jump_is_reported_once_per_window() {
        // GIVEN a template at 1 line per window for an hour
        let line = "ERROR cache miss storm on shard 7";
        let (mut state, _) = mine_delivery(None, &delivery(&[(T0, line)])).unwrap();
        for w in 1..12 {
            let d = delivery(&[(T0 + w * RATE_WINDOW_MS, line)]);
            let (next, mined) = mine_delivery(Some(state), &d).unwrap();
            assert!(mined.signals.is_empty());
            state = next;
        }
        // WHEN 9 lines arrive in the next window THEN no jump (below the minimum count)
        let later = T0 + 12 * RATE_WINDOW_MS;
        let nine: Vec<(i64, &str)> = (0..9).map(|i| (later + i, line)).collect();
        let (state, mined) = mine_delivery(Some(state), &delivery(&nine)).unwrap();
        assert!(mined.signals.is_empty());
        // WHEN the tenth arrives THEN a jump, once
        let (state, mined) = mine_delivery(Some(state), &delivery(&[(later + 10, line)])).unwrap();
        assert_eq!(mined.signals.len(), 1, "{mined:?}");
        assert_eq!(mined.signals[0].kind, LogSignalKind::RateJump);
        assert_eq!(mined.signals[0].count, 10);
        let (_, mined) = mine_delivery(Some(state), &delivery(&[(later + 11, line)])).unwrap();
        assert!(mined.signals.is_empty());
    }

    #[test]
    fn a_steady_high_rate_is_not_a_jump() {
        let line = "ERROR upstream returned 503";
        let mut state = None;
        for w in 0..20 {
            let lines: Vec<(i64, &str)> = (0..20)
                .map(|i| (T0 + w * RATE_WINDOW_MS + i, line))
                .collect();
            let (next, mined) = mine_delivery(state, &delivery(&lines)).unwrap();
            if w > 0 {
                assert!(mined.signals.is_empty(), "window {w}: {mined:?}");
            }
            state = Some(next);
        }
    }

    #[test]
    fn the_state_stays_bounded_and_round_trips() {
        let mut state = None;
        for i in 0..400 {
            let line = format!("ERROR failure kind{i} {} in module{i}", "x".repeat(400));
            let (next, _) = mine_delivery(state, &delivery(&[(T0 + i, &line)])).unwrap();
            let text = serde_json::to_string(&next).unwrap();
            assert!(text.len() <= MAX_STATE_BYTES);
            assert!(next.miner.templates.len() <= MAX_STREAM_TEMPLATES);
            assert!(next.rates.len() <= next.miner.templates.len());
            state = Some(serde_json::from_str(&text).unwrap());
        }
    }
}
