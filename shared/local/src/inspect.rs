//! `selfbuild status`, `list`, `show` and `report`: what happened in a data directory, read through the
//! same store queries the MCP tools use (`get_system_status`, `list_improvements`,
//! `get_improvement`).

use clap::Subcommand;
use selfbuild_core::Config;
use selfbuild_core::ids::{CycleId, ImprovementId};
use selfbuild_core::ports::{ApprovalStore, AuditLog, CycleStore, HaltSwitch, ImprovementStore};
use selfbuild_core::records::{
    ImprovementQuery, ImprovementRecord, ImprovementStatus, TenantScope,
};
use serde_json::{Value, json};

use crate::output::{CliError, cli_error, utc};
use crate::store::SqliteStore;

/// What `list` lists.
#[derive(Debug, Subcommand)]
pub enum ListCommand {
    /// Cycles of every status, newest first.
    Cycles {
        /// At most this many.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: u64,
    },
    /// Improvements, newest first.
    Improvements {
        /// Only those in this status (awaiting_approval, promoted, rolled_back, …).
        #[arg(long)]
        status: Option<String>,
        /// Only this tenant's.
        #[arg(long)]
        tenant: Option<String>,
        /// Page size.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=100))]
        limit: u64,
        /// `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
}

/// What `show` shows.
#[derive(Debug, Subcommand)]
pub enum ShowCommand {
    /// One cycle: its request, status, improvements and audit trail.
    Cycle {
        /// The cycle id.
        id: String,
    },
    /// One improvement: change, validation, approval, deployment, monitor report, audit trail.
    Improvement {
        /// The improvement id (`<cycle>-<rank>`).
        id: String,
    },
}

fn improvement_line(record: &ImprovementRecord) -> Value {
    json!({
        "improvement_id": record.improvement_id,
        "status": record.status.as_str(),
        "risk": record.risk.map(|r| r.as_str()),
        "change": record.change,
        "tenant_id": record.tenant_id,
        "updated_at": utc(record.updated_at),
    })
}

fn cycle_line(cycle: &selfbuild_core::cycle::CycleRecord) -> Value {
    json!({
        "cycle_id": cycle.request.cycle_id,
        "status": serde_json::to_value(cycle.status).unwrap_or(Value::Null),
        "mode": cycle.request.mode.as_str(),
        "tenant_id": cycle.request.tenant_id,
        "components": cycle.request.components,
        "started_at": utc(cycle.started_at),
    })
}

/// `status`: the halt switch, running cycles, approvals waiting, improvements by status, the
/// latest cycles and whether changes deploy on their own.
pub async fn status(store: &SqliteStore, config: &Config) -> Result<Value, CliError> {
    let scope = TenantScope::All;
    let halt = store.halt_state().await?;
    let running = store.running_cycles(&scope, 50).await?;
    let pending = store.pending_approvals().await?;
    let counts = store.improvement_counts(&scope).await?;
    let recent = store.recent_cycles(5).await?;
    let by_status: serde_json::Map<String, Value> = ImprovementStatus::ALL
        .iter()
        .filter_map(|s| counts.get(s).map(|n| (s.as_str().to_owned(), json!(n))))
        .collect();
    Ok(json!({
        "halted": halt.is_some(),
        "halt": halt.map(|h| json!({"reason": h.reason, "actor": h.actor, "since": utc(h.since)})),
        "autonomous_improvements": config.autonomous_improvements,
        "running_cycles": running.iter().map(cycle_line).collect::<Vec<_>>(),
        "awaiting_approval": pending.iter().map(|p| json!({
            "improvement_id": p.improvement_id,
            "change": p.change,
            "risk": p.risk,
            "approvals": format!("{} of {}", p.approvers.len(), p.approvals_required),
            "requested_at": utc(p.requested_at),
        })).collect::<Vec<_>>(),
        "improvements_by_status": by_status,
        "latest_cycles": recent.iter().map(cycle_line).collect::<Vec<_>>(),
        "store": store.path().display().to_string(),
    }))
}

/// `list cycles` / `list improvements`.
pub async fn list(store: &SqliteStore, command: ListCommand) -> Result<Value, CliError> {
    match command {
        ListCommand::Cycles { limit } => {
            let cycles = store.recent_cycles(limit as usize).await?;
            Ok(json!({"cycles": cycles.iter().map(cycle_line).collect::<Vec<_>>()}))
        }
        ListCommand::Improvements {
            status,
            tenant,
            limit,
            cursor,
        } => {
            let status = status
                .map(|s| {
                    ImprovementStatus::parse(&s).ok_or_else(|| {
                        cli_error("InvalidInput", format!("--status {s} is no status"))
                            .usage()
                            .hint(format!(
                                "one of {}",
                                ImprovementStatus::ALL.map(|s| s.as_str()).join(", ")
                            ))
                    })
                })
                .transpose()?;
            let scope = match tenant {
                Some(t) => TenantScope::Only(
                    t.parse()
                        .map_err(|e| cli_error("InvalidInput", format!("--tenant: {e}")).usage())?,
                ),
                None => TenantScope::All,
            };
            let page = store
                .list_improvements(&ImprovementQuery {
                    scope,
                    status,
                    limit: limit as usize,
                    cursor,
                })
                .await?;
            Ok(json!({
                "improvements": page.items.iter().map(improvement_line).collect::<Vec<_>>(),
                "next_cursor": page.next_cursor,
            }))
        }
    }
}

/// `show cycle` / `show improvement`.
pub async fn show(store: &SqliteStore, command: ShowCommand) -> Result<Value, CliError> {
    let not_found = |what: &str, id: &str| {
        cli_error(
            "NotFound",
            format!("no {what} {id} in {}", store.path().display()),
        )
        .hint(format!(
            "`selfbuild list {what}s` shows the ids; --data-dir picks another store"
        ))
    };
    match command {
        ShowCommand::Cycle { id } => {
            let cycle_id = CycleId::parse(&id)
                .map_err(|e| cli_error("InvalidInput", e.to_string()).usage())?;
            let cycle = store
                .get_cycle(&cycle_id)
                .await?
                .ok_or_else(|| not_found("cycle", &id))?;
            let mut improvements = Vec::new();
            for rank in 1..=cycle.request.max_improvements.max(1) {
                let Ok(improvement_id) = ImprovementId::parse(&format!("{id}-{rank}")) else {
                    break;
                };
                match store.get_improvement(&improvement_id).await? {
                    Some(record) => improvements.push(improvement_line(&record)),
                    None => break,
                }
            }
            let trail = store.cycle_events(&cycle_id).await?;
            Ok(json!({
                "cycle": cycle_line(&cycle),
                "request": cycle.request,
                "improvements": improvements,
                "audit_trail": trail.iter().map(audit_line).collect::<Vec<_>>(),
            }))
        }
        ShowCommand::Improvement { id } => {
            let improvement_id = ImprovementId::parse(&id)
                .map_err(|e| cli_error("InvalidInput", e.to_string()).usage())?;
            let record = store
                .get_improvement(&improvement_id)
                .await?
                .ok_or_else(|| not_found("improvement", &id))?;
            let trail: Vec<Value> = store
                .cycle_events(&record.cycle_id)
                .await?
                .iter()
                .filter(|e| e.improvement_id.as_ref() == Some(&improvement_id))
                .map(audit_line)
                .collect();
            let pending = store.get_pending(&improvement_id).await?.map(|p| {
                json!({
                    "approvals_required": p.approvals_required,
                    "approvers": p.approvers,
                    "requested_at": utc(p.requested_at),
                })
            });
            let item = &record.item;
            Ok(json!({
                "improvement": improvement_line(&record),
                "opportunity": item.opportunity,
                "proposal": item.generated.as_ref().map(|g| &g.proposal),
                "validation": item.validation,
                "approval": item.approval,
                "pending_approval": pending,
                "deploy": item.deploy,
                "monitor": item.monitor,
                "audit_trail": trail,
            }))
        }
    }
}

/// `report`: writes the improvement's HTML page to `out` (default
/// `<data-dir>/reports/<id>.html`) and says where, with the number of looks it charts.
pub async fn report(
    store: &SqliteStore,
    data_dir: &std::path::Path,
    id: &str,
    out: Option<&std::path::Path>,
    degradation_threshold: f64,
) -> Result<Value, CliError> {
    let improvement_id =
        ImprovementId::parse(id).map_err(|e| cli_error("InvalidInput", e.to_string()).usage())?;
    let out = out.map_or_else(
        || {
            data_dir
                .join("reports")
                .join(format!("{improvement_id}.html"))
        },
        std::path::Path::to_path_buf,
    );
    let looks = crate::report::write_report(store, &improvement_id, &out, degradation_threshold)
        .await
        .map_err(|e| match e {
            crate::report::ReportError::Store(e) => CliError::from(e),
            e @ crate::report::ReportError::Write { .. } => {
                cli_error("InvalidInput", format!("--out {e}"))
            }
        })?
        .ok_or_else(|| {
            cli_error(
                "NotFound",
                format!("no improvement {id} in {}", store.path().display()),
            )
            .hint("`selfbuild list improvements` shows the ids; --data-dir picks another store")
        })?;
    Ok(json!({
        "improvement_id": improvement_id,
        "looks": looks,
        "report": out.display().to_string(),
    }))
}

fn audit_line(event: &selfbuild_core::audit::AuditEvent) -> Value {
    json!({
        "at": utc(event.at),
        "improvement_id": event.improvement_id,
        "actor": event.actor,
        "action": event.action.as_str(),
        "detail": event.detail,
    })
}
