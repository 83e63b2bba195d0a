//! Multi-line stack traces read as one event: the exception, its message and its frames.
//!
//! Lambda writes a trace as one log event: Python's log handler joins its lines with `\r`
//! (read as line breaks, see [`record`](super::record)), Node.js and Java with `\n`, and the
//! runtimes' uncaught-error records carry it as a `stackTrace` array. Forms read:
//!
//! - Python: `Traceback (most recent call last):`, `  File "<file>", line <n>, in <function>`
//!   frames, `<Type>: <message>` last. With chained exceptions (`During handling of the
//!   above exception…`, `The above exception was the direct cause…`) the last traceback is
//!   the one raised; the earlier exceptions are its causes.
//! - Node.js: `<Type>: <message>` then `    at <function> (<file>:<line>:<column>)` or
//!   `    at <file>:<line>:<column>` frames.
//! - Java: `<pkg.Type>: <message>` then `\tat <pkg.Class.method>(<File>.java:<line>)` frames
//!   (`at ` optional, as in the runtime's `stackTrace` array); `Caused by: <pkg.Type>: …`
//!   starts a cause.
//! - Rust: `thread '<name>' panicked at <file>:<line>:<column>:` then the message (Rust ≥
//!   1.73), or `panicked at '<message>', <file>:<line>:<column>` (older); a `stack
//!   backtrace:` with `<n>: <function>` / `at <file>:<line>:<column>` lines when
//!   `RUST_BACKTRACE` is set. The type is `panic`.
//!
//! Frames are kept innermost first (where the error was raised), at most [`MAX_FRAMES`].

use serde::{Deserialize, Serialize};

use crate::text::prefix;

/// The most frames kept of one trace (innermost first): enough to reach the handler from a
/// library frame, small enough for a prompt.
pub const MAX_FRAMES: usize = 20;

/// The most bytes kept of an exception's type, a frame's function or file: the analysis
/// travels in the state machine's state (256 KB), and real names are far shorter.
pub const MAX_NAME_BYTES: usize = 200;

/// The most bytes kept of an exception's message: enough to tell one failure from another.
pub const MAX_MESSAGE_BYTES: usize = 512;

/// The most causes kept (the nearest).
pub const MAX_CAUSES: usize = 5;

/// The language a trace was written by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Language {
    /// A Python traceback.
    Python,
    /// A Node.js (V8) stack.
    Node,
    /// A Java (JVM) stack.
    Java,
    /// A Rust panic.
    Rust,
}

/// One frame of a trace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Frame {
    /// The function (`handler`, `com.example.Handler.handleRequest`, `orders::store::put`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The file (`/var/task/app.py`, `file:///var/task/index.mjs`, `Handler.java`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// The column, where the language says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
}

/// A parsed stack trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StackTrace {
    /// The language.
    pub language: Language,
    /// The exception's type (`KeyError`, `TypeError`, `java.lang.NullPointerException`,
    /// `panic`).
    pub exception: String,
    /// Its message, if any.
    pub message: Option<String>,
    /// Frames, innermost first.
    pub frames: Vec<Frame>,
    /// The types of its causes (Java `Caused by:`, Python chained exceptions), nearest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub causes: Vec<String>,
}

impl StackTrace {
    /// The innermost frame, where the error was raised.
    pub fn top_frame(&self) -> Option<&Frame> {
        self.frames.first()
    }

    /// The grouping key: the exception type and the top frame's file and function (not its
    /// line: a deployment that moves the line keeps the group).
    pub fn key(&self) -> String {
        let top = self.top_frame();
        format!(
            "{} @ {}:{}",
            self.exception,
            top.and_then(|f| f.file.as_deref()).unwrap_or("?"),
            top.and_then(|f| f.function.as_deref()).unwrap_or("?")
        )
    }
}

/// Reads a stack trace from `text`, with `error_type` (a record's `errorType`) naming the
/// exception when the text does not; none when `text` holds no frames and no panic.
///
/// Names are kept to [`MAX_NAME_BYTES`], the message to [`MAX_MESSAGE_BYTES`], causes to
/// [`MAX_CAUSES`], frames to [`MAX_FRAMES`].
pub fn parse_trace(text: &str, error_type: Option<&str>) -> Option<StackTrace> {
    let error_type = error_type.map(str::trim).filter(|t| !t.is_empty());
    let lines: Vec<&str> = text.lines().collect();
    let trace = if let Some(trace) = rust_panic(&lines) {
        trace
    } else if lines.iter().any(|l| python_frame(l).is_some()) {
        python(&lines, error_type)?
    } else if lines.iter().any(|l| node_frame(l).is_some()) {
        node(&lines, error_type)?
    } else if lines.iter().any(|l| java_frame(l).is_some()) {
        java(&lines, error_type)?
    } else {
        return None;
    };
    Some(bounded(trace))
}

/// `trace` with every text within its bound.
fn bounded(mut trace: StackTrace) -> StackTrace {
    let cut = |text: &mut String, max: usize| {
        let kept = prefix(text, max).len();
        text.truncate(kept);
    };
    cut(&mut trace.exception, MAX_NAME_BYTES);
    if let Some(message) = &mut trace.message {
        cut(message, MAX_MESSAGE_BYTES);
    }
    trace.frames.truncate(MAX_FRAMES);
    for frame in &mut trace.frames {
        for name in [&mut frame.function, &mut frame.file].into_iter().flatten() {
            cut(name, MAX_NAME_BYTES);
        }
    }
    trace.causes.truncate(MAX_CAUSES);
    for cause in &mut trace.causes {
        cut(cause, MAX_NAME_BYTES);
    }
    trace
}

/// `Type: message` or `Type`, the type the last word before the `: ` (so the runtimes'
/// `<time>\t<id>\tERROR\t` or `[ERROR] ` prefix is passed over): a dotted identifier whose
/// last part starts with a capital (`KeyError`, `java.lang.IllegalStateException`).
fn exception_line(line: &str) -> Option<(String, Option<String>)> {
    let line = line.trim();
    let (head, message) = match line.split_once(": ") {
        Some((head, message)) => (head, Some(message.trim().to_owned())),
        None => (line.strip_suffix(':').unwrap_or(line), None),
    };
    let kind = head.rsplit(char::is_whitespace).next().unwrap_or(head);
    let last = kind.rsplit('.').next().unwrap_or(kind);
    let named = kind.len() <= 200
        && last.starts_with(|c: char| c.is_uppercase())
        && kind.starts_with(|c: char| c.is_alphabetic() || c == '_')
        && kind
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '.' | '$'));
    named.then(|| (kind.to_owned(), message.filter(|m| !m.is_empty())))
}

/// `  File "/var/task/app.py", line 12, in handler`.
fn python_frame(line: &str) -> Option<Frame> {
    let rest = line.trim_start().strip_prefix("File \"")?;
    let (file, rest) = rest.split_once('"')?;
    let rest = rest.strip_prefix(", line ")?;
    let (number, function) = match rest.split_once(", in ") {
        Some((n, f)) => (n, Some(f.trim().to_owned())),
        None => (rest.trim(), None),
    };
    Some(Frame {
        function,
        file: Some(file.to_owned()),
        line: number.trim().parse().ok(),
        column: None,
    })
}

fn python(lines: &[&str], error_type: Option<&str>) -> Option<StackTrace> {
    const CHAINS: [&str; 2] = [
        "During handling of the above exception, another exception occurred:",
        "The above exception was the direct cause of the following exception:",
    ];
    // The last traceback is the one raised; each earlier one ends in a cause.
    let mut sections: Vec<&[&str]> = Vec::new();
    let mut start = 0;
    for (i, line) in lines.iter().enumerate() {
        if CHAINS.contains(&line.trim()) {
            sections.push(&lines[start..i]);
            start = i + 1;
        }
    }
    sections.push(&lines[start..]);
    let last = sections.last()?;
    let mut frames: Vec<Frame> = last.iter().filter_map(|l| python_frame(l)).collect();
    frames.reverse();
    let (exception, message) = named(python_exception(last), error_type, "Exception");
    let causes = sections[..sections.len() - 1]
        .iter()
        .rev()
        .filter_map(|s| python_exception(s).map(|(kind, _)| kind))
        .collect();
    Some(StackTrace {
        language: Language::Python,
        exception,
        message,
        frames,
        causes,
    })
}

/// The exception a traceback names: the last unindented line after its frames, or (the
/// runtime's `[ERROR] KeyError: 'sku'` before `Traceback …`) the line before the header.
fn python_exception(section: &[&str]) -> Option<(String, Option<String>)> {
    let after = section
        .iter()
        .rposition(|l| python_frame(l).is_some())
        .map_or(0, |i| i + 1);
    let unindented = |l: &&&str| !l.trim().is_empty() && !l.starts_with(char::is_whitespace);
    section[after..]
        .iter()
        .rev()
        .find(unindented)
        .and_then(|l| exception_line(l))
        .or_else(|| {
            let header = section.iter().position(|l| {
                l.trim_start()
                    .starts_with("Traceback (most recent call last)")
            })?;
            section[..header]
                .iter()
                .rev()
                .find(unindented)
                .and_then(|l| exception_line(l))
        })
}

/// The exception's type and message: the record's type when it has one (the message only
/// when the text names the same type), else what the text names, else `fallback`.
fn named(
    found: Option<(String, Option<String>)>,
    error_type: Option<&str>,
    fallback: &str,
) -> (String, Option<String>) {
    match (found, error_type) {
        (Some((kind, message)), Some(given)) if kind == given => (kind, message),
        (_, Some(given)) => (given.to_owned(), None),
        (Some(found), None) => found,
        (None, None) => (fallback.to_owned(), None),
    }
}

/// `    at fn (file:line:col)`, `    at file:line:col`, `    at async fn (…)`.
fn node_frame(line: &str) -> Option<Frame> {
    let rest = line.trim_start().strip_prefix("at ")?;
    let (function, location) = match rest.strip_suffix(')').and_then(|r| r.rsplit_once(" (")) {
        Some((function, location)) => (Some(function.trim().to_owned()), location),
        None => (None, rest.trim()),
    };
    let (file, line, column) = file_line_column(location)?;
    Some(Frame {
        function,
        file: Some(file.to_owned()),
        line: Some(line),
        column,
    })
}

/// `<file>:<line>:<column>` or `<file>:<line>`; the file may hold `:` (`file:///…`).
fn file_line_column(location: &str) -> Option<(&str, u32, Option<u32>)> {
    let (rest, last) = location.rsplit_once(':')?;
    let last: u32 = last.trim().parse().ok()?;
    match rest.rsplit_once(':') {
        Some((file, line)) if line.bytes().all(|b| b.is_ascii_digit()) && !line.is_empty() => {
            Some((file, line.parse().ok()?, Some(last)))
        }
        _ => Some((rest, last, None)),
    }
    .filter(|(file, _, _)| !file.is_empty())
}

fn node(lines: &[&str], error_type: Option<&str>) -> Option<StackTrace> {
    let first_frame = lines.iter().position(|l| node_frame(l).is_some())?;
    let frames: Vec<Frame> = lines[first_frame..]
        .iter()
        .map_while(|l| node_frame(l))
        .collect();
    // The exception line is the last before the frames that names one (the runtime's
    // layout puts the time, request id and level before it).
    let found = lines[..first_frame]
        .iter()
        .rev()
        .find_map(|l| exception_line(l));
    let (exception, message) = named(found, error_type, "Error");
    Some(StackTrace {
        language: Language::Node,
        exception,
        message,
        frames,
        causes: Vec::new(),
    })
}

/// `\tat com.example.Handler.handleRequest(Handler.java:42)`, `at ` optional; also
/// `(Native Method)` and `(Unknown Source)`.
fn java_frame(line: &str) -> Option<Frame> {
    let trimmed = line.trim();
    let rest = trimmed.strip_prefix("at ").unwrap_or(trimmed);
    let (function, location) = rest.strip_suffix(')')?.split_once('(')?;
    let function = function.rsplit('/').next().unwrap_or(function);
    if !function.contains('.') || function.contains(' ') || function.is_empty() {
        return None;
    }
    let (file, line) = match location.rsplit_once(':') {
        Some((file, line)) => (Some(file.to_owned()), line.parse().ok()),
        None if location.ends_with(".java") || location.ends_with(".kt") => {
            (Some(location.to_owned()), None)
        }
        None if matches!(location, "Native Method" | "Unknown Source") => (None, None),
        None => return None,
    };
    if file.as_deref().is_some_and(|f| !f.contains('.')) {
        return None;
    }
    Some(Frame {
        function: Some(function.to_owned()),
        file,
        line,
        column: None,
    })
}

fn java(lines: &[&str], error_type: Option<&str>) -> Option<StackTrace> {
    let first_frame = lines.iter().position(|l| java_frame(l).is_some())?;
    let frames: Vec<Frame> = lines[first_frame..]
        .iter()
        .map_while(|l| java_frame(l))
        .collect();
    let found = lines[..first_frame]
        .iter()
        .rev()
        .find_map(|l| exception_line(l));
    let (exception, message) = named(found, error_type, "java.lang.Throwable");
    let causes = lines
        .iter()
        .filter_map(|l| l.trim().strip_prefix("Caused by: "))
        .filter_map(|l| exception_line(l).map(|(kind, _)| kind))
        .collect();
    Some(StackTrace {
        language: Language::Java,
        exception,
        message,
        frames,
        causes,
    })
}

fn rust_panic(lines: &[&str]) -> Option<StackTrace> {
    let at = lines.iter().position(|l| l.contains("panicked at "))?;
    let after = lines[at].split_once("panicked at ")?.1.trim();
    // Old: `'message', src/main.rs:10:5`; new: `src/main.rs:10:5:` and the message below.
    let (message, location) = match after.strip_prefix('\'') {
        Some(quoted) => {
            let (message, location) = quoted.rsplit_once("', ")?;
            (Some(message.to_owned()), location.trim())
        }
        None => (
            lines
                .get(at + 1)
                .map(|l| l.trim().to_owned())
                .filter(|l| !l.is_empty() && !l.starts_with("note:")),
            after.strip_suffix(':').unwrap_or(after),
        ),
    };
    let (file, line, column) = file_line_column(location)?;
    let mut frames = backtrace_frames(&lines[at..]);
    // The innermost frame of the panic's own file; frames inside std before it are dropped.
    let raised = frames
        .iter()
        .position(|f| f.file.as_deref().is_some_and(|f| same_file(f, file)));
    match raised {
        Some(i) => {
            frames.drain(..i);
        }
        None => frames.insert(
            0,
            Frame {
                function: None,
                file: Some(file.to_owned()),
                line: Some(line),
                column,
            },
        ),
    }
    Some(StackTrace {
        language: Language::Rust,
        exception: "panic".to_owned(),
        message,
        frames,
        causes: Vec::new(),
    })
}

/// `./src/main.rs` and `src/main.rs` are one file.
fn same_file(a: &str, b: &str) -> bool {
    a.trim_start_matches("./") == b.trim_start_matches("./")
}

/// `   3: orders::handler` and, below it, `             at ./src/main.rs:10:5`.
fn backtrace_frames(lines: &[&str]) -> Vec<Frame> {
    let mut frames: Vec<Frame> = Vec::new();
    for line in lines {
        let trimmed = line.trim();
        if let Some(location) = trimmed.strip_prefix("at ")
            && let Some(last) = frames.last_mut()
            && last.file.is_none()
            && let Some((file, line, column)) = file_line_column(location)
        {
            last.file = Some(file.to_owned());
            last.line = Some(line);
            last.column = column;
            continue;
        }
        if let Some((number, function)) = trimmed.split_once(": ")
            && !number.is_empty()
            && number.bytes().all(|b| b.is_ascii_digit())
        {
            frames.push(Frame {
                function: Some(function.trim().to_owned()),
                file: None,
                line: None,
                column: None,
            });
        }
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logfacts::record::read;

    fn trace(text: &str) -> StackTrace {
        let record = read(text);
        parse_trace(record.trace_text(), record.error_type.as_deref())
            .unwrap_or_else(|| panic!("no trace in {text}"))
    }

    fn frame(function: &str, file: &str, line: u32, column: Option<u32>) -> Frame {
        Frame {
            function: Some(function.to_owned()),
            file: Some(file.to_owned()),
            line: Some(line),
            column,
        }
    }

    #[test]
    fn a_python_traceback_joined_with_carriage_returns() {
        // What the Python runtime's log handler writes for logger.exception(): one event.
        let t = trace(
            "[ERROR]\t2026-11-22T05:00:03.123Z\t8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f\tcharge failed\rTraceback (most recent call last):\r  File \"/var/task/app.py\", line 41, in handler\r    return charge(event)\r  File \"/var/task/payments/charge.py\", line 12, in charge\r    amount = event[\"amount\"]\rKeyError: 'amount'",
        );
        assert_eq!(t.language, Language::Python);
        assert_eq!(t.exception, "KeyError");
        assert_eq!(t.message.as_deref(), Some("'amount'"));
        assert_eq!(
            t.frames,
            [
                frame("charge", "/var/task/payments/charge.py", 12, None),
                frame("handler", "/var/task/app.py", 41, None),
            ]
        );
        assert_eq!(t.key(), "KeyError @ /var/task/payments/charge.py:charge");
    }

    #[test]
    fn a_chained_python_traceback_is_keyed_by_the_exception_raised() {
        let t = trace(
            "Traceback (most recent call last):\n  File \"/var/task/db.py\", line 8, in get\n    return table.get_item(Key=key)\nbotocore.exceptions.ClientError: An error occurred (ThrottlingException)\n\nDuring handling of the above exception, another exception occurred:\n\nTraceback (most recent call last):\n  File \"/var/task/app.py\", line 20, in handler\n    item = get(key)\n  File \"/var/task/db.py\", line 10, in get\n    raise StoreUnavailable(key)\nStoreUnavailable: orders/42",
        );
        assert_eq!(t.exception, "StoreUnavailable");
        assert_eq!(t.frames[0], frame("get", "/var/task/db.py", 10, None));
        assert_eq!(t.frames.len(), 2);
        assert_eq!(t.causes, ["botocore.exceptions.ClientError"]);
    }

    #[test]
    fn the_python_runtimes_stack_trace_array_takes_its_type_from_the_record() {
        let t = trace(
            r#"{"errorMessage":"division by zero","errorType":"ZeroDivisionError","requestId":"r1","stackTrace":["  File \"/var/task/app.py\", line 7, in handler\n    return 1 / 0\n"]}"#,
        );
        assert_eq!(t.exception, "ZeroDivisionError");
        assert_eq!(t.frames, [frame("handler", "/var/task/app.py", 7, None)]);
        // Powertools' `exception` field.
        let t = trace(
            r#"{"level":"ERROR","message":"Payment failed","exception":"Traceback (most recent call last):\n  File \"/var/task/app.py\", line 41, in charge\n    raise ValueError(\"card declined\")\nValueError: card declined","exception_name":"ValueError"}"#,
        );
        assert_eq!(t.exception, "ValueError");
        assert_eq!(t.frames, [frame("charge", "/var/task/app.py", 41, None)]);
    }

    #[test]
    fn a_node_stack_in_lambdas_text_layout() {
        let t = trace(
            "2026-11-22T05:00:03.123Z\t8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f\tERROR\tTypeError: Cannot read properties of undefined (reading 'id')\n    at loadOrder (/var/task/orders.js:27:19)\n    at async Runtime.handler (file:///var/task/index.mjs:12:31)\n    at processTicksAndRejections (node:internal/process/task_queues:95:5)",
        );
        assert_eq!(t.language, Language::Node);
        assert_eq!(t.exception, "TypeError");
        assert_eq!(
            t.message.as_deref(),
            Some("Cannot read properties of undefined (reading 'id')")
        );
        assert_eq!(
            t.frames[0],
            frame("loadOrder", "/var/task/orders.js", 27, Some(19))
        );
        assert_eq!(
            t.frames[1],
            frame(
                "async Runtime.handler",
                "file:///var/task/index.mjs",
                12,
                Some(31)
            )
        );
        assert_eq!(t.frames.len(), 3);
        // A frame without a function.
        let t = trace("Error: boom\n    at /var/task/index.js:3:9");
        assert_eq!(t.frames[0].function, None);
        assert_eq!(t.frames[0].line, Some(3));
    }

    #[test]
    fn the_node_runtimes_invoke_error_record() {
        let t = trace(
            "2026-11-22T05:00:03.123Z\t8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f\tERROR\tInvoke Error \t{\"errorType\":\"TypeError\",\"errorMessage\":\"x is undefined\",\"stack\":[\"TypeError: x is undefined\",\"    at Runtime.handler (file:///var/task/index.mjs:3:20)\",\"    at Runtime.handleOnceNonStreaming (file:///var/runtime/index.mjs:1173:29)\"]}",
        );
        assert_eq!(t.exception, "TypeError");
        assert_eq!(t.message.as_deref(), Some("x is undefined"));
        assert_eq!(
            t.frames[0],
            frame("Runtime.handler", "file:///var/task/index.mjs", 3, Some(20))
        );
    }

    #[test]
    fn a_java_exception_with_a_cause() {
        let t = trace(
            "2026-11-22T05:00:03.123Z 8f5c2a8e-3b9d-4c1e-9a7f-0d2e4b6c8a1f ERROR java.lang.IllegalStateException: order 42 has no items\n\tat com.example.orders.Validator.check(Validator.java:57)\n\tat com.example.orders.Handler.handleRequest(Handler.java:31)\n\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)\nCaused by: java.io.UncheckedIOException: read timed out\n\tat com.example.orders.Store.load(Store.java:88)\n\t... 3 more",
        );
        assert_eq!(t.language, Language::Java);
        assert_eq!(t.exception, "java.lang.IllegalStateException");
        assert_eq!(t.message.as_deref(), Some("order 42 has no items"));
        assert_eq!(
            t.frames[0],
            frame(
                "com.example.orders.Validator.check",
                "Validator.java",
                57,
                None
            )
        );
        assert_eq!(t.frames.len(), 3);
        assert_eq!(t.frames[2].file, None);
        assert_eq!(t.causes, ["java.io.UncheckedIOException"]);
        // The Java runtime's record: frames without `at `.
        let t = trace(
            r#"{"errorMessage":"boom","errorType":"java.lang.RuntimeException","stackTrace":["com.example.Handler.handleRequest(Handler.java:20)","java.base/java.lang.Thread.run(Thread.java:840)"]}"#,
        );
        assert_eq!(t.exception, "java.lang.RuntimeException");
        assert_eq!(
            t.frames[0],
            frame(
                "com.example.Handler.handleRequest",
                "Handler.java",
                20,
                None
            )
        );
    }

    #[test]
    fn rust_panics_old_new_and_with_a_backtrace() {
        let t = trace(
            "thread 'main' panicked at src/main.rs:48:37:\ncalled `Option::unwrap()` on a `None` value\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace",
        );
        assert_eq!(t.language, Language::Rust);
        assert_eq!(t.exception, "panic");
        assert_eq!(
            t.message.as_deref(),
            Some("called `Option::unwrap()` on a `None` value")
        );
        assert_eq!(t.frames[0].file.as_deref(), Some("src/main.rs"));
        assert_eq!(t.frames[0].line, Some(48));
        assert_eq!(t.frames[0].column, Some(37));
        let t = trace(
            "thread 'tokio-runtime-worker' panicked at 'index out of bounds: the len is 0 but the index is 0', src/orders.rs:12:9",
        );
        assert_eq!(
            t.message.as_deref(),
            Some("index out of bounds: the len is 0 but the index is 0")
        );
        assert_eq!(t.frames[0].file.as_deref(), Some("src/orders.rs"));
        let t = trace(
            "thread 'main' panicked at src/orders.rs:12:9:\nno order\nstack backtrace:\n   0: rust_begin_unwind\n             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/std/src/panicking.rs:665:5\n   1: core::panicking::panic_fmt\n             at /rustc/90b35a6239c3d8bdabc530a6a0816f7ff89a0aaf/library/core/src/panicking.rs:74:14\n   2: orders::load\n             at ./src/orders.rs:12:9\n   3: orders::handler::{{closure}}\n             at ./src/main.rs:30:20",
        );
        assert_eq!(
            t.frames[0],
            frame("orders::load", "./src/orders.rs", 12, Some(9))
        );
        assert_eq!(
            t.frames[1].function.as_deref(),
            Some("orders::handler::{{closure}}")
        );
        assert_eq!(t.key(), "panic @ ./src/orders.rs:orders::load");
    }

    #[test]
    fn lines_without_frames_are_no_trace() {
        for text in [
            "ERROR payment declined",
            "Task timed out after 3.00 seconds",
            "at the store: nothing",
            "File \"x\"",
            "java.lang.String(unknown)",
            "",
        ] {
            assert_eq!(parse_trace(text, None), None, "{text}");
        }
    }

    #[test]
    fn long_names_and_messages_are_cut() {
        let long = "é".repeat(1000);
        let t = trace(&format!(
            "{{\"errorType\":\"{long}\",\"errorMessage\":\"{long}\",\"stackTrace\":[\"  File \\\"/var/task/{long}.py\\\", line 1, in {long}\"]}}"
        ));
        assert!(t.exception.len() <= MAX_NAME_BYTES && t.exception.starts_with('é'));
        let frame = &t.frames[0];
        assert!(frame.file.as_deref().unwrap().len() <= MAX_NAME_BYTES);
        assert!(frame.function.as_deref().unwrap().len() <= MAX_NAME_BYTES);
        let t = trace(&format!("Error: {long}\n    at f (/var/task/i.js:1:1)"));
        assert!(t.message.unwrap().len() <= MAX_MESSAGE_BYTES);
    }

    #[test]
    fn frames_are_capped() {
        let mut text = String::from("Error: deep");
        for i in 0..100 {
            text.push_str(&format!("\n    at f{i} (/var/task/index.js:{i}:1)"));
        }
        assert_eq!(trace(&text).frames.len(), MAX_FRAMES);
    }
}
