//! The runner against the local `python3` and `node`: these tests need both installed, and
//! fail (naming the install command) where they are not.

use super::*;

fn settings(timeout_seconds: u32, environment: &[(&str, &str)]) -> LambdaSettings {
    LambdaSettings {
        memory_mb: 256,
        timeout_seconds,
        reserved_concurrency: None,
        environment: environment
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn code(runtime: &str, handler: &str, files: &[(&str, &str)]) -> FunctionCode {
    FunctionCode {
        handler: Some(handler.to_owned()),
        runtime: Some(runtime.to_owned()),
        files: files
            .iter()
            .map(|(p, t)| ((*p).to_owned(), (*t).to_owned()))
            .collect(),
        events: Vec::new(),
    }
}

fn event(json: serde_json::Value) -> SampleEvent {
    SampleEvent {
        name: "e".into(),
        weight: 1.0,
        event: json,
    }
}

fn run_with(
    runner: &CodeRunner,
    code: &FunctionCode,
    settings: &LambdaSettings,
    event: &SampleEvent,
) -> Result<RunOutcome, RunError> {
    runner.run(&RunRequest {
        function: "orders-api",
        code,
        settings,
        event,
    })
}

fn run(code: &FunctionCode, event_json: serde_json::Value) -> RunOutcome {
    run_with(
        &CodeRunner::new(),
        code,
        &settings(10, &[]),
        &event(event_json),
    )
    .unwrap()
}

fn failed(outcome: RunOutcome) -> CodeFailure {
    match outcome {
        RunOutcome::Failed(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

const ORDERS_PY: &str = "\
import json


def total(order):
    return sum(line[\"qty\"] * line[\"price\"] for line in order[\"lines\"])


def handler(event, context):
    order = json.loads(event[\"body\"])
    return {\"statusCode\": 200, \"body\": json.dumps({\"total\": total(order), \"fn\": context.function_name})}
";

#[test]
fn a_python_handler_that_returns_succeeds() {
    let code = code("python3.12", "orders.handler", &[("orders.py", ORDERS_PY)]);
    let outcome = run(
        &code,
        serde_json::json!({"body": "{\"lines\": [{\"qty\": 2, \"price\": 3}]}"}),
    );
    assert_eq!(outcome, RunOutcome::Succeeded);
}

#[test]
fn a_python_exception_comes_back_with_its_traceback_in_the_package() {
    let code = code(
        "python3.12",
        "src/orders.handler",
        &[("src/orders.py", ORDERS_PY)],
    );
    let failure = failed(run(
        &code,
        serde_json::json!({"body": "{\"lines\": [{\"qty\": 2}]}"}),
    ));
    assert_eq!(failure.error_type, "KeyError");
    assert_eq!(failure.message, "'price'");
    assert_eq!(failure.trace[0], "Traceback (most recent call last):");
    let text = failure.trace.join("\n");
    // Innermost last, as Python prints it: the handler, then the generator in total().
    let handler = text
        .find("File \"/var/task/src/orders.py\", line 10, in handler")
        .unwrap_or_else(|| panic!("{text}"));
    let total = text
        .find(", in <genexpr>")
        .unwrap_or_else(|| panic!("{text}"));
    assert!(handler < total, "{text}");
    assert!(text.contains("line[\"qty\"] * line[\"price\"]"), "{text}");
    // Neither the scratch directory nor the bootstrap shows.
    assert!(
        !text.contains("selfbuild-code-") && !text.contains("bootstrap"),
        "{text}"
    );
}

#[test]
fn node_commonjs_esm_async_and_callback_handlers_all_run() {
    let cjs = code(
        "nodejs22.x",
        "index.handler",
        &[(
            "index.js",
            "exports.handler = (event) => ({ statusCode: 200, body: String(event.n * 2) });\n",
        )],
    );
    assert_eq!(
        run(&cjs, serde_json::json!({"n": 2})),
        RunOutcome::Succeeded
    );
    let esm = code(
        "nodejs22.x",
        "src/app.handler",
        &[(
            "src/app.mjs",
            "export const handler = async (event) => {\n  await new Promise((r) => setTimeout(r, 5));\n  if (!event.ok) throw new TypeError(`not ok: ${event.n}`);\n  return { statusCode: 200 };\n};\n",
        )],
    );
    assert_eq!(
        run(&esm, serde_json::json!({"ok": true, "n": 1})),
        RunOutcome::Succeeded
    );
    let failure = failed(run(&esm, serde_json::json!({"ok": false, "n": 7})));
    assert_eq!(failure.error_type, "TypeError");
    assert_eq!(failure.message, "not ok: 7");
    assert_eq!(failure.trace[0], "TypeError: not ok: 7");
    assert!(
        failure
            .trace
            .iter()
            .any(|l| l.contains("file:///var/task/src/app.mjs:3:")),
        "{:?}",
        failure.trace
    );
    let callback = code(
        "nodejs20.x",
        "cb.handler",
        &[(
            "cb.cjs",
            "module.exports.handler = function (event, context, callback) {\n  setTimeout(() => callback(event.fail ? new RangeError('bad') : null, { ok: context.functionName }), 1);\n};\n",
        )],
    );
    assert_eq!(
        run(&callback, serde_json::json!({"fail": false})),
        RunOutcome::Succeeded
    );
    let failure = failed(run(&callback, serde_json::json!({"fail": true})));
    assert_eq!(
        (failure.error_type.as_str(), failure.message.as_str()),
        ("RangeError", "bad")
    );
}

#[test]
fn a_handler_still_running_at_the_timeout_is_killed() {
    let code = code(
        "python3.12",
        "spin.handler",
        &[(
            "spin.py",
            "def handler(event, context):\n    while True:\n        pass\n",
        )],
    );
    let outcome = run_with(
        &CodeRunner::new(),
        &code,
        &settings(1, &[]),
        &event(serde_json::json!({})),
    )
    .unwrap();
    assert_eq!(outcome, RunOutcome::TimedOut { seconds: 1 });
}

#[test]
fn a_missing_module_or_function_is_the_runtimes_error() {
    let python = code("python3.12", "orders.handler", &[("app.py", ORDERS_PY)]);
    let failure = failed(run(&python, serde_json::json!({})));
    assert_eq!(failure.error_type, "Runtime.ImportModuleError");
    assert!(
        failure.message.contains("No module named 'orders'"),
        "{failure:?}"
    );
    let python = code("python3.12", "orders.main", &[("orders.py", ORDERS_PY)]);
    let failure = failed(run(&python, serde_json::json!({})));
    assert_eq!(failure.error_type, "Runtime.HandlerNotFound");
    let node = code(
        "nodejs22.x",
        "index.handler",
        &[("app.js", "exports.x = 1;\n")],
    );
    let failure = failed(run(&node, serde_json::json!({})));
    assert_eq!(failure.error_type, "Runtime.ImportModuleError");
    assert!(failure.message.contains("'index'"), "{failure:?}");
    let broken = code(
        "python3.12",
        "bad.handler",
        &[("bad.py", "def handler(:\n")],
    );
    let failure = failed(run(&broken, serde_json::json!({})));
    assert_eq!(failure.error_type, "Runtime.UserCodeSyntaxError");
}

#[test]
fn a_handler_that_exits_the_process_is_a_runtime_exit_with_its_last_words() {
    let code = code(
        "python3.12",
        "quit.handler",
        &[(
            "quit.py",
            "import os\nimport sys\n\n\ndef handler(event, context):\n    sys.stderr.write('giving up on ' + os.getcwd() + '\\n')\n    sys.stderr.flush()\n    os._exit(3)\n",
        )],
    );
    let failure = failed(run(&code, serde_json::json!({})));
    assert_eq!(failure.error_type, "Runtime.ExitError");
    assert!(failure.message.contains('3'), "{failure:?}");
    assert_eq!(failure.trace, ["giving up on /var/task"]);
}

#[test]
fn a_path_outside_the_package_is_refused_before_anything_runs() {
    let runner = CodeRunner::new();
    for path in [
        "../escape.py",
        "/etc/escape.py",
        "a/../../b.py",
        "",
        "C:/escape.py",
    ] {
        let code = code(
            "python3.12",
            "orders.handler",
            &[("orders.py", ORDERS_PY), (path, "x = 1\n")],
        );
        let err = run_with(
            &runner,
            &code,
            &settings(10, &[]),
            &event(serde_json::json!({})),
        )
        .unwrap_err();
        assert!(
            matches!(err, RunError::PathOutside(PatchError::BadPath { path: ref p, .. }) if p == path),
            "{path}: {err}"
        );
    }
    assert_eq!(runner.processes_started(), 0);
}

#[test]
fn a_cached_outcome_is_not_run_again_and_another_event_or_code_is() {
    let runner = CodeRunner::new();
    let code = code("python3.12", "orders.handler", &[("orders.py", ORDERS_PY)]);
    let ok = event(serde_json::json!({"body": "{\"lines\": []}"}));
    let s = settings(10, &[]);
    for _ in 0..3 {
        assert_eq!(
            run_with(&runner, &code, &s, &ok).unwrap(),
            RunOutcome::Succeeded
        );
    }
    assert_eq!(runner.processes_started(), 1);
    let bad = event(serde_json::json!({}));
    assert!(matches!(
        run_with(&runner, &code, &s, &bad).unwrap(),
        RunOutcome::Failed(_)
    ));
    let mut changed = code.clone();
    changed
        .files
        .insert("orders.py".into(), ORDERS_PY.replace("200", "201"));
    run_with(&runner, &changed, &s, &ok).unwrap();
    assert_eq!(runner.processes_started(), 3);
}

#[test]
fn a_missing_interpreter_is_an_error_naming_the_install_command() {
    let runner = CodeRunner::with_programs("python3-that-is-not-installed", "node-not-here");
    let code = code("python3.12", "orders.handler", &[("orders.py", ORDERS_PY)]);
    let err = run_with(
        &runner,
        &code,
        &settings(10, &[]),
        &event(serde_json::json!({})),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("python3-that-is-not-installed") && text.contains("apt-get install python3"),
        "{text}"
    );
    let err = runner.check_runtime("nodejs22.x").unwrap_err().to_string();
    assert!(err.contains("apt-get install nodejs"), "{err}");
    let err = runner
        .check_runtime("provided.al2023")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("provided.al2023 cannot be run locally"),
        "{err}"
    );
}

#[test]
fn the_handler_sees_only_its_settings_environment_and_no_network() {
    let probe = "\
import os
import socket


def handler(event, context):
    names = sorted(k for k in os.environ if k.startswith(('AWS', 'TABLE', 'HTTPS_PROXY')))
    try:
        socket.create_connection(('192.0.2.1', 443), timeout=0.5).close()
        network = 'connected'
    except OSError as e:
        network = type(e).__name__
    raise RuntimeError('%s %s %s' % (names, os.environ['HTTPS_PROXY'], network))
";
    let code = code("python3.12", "probe.handler", &[("probe.py", probe)]);
    let s = settings(
        10,
        &[
            ("TABLE_NAME", "orders"),
            ("AWS_ENDPOINT_URL", "http://localhost:4566"),
        ],
    );
    let failure =
        failed(run_with(&CodeRunner::new(), &code, &s, &event(serde_json::json!({}))).unwrap());
    // The function's own variable is there; its endpoint override and the caller's AWS
    // variables are not; the proxy is the closed one.
    assert!(
        failure
            .message
            .starts_with("['HTTPS_PROXY', 'TABLE_NAME'] http://127.0.0.1:9 "),
        "{}",
        failure.message
    );
    assert!(
        !failure.message.ends_with("connected"),
        "{}",
        failure.message
    );
}
