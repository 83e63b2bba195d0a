//! The embedded Store: one SQLite file on local disk (WAL mode, so several `selfbuild`
//! processes can share it), with the same conditional semantics as the DynamoDB table.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use selfbuild_core::audit::AuditEvent;
use selfbuild_core::cycle::{CycleRecord, CycleStatus};
use selfbuild_core::error::StoreError;
use selfbuild_core::health::{ComponentHealth, HealthEvent, HealthReport};
use selfbuild_core::ids::{CycleId, DedupKey, ImprovementId, TenantId};
use selfbuild_core::ports::{
    AccessLog, ApprovalStore, AuditLog, ClaimOutcome, CycleStore, DedupClaim, DedupStore,
    HaltState, HaltSwitch, HealthStore, HeldClaim, ImprovementStore, MinerStateStore, Notifier,
    Registry, SavedMinerState, UsageLedger,
};
use selfbuild_core::records::{
    AgentRecord, ComponentRecord, DailyUsage, ImprovementQuery, ImprovementRecord,
    ImprovementStatus, Page, PendingApproval, ProviderHealth, TOOL_CALL_RETENTION, TenantScope,
    ToolCallEvent,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::{Date, OffsetDateTime, UtcOffset};

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "selfbuild.db";

/// 2 added improvements, llm_usage, agents, components, call_counts and tool_calls; 3 added
/// miner_states; 4 added component_health, health_events, health_reports and
/// `cycles.finished_ms`. An older file is upgraded in place (the statements below only
/// create what is missing).
const SCHEMA_VERSION: i64 = 4;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dedup_claims (
    dedup_key        TEXT PRIMARY KEY,
    cycle_id         TEXT NOT NULL,
    claimed_at_ms    INTEGER NOT NULL,
    window_end_ms    INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    suppressed_count INTEGER NOT NULL DEFAULT 0,
    started          INTEGER NOT NULL DEFAULT 0,
    execution_ref    TEXT,
    cycle_input      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS dedup_claims_by_expiry ON dedup_claims (expires_at);
CREATE TABLE IF NOT EXISTS halt_switch (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    reason TEXT NOT NULL,
    actor  TEXT NOT NULL,
    since_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_approvals (
    improvement_id TEXT PRIMARY KEY,
    body           TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS task_results (
    task_token TEXT PRIMARY KEY,
    output     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audit_events (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    cycle_id TEXT NOT NULL,
    at_ms    INTEGER NOT NULL,
    body     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_events_by_cycle ON audit_events (cycle_id, at_ms, seq);
CREATE TABLE IF NOT EXISTS notifications (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    detail_type TEXT NOT NULL,
    detail      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cycles (
    cycle_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    started_ms INTEGER NOT NULL,
    body       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cycles_by_status ON cycles (status, started_ms, cycle_id);
CREATE TABLE IF NOT EXISTS improvements (
    improvement_id TEXT PRIMARY KEY,
    tenant_id      TEXT,
    status         TEXT NOT NULL,
    body           TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS improvements_by_tenant ON improvements (tenant_id, improvement_id);
CREATE TABLE IF NOT EXISTS llm_usage (
    day       TEXT PRIMARY KEY,
    cost_usd  REAL NOT NULL,
    calls     INTEGER NOT NULL,
    providers TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS agents (
    tenant_key TEXT NOT NULL,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_key, name)
);
CREATE TABLE IF NOT EXISTS components (
    tenant_key TEXT NOT NULL,
    name       TEXT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (tenant_key, name)
);
CREATE TABLE IF NOT EXISTS call_counts (
    key_id       TEXT NOT NULL,
    window_start INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (key_id, window_start)
);
CREATE INDEX IF NOT EXISTS call_counts_by_expiry ON call_counts (expires_at);
CREATE TABLE IF NOT EXISTS tool_calls (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    body  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tool_calls_by_time ON tool_calls (at_ms, seq);
CREATE TABLE IF NOT EXISTS miner_states (
    scope   TEXT PRIMARY KEY,
    body    TEXT NOT NULL,
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS component_health (
    component TEXT PRIMARY KEY,
    body      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS health_events (
    seq       INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms     INTEGER NOT NULL,
    component TEXT,
    body      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS health_events_by_component ON health_events (component, seq);
CREATE TABLE IF NOT EXISTS health_reports (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    body TEXT NOT NULL
);
";

/// The embedded store over a SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    /// The one connection that writes.
    conn: Arc<Mutex<Connection>>,
    /// One turn at the connection for tasks of multi-threaded runtimes: they wait for it as
    /// tasks, not as threads blocked on the mutex.
    turn: Arc<tokio::sync::Semaphore>,
    /// Connections that only read: in WAL mode they neither wait for the writer nor make it
    /// wait, so reads stay off the write lock.
    readers: Arc<Readers>,
    /// This process's copy of the agents table (`list_agents` answers from it).
    agents: Arc<Mutex<AgentsCopy>>,
    path: PathBuf,
    /// The file this process opened, to notice it deleted or replaced.
    opened: FileId,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| io_error(&format!("data directory {}", data_dir.display()), &e))?;
        let path = data_dir.join(DATABASE_FILE);
        let at = |e: rusqlite::Error| at_file(&path, sql(e));
        let conn = open_connection(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(at)?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(at)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                record: path.display().to_string(),
                problem: format!(
                    "schema version {version} is newer than this build's {SCHEMA_VERSION}"
                ),
            });
        }
        conn.execute_batch(SCHEMA).map_err(at)?;
        add_finished_column(&conn).map_err(|e| at_file(&path, e))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(at)?;
        let opened = FileId::of(&path).map_err(|e| io_error(&path.display().to_string(), &e))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            turn: Arc::new(tokio::sync::Semaphore::new(1)),
            readers: Arc::new(Readers::new(READERS)),
            agents: Arc::new(Mutex::new(AgentsCopy::default())),
            path,
            opened,
        })
    }

    /// Stops the writer from checkpointing the WAL as it commits (the fsyncs of a checkpoint
    /// then never fall on a caller's write) and checkpoints it from a thread of its own every
    /// `every` instead, for as long as a clone of this store lives. Other processes on the
    /// file keep SQLite's automatic checkpoints.
    pub fn checkpoint_in_background(&self, every: std::time::Duration) -> Result<(), StoreError> {
        let checkpointer = open_connection(&self.path)?;
        {
            let conn = self
                .conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            conn.pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(|e| at_file(&self.path, sql(e)))?;
        }
        let alive = Arc::downgrade(&self.conn);
        let path = self.path.clone();
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(every);
                    if alive.strong_count() == 0 {
                        return;
                    }
                    // PASSIVE: copies what no reader needs, never waits for readers or writers.
                    let done =
                        checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Err(e) = done {
                        tracing::warn!(file = %path.display(), error = %e, "WAL checkpoint failed");
                    }
                }
            })
            .map_err(|e| io_error("the checkpoint thread", &e))?;
        Ok(())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the connection, in place, once the file is still the one opened.
    async fn with_conn<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let run = || {
            let mut conn = self
                .conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            self.check_file()?;
            work(&mut conn)
        };
        // Statements take microseconds, so they run in place: on a multi-threaded runtime
        // the worker hands its other tasks off first, which saves two thread hand-offs per
        // call. Each hand-off takes a thread, so callers first wait for their turn as tasks:
        // a burst of requests must not become a burst of threads. A current-thread runtime
        // runs them directly and may block on the mutex: waiting as a task there would let
        // its paused clock advance, and a hand-off to the blocking pool would let real
        // thread timing decide which task goes on first; event-driven cycles
        // (`crate::cycle`) must depend on neither.
        let result = match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                let _turn = match self.turn.try_acquire() {
                    Ok(turn) => turn,
                    Err(_) => self.turn.acquire().await.map_err(|_| {
                        StoreError::Unavailable("the store's connection was closed".into())
                    })?,
                };
                tokio::task::block_in_place(run)
            }
            _ => run(),
        };
        result.map_err(|e| at_file(&self.path, e))
    }

    /// Runs `work` on a reader connection, in place: a read never waits for the write lock
    /// (WAL), so it is not handed to another thread as a write is. At most [`READERS`] run
    /// at once; more wait as tasks.
    async fn with_read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(&Connection) -> Result<T, StoreError>,
    {
        let _permit =
            match self.readers.permits.try_acquire() {
                Ok(permit) => permit,
                Err(_) => self.readers.permits.acquire().await.map_err(|_| {
                    StoreError::Unavailable("the store's readers were closed".into())
                })?,
            };
        let result = (|| {
            self.check_file()?;
            let mut slot = self.readers.free_slot();
            if slot.is_none() {
                let conn = open_connection(&self.path)?;
                conn.pragma_update(None, "query_only", true).map_err(sql)?;
                *slot = Some(conn);
            }
            match slot.as_ref() {
                Some(conn) => work(conn),
                None => Err(StoreError::Unavailable("no reader connection".into())),
            }
        })();
        result.map_err(|e| at_file(&self.path, e))
    }

    /// Fails when the file at the path is no longer the one opened (deleted, or replaced by
    /// another): this process would go on with state no other process sees, e.g. a halt
    /// switch a new CLI does not find. Failing beats reopening: the old file may hold
    /// records (running cycles, pending approvals) a silent switch would orphan; restarting
    /// is the operator's decision.
    fn check_file(&self) -> Result<(), StoreError> {
        let now = match FileId::of(&self.path) {
            Ok(id) => id,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::Fault(format!(
                    "{} was deleted after this process opened it; its records are no longer \
                     shared with other processes: restart this process",
                    self.path.display()
                )));
            }
            Err(e) => return Err(io_error(&self.path.display().to_string(), &e)),
        };
        if now != self.opened {
            return Err(StoreError::Fault(format!(
                "{} was replaced by another file after this process opened it; its records \
                 are no longer shared with other processes: restart this process",
                self.path.display()
            )));
        }
        Ok(())
    }
}

/// Adds `cycles.finished_ms` (version 4) to a file that lacks it; the health pass reads
/// when a cycle ended from it.
fn add_finished_column(conn: &Connection) -> Result<(), StoreError> {
    let has: bool = conn
        .row(
            "SELECT COUNT(*) FROM pragma_table_info('cycles') WHERE name = 'finished_ms'",
            [],
            |row| row.get::<_, i64>(0),
        )
        .map_err(sql)?
        > 0;
    if !has {
        conn.execute_batch("ALTER TABLE cycles ADD COLUMN finished_ms INTEGER")
            .map_err(sql)?;
    }
    Ok(())
}

/// How long `list_agents` answers from this process's copy of the agents table before it
/// asks the file whether another process has written to it since (`PRAGMA data_version`):
/// an agent another process registers is listed here at most this long after its commit.
/// A registration through this store (any clone) is listed at once.
pub const AGENTS_RECHECK: std::time::Duration = std::time::Duration::from_millis(100);

/// The agents table as last read, with the connection that tells whether it changed since.
#[derive(Default)]
struct AgentsCopy {
    /// A reader connection of its own: `PRAGMA data_version` is per connection.
    conn: Option<Connection>,
    /// The connection's data version when `rows` were read; none: read them again.
    version: Option<i64>,
    /// When the file was last seen at `version`.
    checked: Option<tokio::time::Instant>,
    /// Every agent with its tenant key, by tenant key then name.
    rows: Arc<Vec<(String, AgentRecord)>>,
}

/// How many reader connections a store opens (lazily, as reads overlap).
const READERS: usize = 4;

/// How many prepared statements each connection keeps (the store has about 50).
const STATEMENT_CACHE: usize = 96;

/// A connection to the file with the store's settings (busy timeout, WAL-safe sync level,
/// statement cache).
fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let at = |e: rusqlite::Error| at_file(path, sql(e));
    let conn = Connection::open(path).map_err(at)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(at)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(at)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// The reader connections, opened on first use, and one permit per connection.
struct Readers {
    slots: Vec<Mutex<Option<Connection>>>,
    permits: tokio::sync::Semaphore,
}

impl Readers {
    fn new(count: usize) -> Self {
        Self {
            slots: (0..count).map(|_| Mutex::new(None)).collect(),
            permits: tokio::sync::Semaphore::new(count),
        }
    }

    /// A slot no one uses (one exists while the caller holds a permit).
    fn free_slot(&self) -> std::sync::MutexGuard<'_, Option<Connection>> {
        for slot in &self.slots {
            if let Ok(guard) = slot.try_lock() {
                return guard;
            }
        }
        self.slots[0]
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Statements through the connection's cache of prepared statements: SQL text is parsed once
/// per connection, not on every call.
trait Cached {
    /// `Connection::execute`, prepared once.
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize>;
    /// `Connection::query_row`, prepared once.
    fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec(&self, sql: &str, params: impl rusqlite::Params) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

/// A file's identity: device and inode where there are inodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId(u64, u64);

impl FileId {
    fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(Self(meta.dev(), meta.ino()))
        }
        // Elsewhere an open file cannot be deleted; only its absence is noticed.
        #[cfg(not(unix))]
        {
            let _ = meta;
            Ok(Self(0, 0))
        }
    }
}

/// Names the database file in a fault, which the SQLite message alone does not.
fn at_file(path: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Fault(m) if !m.starts_with(&path.display().to_string()) => {
            StoreError::Fault(format!("{}: {m}", path.display()))
        }
        other => other,
    }
}

/// A SQLite error: storage faults (read-only, full, corrupt, truncated, unreadable file)
/// are permanent; the rest (busy, locked, out of memory) may pass.
fn sql(e: rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode as Code;
    let nomem = e
        .sqlite_error()
        .is_some_and(|f| f.extended_code == rusqlite::ffi::SQLITE_IOERR_NOMEM);
    match e.sqlite_error_code() {
        Some(
            Code::ReadOnly
            | Code::DiskFull
            | Code::DatabaseCorrupt
            | Code::NotADatabase
            | Code::CannotOpen
            | Code::PermissionDenied
            | Code::NoLargeFileSupport
            | Code::SystemIoFailure,
        ) if !nomem => StoreError::Fault(e.to_string()),
        _ => StoreError::Unavailable(format!("sqlite: {e}")),
    }
}

/// A file system error on `what`, classified as [`sql`] does.
fn io_error(what: &str, e: &std::io::Error) -> StoreError {
    use std::io::ErrorKind as Kind;
    match e.kind() {
        Kind::PermissionDenied
        | Kind::ReadOnlyFilesystem
        | Kind::StorageFull
        | Kind::QuotaExceeded
        | Kind::FileTooLarge
        | Kind::NotADirectory
        | Kind::NotFound => StoreError::Fault(format!("{what}: {e}")),
        _ => StoreError::Unavailable(format!("{what}: {e}")),
    }
}

fn millis(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

fn from_millis(record: &str, ms: i64) -> Result<OffsetDateTime, StoreError> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).map_err(|e| {
        StoreError::Corrupt {
            record: record.to_owned(),
            problem: format!("timestamp {ms}: {e}"),
        }
    })
}

#[async_trait]
impl DedupStore for SqliteStore {
    async fn claim(&self, claim: &DedupClaim) -> Result<ClaimOutcome, StoreError> {
        let claim = claim.clone();
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let key = claim.key.as_str();
            // The embedded counterpart of DynamoDB TTL, never needed for correctness: lazy
            // clean-up on the clock of this claim, not the wall clock (the CLI, a scenario
            // and `serve` may each run on their own injected clock).
            tx.exec(
                "DELETE FROM dedup_claims WHERE expires_at < ?1",
                params![claim.claimed_at.unix_timestamp()],
            )
            .map_err(sql)?;
            // One conditional write: insert, or replace a claim whose window has ended.
            let won = tx
                .exec(
                    "INSERT INTO dedup_claims (dedup_key, cycle_id, claimed_at_ms, window_end_ms,
                         expires_at, suppressed_count, started, execution_ref, cycle_input)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, 0, NULL, ?6)
                     ON CONFLICT(dedup_key) DO UPDATE SET
                         cycle_id = excluded.cycle_id, claimed_at_ms = excluded.claimed_at_ms,
                         window_end_ms = excluded.window_end_ms, expires_at = excluded.expires_at,
                         suppressed_count = 0, started = 0, execution_ref = NULL,
                         cycle_input = excluded.cycle_input
                     WHERE dedup_claims.window_end_ms < excluded.claimed_at_ms",
                    params![
                        key,
                        claim.cycle_id.as_str(),
                        millis(claim.claimed_at),
                        millis(claim.window_end),
                        claim.expires_at.unix_timestamp(),
                        claim.cycle_input,
                    ],
                )
                .map_err(sql)?
                == 1;
            let outcome = if won {
                ClaimOutcome::Won
            } else {
                // A claim already held by the same cycle is a retry of the winning claim: won
                // again, not counted (the DynamoDB store's contract after a lost answer).
                let row = tx
                    .row(
                        "UPDATE dedup_claims
                         SET suppressed_count = suppressed_count + (cycle_id <> ?2)
                         WHERE dedup_key = ?1
                         RETURNING cycle_id, claimed_at_ms, window_end_ms, suppressed_count,
                                   started, cycle_input",
                        params![key, claim.cycle_id.as_str()],
                        |row| {
                            Ok((
                                row.get::<_, String>(0)?,
                                row.get::<_, i64>(1)?,
                                row.get::<_, i64>(2)?,
                                row.get::<_, i64>(3)?,
                                row.get::<_, bool>(4)?,
                                row.get::<_, String>(5)?,
                            ))
                        },
                    )
                    .map_err(sql)?;
                let record = format!("dedup claim {key}");
                if row.0 == claim.cycle_id.as_str() {
                    tx.commit().map_err(sql)?;
                    return Ok(ClaimOutcome::Won);
                }
                ClaimOutcome::Held(HeldClaim {
                    cycle_id: CycleId::parse(&row.0).map_err(|e| StoreError::Corrupt {
                        record: record.clone(),
                        problem: e.to_string(),
                    })?,
                    claimed_at: from_millis(&record, row.1)?,
                    window_end: from_millis(&record, row.2)?,
                    suppressed_count: u64::try_from(row.3).unwrap_or(0),
                    started: row.4,
                    cycle_input: row.5,
                })
            };
            tx.commit().map_err(sql)?;
            Ok(outcome)
        })
        .await
    }

    async fn mark_started(
        &self,
        key: &DedupKey,
        cycle_id: &CycleId,
        execution_ref: &str,
    ) -> Result<(), StoreError> {
        let (key, id, execution) = (
            key.as_str().to_owned(),
            cycle_id.as_str().to_owned(),
            execution_ref.to_owned(),
        );
        self.with_conn(move |conn| {
            conn.exec(
                "UPDATE dedup_claims SET started = 1, execution_ref = ?3
                 WHERE dedup_key = ?1 AND cycle_id = ?2",
                params![key, id, execution],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn release(&self, key: &DedupKey, cycle_id: &CycleId) -> Result<bool, StoreError> {
        let (key, id) = (key.as_str().to_owned(), cycle_id.as_str().to_owned());
        self.with_conn(move |conn| {
            let deleted = conn
                .exec(
                    "DELETE FROM dedup_claims WHERE dedup_key = ?1 AND cycle_id = ?2",
                    params![key, id],
                )
                .map_err(sql)?;
            Ok(deleted == 1)
        })
        .await
    }
}

#[async_trait]
impl HaltSwitch for SqliteStore {
    async fn halt_state(&self) -> Result<Option<HaltState>, StoreError> {
        self.with_read(|conn| {
            let row = conn
                .row(
                    "SELECT reason, actor, since_ms FROM halt_switch WHERE id = 1",
                    [],
                    |row| {
                        Ok((
                            row.get::<_, String>(0)?,
                            row.get::<_, String>(1)?,
                            row.get::<_, i64>(2)?,
                        ))
                    },
                )
                .optional()
                .map_err(sql)?;
            row.map(|(reason, actor, since)| {
                Ok(HaltState {
                    reason,
                    actor,
                    since: from_millis("halt switch", since)?,
                })
            })
            .transpose()
        })
        .await
    }

    async fn set_halt(&self, halt: &HaltState) -> Result<(), StoreError> {
        let halt = halt.clone();
        self.with_conn(move |conn| {
            conn.exec(
                "INSERT INTO halt_switch (id, reason, actor, since_ms) VALUES (1, ?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET reason = excluded.reason,
                     actor = excluded.actor, since_ms = excluded.since_ms",
                params![halt.reason, halt.actor, millis(halt.since)],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn clear_halt(&self) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let deleted = conn
                .exec("DELETE FROM halt_switch WHERE id = 1", [])
                .map_err(sql)?;
            Ok(deleted == 1)
        })
        .await
    }
}

#[async_trait]
impl CycleStore for SqliteStore {
    async fn create_cycle(&self, cycle: &CycleRecord) -> Result<bool, StoreError> {
        let body = serde_json::to_string(cycle).map_err(|e| StoreError::Corrupt {
            record: format!("cycle {}", cycle.request.cycle_id),
            problem: e.to_string(),
        })?;
        let id = cycle.request.cycle_id.as_str().to_owned();
        let status = cycle_status_name(cycle.status);
        let started = millis(cycle.started_at);
        self.with_conn(move |conn| {
            let inserted = conn
                .exec(
                    "INSERT INTO cycles (cycle_id, status, started_ms, body) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(cycle_id) DO NOTHING",
                    params![id, status, started, body],
                )
                .map_err(sql)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn get_cycle(&self, id: &CycleId) -> Result<Option<CycleRecord>, StoreError> {
        let id = id.as_str().to_owned();
        self.with_read(move |conn| {
            let body: Option<String> = conn
                .row(
                    "SELECT body FROM cycles WHERE cycle_id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql)?;
            body.map(|b| {
                serde_json::from_str(&b).map_err(|e| StoreError::Corrupt {
                    record: format!("cycle {id}"),
                    problem: e.to_string(),
                })
            })
            .transpose()
        })
        .await
    }

    async fn finish_cycle(
        &self,
        id: &CycleId,
        status: CycleStatus,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        // The record has no finish time; the column keeps it for the health pass.
        let id = id.as_str().to_owned();
        let finished = millis(at);
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let body: Option<String> = tx
                .row(
                    "SELECT body FROM cycles WHERE cycle_id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql)?;
            let Some(body) = body else {
                return Ok(false);
            };
            let record = format!("cycle {id}");
            let mut cycle: CycleRecord = decode(&record, &body)?;
            cycle.status = status;
            tx.exec(
                "UPDATE cycles SET status = ?2, body = ?3, finished_ms = ?4 WHERE cycle_id = ?1",
                params![
                    id,
                    cycle_status_name(status),
                    encode(&record, &cycle)?,
                    finished
                ],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            Ok(true)
        })
        .await
    }

    async fn running_cycles(
        &self,
        scope: &TenantScope,
        limit: usize,
    ) -> Result<Vec<CycleRecord>, StoreError> {
        let tenant = scope.tenant().map(|t| t.as_str().to_owned());
        self.with_read(move |conn| {
            let rows = bodies::<CycleRecord>(
                conn,
                "SELECT cycle_id, body FROM cycles
                 WHERE status = 'running'
                   AND (?1 IS NULL OR json_extract(body, '$.request.tenant_id') = ?1)
                 ORDER BY started_ms, cycle_id LIMIT ?2",
                params![tenant, sql_limit(limit)],
                |id| format!("cycle {id}"),
            )?;
            Ok(rows.into_iter().map(|(_, cycle)| cycle).collect())
        })
        .await
    }
}

impl SqliteStore {
    /// Cycles of every status, newest first, at most `limit` (the CLI's `list cycles`).
    pub async fn recent_cycles(&self, limit: usize) -> Result<Vec<CycleRecord>, StoreError> {
        self.with_conn(move |conn| {
            let rows = bodies::<CycleRecord>(
                conn,
                "SELECT cycle_id, body FROM cycles ORDER BY started_ms DESC, cycle_id DESC LIMIT ?1",
                params![sql_limit(limit)],
                |id| format!("cycle {id}"),
            )?;
            Ok(rows.into_iter().map(|(_, cycle)| cycle).collect())
        })
        .await
    }
}

fn corrupt_approval(id: &str, e: &serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        record: format!("pending approval {id}"),
        problem: e.to_string(),
    }
}

fn read_pending(conn: &Connection, id: &str) -> Result<Option<PendingApproval>, StoreError> {
    let body: Option<String> = conn
        .row(
            "SELECT body FROM pending_approvals WHERE improvement_id = ?1",
            params![id],
            |row| row.get(0),
        )
        .optional()
        .map_err(sql)?;
    body.map(|b| serde_json::from_str(&b).map_err(|e| corrupt_approval(id, &e)))
        .transpose()
}

#[async_trait]
impl ApprovalStore for SqliteStore {
    async fn put_pending(&self, pending: &PendingApproval) -> Result<(), StoreError> {
        let id = pending.improvement_id.to_string();
        let body = serde_json::to_string(pending).map_err(|e| corrupt_approval(&id, &e))?;
        self.with_conn(move |conn| {
            conn.exec(
                "INSERT INTO pending_approvals (improvement_id, body) VALUES (?1, ?2)
                 ON CONFLICT(improvement_id) DO UPDATE SET body = excluded.body",
                params![id, body],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn get_pending(
        &self,
        improvement_id: &ImprovementId,
    ) -> Result<Option<PendingApproval>, StoreError> {
        let id = improvement_id.to_string();
        self.with_read(move |conn| read_pending(conn, &id)).await
    }

    async fn add_approver(
        &self,
        improvement_id: &ImprovementId,
        approver: &str,
    ) -> Result<Option<PendingApproval>, StoreError> {
        let (id, approver) = (improvement_id.to_string(), approver.to_owned());
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let Some(mut pending) = read_pending(&tx, &id)? else {
                return Ok(None);
            };
            if !pending.approvers.contains(&approver) {
                pending.approvers.push(approver);
                let body =
                    serde_json::to_string(&pending).map_err(|e| corrupt_approval(&id, &e))?;
                tx.exec(
                    "UPDATE pending_approvals SET body = ?2 WHERE improvement_id = ?1",
                    params![id, body],
                )
                .map_err(sql)?;
            }
            tx.commit().map_err(sql)?;
            Ok(Some(pending))
        })
        .await
    }

    async fn remove_pending(&self, improvement_id: &ImprovementId) -> Result<bool, StoreError> {
        let id = improvement_id.to_string();
        self.with_conn(move |conn| {
            let deleted = conn
                .exec(
                    "DELETE FROM pending_approvals WHERE improvement_id = ?1",
                    params![id],
                )
                .map_err(sql)?;
            Ok(deleted == 1)
        })
        .await
    }
}

impl SqliteStore {
    /// Every pending approval, by improvement id.
    pub async fn pending_approvals(&self) -> Result<Vec<PendingApproval>, StoreError> {
        self.with_read(|conn| {
            let rows: Vec<(String, String)> = {
                let mut stmt = conn
                    .prepare_cached("SELECT improvement_id, body FROM pending_approvals ORDER BY improvement_id")
                    .map_err(sql)?;
                stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .map_err(sql)?
                    .collect::<Result<_, _>>()
                    .map_err(sql)?
            };
            rows.into_iter()
                .map(|(id, body)| {
                    serde_json::from_str(&body).map_err(|e| corrupt_approval(&id, &e))
                })
                .collect()
        })
        .await
    }

    /// Queues a task token's result for the process whose execution waits on it.
    pub async fn put_task_result(
        &self,
        token: &str,
        output: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let (token, output) = (token.to_owned(), output.to_string());
        self.with_conn(move |conn| {
            conn.exec(
                "INSERT INTO task_results (task_token, output) VALUES (?1, ?2)
                 ON CONFLICT(task_token) DO NOTHING",
                params![token, output],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    /// Takes (and deletes) the queued result of `token`, if any.
    pub async fn take_task_result(
        &self,
        token: &str,
    ) -> Result<Option<serde_json::Value>, StoreError> {
        let token = token.to_owned();
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let output: Option<String> = tx
                .row(
                    "SELECT output FROM task_results WHERE task_token = ?1",
                    params![token],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql)?;
            tx.exec(
                "DELETE FROM task_results WHERE task_token = ?1",
                params![token],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            output
                .map(|output| {
                    serde_json::from_str(&output).map_err(|e| StoreError::Corrupt {
                        record: format!("task result {token}"),
                        problem: e.to_string(),
                    })
                })
                .transpose()
        })
        .await
    }

    /// Takes (and deletes) every queued task result.
    pub async fn take_task_results(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let rows: Vec<(String, String)> = {
                let mut stmt = tx
                    .prepare_cached("SELECT task_token, output FROM task_results")
                    .map_err(sql)?;
                stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .map_err(sql)?
                    .collect::<Result<_, _>>()
                    .map_err(sql)?
            };
            tx.exec("DELETE FROM task_results", []).map_err(sql)?;
            tx.commit().map_err(sql)?;
            rows.into_iter()
                .map(|(token, output)| {
                    serde_json::from_str(&output)
                        .map(|v| (token.clone(), v))
                        .map_err(|e| StoreError::Corrupt {
                            record: format!("task result {token}"),
                            problem: e.to_string(),
                        })
                })
                .collect()
        })
        .await
    }
}

/// Resumes waiting executions through the store, so another process (`selfbuild approve`)
/// can complete a task token of a running `selfbuild demo` / `selfbuild cycle`.
pub struct StoreTaskTokens(pub SqliteStore);

#[async_trait]
impl selfbuild_core::ports::TaskTokens for StoreTaskTokens {
    async fn send_success(
        &self,
        token: &str,
        output: &serde_json::Value,
    ) -> Result<(), selfbuild_core::error::OrchestratorError> {
        self.0
            .put_task_result(token, output)
            .await
            .map_err(|e| match e {
                StoreError::Unavailable(m) => {
                    selfbuild_core::error::OrchestratorError::Unavailable(m)
                }
                StoreError::Rejected(_) | StoreError::Fault(_) | StoreError::Corrupt { .. } => {
                    selfbuild_core::error::OrchestratorError::Rejected(e.to_string())
                }
            })
    }
}

#[async_trait]
impl AuditLog for SqliteStore {
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let body = serde_json::to_string(event).map_err(|e| StoreError::Corrupt {
            record: format!("audit event of cycle {}", event.cycle_id),
            problem: e.to_string(),
        })?;
        let (cycle, at) = (event.cycle_id.as_str().to_owned(), millis(event.at));
        self.with_conn(move |conn| {
            conn.exec(
                "INSERT INTO audit_events (cycle_id, at_ms, body) VALUES (?1, ?2, ?3)",
                params![cycle, at, body],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn cycle_events(&self, cycle_id: &CycleId) -> Result<Vec<AuditEvent>, StoreError> {
        let cycle = cycle_id.as_str().to_owned();
        self.with_read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT body FROM audit_events WHERE cycle_id = ?1 ORDER BY at_ms, seq",
                )
                .map_err(sql)?;
            let bodies: Vec<String> = stmt
                .query_map(params![cycle], |row| row.get(0))
                .map_err(sql)?
                .collect::<Result<_, _>>()
                .map_err(sql)?;
            bodies
                .iter()
                .map(|b| {
                    serde_json::from_str(b).map_err(|e| StoreError::Corrupt {
                        record: format!("audit event of cycle {cycle}"),
                        problem: e.to_string(),
                    })
                })
                .collect()
        })
        .await
    }
}

/// Notifications are kept in the store offline (EventBridge's place on AWS).
#[async_trait]
impl Notifier for SqliteStore {
    async fn notify(
        &self,
        detail_type: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let (kind, body) = (detail_type.to_owned(), detail.to_string());
        self.with_conn(move |conn| {
            conn.exec(
                "INSERT INTO notifications (detail_type, detail) VALUES (?1, ?2)",
                params![kind, body],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }
}

impl SqliteStore {
    /// Every notification sent so far, oldest first, as (detail-type, detail).
    pub async fn notifications(&self) -> Result<Vec<(String, serde_json::Value)>, StoreError> {
        self.with_read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT detail_type, detail FROM notifications ORDER BY seq")
                .map_err(sql)?;
            let rows: Vec<(String, String)> = stmt
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(sql)?
                .collect::<Result<_, _>>()
                .map_err(sql)?;
            Ok(rows
                .into_iter()
                .map(|(k, d)| {
                    (
                        k,
                        serde_json::from_str(&d).unwrap_or(serde_json::Value::Null),
                    )
                })
                .collect())
        })
        .await
    }
}

/// The `status` column: the snake_case name the JSON body uses.
fn cycle_status_name(status: CycleStatus) -> &'static str {
    match status {
        CycleStatus::Running => "running",
        CycleStatus::Succeeded => "succeeded",
        CycleStatus::Failed => "failed",
    }
}

/// A record as the JSON of its `body` column.
fn encode<T: Serialize>(record: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        record: record.to_owned(),
        problem: format!("cannot be written: {e}"),
    })
}

/// A record from the JSON of its `body` column.
fn decode<T: DeserializeOwned>(record: &str, body: &str) -> Result<T, StoreError> {
    serde_json::from_str(body).map_err(|e| StoreError::Corrupt {
        record: record.to_owned(),
        problem: e.to_string(),
    })
}

/// `agents` and `components` key a record by its tenant, `*` for none (a tenant id never
/// is `*`, and `*` sorts before every tenant, as in DynamoDB).
fn tenant_key(tenant: Option<&TenantId>) -> String {
    tenant.map_or_else(|| "*".to_owned(), |t| t.as_str().to_owned())
}

/// A UTC day as `YYYY-MM-DD`.
fn day_key(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// Reads every row of a one-column `body` query as `T`, naming each by `record`.
fn bodies<T: DeserializeOwned>(
    conn: &Connection,
    query: &str,
    params: impl rusqlite::Params,
    record: impl Fn(&str) -> String,
) -> Result<Vec<(String, T)>, StoreError> {
    let mut stmt = conn.prepare_cached(query).map_err(sql)?;
    let rows: Vec<(String, String)> = stmt
        .query_map(params, |row| Ok((row.get(0)?, row.get(1)?)))
        .map_err(sql)?
        .collect::<Result<_, _>>()
        .map_err(sql)?;
    rows.into_iter()
        .map(|(key, body)| {
            let value = decode(&record(&key), &body)?;
            Ok((key, value))
        })
        .collect()
}

#[async_trait]
impl ImprovementStore for SqliteStore {
    async fn put_improvement(&self, record: &ImprovementRecord) -> Result<(), StoreError> {
        let id = record.improvement_id.to_string();
        let body = encode(&format!("improvement {id}"), record)?;
        let tenant = record.tenant_id.as_ref().map(|t| t.as_str().to_owned());
        let status = record.status.as_str();
        self.with_conn(move |conn| {
            conn.exec(
                "INSERT INTO improvements (improvement_id, tenant_id, status, body)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(improvement_id) DO UPDATE SET tenant_id = excluded.tenant_id,
                     status = excluded.status, body = excluded.body",
                params![id, tenant, status, body],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn get_improvement(
        &self,
        id: &ImprovementId,
    ) -> Result<Option<ImprovementRecord>, StoreError> {
        let id = id.to_string();
        self.with_read(move |conn| {
            let body: Option<String> = conn
                .row(
                    "SELECT body FROM improvements WHERE improvement_id = ?1",
                    params![id],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql)?;
            body.map(|b| decode(&format!("improvement {id}"), &b))
                .transpose()
        })
        .await
    }

    async fn list_improvements(
        &self,
        query: &ImprovementQuery,
    ) -> Result<Page<ImprovementRecord>, StoreError> {
        let cursor = query.checked_cursor()?.map(str::to_owned);
        let size = query.page_size();
        let tenant = query.scope.tenant().map(|t| t.as_str().to_owned());
        let status = query.status.map(ImprovementStatus::as_str);
        self.with_read(move |conn| {
            // One row more than the page tells whether another page follows.
            let mut rows = bodies::<ImprovementRecord>(
                conn,
                "SELECT improvement_id, body FROM improvements
                 WHERE (?1 IS NULL OR tenant_id = ?1)
                   AND (?2 IS NULL OR status = ?2)
                   AND (?3 IS NULL OR improvement_id < ?3)
                 ORDER BY improvement_id DESC LIMIT ?4",
                params![tenant, status, cursor, sql_limit(size + 1)],
                |id| format!("improvement {id}"),
            )?;
            let next_cursor = if rows.len() > size {
                rows.truncate(size);
                rows.last().map(|(id, _)| id.clone())
            } else {
                None
            };
            Ok(Page {
                items: rows.into_iter().map(|(_, record)| record).collect(),
                next_cursor,
            })
        })
        .await
    }

    async fn improvement_counts(
        &self,
        scope: &TenantScope,
    ) -> Result<BTreeMap<ImprovementStatus, u64>, StoreError> {
        let tenant = scope.tenant().map(|t| t.as_str().to_owned());
        self.with_read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT status, COUNT(*) FROM improvements
                     WHERE (?1 IS NULL OR tenant_id = ?1) GROUP BY status",
                )
                .map_err(sql)?;
            let rows: Vec<(String, i64)> = stmt
                .query_map(params![tenant], |row| Ok((row.get(0)?, row.get(1)?)))
                .map_err(sql)?
                .collect::<Result<_, _>>()
                .map_err(sql)?;
            rows.into_iter()
                .map(|(name, count)| {
                    let status =
                        ImprovementStatus::parse(&name).ok_or_else(|| StoreError::Corrupt {
                            record: "improvements".into(),
                            problem: format!("unknown status {name:?}"),
                        })?;
                    Ok((status, u64::try_from(count).unwrap_or(0)))
                })
                .collect()
        })
        .await
    }
}

#[async_trait]
impl UsageLedger for SqliteStore {
    async fn record_llm_usage(
        &self,
        at: OffsetDateTime,
        cost_usd: f64,
        providers: &[ProviderHealth],
    ) -> Result<(), StoreError> {
        if !cost_usd.is_finite() {
            return Err(StoreError::Rejected(format!(
                "LLM cost {cost_usd} is not a number of dollars"
            )));
        }
        let day = day_key(at.to_offset(UtcOffset::UTC).date());
        let providers = encode(&format!("LLM usage of {day}"), &providers)?;
        self.with_conn(move |conn| {
            conn.exec(
                "INSERT INTO llm_usage (day, cost_usd, calls, providers) VALUES (?1, ?2, 1, ?3)
                 ON CONFLICT(day) DO UPDATE SET cost_usd = cost_usd + excluded.cost_usd,
                     calls = calls + 1, providers = excluded.providers",
                params![day, cost_usd, providers],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn llm_usage(&self, day: Date) -> Result<DailyUsage, StoreError> {
        let day = day_key(day);
        self.with_read(move |conn| {
            let row: Option<(f64, i64, String)> = conn
                .row(
                    "SELECT cost_usd, calls, providers FROM llm_usage WHERE day = ?1",
                    params![day],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(sql)?;
            let Some((cost_usd, calls, providers)) = row else {
                return Ok(DailyUsage::default());
            };
            Ok(DailyUsage {
                cost_usd,
                calls: u64::try_from(calls).unwrap_or(0),
                providers: decode(&format!("LLM usage of {day}"), &providers)?,
            })
        })
        .await
    }
}

impl SqliteStore {
    /// Stores `record` in `table` (agents or components) under its tenant and name, replacing
    /// an earlier one.
    async fn put_registered<T: Serialize>(
        &self,
        table: &'static str,
        kind: &'static str,
        tenant: Option<&TenantId>,
        name: &str,
        record: &T,
    ) -> Result<(), StoreError> {
        let tenant = tenant_key(tenant);
        let name = name.to_owned();
        let body = encode(&format!("{kind} {tenant}#{name}"), record)?;
        self.with_conn(move |conn| {
            conn.exec(
                &format!(
                    "INSERT INTO {table} (tenant_key, name, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT(tenant_key, name) DO UPDATE SET body = excluded.body"
                ),
                params![tenant, name, body],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    /// The records of `table` that `scope` may see, by tenant then name.
    async fn list_registered<T: DeserializeOwned + Send + 'static>(
        &self,
        table: &'static str,
        kind: &'static str,
        scope: &TenantScope,
    ) -> Result<Vec<T>, StoreError> {
        let tenant = scope.tenant().map(|t| t.as_str().to_owned());
        self.with_read(move |conn| {
            let rows = bodies::<T>(
                conn,
                &format!(
                    "SELECT tenant_key || '#' || name, body FROM {table}
                     WHERE (?1 IS NULL OR tenant_key = ?1) ORDER BY tenant_key, name"
                ),
                params![tenant],
                |key| format!("{kind} {key}"),
            )?;
            Ok(rows.into_iter().map(|(_, record)| record).collect())
        })
        .await
    }
}

impl SqliteStore {
    /// Every agent, from this process's copy: read again when a registration went through
    /// this store, or when the file changed since (asked at most every [`AGENTS_RECHECK`],
    /// when the file is also checked to be the one opened).
    fn agents_copy(&self) -> Result<Arc<Vec<(String, AgentRecord)>>, StoreError> {
        let mut copy = lock(&self.agents);
        let now = tokio::time::Instant::now();
        let fresh = copy
            .checked
            .is_some_and(|checked| now.saturating_duration_since(checked) < AGENTS_RECHECK);
        if copy.version.is_some() && fresh {
            return Ok(Arc::clone(&copy.rows));
        }
        let result = (|| {
            self.check_file()?;
            if copy.conn.is_none() {
                let conn = open_connection(&self.path)?;
                conn.pragma_update(None, "query_only", true).map_err(sql)?;
                copy.conn = Some(conn);
            }
            let Some(conn) = copy.conn.as_ref() else {
                return Err(StoreError::Unavailable("no reader connection".into()));
            };
            // The version first: a commit between the two reads makes the next check read
            // the rows again rather than keep them.
            let version: i64 = conn
                .row("PRAGMA data_version", [], |row| row.get(0))
                .map_err(sql)?;
            if copy.version == Some(version) {
                return Ok(None);
            }
            let mut stmt = conn
                .prepare_cached(
                    "SELECT tenant_key, tenant_key || '#' || name, body FROM agents
                     ORDER BY tenant_key, name",
                )
                .map_err(sql)?;
            let rows: Vec<(String, String, String)> = stmt
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                .map_err(sql)?
                .collect::<Result<_, _>>()
                .map_err(sql)?;
            let rows = rows
                .into_iter()
                .map(|(tenant, key, body)| Ok((tenant, decode(&format!("agent {key}"), &body)?)))
                .collect::<Result<Vec<_>, StoreError>>()?;
            Ok(Some((version, rows)))
        })();
        match result.map_err(|e| at_file(&self.path, e))? {
            None => {}
            Some((version, rows)) => {
                copy.version = Some(version);
                copy.rows = Arc::new(rows);
            }
        }
        copy.checked = Some(now);
        Ok(Arc::clone(&copy.rows))
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[async_trait]
impl Registry for SqliteStore {
    async fn register_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        let stored = self
            .put_registered(
                "agents",
                "agent",
                agent.tenant_id.as_ref(),
                &agent.name,
                agent,
            )
            .await;
        // Listed at once here, whatever the outcome: the copy is read again on next use.
        lock(&self.agents).version = None;
        stored
    }

    async fn list_agents(&self, scope: &TenantScope) -> Result<Vec<AgentRecord>, StoreError> {
        let rows = self.agents_copy()?;
        let tenant = scope.tenant().map(TenantId::as_str);
        Ok(rows
            .iter()
            .filter(|(key, _)| tenant.is_none_or(|t| t == key))
            .map(|(_, agent)| agent.clone())
            .collect())
    }

    async fn put_component(&self, component: &ComponentRecord) -> Result<(), StoreError> {
        let tenant = component.tenant_id.as_ref();
        self.put_registered(
            "components",
            "component",
            tenant,
            &component.name,
            component,
        )
        .await
    }

    async fn list_components(
        &self,
        scope: &TenantScope,
    ) -> Result<Vec<ComponentRecord>, StoreError> {
        self.list_registered("components", "component", scope).await
    }
}

#[async_trait]
impl MinerStateStore for SqliteStore {
    async fn load_miner_state(&self, scope: &str) -> Result<Option<SavedMinerState>, StoreError> {
        let scope = scope.to_owned();
        self.with_read(move |conn| {
            let row: Option<(String, i64)> = conn
                .row(
                    "SELECT body, version FROM miner_states WHERE scope = ?1",
                    params![scope],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(sql)?;
            row.map(|(body, version)| {
                let version = u64::try_from(version).map_err(|_| StoreError::Corrupt {
                    record: format!("miner state {scope}"),
                    problem: format!("version {version} is negative"),
                })?;
                Ok(SavedMinerState { body, version })
            })
            .transpose()
        })
        .await
    }

    async fn save_miner_state(
        &self,
        scope: &str,
        body: &str,
        expected: u64,
    ) -> Result<bool, StoreError> {
        let (scope, body) = (scope.to_owned(), body.to_owned());
        let expected = i64::try_from(expected).map_err(|_| {
            StoreError::Rejected(format!("miner state version {expected} is out of range"))
        })?;
        self.with_conn(move |conn| {
            // One statement decides: insert when nothing is stored and 0 was expected,
            // update when the stored version is the expected one.
            let changed = if expected == 0 {
                conn.exec(
                    "INSERT INTO miner_states (scope, body, version) VALUES (?1, ?2, 1)
                     ON CONFLICT(scope) DO NOTHING",
                    params![scope, body],
                )
            } else {
                conn.exec(
                    "UPDATE miner_states SET body = ?2, version = version + 1
                     WHERE scope = ?1 AND version = ?3",
                    params![scope, body, expected],
                )
            }
            .map_err(sql)?;
            Ok(changed == 1)
        })
        .await
    }
}

#[async_trait]
impl AccessLog for SqliteStore {
    async fn count_calls(
        &self,
        key_id: &str,
        window_start: OffsetDateTime,
        calls: u64,
        expires_at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let (key, start, expires) = (
            key_id.to_owned(),
            window_start.unix_timestamp(),
            expires_at.unix_timestamp(),
        );
        let calls = i64::try_from(calls)
            .map_err(|_| StoreError::Rejected(format!("{calls} calls are out of range")))?;
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            // The embedded counterpart of DynamoDB TTL: windows that expired before this one
            // started are gone (the caller's window start stands in for the clock).
            tx.exec(
                "DELETE FROM call_counts WHERE expires_at < ?1",
                params![start],
            )
            .map_err(sql)?;
            let count: i64 = tx
                .row(
                    "INSERT INTO call_counts (key_id, window_start, expires_at, count)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(key_id, window_start) DO UPDATE SET count = count + ?4,
                         expires_at = max(expires_at, excluded.expires_at)
                     RETURNING count",
                    params![key, start, expires, calls],
                    |row| row.get(0),
                )
                .map_err(sql)?;
            tx.commit().map_err(sql)?;
            Ok(u64::try_from(count).unwrap_or(0))
        })
        .await
    }

    async fn record_tool_call(&self, event: &ToolCallEvent) -> Result<(), StoreError> {
        self.record_tool_calls(std::slice::from_ref(event)).await
    }

    async fn record_tool_calls(&self, events: &[ToolCallEvent]) -> Result<(), StoreError> {
        let Some(newest) = events.iter().map(|e| e.at).max() else {
            return Ok(());
        };
        let rows = events
            .iter()
            .map(|event| {
                // The record's name is only built for an error.
                let body = serde_json::to_string(event).map_err(|e| StoreError::Corrupt {
                    record: format!("tool call of key {}", event.key_id),
                    problem: format!("cannot be written: {e}"),
                })?;
                Ok((millis(event.at), body))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        let expired = millis(newest - TOOL_CALL_RETENTION);
        // One transaction for the batch: one commit, however many calls it holds.
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            // Whole chunks through one statement of many rows (a statement's fixed cost
            // once per chunk), the rest one row at a time.
            let mut chunks = rows.chunks_exact(INSERT_CHUNK);
            if chunks.len() > 0 {
                let mut insert = tx.prepare_cached(&INSERT_CHUNK_SQL).map_err(sql)?;
                for chunk in chunks.by_ref() {
                    let values = chunk.iter().flat_map(|(at, body)| {
                        [at as &dyn rusqlite::ToSql, body as &dyn rusqlite::ToSql]
                    });
                    insert
                        .execute(rusqlite::params_from_iter(values))
                        .map_err(sql)?;
                }
            }
            let rest = chunks.remainder();
            if !rest.is_empty() {
                let mut insert = tx
                    .prepare_cached("INSERT INTO tool_calls (at_ms, body) VALUES (?1, ?2)")
                    .map_err(sql)?;
                for (at, body) in rest {
                    insert.execute(params![at, body]).map_err(sql)?;
                }
            }
            // Lazy clean-up, as DynamoDB's TTL does it on AWS.
            tx.exec("DELETE FROM tool_calls WHERE at_ms < ?1", params![expired])
                .map_err(sql)?;
            tx.commit().map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn recent_tool_calls(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ToolCallEvent>, StoreError> {
        // What the TTL has not yet deleted on the clock of the caller.
        let expired = millis(now - TOOL_CALL_RETENTION);
        self.with_read(move |conn| {
            let rows = bodies::<ToolCallEvent>(
                conn,
                "SELECT CAST(seq AS TEXT), body FROM tool_calls WHERE at_ms >= ?2
                 ORDER BY at_ms DESC, seq DESC LIMIT ?1",
                params![sql_limit(limit), expired],
                |seq| format!("tool call {seq}"),
            )?;
            Ok(rows.into_iter().map(|(_, event)| event).collect())
        })
        .await
    }
}

/// Access log rows one `INSERT` statement stores.
const INSERT_CHUNK: usize = 32;

/// `INSERT` of [`INSERT_CHUNK`] access log rows.
static INSERT_CHUNK_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let rows = vec!["(?, ?)"; INSERT_CHUNK].join(", ");
    format!("INSERT INTO tool_calls (at_ms, body) VALUES {rows}")
});

/// A cycle row as the embedded executions show it.
#[derive(Debug, Clone, PartialEq)]
pub struct CycleExecution {
    /// The record.
    pub cycle: CycleRecord,
    /// `running`, `succeeded`, `failed` or `aborted` (stopped by the health pass).
    pub state: String,
    /// When it ended, when known.
    pub finished_at: Option<OffsetDateTime>,
}

impl SqliteStore {
    /// Running cycles and those that ended at or after `since` (an unknown end counts by its
    /// start), oldest first, at most `limit`.
    pub async fn cycle_executions(
        &self,
        since: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<CycleExecution>, StoreError> {
        let since = millis(since);
        self.with_read(move |conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT cycle_id, status, finished_ms, body FROM cycles
                     WHERE status = 'running' OR COALESCE(finished_ms, started_ms) >= ?1
                     ORDER BY started_ms, cycle_id LIMIT ?2",
                )
                .map_err(sql)?;
            let rows: Vec<(String, String, Option<i64>, String)> = stmt
                .query_map(params![since, sql_limit(limit)], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })
                .map_err(sql)?
                .collect::<Result<_, _>>()
                .map_err(sql)?;
            rows.into_iter()
                .map(|(id, state, finished, body)| {
                    let record = format!("cycle {id}");
                    Ok(CycleExecution {
                        cycle: decode(&record, &body)?,
                        state,
                        finished_at: finished.map(|ms| from_millis(&record, ms)).transpose()?,
                    })
                })
                .collect()
        })
        .await
    }

    /// Puts a failed or stopped cycle back to running as of `at` (the embedded redrive);
    /// false if there is no such ended cycle.
    pub async fn redrive_cycle(
        &self,
        id: &CycleId,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        self.set_cycle_state(
            id,
            &["failed", "aborted"],
            "running",
            CycleStatus::Running,
            at,
        )
        .await
    }

    /// Ends a running cycle as stopped at `at`; false if there is no such running cycle.
    pub async fn stop_cycle(&self, id: &CycleId, at: OffsetDateTime) -> Result<bool, StoreError> {
        self.set_cycle_state(id, &["running"], "aborted", CycleStatus::Failed, at)
            .await
    }

    async fn set_cycle_state(
        &self,
        id: &CycleId,
        from: &'static [&'static str],
        to: &'static str,
        status: CycleStatus,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let id = id.as_str().to_owned();
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let row: Option<(String, String)> = tx
                .row(
                    "SELECT status, body FROM cycles WHERE cycle_id = ?1",
                    params![id],
                    |row| Ok((row.get(0)?, row.get(1)?)),
                )
                .optional()
                .map_err(sql)?;
            let Some((state, body)) = row else {
                return Ok(false);
            };
            if !from.contains(&state.as_str()) {
                return Ok(false);
            }
            let record = format!("cycle {id}");
            let mut cycle: CycleRecord = decode(&record, &body)?;
            cycle.status = status;
            let running = status == CycleStatus::Running;
            if running {
                // A redriven execution's age counts from its redrive.
                cycle.started_at = at;
            }
            tx.exec(
                "UPDATE cycles SET status = ?2, body = ?3,
                     started_ms = CASE WHEN ?5 THEN ?4 ELSE started_ms END,
                     finished_ms = CASE WHEN ?5 THEN NULL ELSE ?4 END
                 WHERE cycle_id = ?1",
                params![id, to, encode(&record, &cycle)?, millis(at), running],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            Ok(true)
        })
        .await
    }
}

#[async_trait]
impl HealthStore for SqliteStore {
    async fn component_health(&self) -> Result<Vec<ComponentHealth>, StoreError> {
        self.with_read(|conn| {
            let rows = bodies::<ComponentHealth>(
                conn,
                "SELECT component, body FROM component_health ORDER BY component",
                [],
                |c| format!("heal ledger of {c}"),
            )?;
            Ok(rows.into_iter().map(|(_, l)| l).collect())
        })
        .await
    }

    async fn put_component_health(&self, ledger: &ComponentHealth) -> Result<(), StoreError> {
        let name = ledger.component.clone();
        let body = encode(&format!("heal ledger of {name}"), ledger)?;
        self.with_conn(move |conn| {
            conn.exec(
                "INSERT INTO component_health (component, body) VALUES (?1, ?2)
                 ON CONFLICT(component) DO UPDATE SET body = excluded.body",
                params![name, body],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn enable_component(&self, component: &str) -> Result<bool, StoreError> {
        let name = component.to_owned();
        self.with_conn(move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(sql)?;
            let body: Option<String> = tx
                .row(
                    "SELECT body FROM component_health WHERE component = ?1",
                    params![name],
                    |row| row.get(0),
                )
                .optional()
                .map_err(sql)?;
            let was_disabled = match body {
                Some(b) => decode::<ComponentHealth>(&format!("heal ledger of {name}"), &b)?
                    .disabled
                    .is_some(),
                None => false,
            };
            tx.exec(
                "DELETE FROM component_health WHERE component = ?1",
                params![name],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            Ok(was_disabled)
        })
        .await
    }

    async fn append_health_event(&self, event: &HealthEvent) -> Result<(), StoreError> {
        let body = encode("health event", event)?;
        let (at, component) = (millis(event.at), event.component.clone());
        self.with_conn(move |conn| {
            conn.exec(
                "INSERT INTO health_events (at_ms, component, body) VALUES (?1, ?2, ?3)",
                params![at, component, body],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn health_events(
        &self,
        component: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HealthEvent>, StoreError> {
        let component = component.map(str::to_owned);
        self.with_read(move |conn| {
            let rows = bodies::<HealthEvent>(
                conn,
                "SELECT CAST(seq AS TEXT), body FROM health_events
                 WHERE (?1 IS NULL OR component = ?1) ORDER BY seq DESC LIMIT ?2",
                params![component, sql_limit(limit)],
                |seq| format!("health event {seq}"),
            )?;
            Ok(rows.into_iter().map(|(_, e)| e).collect())
        })
        .await
    }

    async fn save_health_report(&self, report: &HealthReport) -> Result<(), StoreError> {
        let body = encode("health report", report)?;
        self.with_conn(move |conn| {
            conn.exec(
                "INSERT INTO health_reports (id, body) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET body = excluded.body",
                params![body],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn last_health_report(&self) -> Result<Option<HealthReport>, StoreError> {
        self.with_read(|conn| {
            let body: Option<String> = conn
                .row("SELECT body FROM health_reports WHERE id = 1", [], |row| {
                    row.get(0)
                })
                .optional()
                .map_err(sql)?;
            body.map(|b| decode("health report", &b)).transpose()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(name: &str, tenant: Option<&str>) -> AgentRecord {
        AgentRecord {
            name: name.into(),
            url: format!("https://{name}.example"),
            capabilities: vec!["read".into()],
            tenant_id: tenant.map(|t| TenantId::parse(t).unwrap()),
            registered_by: "k1".into(),
            registered_at: OffsetDateTime::UNIX_EPOCH,
            mcp_url: None,
            key_secret_id: None,
            components: Vec::new(),
            depends_on: Vec::new(),
            low_traffic_windows: Vec::new(),
            window_tool: None,
            notify_tool: None,
            metrics: None,
        }
    }

    async fn agent_names(store: &SqliteStore, scope: &TenantScope) -> Vec<String> {
        let agents = store.list_agents(scope).await.unwrap();
        agents.into_iter().map(|a| a.name).collect()
    }

    // Paused time: the recheck interval passes only when the test advances the clock.
    #[tokio::test(start_paused = true)]
    async fn agents_registered_by_another_process_are_listed_within_the_recheck() {
        // GIVEN this process's store, and another one on the same file (another `serve`)
        let dir = tempfile::tempdir().unwrap();
        let here = SqliteStore::open(dir.path()).unwrap();
        let elsewhere = SqliteStore::open(dir.path()).unwrap();
        assert!(agent_names(&here, &TenantScope::All).await.is_empty());
        assert!(agent_names(&elsewhere, &TenantScope::All).await.is_empty());

        // WHEN the other one registers an agent
        elsewhere.register_agent(&agent("a", None)).await.unwrap();

        // THEN this one answers from its copy until the recheck is due, then lists it
        assert!(agent_names(&here, &TenantScope::All).await.is_empty());
        tokio::time::advance(AGENTS_RECHECK).await;
        assert_eq!(agent_names(&here, &TenantScope::All).await, ["a"]);
        assert_eq!(agent_names(&elsewhere, &TenantScope::All).await, ["a"]);

        // AND a registration through this store (a clone) is listed here at once, by tenant
        here.clone()
            .register_agent(&agent("b", Some("t1")))
            .await
            .unwrap();
        here.register_agent(&agent("c", Some("t2"))).await.unwrap();
        assert_eq!(agent_names(&here, &TenantScope::All).await, ["a", "b", "c"]);
        let t1 = TenantScope::Only(TenantId::parse("t1").unwrap());
        assert_eq!(agent_names(&here, &t1).await, ["b"]);
        // AND the other process lists them once its own recheck is due
        assert_eq!(agent_names(&elsewhere, &TenantScope::All).await, ["a"]);
        tokio::time::advance(AGENTS_RECHECK).await;
        assert_eq!(agent_names(&elsewhere, &t1).await, ["b"]);
    }

    #[tokio::test]
    async fn a_batch_of_several_chunks_is_stored_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let events: Vec<ToolCallEvent> = (0..2 * INSERT_CHUNK + 6)
            .map(|i| ToolCallEvent {
                at,
                key_id: format!("k{i}"),
                tenant_id: None,
                tool: "list_agents".into(),
                outcome: "ok".into(),
                detail: String::new(),
            })
            .collect();
        store.record_tool_calls(&events).await.unwrap();
        store.record_tool_calls(&events[..3]).await.unwrap();
        let stored = store.recent_tool_calls(at, 1000).await.unwrap();
        // Newest first: the second batch, then the first from its last entry back.
        let keys: Vec<&str> = stored.iter().map(|e| e.key_id.as_str()).collect();
        let expected: Vec<String> = (0..3)
            .rev()
            .chain((0..events.len()).rev())
            .map(|i| format!("k{i}"))
            .collect();
        assert_eq!(keys, expected);
    }

    #[tokio::test]
    async fn an_unreadable_agent_is_corrupt_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .with_conn(|conn| {
                conn.exec(
                    "INSERT INTO agents (tenant_key, name, body) VALUES ('*', 'x', '{}')",
                    [],
                )
                .map_err(sql)
            })
            .await
            .unwrap();
        let err = store.list_agents(&TenantScope::All).await.unwrap_err();
        let StoreError::Corrupt { record, .. } = &err else {
            panic!("expected Corrupt, got {err:?}");
        };
        assert_eq!(record, "agent *#x");
    }

    /// The schema as version 1 created it.
    const SCHEMA_V1: &str = "
        CREATE TABLE dedup_claims (dedup_key TEXT PRIMARY KEY, cycle_id TEXT NOT NULL,
            claimed_at_ms INTEGER NOT NULL, window_end_ms INTEGER NOT NULL,
            expires_at INTEGER NOT NULL, suppressed_count INTEGER NOT NULL DEFAULT 0,
            started INTEGER NOT NULL DEFAULT 0, execution_ref TEXT, cycle_input TEXT NOT NULL);
        CREATE TABLE halt_switch (id INTEGER PRIMARY KEY CHECK (id = 1), reason TEXT NOT NULL,
            actor TEXT NOT NULL, since_ms INTEGER NOT NULL);
        CREATE TABLE pending_approvals (improvement_id TEXT PRIMARY KEY, body TEXT NOT NULL);
        CREATE TABLE task_results (task_token TEXT PRIMARY KEY, output TEXT NOT NULL);
        CREATE TABLE audit_events (seq INTEGER PRIMARY KEY AUTOINCREMENT,
            cycle_id TEXT NOT NULL, at_ms INTEGER NOT NULL, body TEXT NOT NULL);
        CREATE INDEX audit_events_by_cycle ON audit_events (cycle_id, at_ms, seq);
        CREATE TABLE notifications (seq INTEGER PRIMARY KEY AUTOINCREMENT,
            detail_type TEXT NOT NULL, detail TEXT NOT NULL);
        CREATE TABLE cycles (cycle_id TEXT PRIMARY KEY, status TEXT NOT NULL,
            started_ms INTEGER NOT NULL, body TEXT NOT NULL);
        PRAGMA user_version = 1;
    ";

    const CYCLE_V1: &str = r#"{"request":{"cycle_id":"c1","mode":"routine","tenant_id":"acme",
        "components":[],"analysis_window":{"start":"2026-11-22T04:00:00Z",
        "end":"2026-11-22T05:00:00Z"},"max_improvements":3,"max_concurrency":3,
        "dry_run":false,"trigger":{"kind":"schedule","rule":null},"dedup_key":"acme#*",
        "requested_at":"2026-11-22T05:00:00Z"},"status":"running","execution_ref":"exec",
        "started_at":"2026-11-22T05:00:00Z"}"#;

    #[tokio::test]
    async fn a_version_1_database_is_upgraded_in_place() {
        // GIVEN a version-1 file with a running cycle
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
            conn.execute_batch(SCHEMA_V1).unwrap();
            conn.exec(
                "INSERT INTO cycles (cycle_id, status, started_ms, body)
                 VALUES ('c1', 'running', 1795323600000, ?1)",
                params![CYCLE_V1],
            )
            .unwrap();
        }
        // WHEN it is opened THEN the old records are there and the new tables work
        let store = SqliteStore::open(dir.path()).unwrap();
        let running = store
            .running_cycles(&TenantScope::Only(TenantId::parse("acme").unwrap()), 10)
            .await
            .unwrap();
        assert_eq!(running.len(), 1);
        assert_eq!(running[0].request.cycle_id.as_str(), "c1");
        store
            .record_llm_usage(running[0].started_at, 0.5, &[])
            .await
            .unwrap();
        assert_eq!(
            store
                .llm_usage(running[0].started_at.date())
                .await
                .unwrap()
                .calls,
            1
        );
        // The version-4 column: the cycle's end is kept for the health pass.
        let id = running[0].request.cycle_id.clone();
        let ended = running[0].started_at + time::Duration::minutes(5);
        assert!(
            store
                .finish_cycle(&id, CycleStatus::Failed, ended)
                .await
                .unwrap()
        );
        let rows = store
            .cycle_executions(running[0].started_at, 10)
            .await
            .unwrap();
        assert_eq!(rows[0].finished_at, Some(ended));
        assert_eq!(rows[0].state, "failed");
        let version: i64 = store
            .with_conn(|conn| {
                conn.pragma_query_value(None, "user_version", |row| row.get(0))
                    .map_err(sql)
            })
            .await
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[tokio::test]
    async fn an_unreadable_row_is_corrupt_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .with_conn(|conn| {
                conn.exec(
                    "INSERT INTO improvements (improvement_id, tenant_id, status, body)
                     VALUES ('c1-1', NULL, 'validated', '{\"not\": \"a record\"}'),
                            ('c1-2', NULL, 'no_such_status', '{}')",
                    [],
                )
                .map_err(sql)
            })
            .await
            .unwrap();
        let err = store
            .get_improvement(&"c1-1".parse().unwrap())
            .await
            .unwrap_err();
        let StoreError::Corrupt { record, .. } = &err else {
            panic!("expected Corrupt, got {err:?}");
        };
        assert_eq!(record, "improvement c1-1");
        let err = store
            .improvement_counts(&TenantScope::All)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("no_such_status"), "{err}");
    }

    #[tokio::test]
    async fn each_waiting_run_takes_only_its_own_task_results() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .put_task_result("a", &serde_json::json!({"approved": true}))
            .await
            .unwrap();
        store
            .put_task_result("b", &serde_json::json!(2))
            .await
            .unwrap();
        assert_eq!(
            store.take_task_result("a").await.unwrap(),
            Some(serde_json::json!({"approved": true}))
        );
        assert_eq!(store.take_task_result("a").await.unwrap(), None);
        assert_eq!(
            store.take_task_results().await.unwrap(),
            [("b".to_owned(), serde_json::json!(2))]
        );
    }

    #[tokio::test]
    async fn pending_approvals_are_listed_by_improvement() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let pending = |id: &str| PendingApproval {
            improvement_id: id.parse().unwrap(),
            cycle_id: CycleId::parse("c1").unwrap(),
            tenant_id: None,
            task_token: format!("token-{id}"),
            change: "f: memory 128→256 MB".to_owned(),
            risk: "LOW".to_owned(),
            approvals_required: 1,
            approvers: Vec::new(),
            requested_at: time::macros::datetime!(2026-11-22 05:00 UTC),
        };
        store.put_pending(&pending("c1-2")).await.unwrap();
        store.put_pending(&pending("c1-1")).await.unwrap();
        let listed = store.pending_approvals().await.unwrap();
        assert_eq!(listed, [pending("c1-1"), pending("c1-2")]);
    }

    mod properties {
        use std::collections::HashMap;

        use proptest::prelude::*;
        use proptest::test_runner::{Config as ProptestConfig, RngSeed};
        use selfbuild_core::ids::ComponentId;
        use selfbuild_core::ports::{ClaimOutcome, DedupClaim, DedupStore, HeldClaim};
        use time::Duration;
        use time::macros::datetime;

        use super::*;

        /// A fixed seed: the same cases on every run and machine.
        fn config(cases: u32) -> ProptestConfig {
            ProptestConfig {
                cases,
                rng_seed: RngSeed::Fixed(0x5e1f_b01d),
                ..ProptestConfig::default()
            }
        }

        const T0: OffsetDateTime = datetime!(2026-11-22 05:00:00 UTC);

        /// One call on the claims of key `key` (of three).
        #[derive(Debug, Clone)]
        enum Op {
            /// A claim made `at_us` microseconds after T0 for a window of `window_ms`.
            Claim {
                key: usize,
                at_us: i64,
                window_ms: i64,
            },
            /// A release by the holder, or by a cycle that does not hold the key.
            Release { key: usize, by_holder: bool },
            /// The holder's cycle was started.
            MarkStarted { key: usize },
        }

        fn ops() -> impl Strategy<Value = Vec<Op>> {
            let op = prop_oneof![
                6 => (0_usize..3, 0_i64..3_000_000, 0_i64..1500)
                    .prop_map(|(key, at_us, window_ms)| Op::Claim { key, at_us, window_ms }),
                1 => (0_usize..3, any::<bool>()).prop_map(|(key, by_holder)| Op::Release { key, by_holder }),
                1 => (0_usize..3).prop_map(|key| Op::MarkStarted { key }),
            ];
            proptest::collection::vec(op, 1..30)
        }

        fn key(i: usize) -> DedupKey {
            DedupKey::new(
                Some(TenantId::parse("acme").unwrap()),
                Some(ComponentId::parse(&format!("fn-{i}")).unwrap()),
            )
        }

        /// A time as the stores keep it: to the millisecond.
        fn to_ms(t: OffsetDateTime) -> OffsetDateTime {
            OffsetDateTime::from_unix_timestamp_nanos(
                t.unix_timestamp_nanos() / 1_000_000 * 1_000_000,
            )
            .unwrap()
        }

        proptest! {
            #![proptest_config(config(32))]

            /// Claims in any order, with releases and starts between them, decide as the
            /// window arithmetic says: a claim made while the holder's window has not ended
            /// (its end included, at millisecond resolution) is held and counted; after it,
            /// or once released, a new claim wins and starts its own count.
            #[test]
            fn claims_follow_the_window_arithmetic(ops in ops()) {
                let dir = tempfile::tempdir().unwrap();
                let store = SqliteStore::open(dir.path()).unwrap();
                let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
                let mut model: HashMap<usize, HeldClaim> = HashMap::new();
                for (n, op) in ops.into_iter().enumerate() {
                    match op {
                        Op::Claim { key: k, at_us, window_ms } => {
                            let claimed_at = T0 + Duration::microseconds(at_us);
                            let window_end = claimed_at + Duration::milliseconds(window_ms);
                            let claim = DedupClaim {
                                key: key(k),
                                cycle_id: CycleId::parse(&format!("c{n}")).unwrap(),
                                claimed_at,
                                window_end,
                                expires_at: window_end + Duration::days(1),
                                cycle_input: format!("{{\"n\":{n}}}"),
                            };
                            let outcome = runtime.block_on(store.claim(&claim)).unwrap();
                            let expected = match model.get_mut(&k) {
                                Some(held) if held.window_end >= to_ms(claimed_at) => {
                                    held.suppressed_count += 1;
                                    ClaimOutcome::Held(held.clone())
                                }
                                _ => {
                                    model.insert(k, HeldClaim {
                                        cycle_id: claim.cycle_id.clone(),
                                        claimed_at: to_ms(claimed_at),
                                        window_end: to_ms(window_end),
                                        suppressed_count: 0,
                                        started: false,
                                        cycle_input: claim.cycle_input.clone(),
                                    });
                                    ClaimOutcome::Won
                                }
                            };
                            prop_assert_eq!(outcome, expected, "op {}", n);
                        }
                        Op::Release { key: k, by_holder } => {
                            let holder = model.get(&k).map(|h| h.cycle_id.clone());
                            let id = match (&holder, by_holder) {
                                (Some(id), true) => id.clone(),
                                _ => CycleId::parse("nobody").unwrap(),
                            };
                            let released = runtime.block_on(store.release(&key(k), &id)).unwrap();
                            prop_assert_eq!(released, holder.as_ref() == Some(&id), "op {}", n);
                            if released {
                                model.remove(&k);
                            }
                        }
                        Op::MarkStarted { key: k } => {
                            if let Some(held) = model.get_mut(&k) {
                                runtime
                                    .block_on(store.mark_started(&key(k), &held.cycle_id, "exec"))
                                    .unwrap();
                                held.started = true;
                            }
                        }
                    }
                }
            }
        }
    }
}
