//! The target's code for the prompt: the files its stack traces and its handler point at,
//! read through the [`CodeSource`] and cut to a token budget (whole files when they fit,
//! else numbered windows around the frame lines, the innermost frame's first).

use std::collections::BTreeMap;

use serde::Serialize;
use tracing::warn;

use crate::improvement::ImprovementItem;
use crate::logfacts::{Language, TraceGroup};
use crate::opportunity::OpportunityKind;
use crate::ports::CodeSource;
use crate::text::Escaped;

/// The most tokens of code a prompt carries (estimated as characters / 4).
pub const CODE_TOKEN_BUDGET: usize = 6_000;

/// Characters per token in the estimate.
const CHARS_PER_TOKEN: usize = 4;

/// The most files read for one prompt: the innermost frames' files are the ones that matter.
const MAX_FILES: usize = 8;

/// Lines shown before a frame line when its function's start is not found.
const WINDOW_BEFORE: usize = 20;

/// Lines shown after a frame line.
const WINDOW_AFTER: usize = 12;

/// How far above a frame line its function's definition is looked for.
const DEFINITION_SEARCH: usize = 120;

/// The longest line shown; longer ones (minified code) are cut with `…`.
const MAX_LINE_CHARS: usize = 300;

/// Fewer lines than this are not worth a window.
const MIN_WINDOW_LINES: usize = 5;

/// One frame's place in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameLine {
    /// 1-based line, when the frame has one.
    pub line: Option<u32>,
    /// The function, as the frame names it.
    pub function: Option<String>,
}

/// A file of the target's code that the evidence points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRef {
    /// Its path inside the deployment package (`app.py`, `src/orders.js`).
    pub path: String,
    /// Its frames, most relevant first.
    pub frames: Vec<FrameLine>,
}

/// The package-relative path of a frame's file, or none for a frame outside the target's
/// own code (the runtime, layers, installed libraries, the standard library).
pub fn package_path(language: Language, file: &str) -> Option<String> {
    let file = file.trim();
    let file = file.strip_prefix("file://").unwrap_or(file);
    let relative = match file.strip_prefix("/var/task/") {
        Some(inside) => inside,
        // Absolute paths elsewhere are the runtime (`/var/runtime`, `/var/lang`), layers
        // (`/opt`), or a build machine's checkout: none is a file of the package.
        None if file.starts_with('/') => return None,
        None => file.strip_prefix("./").unwrap_or(file),
    };
    let library = match language {
        Language::Python => {
            relative.contains("site-packages/") || relative.contains("dist-packages/")
        }
        Language::Node => relative.contains("node_modules/"),
        Language::Rust => relative.contains(".cargo/") || relative.starts_with("rustc/"),
        // The package holds classes, not sources: nothing to read.
        Language::Java => true,
    };
    let not_a_path = relative.is_empty()
        || relative.starts_with('<') // <frozen importlib._bootstrap>, <string>
        || relative.starts_with("node:")
        || relative.starts_with("internal/")
        || relative.split('/').any(|part| part == "..");
    (!library && !not_a_path).then(|| relative.to_owned())
}

/// The files the traces point at, most relevant first: the traces by count, each one's
/// frames innermost first; a file named again gains the later frames.
pub fn code_refs(traces: &[TraceGroup]) -> Vec<CodeRef> {
    let mut ordered: Vec<&TraceGroup> = traces.iter().collect();
    ordered.sort_by_key(|g| std::cmp::Reverse(g.count));
    let mut refs: Vec<CodeRef> = Vec::new();
    for group in ordered {
        for frame in &group.frames {
            let Some(path) = frame
                .file
                .as_deref()
                .and_then(|f| package_path(group.language, f))
            else {
                continue;
            };
            let line = FrameLine {
                line: frame.line,
                function: frame.function.clone(),
            };
            match refs.iter_mut().find(|r| r.path == path) {
                Some(known) if !known.frames.contains(&line) => known.frames.push(line),
                Some(_) => {}
                None => refs.push(CodeRef {
                    path,
                    frames: vec![line],
                }),
            }
        }
    }
    refs
}

/// The files a handler setting can name, in the order to try: Python's module (dots are
/// packages) and Node.js's (`.js`, `.mjs`, `.cjs`); a language known from the traces
/// narrows them. None for a handler without a module (`bootstrap`, Java's `Class::method`).
pub fn handler_files(handler: &str, language: Option<Language>) -> Vec<String> {
    let handler = handler.trim();
    if handler.contains("::") {
        return Vec::new();
    }
    let mut files = Vec::new();
    let python = matches!(language, None | Some(Language::Python));
    let node = matches!(language, None | Some(Language::Node));
    // Python: `module.function`, the module's dots are packages.
    if python
        && let Some((module, _)) = handler.rsplit_once('.')
        && !module.is_empty()
    {
        files.push(format!("{}.py", module.replace('.', "/")));
    }
    // Node.js: the module is what precedes the first dot.
    if node
        && let Some((module, _)) = handler.split_once('.')
        && !module.is_empty()
    {
        for ext in ["js", "mjs", "cjs"] {
            files.push(format!("{module}.{ext}"));
        }
    }
    files.retain(|f| package_path(language.unwrap_or(Language::Python), f).is_some());
    files.dedup();
    files
}

/// The function a handler setting names (`orders.handler` → `handler`).
fn handler_function(handler: &str) -> Option<&str> {
    handler
        .rsplit_once('.')
        .map(|(_, f)| f)
        .filter(|f| !f.is_empty())
}

/// The code shown to the model.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct CodeContext {
    /// The language of the traces (`python`, `node`, `rust`), when they say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<Language>,
    /// The configured handler, when the platform has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handler: Option<String>,
    /// The function's runtime (`python3.12`, `nodejs22.x`), when the platform says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    /// The files, most relevant first.
    pub files: Vec<ShownFile>,
    /// Files that were read but left out for the token budget.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub omitted: Vec<String>,
}

/// One file as the prompt shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShownFile {
    /// Its path inside the deployment package.
    pub path: String,
    /// Its length in lines.
    pub total_lines: usize,
    /// Whether the excerpt is the whole file.
    pub whole: bool,
    /// What is shown: the whole file, or windows around the frame lines.
    pub excerpts: Vec<Excerpt>,
}

/// Consecutive lines of a file, each prefixed with its number (`  27| `).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Excerpt {
    /// The first line shown (1-based).
    pub first_line: usize,
    /// The last line shown.
    pub last_line: usize,
    /// The frame's function this window is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The lines, numbered.
    pub text: String,
}

/// Estimated tokens of `text`.
pub fn estimated_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(CHARS_PER_TOKEN)
}

/// The files of `refs` whose text is in `texts`, within `budget_tokens`: in order, each file
/// whole when it fits its share (half of what is left while other files follow), else
/// windows around its frame lines, the most relevant first, the last one cut to fit.
pub fn shown_files(
    refs: &[CodeRef],
    texts: &BTreeMap<String, String>,
    budget_tokens: usize,
) -> (Vec<ShownFile>, Vec<String>) {
    let readable: Vec<(&CodeRef, &String)> = refs
        .iter()
        .filter_map(|r| texts.get(&r.path).map(|t| (r, t)))
        .collect();
    let mut left = budget_tokens.saturating_mul(CHARS_PER_TOKEN);
    let (mut shown, mut omitted) = (Vec::new(), Vec::new());
    for (i, (code_ref, text)) in readable.iter().enumerate() {
        let lines: Vec<&str> = text.lines().collect();
        let share = if i + 1 < readable.len() {
            left / 2
        } else {
            left
        };
        let whole = numbered(&lines, 1, lines.len());
        let file = if !lines.is_empty() && whole.chars().count() <= share {
            Some(ShownFile {
                path: code_ref.path.clone(),
                total_lines: lines.len(),
                whole: true,
                excerpts: vec![Excerpt {
                    first_line: 1,
                    last_line: lines.len(),
                    function: None,
                    text: whole,
                }],
            })
        } else {
            let excerpts = windows(code_ref, &lines, share);
            (!excerpts.is_empty()).then(|| ShownFile {
                path: code_ref.path.clone(),
                total_lines: lines.len(),
                whole: false,
                excerpts,
            })
        };
        match file {
            Some(file) => {
                let used: usize = file.excerpts.iter().map(|e| e.text.chars().count()).sum();
                left = left.saturating_sub(used);
                shown.push(file);
            }
            None => omitted.push(code_ref.path.clone()),
        }
    }
    (shown, omitted)
}

/// Windows of `lines` around the frames of `code_ref`, most relevant first, within
/// `budget_chars`; overlapping windows are one.
fn windows(code_ref: &CodeRef, lines: &[&str], budget_chars: usize) -> Vec<Excerpt> {
    if lines.is_empty() {
        return Vec::new();
    }
    // (first, last, anchor, function), 0-based inclusive.
    let mut spans: Vec<(usize, usize, usize, Option<String>)> = Vec::new();
    for frame in &code_ref.frames {
        let function = frame.function.as_deref().map(short_function);
        let anchor = match frame.line {
            Some(line) => (line as usize).clamp(1, lines.len()) - 1,
            // A frame without a line (the handler's module): its function's definition.
            None => match function.and_then(|f| first_definition(lines, f)) {
                Some(at) => at,
                None => continue,
            },
        };
        let start = function
            .and_then(|f| definition_above(lines, anchor, f))
            .unwrap_or_else(|| anchor.saturating_sub(WINDOW_BEFORE));
        let end = (anchor + WINDOW_AFTER).min(lines.len() - 1);
        let function = function.map(str::to_owned);
        match spans
            .iter_mut()
            .find(|(first, last, _, _)| start <= *last + 1 && *first <= end + 1)
        {
            Some(span) => {
                span.0 = span.0.min(start);
                span.1 = span.1.max(end);
            }
            None => spans.push((start, end, anchor, function)),
        }
    }
    if spans.is_empty() {
        // No frame line here: the head of the file.
        spans.push((
            0,
            (WINDOW_BEFORE + WINDOW_AFTER).min(lines.len() - 1),
            0,
            None,
        ));
    }
    let mut left = budget_chars;
    let mut excerpts = Vec::new();
    for (first, last, anchor, function) in spans {
        // A window cut below a few lines says too little, unless the span is that short.
        let enough = MIN_WINDOW_LINES.min(last - first + 1);
        let Some((first, last)) = fit(lines, (first, last), anchor, left)
            .filter(|(first, last)| last - first + 1 >= enough)
        else {
            break;
        };
        let text = numbered(lines, first + 1, last + 1);
        left = left.saturating_sub(text.chars().count());
        excerpts.push(Excerpt {
            first_line: first + 1,
            last_line: last + 1,
            function,
            text,
        });
    }
    excerpts
}

/// The largest part of `first..=last` around `anchor` whose numbered text fits `budget`
/// characters, growing from the anchor a line after then a line before; none when not even
/// the anchor's line fits.
fn fit(
    lines: &[&str],
    (first, last): (usize, usize),
    anchor: usize,
    budget: usize,
) -> Option<(usize, usize)> {
    let anchor = anchor.clamp(first, last);
    let cost = |i: usize| numbered(lines, i + 1, i + 1).chars().count();
    let mut used = cost(anchor);
    if used > budget {
        return None;
    }
    let (mut lo, mut hi) = (anchor, anchor);
    loop {
        let mut grew = false;
        if hi < last && used + cost(hi + 1) <= budget {
            hi += 1;
            used += cost(hi);
            grew = true;
        }
        if lo > first && used + cost(lo - 1) <= budget {
            lo -= 1;
            used += cost(lo);
            grew = true;
        }
        if !grew {
            return Some((lo, hi));
        }
    }
}

/// Lines `from..=to` (1-based) of `lines`, each prefixed with its number, long lines cut.
fn numbered(lines: &[&str], from: usize, to: usize) -> String {
    let width = lines.len().to_string().len();
    let mut out = String::new();
    for (i, line) in lines
        .iter()
        .enumerate()
        .take(to)
        .skip(from.saturating_sub(1))
    {
        let line = match line.char_indices().nth(MAX_LINE_CHARS) {
            Some((at, _)) => format!("{}…", &line[..at]),
            None => (*line).to_owned(),
        };
        out.push_str(&format!("{:>width$}| {line}\n", i + 1));
    }
    out
}

/// The last part of a frame's function name (`Object.handler` → `handler`,
/// `orders::store::put::h0123…` → `put`, `<module>` → none-like `<module>`).
fn short_function(function: &str) -> &str {
    let mut parts: Vec<&str> = function.split("::").collect();
    // Rust backtraces end in a hash: `::h` and 16 hex digits.
    if parts.len() > 1
        && parts.last().is_some_and(|p| {
            p.len() == 17 && p.starts_with('h') && p[1..].bytes().all(|b| b.is_ascii_hexdigit())
        })
    {
        parts.pop();
    }
    let last = parts.last().copied().unwrap_or(function);
    let last = last.rsplit('.').next().unwrap_or(last);
    last.trim_start_matches("async ").trim()
}

/// The nearest line at or above `from` (within [`DEFINITION_SEARCH`] lines) that defines
/// `function`.
fn definition_above(lines: &[&str], from: usize, function: &str) -> Option<usize> {
    let from = from.min(lines.len().checked_sub(1)?);
    (from.saturating_sub(DEFINITION_SEARCH)..=from)
        .rev()
        .find(|&i| defines(lines[i], function))
}

/// The first line of the file that defines `function`.
fn first_definition(lines: &[&str], function: &str) -> Option<usize> {
    lines.iter().position(|line| defines(line, function))
}

/// Whether `line` defines `function` in Python, JavaScript or Rust (`def f(`,
/// `function f(`, `f = `, `fn f(`, a method `f(…) {`).
fn defines(line: &str, function: &str) -> bool {
    if function.is_empty() || !function.chars().all(|c| c.is_alphanumeric() || c == '_') {
        return false;
    }
    let line = line.trim();
    let declared = [
        format!("def {function}("),
        format!("function {function}("),
        format!("function* {function}("),
        format!("fn {function}("),
        format!("fn {function}<"),
        format!("{function} = "),
        format!("{function}: function"),
    ];
    declared.iter().any(|d| line.contains(d.as_str()))
        || (line
            .trim_start_matches("async ")
            .starts_with(&format!("{function}("))
            && line.ends_with('{'))
}

/// The language of the item's traces, when they agree on one.
fn trace_language(traces: &[TraceGroup]) -> Option<Language> {
    let first = traces.first()?.language;
    traces.iter().all(|t| t.language == first).then_some(first)
}

/// The target's code for the item's prompt: the files its traces point at and its handler's
/// module, read through `code` and cut to [`CODE_TOKEN_BUDGET`]. None when the evidence does
/// not point at code (no stack traces, no error burst) or nothing can be read; a code source
/// that fails is logged, never an error: the prompt goes without code.
pub async fn read_code(code: &dyn CodeSource, item: &ImprovementItem) -> Option<CodeContext> {
    let o = &item.opportunity;
    if o.stack_traces.is_empty() && o.kind != OpportunityKind::ErrorBurst {
        return None;
    }
    let language = trace_language(&o.stack_traces);
    let mut refs = code_refs(&o.stack_traces);
    refs.truncate(MAX_FILES);
    let paths: Vec<&str> = refs.iter().map(|r| r.path.as_str()).collect();
    let deployed = match code.deployed_files(&o.component, &paths).await {
        Ok(deployed) => deployed,
        Err(e) => {
            warn!(component = %o.component, error = %Escaped(&e), "deployed code not read; the prompt goes without it");
            return None;
        }
    };
    let mut texts: BTreeMap<String, String> = deployed
        .files
        .into_iter()
        .filter_map(|(path, text)| text.map(|t| (path, t)))
        .collect();
    if let Some(handler) = deployed.handler.as_deref() {
        let candidates = handler_files(handler, language);
        let mut module = candidates.iter().find(|c| texts.contains_key(*c)).cloned();
        let unread: Vec<&str> = candidates
            .iter()
            .filter(|c| !paths.contains(&c.as_str()))
            .map(String::as_str)
            .collect();
        if module.is_none() && !unread.is_empty() {
            match code.deployed_files(&o.component, &unread).await {
                Ok(more) => {
                    module = unread
                        .iter()
                        .find(|c| more.files.get(**c).is_some_and(Option::is_some))
                        .map(|c| (*c).to_owned());
                    texts.extend(
                        more.files
                            .into_iter()
                            .filter_map(|(path, text)| text.map(|t| (path, t))),
                    );
                }
                Err(e) => {
                    warn!(component = %o.component, error = %Escaped(&e), "handler module not read");
                }
            }
        }
        if let Some(module) = module {
            let entry = FrameLine {
                line: None,
                function: handler_function(handler).map(str::to_owned),
            };
            match refs.iter_mut().find(|r| r.path == module) {
                Some(known) => known.frames.push(entry),
                None => refs.push(CodeRef {
                    path: module,
                    frames: vec![entry],
                }),
            }
        }
    }
    let (files, omitted) = shown_files(&refs, &texts, CODE_TOKEN_BUDGET);
    if files.is_empty() && deployed.handler.is_none() {
        return None;
    }
    Some(CodeContext {
        language,
        runtime: deployed.base.runtime,
        handler: deployed.handler,
        files,
        omitted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn group(language: &str, count: u64, frames: serde_json::Value) -> TraceGroup {
        serde_json::from_value(json!({
            "exception": "E", "language": language, "count": count, "frames": frames,
            "components": ["orders-api"],
            "first_seen": "2026-11-22T09:00:00Z", "last_seen": "2026-11-22T09:05:00Z"
        }))
        .unwrap()
    }

    fn paths(refs: &[CodeRef]) -> Vec<&str> {
        refs.iter().map(|r| r.path.as_str()).collect()
    }

    #[test]
    fn python_frames_map_to_package_files_and_skip_libraries_and_the_runtime() {
        let traces = [group(
            "python",
            5,
            json!([
                {"function": "get", "file": "/var/task/vendor/site-packages/requests/api.py", "line": 9},
                {"function": "load", "file": "/var/task/orders/cart.py", "line": 27},
                {"function": "validate", "file": "/opt/python/lib/python3.12/site-packages/pydantic/main.py", "line": 3},
                {"function": "handler", "file": "/var/task/app.py", "line": 9},
                {"function": "_import", "file": "<frozen importlib._bootstrap>", "line": 1},
                {"function": "handle_event_request", "file": "/var/runtime/bootstrap.py", "line": 180}
            ]),
        )];
        let refs = code_refs(&traces);
        assert_eq!(paths(&refs), ["orders/cart.py", "app.py"]);
        assert_eq!(refs[0].frames[0].line, Some(27));
        assert_eq!(refs[0].frames[0].function.as_deref(), Some("load"));
    }

    #[test]
    fn node_frames_map_to_package_files_and_skip_node_modules_and_internals() {
        let traces = [group(
            "node",
            3,
            json!([
                {"function": "parse", "file": "/var/task/node_modules/qs/lib/parse.js", "line": 4},
                {"function": "total", "file": "/var/task/src/orders.js", "line": 12, "column": 7},
                {"function": "processTicksAndRejections", "file": "node:internal/process/task_queues", "line": 95},
                {"function": "Runtime.handler", "file": "file:///var/task/index.mjs", "line": 30},
                {"function": "run", "file": "file:///var/runtime/index.mjs", "line": 1200},
                {"function": "x", "file": "/opt/nodejs/node_modules/lib.js", "line": 1}
            ]),
        )];
        assert_eq!(paths(&code_refs(&traces)), ["src/orders.js", "index.mjs"]);
    }

    #[test]
    fn rust_panic_paths_are_package_relative_already_and_std_is_skipped() {
        let traces = [group(
            "rust",
            2,
            json!([
                {"function": "orders::store::put::h0123456789abcdef", "file": "./src/store.rs", "line": 40, "column": 9},
                {"function": "core::panicking::panic", "file": "/rustc/90b35a6/library/core/src/panicking.rs", "line": 1},
                {"function": "tokio::runtime", "file": "/home/u/.cargo/registry/src/tokio-1.0/src/rt.rs", "line": 5},
                {"function": "main", "file": "src/main.rs", "line": 12, "column": 5}
            ]),
        )];
        let refs = code_refs(&traces);
        assert_eq!(paths(&refs), ["src/store.rs", "src/main.rs"]);
        assert_eq!(
            short_function("orders::store::put::h0123456789abcdef"),
            "put"
        );
    }

    #[test]
    fn java_frames_are_not_mapped_the_package_has_no_sources() {
        let traces = [group(
            "java",
            2,
            json!([{"function": "com.example.Handler.handleRequest", "file": "Handler.java", "line": 20}]),
        )];
        assert!(code_refs(&traces).is_empty());
    }

    #[test]
    fn files_are_ordered_by_trace_count_then_innermost_frame() {
        let traces = [
            group(
                "python",
                1,
                json!([{"file": "/var/task/rare.py", "line": 1}, {"file": "/var/task/app.py", "line": 2}]),
            ),
            group(
                "python",
                9,
                json!([{"file": "/var/task/often.py", "line": 5}, {"file": "/var/task/app.py", "line": 3}]),
            ),
        ];
        let refs = code_refs(&traces);
        assert_eq!(paths(&refs), ["often.py", "app.py", "rare.py"]);
        assert_eq!(refs[1].frames.len(), 2, "app.py keeps both frames");
    }

    #[test]
    fn a_handler_names_its_module_file() {
        assert_eq!(
            handler_files("orders.handler", Some(Language::Python)),
            ["orders.py"]
        );
        assert_eq!(
            handler_files("orders.handler", Some(Language::Node)),
            ["orders.js", "orders.mjs", "orders.cjs"]
        );
        assert_eq!(
            handler_files("src/handlers/orders.lambda_handler", None),
            [
                "src/handlers/orders.py",
                "src/handlers/orders.js",
                "src/handlers/orders.mjs",
                "src/handlers/orders.cjs"
            ]
        );
        assert_eq!(
            handler_files("pkg.orders.handler", Some(Language::Python)),
            ["pkg/orders.py"]
        );
        assert!(handler_files("bootstrap", None).is_empty());
        assert!(handler_files("com.example.Handler::handleRequest", None).is_empty());
        assert!(handler_files("../etc.handler", None).is_empty());
    }

    /// A Python file of `n` functions of 10 lines each; function `f<i>` starts at line
    /// `10 i + 1`.
    fn big_file(n: usize) -> String {
        (0..n)
            .map(|i| {
                let mut f = format!("def f{i}(event):\n");
                for j in 0..9 {
                    f.push_str(&format!(
                        "    value_{j} = event.get('key_{j}') or 'default value {j}'\n"
                    ));
                }
                f
            })
            .collect()
    }

    #[test]
    fn a_small_file_is_shown_whole_and_numbered() {
        let refs = [CodeRef {
            path: "app.py".into(),
            frames: vec![FrameLine {
                line: Some(2),
                function: Some("handler".into()),
            }],
        }];
        let texts = [(
            "app.py".to_owned(),
            "def handler(e):\n    return e['k']\n".to_owned(),
        )]
        .into();
        let (shown, omitted) = shown_files(&refs, &texts, CODE_TOKEN_BUDGET);
        assert!(omitted.is_empty());
        assert!(shown[0].whole);
        assert_eq!(
            shown[0].excerpts[0].text,
            "1| def handler(e):\n2|     return e['k']\n"
        );
    }

    #[test]
    fn big_files_are_cut_to_windows_around_the_frames_within_the_budget() {
        // GIVEN two files far over the budget, the innermost frame in f300 of the first
        let big = big_file(1000);
        let texts: BTreeMap<String, String> = [
            ("orders/cart.py".to_owned(), big.clone()),
            ("app.py".to_owned(), big.clone()),
            ("unread.py".to_owned(), big),
        ]
        .into();
        let frame = |line: u32, f: &str| FrameLine {
            line: Some(line),
            function: Some(f.into()),
        };
        let refs = [
            CodeRef {
                path: "orders/cart.py".into(),
                frames: vec![frame(3005, "f300"), frame(55, "f5")],
            },
            CodeRef {
                path: "app.py".into(),
                frames: vec![frame(9003, "f900")],
            },
            CodeRef {
                path: "missing.py".into(),
                frames: vec![frame(1, "f0")],
            },
        ];
        let budget = 1_000;
        // WHEN they are shown
        let (shown, omitted) = shown_files(&refs, &texts, budget);
        // THEN the total stays within the budget, and every readable file shows its frame
        let total: usize = shown
            .iter()
            .flat_map(|f| &f.excerpts)
            .map(|e| estimated_tokens(&e.text))
            .sum();
        assert!(total <= budget, "{total} tokens");
        assert!(total > budget / 2, "the budget is used: {total}");
        assert!(omitted.is_empty(), "{omitted:?}");
        assert_eq!(shown.len(), 2, "a file that is not deployed is skipped");
        let cart = &shown[0];
        assert!(!cart.whole);
        assert_eq!(cart.total_lines, 10_000);
        // The innermost frame's function first, from its definition down past the line.
        let first = &cart.excerpts[0];
        assert_eq!(first.function.as_deref(), Some("f300"));
        assert_eq!(first.first_line, 3001);
        assert!(first.last_line > 3005);
        assert!(
            first.text.starts_with(" 3001| def f300(event):\n"),
            "{}",
            first.text
        );
        assert!(
            cart.excerpts
                .iter()
                .any(|e| e.function.as_deref() == Some("f5"))
        );
        assert!(shown[1].excerpts[0].text.contains("9003|"));
    }

    #[test]
    fn a_frame_without_a_line_shows_its_function_wherever_it_is_defined() {
        let mut text = big_file(100);
        text.push_str("exports.handler = async (event) => {\n  return f0(event);\n};\n");
        let lines: Vec<&str> = text.lines().collect();
        let handler = CodeRef {
            path: "index.js".into(),
            frames: vec![FrameLine {
                line: None,
                function: Some("handler".into()),
            }],
        };
        let excerpts = windows(&handler, &lines, 4_000);
        assert_eq!(excerpts[0].first_line, 1001, "{excerpts:?}");
        assert!(excerpts[0].text.contains("1001| exports.handler = async"));
        assert!(defines("  async handler(event) {", "handler"));
        assert!(defines("export async function handler(event) {", "handler"));
        assert!(!defines("    return handler(event)", "handler"));
    }

    #[test]
    fn a_window_too_big_for_what_is_left_is_cut_around_its_frame_line() {
        let lines: Vec<&str> = (0..100).map(|_| "x = compute(1, 2, 3)").collect();
        let code_ref = CodeRef {
            path: "a.py".into(),
            frames: vec![FrameLine {
                line: Some(50),
                function: None,
            }],
        };
        let excerpts = windows(&code_ref, &lines, 300);
        assert_eq!(excerpts.len(), 1);
        let e = &excerpts[0];
        assert!(e.first_line <= 50 && 50 <= e.last_line, "{e:?}");
        assert!(e.text.chars().count() <= 300);
        assert!(
            windows(&code_ref, &lines, 20).is_empty(),
            "too small to show"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 128,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x6e_c0de),
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Any files, frames and budget: no panic, the shown code within the budget, every
        /// excerpt inside its file.
        #[test]
        fn shown_code_stays_within_the_budget(
            files in proptest::collection::vec(
                proptest::collection::vec("[a-zé_ (){}:=.'\"]{0,80}", 0..150), 1..4),
            frames in proptest::collection::vec(
                (0usize..4, proptest::option::of(0u32..400), proptest::option::of("[a-z_]{0,6}")),
                0..8),
            budget in 0usize..2_000,
        ) {
            let texts: BTreeMap<String, String> = files
                .iter()
                .enumerate()
                .map(|(i, lines)| (format!("f{i}.py"), lines.join("\n")))
                .collect();
            let refs: Vec<CodeRef> = (0..4)
                .map(|i| CodeRef {
                    path: format!("f{i}.py"),
                    frames: frames
                        .iter()
                        .filter(|(file, _, _)| *file == i)
                        .map(|(_, line, function)| FrameLine {
                            line: *line,
                            function: function.clone(),
                        })
                        .collect(),
                })
                .collect();
            let (shown, _) = shown_files(&refs, &texts, budget);
            let chars: usize = shown
                .iter()
                .flat_map(|f| &f.excerpts)
                .map(|e| e.text.chars().count())
                .sum();
            proptest::prop_assert!(chars <= budget * CHARS_PER_TOKEN, "{} > {}", chars, budget * 4);
            for file in &shown {
                for e in &file.excerpts {
                    proptest::prop_assert!(1 <= e.first_line && e.first_line <= e.last_line);
                    proptest::prop_assert!(e.last_line <= file.total_lines);
                }
            }
        }
    }
}
