//! Waiting for a child process (a local server the test started) to answer.

use std::process::Child;
use std::time::{Duration, Instant};

/// Polls `ready` every 100 ms until it holds; panics with `log()` and `hint` when `child`
/// exits first, and with `log()` when `timeout` passes. `what` names the child in both.
pub fn wait_until_ready(
    child: &mut Child,
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
    log: impl Fn() -> String,
    hint: &str,
) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status}; its log:\n{}\n{hint}", log());
        }
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{what} did not answer within {timeout:?}; its log:\n{}",
        log()
    );
}
