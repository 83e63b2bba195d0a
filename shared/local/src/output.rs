//! How the CLI prints results: `--output json|table`, `--quiet`, RFC 3339 UTC timestamps,
//! errors as `error[Type]: …` with a hint line, and the exit codes (docs/cli.md).

use std::process::ExitCode;

use clap::ValueEnum;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Exit status: the command did what was asked.
pub const EXIT_OK: u8 = 0;
/// Exit status: the command failed (an `error[Type]` line on stderr), or `demo` had a
/// scenario end otherwise than its file expects.
pub const EXIT_FAILED: u8 = 1;
/// Exit status: the command line is wrong (unknown or removed flag, missing or bad value);
/// also `validate-patch`'s verdict needs_approval or block (its JSON on stdout).
pub const EXIT_USAGE: u8 = 2;

/// The format of a command's result on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// Pretty-printed JSON (what scripts read).
    Json,
    /// Aligned columns for people.
    Table,
}

/// `t` as RFC 3339 in UTC to the second, e.g. `2026-11-22T05:00:00Z`: the one form the CLI
/// prints times in.
pub fn utc(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// Rewrites every RFC 3339 string in `value` as [`utc`].
pub fn normalize_times(value: &mut Value) {
    match value {
        Value::String(s) => {
            if s.len() >= 20
                && s.as_bytes().get(10) == Some(&b'T')
                && let Ok(t) = OffsetDateTime::parse(s, &Rfc3339)
            {
                *s = utc(t);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_times),
        Value::Object(map) => map.values_mut().for_each(normalize_times),
        _ => {}
    }
}

/// `value` as `format` asks, ending in a newline.
pub fn render(value: &Value, format: OutputFormat) -> String {
    match format {
        OutputFormat::Json => {
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        }
        OutputFormat::Table => table(value),
    }
}

/// A cell: strings bare, null as `-`, anything else as compact JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|i| !i.is_object() && !i.is_array()) => {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.iter().map(cell).collect::<Vec<_>>().join(", ")
            }
        }
        other => other.to_string(),
    }
}

fn is_rows(value: &Value) -> bool {
    matches!(value, Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_object))
}

/// Columns for a list of objects (keys in first-seen order), key/value lines for an object,
/// whose lists of objects follow as tables of their own.
fn table(value: &Value) -> String {
    match value {
        Value::Array(_) if is_rows(value) => rows(value),
        Value::Array(items) if items.is_empty() => "(none)".to_owned(),
        Value::Object(map) => {
            let width = map.keys().map(String::len).max().unwrap_or(0);
            let mut lines = Vec::new();
            let mut sections = Vec::new();
            for (key, item) in map {
                if is_rows(item) {
                    sections.push(format!("\n{key}:\n{}", rows(item)));
                } else if let Value::Object(inner) = item
                    && !inner.is_empty()
                {
                    sections.push(format!("\n{key}:\n{}", indent(&table(item))));
                } else {
                    lines.push(format!("{key:<width$}  {}", cell(item)));
                }
            }
            let mut text = lines.join("\n");
            for section in sections {
                text.push('\n');
                text.push_str(&section);
            }
            text.trim_start_matches('\n').to_owned()
        }
        other => cell(other),
    }
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rows(value: &Value) -> String {
    let Value::Array(items) = value else {
        return cell(value);
    };
    let mut columns: Vec<&str> = Vec::new();
    for item in items {
        if let Value::Object(map) = item {
            for key in map.keys() {
                if !columns.contains(&key.as_str()) {
                    columns.push(key);
                }
            }
        }
    }
    let cells: Vec<Vec<String>> = items
        .iter()
        .map(|item| {
            columns
                .iter()
                .map(|c| cell(item.get(*c).unwrap_or(&Value::Null)))
                .collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            cells
                .iter()
                .map(|r| r[i].chars().count())
                .chain([c.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |values: Vec<String>| {
        values
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v}{}", " ".repeat(w - v.chars().count())))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let mut out = vec![
        line(columns.iter().map(|c| (*c).to_owned()).collect()),
        line(widths.iter().map(|w| "-".repeat(*w)).collect()),
    ];
    out.extend(cells.into_iter().map(line));
    out.join("\n")
}

/// A failed command: what to print and the error type.
#[derive(Debug)]
pub struct CliError {
    /// The stable error type, e.g. `InvalidEvent`.
    pub error_type: &'static str,
    /// What went wrong.
    pub message: String,
    /// What to do about it, printed as a second line.
    pub hint: Option<String>,
    /// The exit status.
    pub code: u8,
}

impl CliError {
    /// With a hint line.
    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// A usage error (exit 2).
    #[must_use]
    pub fn usage(mut self) -> Self {
        self.code = EXIT_USAGE;
        self
    }

    /// Prints `error[Type]: message` and `  hint: …` on stderr; the exit status.
    pub fn report(&self) -> ExitCode {
        eprintln!("error[{}]: {}", self.error_type, self.message);
        if let Some(hint) = &self.hint {
            eprintln!("  hint: {hint}");
        }
        ExitCode::from(self.code)
    }
}

impl<E: selfbuild_core::error::StableError> From<E> for CliError {
    fn from(e: E) -> Self {
        let error_type = e.error_type();
        let hint = match error_type {
            selfbuild_core::error::ErrorType::NotFound => {
                Some("`selfbuild list improvements` shows the ids in this data directory".into())
            }
            selfbuild_core::error::ErrorType::Halted => Some(
                "`selfbuild status` shows who halted and why; `selfbuild resume` clears it".into(),
            ),
            _ => None,
        };
        Self {
            error_type: error_type.as_str(),
            message: e.to_string(),
            hint,
            code: EXIT_FAILED,
        }
    }
}

/// A [`CliError`] of `error_type` (exit 1).
pub fn cli_error(error_type: &'static str, message: impl Into<String>) -> CliError {
    CliError {
        error_type,
        message: message.into(),
        hint: None,
        code: EXIT_FAILED,
    }
}

/// The error for a file that could not be read: a missing relative path gets the hint of
/// what the binary bundles.
pub fn read_error(
    error_type: &'static str,
    path: &std::path::Path,
    message: String,
    e: &std::io::Error,
) -> CliError {
    let error = cli_error(error_type, message);
    if e.kind() == std::io::ErrorKind::NotFound {
        error.hint(crate::bundled::missing_hint(path))
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn times_print_in_utc_to_the_second() {
        let mut v = json!({"a": "2026-11-22T07:00:01.5+02:00", "b": ["2026-11-22T05:00:00Z"], "c": "not a time"});
        normalize_times(&mut v);
        assert_eq!(
            v,
            json!({"a": "2026-11-22T05:00:01Z", "b": ["2026-11-22T05:00:00Z"], "c": "not a time"})
        );
    }

    #[test]
    fn a_table_lines_up_rows_and_lists_key_values() {
        let v = json!({"halted": false, "cycles": [{"id": "a", "n": 1}, {"id": "bb", "n": null}]});
        assert_eq!(
            render(&v, OutputFormat::Table),
            "halted  false\n\ncycles:\nid  n\n--  -\na   1\nbb  -"
        );
    }
}
