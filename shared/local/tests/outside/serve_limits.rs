//! `selfbuild serve` under clients that hold connections (issue 12, item 5): a connection
//! that never finishes its headers, idles after a response, or withholds its body is closed
//! after the configured timeout (1 s here; the checks allow 20).

use std::io::Write;
use std::time::Duration;

use crate::support::{Server, closed_by_server, request};

const BOUND: Duration = Duration::from_secs(20);

fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &["--header-timeout", "1", "--body-timeout", "1"],
    );
    (dir, server)
}

#[test]
fn a_half_open_connection_is_closed_after_the_header_timeout() {
    let (_dir, server) = server();
    let mut silent = server.connect();
    let mut partial = server.connect();
    partial
        .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .unwrap();
    assert!(
        closed_by_server(&mut silent, BOUND),
        "silent connection kept"
    );
    assert!(
        closed_by_server(&mut partial, BOUND),
        "half-sent headers kept"
    );
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let (_dir, server) = server();
    let mut stream = server.connect();
    let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    stream
        .write_all(request(list, "keep-alive").as_bytes())
        .unwrap();
    // The response arrives; then, idle, the connection is closed.
    assert!(closed_by_server(&mut stream, BOUND), "idle connection kept");
}

#[test]
fn a_withheld_body_is_refused_with_408_after_the_body_timeout() {
    let (_dir, server) = server();
    let mut stream = server.connect();
    let full = request(&"x".repeat(1000), "close");
    // Headers and 10 bytes of the promised 1000.
    let cut = full.find("\r\n\r\n").unwrap() + 4 + 10;
    stream.write_all(&full.as_bytes()[..cut]).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    let mut answer = String::new();
    let _ = std::io::Read::read_to_string(&mut stream, &mut answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 1 s"), "{answer}");
}
