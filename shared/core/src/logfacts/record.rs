//! One log line read as a record: a JSON line by its fields, any other line by the layout
//! the Lambda runtimes print.
//!
//! JSON shapes read (one object per line; any other JSON value, or an object that does not
//! parse, is read as text):
//!
//! | source | level | message | error | stack | request |
//! |---|---|---|---|---|---|
//! | Lambda's JSON log format | `level` | `message` (text, or an object carrying the error fields) | `errorType`, `errorMessage` | `stackTrace` (array) | `requestId` |
//! | the runtimes' uncaught error | — | — | `errorType`, `errorMessage` | `stackTrace` / `stack` (array) | `requestId` |
//! | Powertools for AWS Lambda (Python) | `level` | `message` | `exception_name` | `exception` (the traceback) | `function_request_id` |
//! | Powertools for AWS Lambda (TypeScript) | `level` | `message` | `error.name`, `error.message` | `error.stack` | `function_request_id` |
//! | `tracing` JSON (Rust) | `level` | `fields.message` | `fields.error` | — | — |
//! | Lambda platform events | — | — | `record.errorType` | — | `record.requestId` |
//!
//! Levels also come from `levelname`, `severity`, `log_level`, `lvl` and pino/bunyan
//! numbers (50 error, 60 fatal); messages from `msg`. Text lines: Lambda's layouts
//! `<time>\t<request id>\t<LEVEL>\t<message>` (Node.js, Java) and
//! `[LEVEL]\t<time>\t<request id>\t<message>` (Python), `RequestId: <id>` anywhere in the first
//! line, and a trailing tab-separated JSON object (Node.js' `Invoke Error \t{…}`) read for its
//! error fields. Python's log handler writes a record's line breaks as `\r`: every lone `\r`
//! is read as a line break.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A log level, as the common logging libraries name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Level {
    /// TRACE.
    Trace,
    /// DEBUG.
    Debug,
    /// INFO (also NOTICE).
    Info,
    /// WARN, WARNING.
    Warn,
    /// ERROR, ERR.
    Error,
    /// FATAL, CRITICAL, PANIC, ALERT, EMERGENCY.
    Fatal,
}

impl Level {
    /// The level a name stands for (any case); none for an unknown name.
    pub fn parse(name: &str) -> Option<Self> {
        const NAMES: [(&str, Level); 13] = [
            ("TRACE", Level::Trace),
            ("DEBUG", Level::Debug),
            ("INFO", Level::Info),
            ("NOTICE", Level::Info),
            ("WARN", Level::Warn),
            ("WARNING", Level::Warn),
            ("ERROR", Level::Error),
            ("ERR", Level::Error),
            ("FATAL", Level::Fatal),
            ("CRITICAL", Level::Fatal),
            ("PANIC", Level::Fatal),
            ("ALERT", Level::Fatal),
            ("EMERGENCY", Level::Fatal),
        ];
        let name = name.trim();
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, level)| *level)
    }

    /// pino's and bunyan's numbers: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal.
    fn from_number(n: f64) -> Option<Self> {
        match n {
            n if !n.is_finite() || n < 10.0 => None,
            n if n < 20.0 => Some(Self::Trace),
            n if n < 30.0 => Some(Self::Debug),
            n if n < 40.0 => Some(Self::Info),
            n if n < 50.0 => Some(Self::Warn),
            n if n < 60.0 => Some(Self::Error),
            _ => Some(Self::Fatal),
        }
    }

    /// The upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
        }
    }

    /// ERROR or FATAL.
    pub fn is_error(self) -> bool {
        self >= Self::Error
    }
}

/// How a line was written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Plain text.
    #[default]
    Text,
    /// A JSON object of an application logger or a runtime's error.
    Json,
    /// A Lambda platform line: text `START`, `END`, `REPORT`, `INIT_START`, or a JSON
    /// `platform.*` event.
    Platform,
}

/// A log line read as a record.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LogRecord {
    /// How it was written.
    pub format: Format,
    /// Its level, when it says one.
    pub level: Option<Level>,
    /// The message: a JSON line's message field (an object as compact JSON), or a text
    /// line whole, line breaks normalised to `\n`, outer blanks trimmed.
    pub message: String,
    /// The error's type (`errorType`, `exception_name`, `error.name`).
    pub error_type: Option<String>,
    /// The error's message (`errorMessage`, `error.message`, `fields.error`).
    pub error_message: Option<String>,
    /// A stack trace carried apart from the message (`stackTrace`, `exception`, `error.stack`),
    /// frames one per line.
    pub stack: Option<String>,
    /// The Lambda request id.
    pub request_id: Option<String>,
    /// The service or logger target (`service`, `target`).
    pub service: Option<String>,
    /// The X-Ray trace id (`xray_trace_id`).
    pub trace_id: Option<String>,
    /// A platform event's type (`platform.report`, `platform.runtimeDone`…, or `REPORT`…
    /// for text).
    pub platform: Option<String>,
}

/// The markers of an error in a text line; see [`LogRecord::is_error`].
const ERROR_PHRASES: [&str; 4] = [
    "Traceback (most recent call last)",
    "panicked at",
    "Task timed out after",
    "signal: killed",
];

/// The first words of Lambda's text platform lines.
const PLATFORM_WORDS: [&str; 5] = ["START", "END", "REPORT", "INIT_START", "INIT_REPORT"];

impl LogRecord {
    /// Whether the record reports an error. A JSON record with a level: the level is ERROR or
    /// FATAL (a WARN carrying an exception is a warning); without one: it has an error type
    /// or message. A text line: an error level in Lambda's layout, an embedded error object,
    /// or a marker: `ERROR`, `FATAL`, `CRITICAL` as a word, a word ending in `Exception` or
    /// `Error:`, `Traceback (most recent call last)`, `panicked at`, `Task timed out after`,
    /// `Runtime.<Name>` or `signal: killed`. Platform lines never are (their failures are
    /// read as facts, see [`report`](super::report)).
    pub fn is_error(&self) -> bool {
        if self.format == Format::Platform {
            return false;
        }
        if self.format == Format::Json {
            return match self.level {
                Some(level) => level.is_error(),
                None => self.error_type.is_some() || self.error_message.is_some(),
            };
        }
        self.level.is_some_and(Level::is_error)
            || self.error_type.is_some()
            || text_is_error(&self.message)
    }

    /// The text to mine: `<error type>: <error message or message>` when the record names an
    /// error type; the message otherwise (a JSON error record without any text: `error
    /// without a message`).
    pub fn mined_text(&self) -> String {
        let message = self
            .error_message
            .as_deref()
            .filter(|m| !m.is_empty())
            .unwrap_or(&self.message);
        match &self.error_type {
            Some(kind) if message.is_empty() => kind.clone(),
            Some(kind) => format!("{kind}: {message}"),
            None if message.is_empty() && self.format == Format::Json => {
                "error without a message".to_owned()
            }
            None => message.to_owned(),
        }
    }

    /// The text a stack trace is read from: the separate stack if there is one, else the
    /// message.
    pub fn trace_text(&self) -> &str {
        self.stack.as_deref().unwrap_or(&self.message)
    }
}

/// Reads one log line (which may span lines: a stack trace).
pub fn read(line: &str) -> LogRecord {
    let text = normalize_breaks(line.trim());
    let trimmed = text.trim();
    if trimmed.starts_with('{')
        && let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(trimmed)
    {
        return read_json(&fields);
    }
    read_text(trimmed)
}

/// `\r\n` and lone `\r` as `\n`.
pub fn normalize_breaks(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains('\r') {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(text.replace("\r\n", "\n").replace('\r', "\n"))
}

fn read_json(fields: &Map<String, Value>) -> LogRecord {
    let text = |key: &str| fields.get(key).and_then(Value::as_str).map(str::to_owned);
    let nested = |outer: &str, key: &str| {
        fields
            .get(outer)
            .and_then(|o| o.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    if let Some(kind) = text("type").filter(|t| t.starts_with("platform.")) {
        let record = fields.get("record");
        let field = |key: &str| {
            record
                .and_then(|r| r.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        return LogRecord {
            format: Format::Platform,
            error_type: field("errorType"),
            request_id: field("requestId"),
            platform: Some(kind),
            ..LogRecord::default()
        };
    }
    let level = ["level", "levelname", "severity", "log_level", "lvl"]
        .iter()
        .find_map(|k| match fields.get(*k)? {
            Value::String(s) => Level::parse(s),
            Value::Number(n) => Level::from_number(n.as_f64()?),
            _ => None,
        });
    // Lambda's JSON format logs an uncaught Node.js error as an object in `message`.
    let message_object = fields.get("message").and_then(Value::as_object);
    let error_in = |key: &str| {
        message_object
            .and_then(|m| m.get(key))
            .or_else(|| fields.get(key))
    };
    let error_type = error_in("errorType")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| text("exception_name"))
        .or_else(|| nested("error", "name"));
    let error_message = error_in("errorMessage")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| nested("error", "message"))
        .or_else(|| nested("fields", "error"));
    let stack = error_in("stackTrace")
        .or_else(|| error_in("stack"))
        .and_then(stack_text)
        .or_else(|| text("exception"))
        .or_else(|| nested("error", "stack"))
        .or_else(|| text("stack_trace"))
        .map(|s| normalize_breaks(&s).into_owned());
    let message = match fields.get("message") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Object(_)) if error_type.is_some() => String::new(),
        Some(other @ (Value::Object(_) | Value::Array(_))) => other.to_string(),
        _ => text("msg")
            .or_else(|| nested("fields", "message"))
            .unwrap_or_default(),
    };
    LogRecord {
        format: Format::Json,
        level,
        message: normalize_breaks(message.trim()).into_owned(),
        error_type,
        error_message,
        stack,
        request_id: error_in("requestId")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| text("function_request_id"))
            .or_else(|| text("request_id"))
            .or_else(|| text("awsRequestId")),
        service: text("service").or_else(|| text("target")),
        trace_id: text("xray_trace_id").or_else(|| text("xrayTraceId")),
        platform: None,
    }
}

/// A stack as one text: an array's strings one per line (each may hold several), or a string.
fn stack_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.trim().is_empty() => Some(s.clone()),
        Value::Array(items) => {
            let lines: Vec<&str> = items
                .iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim_end_matches(['\n', '\r']))
                .collect();
            (!lines.is_empty()).then(|| lines.join("\n"))
        }
        _ => None,
    }
}

fn read_text(text: &str) -> LogRecord {
    let first_line = text.lines().next().unwrap_or("");
    let first_word = first_line.split_whitespace().next().unwrap_or("");
    if PLATFORM_WORDS.contains(&first_word) {
        return LogRecord {
            format: Format::Platform,
            message: text.to_owned(),
            request_id: after_request_id(first_line),
            platform: Some(first_word.to_owned()),
            ..LogRecord::default()
        };
    }
    let fields = first_three(first_line.split('\t').map(str::trim));
    // `[LEVEL]\t<time>\t<id>\t…` (Python) or `<time>\t<id>\t<LEVEL>\t…` (Node.js, Java).
    let bracketed = |w: &str| {
        w.strip_prefix('[')
            .and_then(|w| w.strip_suffix(']'))
            .and_then(Level::parse)
    };
    let level = fields
        .first()
        .and_then(|w| bracketed(w.split_whitespace().next().unwrap_or("")))
        .or_else(|| {
            fields
                .get(2)
                .filter(|_| fields.get(1).is_some_and(|id| is_request_id(id)))
                .and_then(|w| Level::parse(w))
        });
    // The id follows a timestamp (`<time>\t<id>`, `<time> <id> Task timed out …`) or the
    // Python layout's level and time; `RequestId: <id>` anywhere.
    let after_time = |words: &[&str]| {
        let dated = words
            .first()
            .is_some_and(|w| w.starts_with(|c: char| c.is_ascii_digit()));
        let levelled = words.first().is_some_and(|w| bracketed(w).is_some());
        match (dated, levelled) {
            (true, _) => words.get(1).filter(|w| is_request_id(w)),
            (_, true) => words.get(2).filter(|w| is_request_id(w)),
            _ => None,
        }
        .map(|w| (*w).to_owned())
    };
    let words = first_three(first_line.split_whitespace());
    let request_id = after_time(&fields)
        .or_else(|| after_time(&words))
        .or_else(|| after_request_id(first_line));
    let mut record = LogRecord {
        format: Format::Text,
        level,
        message: text.to_owned(),
        request_id,
        ..LogRecord::default()
    };
    // Node.js: `…\tERROR\tInvoke Error \t{"errorType":…,"stack":[…]}`.
    if let Some((_, tail)) = text.rsplit_once('\t')
        && tail.trim_start().starts_with('{')
        && let Ok(Value::Object(object)) = serde_json::from_str::<Value>(tail.trim())
        && object.contains_key("errorType")
    {
        let inner = read_json(&object);
        record.error_type = inner.error_type;
        record.error_message = inner.error_message;
        record.stack = inner.stack;
        record.request_id = record.request_id.or(inner.request_id);
    }
    record
}

/// The first three items, `""` for those missing; no allocation: every row is read,
/// thousands per analysis.
fn first_three<'a>(mut items: impl Iterator<Item = &'a str>) -> [&'a str; 3] {
    [(); 3].map(|()| items.next().unwrap_or(""))
}

/// The id after `RequestId: ` in a line.
fn after_request_id(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("RequestId:")?;
    let id = rest.split_whitespace().next()?.trim_end_matches([',', ';']);
    (!id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_graphic()))
        .then(|| id.to_owned())
}

/// A Lambda request id: a UUID (`8-4-4-4-12` hex digits).
pub fn is_request_id(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

fn text_is_error(text: &str) -> bool {
    if ERROR_PHRASES.iter().any(|p| text.contains(p)) {
        return true;
    }
    text.split_whitespace().any(|word| {
        let bare = word.trim_matches(|c: char| matches!(c, '[' | ']' | ':' | ',' | '"'));
        matches!(bare, "ERROR" | "FATAL" | "CRITICAL")
            || bare.ends_with("Exception")
            || word.ends_with("Error:")
            || bare
                .strip_prefix("Runtime.")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_uppercase()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f";

    #[test]
    fn lambda_text_layouts_give_level_and_request_id() {
        // Node.js / Java: <time>\t<id>\t<LEVEL>\t<message>
        let r = read(&format!(
            "2026-11-22T05:00:03.123Z\t{ID}\tERROR\tpayment failed for order 42"
        ));
        assert_eq!(r.format, Format::Text);
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.request_id.as_deref(), Some(ID));
        assert!(r.is_error());
        // Python: [LEVEL]\t<time>\t<id>\t<message>, line breaks written as \r
        let r = read(&format!(
            "[WARNING]\t2026-11-22T05:00:03.123Z\t{ID}\tretrying\rattempt 2"
        ));
        assert_eq!(r.level, Some(Level::Warn));
        assert_eq!(r.request_id.as_deref(), Some(ID));
        assert_eq!(r.message.lines().count(), 2);
        assert!(!r.is_error());
        // The runtime's timeout line: <time> <id> Task timed out …
        let r = read(&format!(
            "2026-11-22T05:00:03.000Z {ID} Task timed out after 3.00 seconds"
        ));
        assert_eq!(r.request_id.as_deref(), Some(ID));
        assert!(r.is_error());
        // An order id in the text is no request id.
        let r = read(&format!("INFO order {ID} shipped after all"));
        assert_eq!(r.request_id, None);
    }

    #[test]
    fn platform_lines_are_not_errors() {
        for line in [
            format!("START RequestId: {ID} Version: $LATEST"),
            format!(
                "REPORT RequestId: {ID}\tDuration: 3000.00 ms\tBilled Duration: 3000 ms\tMemory Size: 128 MB\tMax Memory Used: 64 MB\tStatus: timeout"
            ),
            r#"{"time":"2026-11-22T05:00:03.000Z","type":"platform.report","record":{"requestId":"x","status":"error","errorType":"Runtime.OutOfMemory"}}"#.to_owned(),
        ] {
            let r = read(&line);
            assert_eq!(r.format, Format::Platform, "{line}");
            assert!(!r.is_error(), "{line}");
        }
        let r = read(
            r#"{"time":"t","type":"platform.runtimeDone","record":{"requestId":"r9","status":"error","errorType":"Runtime.ExitError"}}"#,
        );
        assert_eq!(r.platform.as_deref(), Some("platform.runtimeDone"));
        assert_eq!(r.error_type.as_deref(), Some("Runtime.ExitError"));
        assert_eq!(r.request_id.as_deref(), Some("r9"));
    }

    #[test]
    fn powertools_python_fields_are_read_as_fields() {
        let r = read(
            r#"{"level":"ERROR","location":"charge:41","message":"Payment failed","timestamp":"2026-11-22 05:00:03,123+0000","service":"payments","cold_start":false,"function_name":"payments","function_request_id":"8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f","exception":"Traceback (most recent call last):\n  File \"/var/task/app.py\", line 41, in charge\n    raise ValueError(\"card declined\")\nValueError: card declined","exception_name":"ValueError","xray_trace_id":"1-6740a1b3-4c2d9e8f7a6b5c4d3e2f1a0b"}"#,
        );
        assert_eq!(r.format, Format::Json);
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.message, "Payment failed");
        assert_eq!(r.error_type.as_deref(), Some("ValueError"));
        assert_eq!(r.service.as_deref(), Some("payments"));
        assert_eq!(r.request_id.as_deref(), Some(ID));
        assert_eq!(
            r.trace_id.as_deref(),
            Some("1-6740a1b3-4c2d9e8f7a6b5c4d3e2f1a0b")
        );
        assert!(
            r.stack
                .as_deref()
                .unwrap()
                .ends_with("ValueError: card declined")
        );
        assert_eq!(r.mined_text(), "ValueError: Payment failed");
    }

    #[test]
    fn powertools_typescript_error_object_is_read() {
        let r = read(
            r#"{"level":"ERROR","message":"Unable to charge","sampling_rate":0,"service":"payments","timestamp":"2026-11-22T05:00:03.123Z","xray_trace_id":"1-abc","error":{"name":"TypeError","location":"/var/task/index.js:2778","message":"Cannot read properties of undefined (reading 'amount')","stack":"TypeError: Cannot read properties of undefined (reading 'amount')\n    at charge (/var/task/index.js:2778:21)"}}"#,
        );
        assert_eq!(r.error_type.as_deref(), Some("TypeError"));
        assert_eq!(
            r.mined_text(),
            "TypeError: Cannot read properties of undefined (reading 'amount')"
        );
        assert!(r.stack.as_deref().unwrap().contains("index.js:2778:21"));
    }

    #[test]
    fn tracing_json_reads_fields_message_and_target() {
        let r = read(
            r#"{"timestamp":"2026-11-22T05:00:03.123456Z","level":"ERROR","fields":{"message":"store write failed","error":"ConditionalCheckFailedException"},"target":"orders::store","span":{"name":"handle"},"spans":[]}"#,
        );
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.message, "store write failed");
        assert_eq!(r.service.as_deref(), Some("orders::store"));
        assert_eq!(
            r.error_message.as_deref(),
            Some("ConditionalCheckFailedException")
        );
        let info = read(r#"{"level":"INFO","fields":{"message":"ERROR in text only"}}"#);
        assert!(!info.is_error());
    }

    #[test]
    fn lambda_json_format_and_uncaught_errors_are_read() {
        // Python uncaught error in Lambda's JSON log format.
        let r = read(
            r#"{"timestamp":"2026-11-22T05:00:03Z","level":"ERROR","message":"division by zero","logger":"root","requestId":"8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f","errorType":"ZeroDivisionError","errorMessage":"division by zero","stackTrace":["  File \"/var/task/app.py\", line 7, in handler\n    return 1 / 0\n"]}"#,
        );
        assert_eq!(r.error_type.as_deref(), Some("ZeroDivisionError"));
        assert_eq!(r.request_id.as_deref(), Some(ID));
        assert!(r.stack.as_deref().unwrap().contains("line 7, in handler"));
        // Node.js uncaught error: the error is the message object.
        let r = read(
            r#"{"timestamp":"2026-11-22T05:00:03.123Z","level":"ERROR","requestId":"r1","message":{"errorType":"TypeError","errorMessage":"x is undefined","stackTrace":["TypeError: x is undefined","    at Runtime.handler (file:///var/task/index.mjs:3:20)"]}}"#,
        );
        assert_eq!(r.error_type.as_deref(), Some("TypeError"));
        assert_eq!(r.mined_text(), "TypeError: x is undefined");
        assert_eq!(
            r.stack.as_deref(),
            Some(
                "TypeError: x is undefined\n    at Runtime.handler (file:///var/task/index.mjs:3:20)"
            )
        );
        // A structured info message stays a message.
        let r = read(r#"{"level":"INFO","message":{"order":42}}"#);
        assert_eq!(r.message, r#"{"order":42}"#);
        // pino numbers.
        assert_eq!(
            read(r#"{"level":50,"msg":"boom"}"#).level,
            Some(Level::Error)
        );
        assert_eq!(read(r#"{"level":30,"msg":"ok"}"#).level, Some(Level::Info));
    }

    #[test]
    fn node_invoke_error_with_a_json_tail_is_read_for_its_fields() {
        let r = read(&format!(
            "2026-11-22T05:00:03.123Z\t{ID}\tERROR\tInvoke Error \t{{\"errorType\":\"TypeError\",\"errorMessage\":\"Cannot read properties of undefined (reading 'id')\",\"stack\":[\"TypeError: Cannot read properties of undefined (reading 'id')\",\"    at Runtime.handler (file:///var/task/index.mjs:12:31)\"]}}"
        ));
        assert_eq!(r.level, Some(Level::Error));
        assert_eq!(r.request_id.as_deref(), Some(ID));
        assert_eq!(r.error_type.as_deref(), Some("TypeError"));
        assert!(r.stack.as_deref().unwrap().contains("index.mjs:12:31"));
    }

    #[test]
    fn lines_that_are_not_json_objects_are_text() {
        for line in [
            "[1, 2, 3]",
            "\"just a string\"",
            "42",
            "null",
            "{\"level\":\"ERROR\",\"message\":\"cut off",
            r#"{"level":"ERROR","message":"lone \ud800 surrogate"}"#,
            r#"{"message": "bad \x escape"}"#,
            "{}{}",
        ] {
            let r = read(line);
            assert_eq!(r.format, Format::Text, "{line}");
            assert_eq!(r.message, line.trim());
        }
        // Escapes that look like bytes in text stay text.
        let r = read("ERROR bad byte \\xc3\\x28 in \u{fffd} payload");
        assert!(r.is_error());
        assert!(r.message.contains("\\xc3\\x28"));
        // An object without a level, type or message is no error.
        assert!(!read(r#"{"order":42}"#).is_error());
        assert_eq!(
            read(r#"{"errorMessage":""}"#).mined_text(),
            "error without a message"
        );
    }
}
