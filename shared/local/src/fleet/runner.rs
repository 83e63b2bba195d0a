//! Runs a version's handler on one sample event with the local `python3` or `node`, as
//! Lambda's managed runtime would call it, and says how it ended.
//!
//! Each run gets a fresh scratch directory: `task/` holds the version's files (every path
//! kept inside it), beside it a small bootstrap script imports the handler's module
//! (`orders.handler` → `task/orders.py`; Node.js: `.js`, `.mjs` or `.cjs`, CommonJS or ESM),
//! calls the handler with the event and a minimal context (awaiting an async handler or
//! its callback) and writes the outcome as JSON to a file apart from the handler's output.
//!
//! Isolation, and its limits:
//! - the environment is the function's settings plus what the interpreter needs; nothing is
//!   inherited (no AWS credentials, no `AWS_ENDPOINT_URL*`), proxies point at a closed port;
//! - no network where `unshare -n` (or `unshare -rn`, a user namespace) works, probed once;
//!   where it does not, only the proxy variables stand between the code and the network;
//! - a wall-clock timeout (the function's, at most [`MAX_TIMEOUT_SECONDS`]), then the
//!   process is killed; at most [`MAX_OUTPUT_BYTES`] of its output are kept;
//! - no memory or CPU limit, and the code can read what the user running selfbuild can
//!   read: scenario code is trusted test code, not a sandbox for hostile code.
//!
//! Outcomes are cached per (code hash, handler, runtime, settings the code can see, event),
//! so a minute's simulation never runs code and the same version runs each event once.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, LazyLock, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use selfbuild_core::change::LambdaSettings;
use selfbuild_core::change::code_patch::{PatchError, check_package_path};
use serde::Deserialize;

use super::scenario::{FunctionCode, SampleEvent};

/// The longest a handler may run locally, whatever the function's timeout.
pub const MAX_TIMEOUT_SECONDS: u32 = 10;

/// The most bytes of a run's stdout, stderr and result kept.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;

/// The most bytes of a failure's message, and of each of at most [`MAX_TRACE_LINES`] lines.
const MAX_TEXT_BYTES: usize = 2048;

/// The most lines of a failure's stack trace kept.
const MAX_TRACE_LINES: usize = 60;

/// Where the runtimes put the package; scratch paths in traces are written as this.
const TASK_ROOT: &str = "/var/task";

/// Where the handler's proxies point: a closed port, so a call fails at once.
const CLOSED_PROXY: &str = "http://127.0.0.1:9";

const PYTHON_BOOTSTRAP: &str = include_str!("runner/bootstrap.py");
const NODE_BOOTSTRAP: &str = include_str!("runner/bootstrap.mjs");

/// The language a runtime runs, as far as the fleet can run it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interpreter {
    /// `python3.x`, run with the local `python3`.
    Python,
    /// `nodejs*.x`, run with the local `node`.
    Node,
}

impl Interpreter {
    /// The interpreter of `runtime`; none for a runtime the fleet cannot run (compiled,
    /// Java, .NET, containers).
    pub fn of_runtime(runtime: &str) -> Option<Self> {
        if runtime.starts_with("python3") {
            Some(Self::Python)
        } else if runtime.starts_with("nodejs") {
            Some(Self::Node)
        } else {
            None
        }
    }

    /// The program looked up on `PATH` by default.
    fn default_program(self) -> &'static str {
        match self {
            Self::Python => "python3",
            Self::Node => "node",
        }
    }

    /// How to get the program, for the error when it is missing.
    fn install_hint(self) -> &'static str {
        match self {
            Self::Python => "e.g. `apt-get install python3`, `brew install python`",
            Self::Node => "e.g. `apt-get install nodejs`, `brew install node`",
        }
    }
}

/// How one run of a handler on one event ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The handler returned a value that could be sent back.
    Succeeded,
    /// It raised or threw, or the runtime could not load it.
    Failed(CodeFailure),
    /// It was still running at the timeout.
    TimedOut {
        /// The timeout it was given, in seconds.
        seconds: u32,
    },
}

/// A failure as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeFailure {
    /// The error type (`KeyError`, `TypeError`, `Runtime.ImportModuleError`).
    pub error_type: String,
    /// Its message.
    pub message: String,
    /// The stack trace lines as the runtime prints them: Python's `Traceback (most recent
    /// call last):` and frames; Node.js' `err.stack` (its first line names the error).
    /// Package paths read `/var/task/…`.
    pub trace: Vec<String>,
}

/// Why a handler could not be run at all (as opposed to running and failing).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The runtime is not one the fleet runs.
    #[error("runtime {0} cannot be run locally: only python3.x and nodejs*.x can")]
    UnsupportedRuntime(String),
    /// The code has no runtime or no handler.
    #[error("the code needs a {0} to be run")]
    Missing(&'static str),
    /// The local interpreter is not there.
    #[error(
        "runtime {runtime} is run with `{program}`, which is not installed or not on PATH; \
         install it ({install})"
    )]
    MissingInterpreter {
        /// The function's runtime.
        runtime: String,
        /// The program looked for.
        program: String,
        /// How to install it.
        install: &'static str,
    },
    /// A file's path would land outside the package (core's rule for package paths).
    #[error("file {0}")]
    PathOutside(#[source] PatchError),
    /// The scratch directory or the process failed.
    #[error("cannot run the handler: {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
    let what = what.into();
    move |source| RunError::Io { what, source }
}

/// One run to do: a function's code and settings, and an event.
#[derive(Debug, Clone, Copy)]
pub struct RunRequest<'a> {
    /// The function's name (the context's `function_name`).
    pub function: &'a str,
    /// The version's code.
    pub code: &'a FunctionCode,
    /// The version's settings: environment, timeout and memory.
    pub settings: &'a LambdaSettings,
    /// The event.
    pub event: &'a SampleEvent,
}

/// Runs handlers, each (code, settings it sees, event) once.
#[derive(Debug)]
pub struct CodeRunner {
    /// The programs looked up for each interpreter.
    programs: HashMap<Interpreter, String>,
    /// Each program's resolved executable, or why it cannot be used.
    resolved: Mutex<HashMap<Interpreter, Result<PathBuf, String>>>,
    cache: Mutex<HashMap<String, RunOutcome>>,
    processes: AtomicU64,
}

impl Default for CodeRunner {
    fn default() -> Self {
        Self::new()
    }
}

/// The runner every fleet of this process shares, so its cache spans fleets.
static SHARED: LazyLock<Arc<CodeRunner>> = LazyLock::new(|| Arc::new(CodeRunner::new()));

/// A counter for scratch directory names.
static SCRATCH: AtomicU64 = AtomicU64::new(0);

impl CodeRunner {
    /// A runner with `python3` and `node` from `PATH`.
    pub fn new() -> Self {
        Self::with_programs(
            Interpreter::Python.default_program(),
            Interpreter::Node.default_program(),
        )
    }

    /// A runner with these programs for Python and Node.js.
    pub fn with_programs(python: &str, node: &str) -> Self {
        Self {
            programs: HashMap::from([
                (Interpreter::Python, python.to_owned()),
                (Interpreter::Node, node.to_owned()),
            ]),
            resolved: Mutex::new(HashMap::new()),
            cache: Mutex::new(HashMap::new()),
            processes: AtomicU64::new(0),
        }
    }

    /// The process-wide runner.
    pub fn shared() -> Arc<Self> {
        Arc::clone(&SHARED)
    }

    /// How many handler processes this runner started.
    pub fn processes_started(&self) -> u64 {
        self.processes.load(Ordering::Relaxed)
    }

    /// Checks that `runtime` can be run here: known, and its interpreter installed.
    pub fn check_runtime(&self, runtime: &str) -> Result<Interpreter, RunError> {
        let interpreter = Interpreter::of_runtime(runtime)
            .ok_or_else(|| RunError::UnsupportedRuntime(runtime.to_owned()))?;
        self.executable(interpreter, runtime)?;
        Ok(interpreter)
    }

    /// How the handler of `request.code` ends on `request.event`: from the cache, or run.
    pub fn run(&self, request: &RunRequest<'_>) -> Result<RunOutcome, RunError> {
        let code = request.code;
        let runtime = code
            .runtime
            .as_deref()
            .ok_or(RunError::Missing("runtime"))?;
        let handler = code
            .handler
            .as_deref()
            .ok_or(RunError::Missing("handler"))?;
        for path in code.files.keys() {
            check_package_path(path).map_err(RunError::PathOutside)?;
        }
        let interpreter = self.check_runtime(runtime)?;
        let key = cache_key(request, runtime, handler);
        if let Some(hit) = self.lock_cache().get(&key) {
            return Ok(hit.clone());
        }
        let executable = self.executable(interpreter, runtime)?;
        let outcome = execute(interpreter, &executable, request, handler)?;
        self.processes.fetch_add(1, Ordering::Relaxed);
        self.lock_cache().insert(key, outcome.clone());
        Ok(outcome)
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<String, RunOutcome>> {
        // Entries are inserted whole: a poisoned cache is still consistent.
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The interpreter's executable, resolved once (a pyenv shim or nvm wrapper becomes
    /// the real binary, which then runs without their environment).
    fn executable(&self, interpreter: Interpreter, runtime: &str) -> Result<PathBuf, RunError> {
        let program = self
            .programs
            .get(&interpreter)
            .map_or(interpreter.default_program(), String::as_str);
        let mut resolved = self.resolved.lock().unwrap_or_else(PoisonError::into_inner);
        let found = resolved
            .entry(interpreter)
            .or_insert_with(|| resolve(interpreter, program))
            .clone();
        found.map_err(|_| RunError::MissingInterpreter {
            runtime: runtime.to_owned(),
            program: program.to_owned(),
            install: interpreter.install_hint(),
        })
    }
}

/// The absolute path of `program`'s interpreter, asked of the program itself.
fn resolve(interpreter: Interpreter, program: &str) -> Result<PathBuf, String> {
    let ask: &[&str] = match interpreter {
        Interpreter::Python => &["-c", "import sys; print(sys.executable)"],
        Interpreter::Node => &["-e", "console.log(process.execPath)"],
    };
    let output = Command::new(program)
        .args(ask)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    if !output.status.success() || path.is_empty() {
        return Err(format!("{program} answered {}", output.status));
    }
    Ok(PathBuf::from(path))
}

/// What a run depends on: the code, its handler and runtime, the settings it can see, the
/// function's name and the event.
fn cache_key(request: &RunRequest<'_>, runtime: &str, handler: &str) -> String {
    use sha2::{Digest, Sha256};
    let settings = request.settings;
    let mut hasher = Sha256::new();
    let parts = [
        request.code.code_sha256(),
        runtime.to_owned(),
        handler.to_owned(),
        request.function.to_owned(),
        timeout_seconds(settings).to_string(),
        settings.memory_mb.to_string(),
        serde_json::to_string(&settings.environment).unwrap_or_default(),
        request.event.event.to_string(),
    ];
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn timeout_seconds(settings: &LambdaSettings) -> u32 {
    settings.timeout_seconds.clamp(1, MAX_TIMEOUT_SECONDS)
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Self, RunError> {
        let base = std::env::temp_dir()
            .canonicalize()
            .map_err(io_error("temporary directory"))?;
        let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
        let dir = base.join(format!("selfbuild-code-{}-{n}", std::process::id()));
        // A leftover of a crashed run with this name goes first.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("task"))
            .map_err(io_error(format!("create {}", dir.display())))?;
        Ok(Self(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a bootstrap script writes.
#[derive(Deserialize)]
struct BootstrapResult {
    #[serde(default)]
    error: Option<BootstrapError>,
}

#[derive(Deserialize)]
struct BootstrapError {
    #[serde(rename = "type")]
    error_type: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    trace: Vec<String>,
}

/// Runs the handler once in a fresh scratch directory.
fn execute(
    interpreter: Interpreter,
    executable: &Path,
    request: &RunRequest<'_>,
    handler: &str,
) -> Result<RunOutcome, RunError> {
    let scratch = Scratch::new()?;
    let task = scratch.0.join("task");
    for (path, text) in &request.code.files {
        let file = task.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(format!("create {path}")))?;
        }
        std::fs::write(&file, text).map_err(io_error(format!("write {path}")))?;
    }
    let (bootstrap_name, bootstrap) = match interpreter {
        Interpreter::Python => ("bootstrap.py", PYTHON_BOOTSTRAP),
        Interpreter::Node => ("bootstrap.mjs", NODE_BOOTSTRAP),
    };
    let bootstrap_path = scratch.0.join(bootstrap_name);
    std::fs::write(&bootstrap_path, bootstrap).map_err(io_error("write the bootstrap"))?;
    let event_path = scratch.0.join("event.json");
    std::fs::write(&event_path, request.event.event.to_string())
        .map_err(io_error("write the event"))?;
    let result_path = scratch.0.join("result.json");
    let seconds = timeout_seconds(request.settings);

    let mut command = match network_isolation() {
        Some(prefix) => {
            let mut c = Command::new(prefix[0]);
            c.args(&prefix[1..]).arg(executable);
            c
        }
        None => Command::new(executable),
    };
    if interpreter == Interpreter::Python {
        // Isolated mode (no PYTHON* variables, no user site, no script directory on the
        // path), and no bytecode files in the package.
        command.args(["-I", "-B"]);
    }
    command
        .arg(&bootstrap_path)
        .arg(&task)
        .arg(handler)
        .arg(&event_path)
        .arg(&result_path)
        .arg(request.function)
        .arg(request.settings.memory_mb.to_string())
        .arg((u64::from(seconds) * 1000).to_string())
        .current_dir(&task)
        .env_clear()
        .envs(environment(request.settings, &task, &scratch.0))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(io_error(format!("start {}", executable.display())))?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let status = wait(&mut child, Duration::from_secs(u64::from(seconds)))?;
    let _ = stdout.recv_timeout(Duration::from_secs(1));
    let stderr = stderr
        .recv_timeout(Duration::from_secs(1))
        .unwrap_or_default();
    let Some(status) = status else {
        return Ok(RunOutcome::TimedOut { seconds });
    };
    let task_text = task.to_string_lossy().into_owned();
    let clean = |text: &str| bounded(&text.replace(&task_text, TASK_ROOT), MAX_TEXT_BYTES);
    let result = read_bounded(&result_path)
        .and_then(|text| serde_json::from_slice::<BootstrapResult>(&text).ok());
    Ok(match result {
        Some(BootstrapResult { error: None }) => RunOutcome::Succeeded,
        Some(BootstrapResult { error: Some(e) }) => RunOutcome::Failed(CodeFailure {
            error_type: clean(&e.error_type),
            message: clean(&e.message),
            trace: e
                .trace
                .iter()
                .take(MAX_TRACE_LINES)
                .map(|l| clean(l))
                .collect(),
        }),
        // The process ended before the bootstrap could say how: an exit or a crash.
        None => RunOutcome::Failed(CodeFailure {
            error_type: "Runtime.ExitError".to_owned(),
            message: format!("Runtime exited with error: {status}"),
            trace: String::from_utf8_lossy(&stderr)
                .lines()
                .rev()
                .take(MAX_TRACE_LINES)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .map(clean)
                .collect(),
        }),
    })
}

/// The handler's environment: the function's variables, then what the interpreter needs
/// and the network guards, which the function cannot override.
fn environment(settings: &LambdaSettings, task: &Path, scratch: &Path) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = settings
        .environment
        .iter()
        .filter(|(name, _)| !name.starts_with("AWS_ENDPOINT_URL"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let task = task.to_string_lossy().into_owned();
    let fixed = [
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
        ("HOME", scratch.to_string_lossy().into_owned()),
        ("TMPDIR", scratch.to_string_lossy().into_owned()),
        ("LANG", "C.UTF-8".to_owned()),
        ("TZ", "UTC".to_owned()),
        ("LAMBDA_TASK_ROOT", task),
        ("PYTHONDONTWRITEBYTECODE", "1".to_owned()),
        ("PYTHONHASHSEED", "0".to_owned()),
        ("HTTP_PROXY", CLOSED_PROXY.to_owned()),
        ("HTTPS_PROXY", CLOSED_PROXY.to_owned()),
        ("ALL_PROXY", CLOSED_PROXY.to_owned()),
        ("http_proxy", CLOSED_PROXY.to_owned()),
        ("https_proxy", CLOSED_PROXY.to_owned()),
        ("all_proxy", CLOSED_PROXY.to_owned()),
        ("NO_PROXY", String::new()),
        ("no_proxy", String::new()),
    ];
    for (name, value) in fixed {
        env.insert(name.to_owned(), value);
    }
    env
}

/// The command prefix that gives the handler no network, if this machine allows one.
fn network_isolation() -> Option<&'static [&'static str]> {
    static PREFIX: OnceLock<Option<&'static [&'static str]>> = OnceLock::new();
    *PREFIX.get_or_init(|| {
        const CANDIDATES: [&[&str]; 2] = [&["unshare", "-n"], &["unshare", "-rn"]];
        CANDIDATES.into_iter().find(|prefix| {
            Command::new(prefix[0])
                .args(&prefix[1..])
                .arg("true")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    })
}

/// Whether handlers run without a network on this machine (`unshare` works).
pub fn network_isolated() -> bool {
    network_isolation().is_some()
}

/// Reads a pipe to its end on a thread, keeping at most [`MAX_OUTPUT_BYTES`]; the bytes
/// arrive on the channel when the pipe closes.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (send, receive) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            let mut buffer = [0_u8; 8192];
            while let Ok(n) = pipe.read(&mut buffer) {
                if n == 0 {
                    break;
                }
                let room = MAX_OUTPUT_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buffer[..n.min(room)]);
            }
            let _ = send.send(kept);
        });
    }
    receive
}

/// The child's exit status, or none when it outlived `timeout` (it is then killed).
fn wait(
    child: &mut Child,
    timeout: Duration,
) -> Result<Option<std::process::ExitStatus>, RunError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().map_err(io_error("wait for the handler"))? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// At most [`MAX_OUTPUT_BYTES`] of a file; none when it is missing.
fn read_bounded(path: &Path) -> Option<Vec<u8>> {
    let file = std::fs::File::open(path).ok()?;
    let mut bytes = Vec::new();
    file.take(MAX_OUTPUT_BYTES as u64)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

/// `text` cut to at most `max` bytes on a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

#[cfg(test)]
mod tests;
