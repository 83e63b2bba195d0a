//! `selfbuild logs mine` as a process: what it prints, where, and its exit status.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn selfbuild(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_selfbuild"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("selfbuild runs");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(stdin)
        .expect("writes stdin");
    child.wait_with_output().expect("selfbuild ends")
}

fn objects(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8(output.stdout.clone())
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

#[test]
fn a_csv_file_gets_one_object_per_record_and_a_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("logs.csv");
    std::fs::write(
        &file,
        "LineId,Content\n\
         1,\"Receiving block blk_1 src: /10.0.0.1:5 dest: /10.0.0.2:50010\"\n\
         2,\"PacketResponder 1 for block blk_9, \"\"quoted\"\" terminating\"\n\
         3,Receiving block blk_2 src: /10.0.0.3:5 dest: /10.0.0.2:50010\n",
    )
    .expect("writes");
    let output = selfbuild(
        &[
            "logs",
            "mine",
            file.to_str().expect("utf-8 path"),
            "--format",
            "csv",
        ],
        b"",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let lines = objects(&output);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["line"], 1);
    assert_eq!(lines[0]["template_id"], lines[2]["template_id"]);
    assert_ne!(lines[0]["template_id"], lines[1]["template_id"]);
    assert_eq!(
        lines[2]["template"],
        "Receiving block blk_<*> src: <*> dest: <*>"
    );
    assert!(stderr.starts_with("2 templates from 3 records"), "{stderr}");
    assert!(stderr.contains("lines/s"), "{stderr}");
}

#[test]
fn stdin_jsonl_reads_a_dotted_field() {
    let output = selfbuild(
        &["logs", "mine", "-", "--format", "jsonl", "--field", "log.msg"],
        b"{\"log\":{\"msg\":\"disk full on /dev/sda1\"}}\n{\"log\":{\"msg\":\"disk full on /dev/sdb2\"}}\n",
    );
    assert_eq!(output.status.code(), Some(0));
    let lines = objects(&output);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[1]["template"], "disk full on <*>");
}

#[test]
fn bad_input_is_an_error_naming_the_line_and_prints_nothing() {
    let output = selfbuild(
        &["logs", "mine", "-", "--format", "jsonl"],
        b"{\"message\":\"ok 1\"}\n{\"message\": oops}\n",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(
        stderr.starts_with("error[InvalidInput]: stdin: line 2: invalid JSON"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let output = selfbuild(
        &[
            "logs", "mine", "-", "--format", "csv", "--column", "Message",
        ],
        b"LineId,Content\n1,x\n",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no column \"Message\""), "{stderr}");

    let output = selfbuild(&["logs", "mine", "/no/such/file"], b"");
    assert_eq!(output.status.code(), Some(1));
    let output = selfbuild(&["logs", "mine", "-", "--format", "xml"], b"");
    assert_eq!(
        output.status.code(),
        Some(2),
        "a usage error, as clap reports it"
    );
}

#[test]
fn a_closed_stdout_ends_quietly_with_the_sigpipe_status() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_selfbuild"))
        .args(["logs", "mine", "-"])
        .stdin(Stdio::piped())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("selfbuild runs");
    let lines: String = (0..1000).map(|i| format!("job {i} done\n")).collect();
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(lines.as_bytes())
        .expect("writes stdin");
    let output = child.wait_with_output().expect("selfbuild ends");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
