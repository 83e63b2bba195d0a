//! `selfbuild serve` keeps rate limit counts and access log entries in memory on the request
//! path (issue 19): two servers on one store still hold a key's limit within the documented
//! tolerance, and a graceful stop stores every access log entry.

use std::time::Instant;

use selfbuild_core::ports::AccessLog;
use selfbuild_local::store::SqliteStore;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

use crate::support::Server;

/// Two seconds into a one-minute window: the test's calls all fall in it.
const START: OffsetDateTime = datetime!(2026-11-22 05:00:02 UTC);

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}

fn outcome(answer: &Value) -> String {
    let result = &answer["result"]["structuredContent"];
    result
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or("ok")
        .to_owned()
}

#[test]
fn two_servers_on_one_store_hold_a_keys_limit_within_the_share() {
    // GIVEN two servers on one store, a limit of 20 a minute (a share of 2 per process),
    // their clocks started at the same instant of the same window
    let dir = tempfile::tempdir().unwrap();
    let limit = [("MCP_RATE_LIMIT_PER_MINUTE", "20")];
    let started = Instant::now();
    let a = Server::start_with_env(dir.path(), &["--now", &rfc3339(START)], &limit);
    let b_now = START + started.elapsed();
    let b = Server::start_with_env(dir.path(), &["--now", &rfc3339(b_now)], &limit);

    // WHEN the key calls both, 40 times in all, from four threads at once
    let outcomes: Vec<String> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (a, b) = (&a, &b);
                scope.spawn(move || {
                    (0..10)
                        .map(|i| {
                            let server = if (t + i) % 2 == 0 { a } else { b };
                            let (status, answer) = server.call_tool("list_agents", json!({}));
                            assert_eq!(status, 200, "{answer}");
                            outcome(&answer)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });

    // THEN at least the limit and at most the limit plus one process's share are admitted
    let admitted = outcomes.iter().filter(|o| *o == "ok").count();
    let refused = outcomes.iter().filter(|o| *o == "rate_limited").count();
    assert_eq!(admitted + refused, 40, "{outcomes:?}");
    assert!(
        (20..=22).contains(&admitted),
        "{admitted} admitted: {outcomes:?}"
    );
    // AND afterwards each server refuses: the store's count reached both
    std::thread::sleep(std::time::Duration::from_millis(300));
    for server in [&a, &b] {
        let (_, answer) = server.call_tool("list_agents", json!({}));
        assert_eq!(outcome(&answer), "rate_limited", "{answer}");
    }
}

#[test]
fn a_graceful_stop_stores_every_access_log_entry() {
    // GIVEN a server that answered 30 calls
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path(), &["--now", &rfc3339(START)]);
    for _ in 0..30 {
        let (status, answer) = server.call_tool("list_agents", json!({}));
        assert_eq!(status, 200, "{answer}");
    }
    // WHEN it is stopped with Ctrl-C at once
    assert!(server.stop_gracefully(), "serve did not exit cleanly");
    // THEN every call is in the store's access log
    let store = SqliteStore::open(dir.path()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let log = runtime
        .block_on(store.recent_tool_calls(START + time::Duration::hours(1), 100))
        .unwrap();
    assert_eq!(log.len(), 30, "{log:?}");
    assert!(
        log.iter()
            .all(|e| e.tool == "list_agents" && e.outcome == "ok")
    );
}
