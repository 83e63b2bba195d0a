//! `selfbuild logs mine`: log lines grouped into templates by the core's streaming miner.
//!
//! Input is read whole (records, not bytes, are kept: one message each), mined in input
//! order, and then printed, one JSON object per record, `{"line": n, "template_id": id,
//! "template": "…"}`, with each record's **final** template: the id and text as they stand
//! after the last record, since a later record can generalise a template or merge two.
//! Buffering is what makes that possible; the miner's own memory stays bounded. A bad
//! record aborts the command before anything is printed (all or nothing). See
//! `docs/logmine.md`.

use std::io::{BufRead, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use clap::ValueEnum;
use selfbuild_core::logmine::{StreamConfig, TemplateId, TemplateMiner};
use serde_json::Value;

use crate::cli::{CliError, cli_error};

/// How `logs mine` reads its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum Format {
    /// One message per line (a trailing `\r` is dropped; invalid UTF-8 is replaced).
    #[default]
    Lines,
    /// RFC 4180 CSV with a header row; `--column` names the message column.
    Csv,
    /// One JSON object per line; `--field` names the message field (a dotted path).
    Jsonl,
}

/// One record to mine: its 1-based number and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The line number (lines, jsonl) or data record number (csv, header not counted).
    pub line: u64,
    /// The message.
    pub message: String,
}

/// Reads the records of `input` (a file, or `-` for stdin) in `format`.
pub fn read_records(
    input: &Path,
    format: Format,
    column: &str,
    field: &str,
) -> Result<Vec<Record>, CliError> {
    let name = if input == Path::new("-") {
        "stdin".to_owned()
    } else {
        input.display().to_string()
    };
    let reader: Box<dyn BufRead> = if input == Path::new("-") {
        Box::new(std::io::BufReader::new(std::io::stdin().lock()))
    } else {
        let file = std::fs::File::open(input)
            .map_err(|e| cli_error("InvalidInput", format!("{name}: {e}")))?;
        Box::new(std::io::BufReader::with_capacity(1 << 16, file))
    };
    let io = |e: std::io::Error| cli_error("InvalidInput", format!("{name}: {e}"));
    match format {
        Format::Lines => read_lines(reader).map_err(io),
        Format::Csv => read_csv(reader, column).map_err(|e| prefixed(&name, e)),
        Format::Jsonl => read_jsonl(reader, field).map_err(|e| prefixed(&name, e)),
    }
}

fn prefixed(name: &str, e: CliError) -> CliError {
    cli_error(e.error_type, format!("{name}: {}", e.message))
}

/// Every line, numbered from 1.
fn read_lines(mut reader: impl BufRead) -> std::io::Result<Vec<Record>> {
    let mut records = Vec::new();
    let mut buf = Vec::new();
    let mut line = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            return Ok(records);
        }
        line += 1;
        let text = buf.strip_suffix(b"\n").unwrap_or(&buf);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        records.push(Record {
            line,
            message: String::from_utf8_lossy(text).into_owned(),
        });
    }
}

/// Every data record's `column`, numbered from 1 (the header is not a record).
fn read_csv(reader: impl BufRead, column: &str) -> Result<Vec<Record>, CliError> {
    let mut csv = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| cli_error("InvalidInput", format!("CSV header: {e}")))?
        .clone();
    let index = headers.iter().position(|h| h == column).ok_or_else(|| {
        let names: Vec<&str> = headers.iter().collect();
        cli_error(
            "InvalidInput",
            format!(
                "the CSV header has no column {column:?} (it has: {}); choose one with --column",
                names.join(", ")
            ),
        )
    })?;
    let mut records = Vec::new();
    for (i, record) in csv.records().enumerate() {
        let n = i as u64 + 1;
        let record = record.map_err(|e| {
            let at = e
                .position()
                .map(|p| format!("line {}", p.line()))
                .unwrap_or_else(|| "?".to_owned());
            cli_error("InvalidInput", format!("record {n} ({at}): {e}"))
        })?;
        let message = record.get(index).ok_or_else(|| {
            cli_error(
                "InvalidInput",
                format!("record {n}: no field {column:?} (the record is too short)"),
            )
        })?;
        records.push(Record {
            line: n,
            message: message.to_owned(),
        });
    }
    Ok(records)
}

/// Every non-blank line's `field` (a dotted path), numbered by line.
fn read_jsonl(mut reader: impl BufRead, field: &str) -> Result<Vec<Record>, CliError> {
    let mut records = Vec::new();
    let mut buf = String::new();
    let mut line = 0_u64;
    loop {
        buf.clear();
        let read = reader
            .read_line(&mut buf)
            .map_err(|e| cli_error("InvalidInput", format!("line {}: {e}", line + 1)))?;
        if read == 0 {
            return Ok(records);
        }
        line += 1;
        if buf.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&buf)
            .map_err(|e| cli_error("InvalidInput", format!("line {line}: invalid JSON: {e}")))?;
        let message = field_at(&value, field).ok_or_else(|| {
            cli_error(
                "InvalidInput",
                format!("line {line}: no field {field:?} in the JSON object"),
            )
        })?;
        let message = match message {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        records.push(Record { line, message });
    }
}

/// The value at a dotted path (`message`, `log.message`); a key holding dots matches whole
/// first (`{"log.message": …}`).
fn field_at<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let object = value.as_object()?;
    if let Some(v) = object.get(path) {
        return Some(v);
    }
    let (head, rest) = path.split_once('.')?;
    field_at(object.get(head)?, rest)
}

/// What mining the records gave.
#[derive(Debug)]
pub struct Mined {
    /// Each record's final template id (`None` for a blank message).
    pub ids: Vec<Option<TemplateId>>,
    /// The miner after the last record.
    pub miner: TemplateMiner,
    /// Time spent mining (not reading or printing).
    pub elapsed: Duration,
}

/// The miner `logs mine` runs: the shipped grouping settings, with room for more templates
/// than a Lambda keeps (a whole log file rather than one function's error lines).
pub const CLI_MINER: StreamConfig = StreamConfig {
    max_templates: 20_000,
    max_cached_signatures: 65_536,
    min_distinct_values: StreamConfig::DEFAULT.min_distinct_values,
    min_constant_tokens: StreamConfig::DEFAULT.min_constant_tokens,
};

/// Mines the records in order with [`CLI_MINER`]; ids are resolved to the final ones.
pub fn mine(records: &[Record]) -> Mined {
    let mut miner = TemplateMiner::new(CLI_MINER);
    let started = Instant::now();
    let ids: Vec<Option<TemplateId>> = records.iter().map(|r| miner.observe(&r.message)).collect();
    let elapsed = started.elapsed();
    let ids = ids
        .into_iter()
        .map(|id| id.map(|id| miner.resolve(id)))
        .collect();
    Mined {
        ids,
        miner,
        elapsed,
    }
}

/// Writes one JSON object per record to `out`.
pub fn write_assignments(
    records: &[Record],
    mined: &Mined,
    out: &mut impl Write,
) -> std::io::Result<()> {
    let texts: std::collections::HashMap<TemplateId, String> = mined
        .miner
        .templates()
        .map(|(id, text, _)| (id, text))
        .collect();
    for (record, id) in records.iter().zip(&mined.ids) {
        let template = id.and_then(|id| texts.get(&id));
        let object = serde_json::json!({
            "line": record.line,
            "template_id": id.map(TemplateId::get),
            "template": template,
        });
        serde_json::to_writer(&mut *out, &object)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// The summary for stderr: totals, speed, then the most frequent templates.
pub fn summary(records: &[Record], mined: &Mined, top: usize) -> String {
    let blank = mined.ids.iter().filter(|id| id.is_none()).count();
    let seconds = mined.elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        format!("{:.0}", records.len() as f64 / seconds)
    } else {
        "n/a".to_owned()
    };
    let mut templates: Vec<(TemplateId, String, u64)> = mined.miner.templates().collect();
    templates.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
    let mut text = format!(
        "{} templates from {} records ({} blank); mined in {:.3} s, {} lines/s\n",
        templates.len(),
        records.len(),
        blank,
        seconds,
        rate
    );
    for (id, template, count) in templates.iter().take(top) {
        text.push_str(&format!("{count:>9}  #{id:<5} {template}\n"));
    }
    if templates.len() > top {
        text.push_str(&format!("   … and {} more\n", templates.len() - top));
    }
    text
}

/// `selfbuild logs mine`: reads, mines, prints; the exit code of the CLI's other commands
/// (0, 1 with `error[InvalidInput]: …` on stderr, 141 on a closed pipe).
pub fn run_mine(input: &Path, format: Format, column: &str, field: &str) -> std::process::ExitCode {
    let records = match read_records(input, format, column, field) {
        Ok(records) => records,
        Err(e) => {
            eprintln!("error[{}]: {}", e.error_type, e.message);
            return std::process::ExitCode::from(1);
        }
    };
    let mined = mine(&records);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    if let Err(e) = write_assignments(&records, &mined, &mut out) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return std::process::ExitCode::from(141);
        }
        eprintln!("error[Io]: cannot write to stdout: {e}");
        return std::process::ExitCode::from(1);
    }
    eprint!("{}", summary(&records, &mined, 20));
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str, format: Format) -> Result<Vec<Record>, CliError> {
        let reader = std::io::Cursor::new(text.as_bytes().to_vec());
        match format {
            Format::Lines => Ok(read_lines(reader).expect("in memory")),
            Format::Csv => read_csv(reader, "Content"),
            Format::Jsonl => read_jsonl(reader, "message"),
        }
    }

    fn messages(records: &[Record]) -> Vec<(u64, &str)> {
        records
            .iter()
            .map(|r| (r.line, r.message.as_str()))
            .collect()
    }

    #[test]
    fn lines_are_numbered_from_one_and_keep_blank_ones() {
        let r = records("a 1\r\n\nb 2", Format::Lines).expect("reads");
        assert_eq!(messages(&r), [(1, "a 1"), (2, ""), (3, "b 2")]);
    }

    #[test]
    fn csv_reads_the_named_column_with_rfc4180_quoting() {
        let text = "LineId,Content,EventId\n1,\"a, \"\"quoted\"\" b\",E1\n2,\"two\nlines\",E2\n";
        let r = records(text, Format::Csv).expect("reads");
        assert_eq!(messages(&r), [(1, "a, \"quoted\" b"), (2, "two\nlines")]);
    }

    #[test]
    fn a_missing_csv_column_names_the_columns_there_are() {
        let e = records("LineId,Message\n1,x\n", Format::Csv).expect_err("no Content");
        assert_eq!(e.error_type, "InvalidInput");
        assert!(e.message.contains("\"Content\""), "{}", e.message);
        assert!(e.message.contains("LineId, Message"), "{}", e.message);
    }

    #[test]
    fn a_ragged_csv_record_is_named() {
        let e = records("a,Content\n1,x\n2\n", Format::Csv).expect_err("short record");
        assert!(e.message.starts_with("record 2"), "{}", e.message);
    }

    #[test]
    fn jsonl_reads_a_dotted_field_and_skips_blank_lines() {
        let text = "{\"message\":\"m 1\"}\n\n{\"message\":42}\n";
        let r = records(text, Format::Jsonl).expect("reads");
        assert_eq!(messages(&r), [(1, "m 1"), (3, "42")]);
        let nested = read_jsonl(
            std::io::Cursor::new(
                b"{\"log\":{\"msg\":\"deep\"}}\n{\"log.msg\":\"flat\"}\n".to_vec(),
            ),
            "log.msg",
        )
        .expect("reads");
        assert_eq!(messages(&nested), [(1, "deep"), (2, "flat")]);
    }

    #[test]
    fn invalid_json_or_a_missing_field_names_the_line() {
        let e = records("{\"message\":\"ok\"}\n{not json\n", Format::Jsonl).expect_err("bad");
        assert_eq!(e.error_type, "InvalidInput");
        assert!(
            e.message.starts_with("line 2: invalid JSON"),
            "{}",
            e.message
        );
        let e = records("{\"msg\":\"x\"}\n", Format::Jsonl).expect_err("no field");
        assert!(
            e.message.starts_with("line 1: no field \"message\""),
            "{}",
            e.message
        );
        let e = records("[1, 2]\n", Format::Jsonl).expect_err("not an object");
        assert!(e.message.starts_with("line 1: no field"), "{}", e.message);
    }

    #[test]
    fn each_record_gets_its_final_template() {
        // GIVEN four users, the fourth of which makes the user a variable
        let input: Vec<Record> = ["alice", "bob", "carol", "dave"]
            .iter()
            .enumerate()
            .map(|(i, u)| Record {
                line: i as u64 + 1,
                message: format!("session closed for user {u}"),
            })
            .chain(std::iter::once(Record {
                line: 5,
                message: "   ".to_owned(),
            }))
            .collect();
        // WHEN mined and written
        let mined = mine(&input);
        let mut out = Vec::new();
        write_assignments(&input, &mined, &mut out).expect("in memory");
        // THEN every line, the first ones included, carries the merged template
        let lines: Vec<Value> = String::from_utf8(out)
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 5);
        for (i, line) in lines[..4].iter().enumerate() {
            assert_eq!(line["line"], i as u64 + 1);
            assert_eq!(line["template"], "session closed for user <*>");
            assert_eq!(line["template_id"], lines[0]["template_id"]);
        }
        assert_eq!(lines[4]["template_id"], Value::Null);
        let summary = summary(&input, &mined, 20);
        assert!(
            summary.starts_with("1 templates from 5 records (1 blank)"),
            "{summary}"
        );
    }
}
