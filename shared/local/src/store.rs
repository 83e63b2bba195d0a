//! The embedded Store: one SQLite file on local disk (WAL mode, so several `selfbuild`
//! processes can share it), with the same conditional semantics as the DynamoDB table.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use selfbuild_core::approval::{ApprovalStore, PendingApproval};
use selfbuild_core::audit::{AuditEvent, AuditLog, Notifier};
use selfbuild_core::cycle::CycleRecord;
use selfbuild_core::error::StoreError;
use selfbuild_core::ids::{CycleId, DedupKey};
use selfbuild_core::ports::{
    ClaimOutcome, CycleStore, DedupClaim, DedupStore, HaltState, HaltSwitch, HeldClaim,
};
use time::OffsetDateTime;

/// The database file inside the data directory.
pub const DATABASE_FILE: &str = "selfbuild.db";

const SCHEMA_VERSION: i64 = 1;

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
";

/// The embedded store over a SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
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
        std::fs::create_dir_all(data_dir).map_err(|e| {
            StoreError::Unavailable(format!("data directory {}: {e}", data_dir.display()))
        })?;
        let path = data_dir.join(DATABASE_FILE);
        let conn = Connection::open(&path).map_err(|e| unavailable(&path, &e))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(|e| unavailable(&path, &e))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| unavailable(&path, &e))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| unavailable(&path, &e))?;
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|e| unavailable(&path, &e))?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Corrupt {
                record: path.display().to_string(),
                problem: format!(
                    "schema version {version} is newer than this build's {SCHEMA_VERSION}"
                ),
            });
        }
        conn.execute_batch(SCHEMA)
            .map_err(|e| unavailable(&path, &e))?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)
            .map_err(|e| unavailable(&path, &e))?;
        // The embedded counterpart of DynamoDB TTL: lazy clean-up, never needed for correctness.
        conn.execute(
            "DELETE FROM dedup_claims WHERE expires_at < ?1",
            params![OffsetDateTime::now_utc().unix_timestamp()],
        )
        .map_err(|e| unavailable(&path, &e))?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the connection on the blocking pool.
    async fn with_conn<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut conn = conn
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            work(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

fn unavailable(path: &Path, e: &rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("{}: {e}", path.display()))
}

fn sql(e: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(format!("sqlite: {e}"))
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
            // One conditional write: insert, or replace a claim whose window has ended.
            let won = tx
                .execute(
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
                let row = tx
                    .query_row(
                        "UPDATE dedup_claims SET suppressed_count = suppressed_count + 1
                         WHERE dedup_key = ?1
                         RETURNING cycle_id, claimed_at_ms, window_end_ms, suppressed_count,
                                   started, cycle_input",
                        params![key],
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
            conn.execute(
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
                .execute(
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
        self.with_conn(|conn| {
            let row = conn
                .query_row(
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
            conn.execute(
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
                .execute("DELETE FROM halt_switch WHERE id = 1", [])
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
        let status = serde_json::to_value(cycle.status)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let started = millis(cycle.started_at);
        self.with_conn(move |conn| {
            let inserted = conn
                .execute(
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
        self.with_conn(move |conn| {
            let body: Option<String> = conn
                .query_row(
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
}

fn corrupt_approval(id: &str, e: &serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        record: format!("pending approval {id}"),
        problem: e.to_string(),
    }
}

fn read_pending(conn: &Connection, id: &str) -> Result<Option<PendingApproval>, StoreError> {
    let body: Option<String> = conn
        .query_row(
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
        let id = pending.improvement_id.clone();
        let body = serde_json::to_string(pending).map_err(|e| corrupt_approval(&id, &e))?;
        self.with_conn(move |conn| {
            conn.execute(
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
        improvement_id: &str,
    ) -> Result<Option<PendingApproval>, StoreError> {
        let id = improvement_id.to_owned();
        self.with_conn(move |conn| read_pending(conn, &id)).await
    }

    async fn add_approver(
        &self,
        improvement_id: &str,
        approver: &str,
    ) -> Result<Option<PendingApproval>, StoreError> {
        let (id, approver) = (improvement_id.to_owned(), approver.to_owned());
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
                tx.execute(
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

    async fn remove_pending(&self, improvement_id: &str) -> Result<bool, StoreError> {
        let id = improvement_id.to_owned();
        self.with_conn(move |conn| {
            let deleted = conn
                .execute(
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
    /// Queues a task token's result for the process whose execution waits on it.
    pub async fn put_task_result(
        &self,
        token: &str,
        output: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let (token, output) = (token.to_owned(), output.to_string());
        self.with_conn(move |conn| {
            conn.execute(
                "INSERT INTO task_results (task_token, output) VALUES (?1, ?2)
                 ON CONFLICT(task_token) DO NOTHING",
                params![token, output],
            )
            .map_err(sql)?;
            Ok(())
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
                    .prepare("SELECT task_token, output FROM task_results")
                    .map_err(sql)?;
                stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                    .map_err(sql)?
                    .collect::<Result<_, _>>()
                    .map_err(sql)?
            };
            tx.execute("DELETE FROM task_results", []).map_err(sql)?;
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
impl selfbuild_core::approval::TaskTokens for StoreTaskTokens {
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
                StoreError::Rejected(_) | StoreError::Corrupt { .. } => {
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
            conn.execute(
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
        self.with_conn(move |conn| {
            let mut stmt = conn
                .prepare("SELECT body FROM audit_events WHERE cycle_id = ?1 ORDER BY at_ms, seq")
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
            conn.execute(
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
        self.with_conn(|conn| {
            let mut stmt = conn
                .prepare("SELECT detail_type, detail FROM notifications ORDER BY seq")
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
