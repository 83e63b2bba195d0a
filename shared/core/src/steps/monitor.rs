//! `monitor` (R11) and `summarize`: one look at the canary (audited as `canary_checked` for
//! `selfbuild report`'s charts; a halt in flight as `halted_in_flight`), and the finished
//! cycle's summary.

use serde::Deserialize;
use serde_json::Value;

use super::summary::{record_summary_metrics, summarize};
use super::{StepDeps, StepError, parse_payload, to_value};
use crate::canary::monitor;
use crate::config::Config;
use crate::cycle::CycleStatus;
use crate::ids::CycleId;
use crate::improvement::{ImprovementItem, Verdict};

/// The `monitor` function's requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum MonitorRequest {
    /// Compare canary and stable.
    Monitor {
        /// The Map item.
        item: Box<ImprovementItem>,
    },
    /// Summarise the finished cycle.
    Summarize {
        /// The whole execution state at the end.
        cycle: Value,
    },
}

/// Runs the `monitor` function on `payload`.
pub(super) async fn run(
    deps: StepDeps<'_>,
    config: &Config,
    payload: &Value,
) -> Result<Value, StepError> {
    match parse_payload::<MonitorRequest>(payload)? {
        MonitorRequest::Monitor { item } => {
            let report = monitor(deps.canary(), config, &item).await?;
            if matches!(report.verdict, Verdict::Halted | Verdict::Frozen) {
                deps.halted_in_flight(&item, &report).await?;
            } else {
                deps.canary_checked(&item, &report).await;
            }
            to_value(&report)
        }
        MonitorRequest::Summarize { cycle } => {
            let summary = summarize(&cycle, deps.clock.now())?;
            record_summary_metrics(&deps, &cycle, &summary);
            let status = if summary.failure.is_some() {
                CycleStatus::Failed
            } else {
                CycleStatus::Succeeded
            };
            let id = CycleId::parse(&summary.cycle_id)
                .map_err(|e| StepError::InvalidInput(format!("cycle.cycle_id: {e}")))?;
            deps.store
                .finish_cycle(&id, status, summary.finished_at)
                .await?;
            to_value(&summary)
        }
    }
}
