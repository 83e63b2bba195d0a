//! Improvement cycles: what intake asks the orchestrator to run, and how it is recorded.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::alarm::AlarmKind;
use crate::ids::{ComponentId, CycleId, TenantId};

/// How urgent a cycle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleMode {
    /// Started by a critical alarm: analyse the minutes around it, act first.
    Emergency,
    /// Started by the schedule or a non-critical alarm.
    Routine,
}

impl CycleMode {
    /// `emergency` or `routine`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Emergency => "emergency",
            Self::Routine => "routine",
        }
    }
}

/// What started a cycle.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// An alarm in ALARM, seen in an event or by the poller.
    Alarm {
        /// The alarm's name.
        name: String,
        /// The alarm's ARN, when known.
        arn: Option<String>,
        /// The kind of alarm.
        alarm_kind: AlarmKind,
        /// CloudWatch's reason for the state.
        reason: Option<String>,
        /// How intake learned of it.
        seen_by: SeenBy,
    },
    /// A schedule rule.
    Schedule {
        /// The rule's name, when known.
        rule: Option<String>,
    },
    /// Error lines in a CloudWatch Logs subscription delivery: a template never seen before
    /// for the function, or one whose rate jumped.
    LogTemplate {
        /// The log group delivered.
        log_group: String,
        /// New or jumped.
        signal: crate::logstream::LogSignalKind,
        /// The template (the first, when several).
        template: String,
        /// Its lines in the current 5-minute window.
        count: u64,
    },
    /// Asked for by an agent or a person (MCP `trigger_improvement_cycle`).
    Manual {
        /// Who asked (`key:<api key id>`).
        requested_by: String,
    },
}

/// How intake learned of an alarm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SeenBy {
    /// An EventBridge state-change event.
    Event,
    /// The `DescribeAlarms` poller.
    Poll,
}

/// A half-open time range `[start, end)` of telemetry to analyse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeWindow {
    /// Inclusive start.
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    /// Exclusive end.
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
}

/// The input of the improvement-cycle state machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleRequest {
    /// The cycle, also the execution name.
    pub cycle_id: CycleId,
    /// Emergency or routine.
    pub mode: CycleMode,
    /// The tenant, or none for system-wide.
    pub tenant_id: Option<TenantId>,
    /// The components in scope; empty means the whole fleet.
    pub components: Vec<ComponentId>,
    /// The telemetry window to analyse.
    pub analysis_window: TimeWindow,
    /// The most opportunities to act on.
    pub max_improvements: u32,
    /// The Map state's MaxConcurrency.
    pub max_concurrency: u32,
    /// Analyse and propose, but never deploy.
    pub dry_run: bool,
    /// What started it.
    pub trigger: Trigger,
    /// The `tenant#component` dedup key that admitted it.
    pub dedup_key: String,
    /// When intake decided to start it.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
}

/// Where a cycle is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CycleStatus {
    /// Handed to the orchestrator, not finished.
    Running,
    /// Finished; see its summary.
    Succeeded,
    /// Ended with an error.
    Failed,
}

/// A cycle as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleRecord {
    /// What was asked for.
    pub request: CycleRequest,
    /// Where it is now.
    pub status: CycleStatus,
    /// The orchestrator's handle (an execution ARN on AWS).
    pub execution_ref: String,
    /// When it was handed to the orchestrator.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
}
