//! The cycle's summary: each improvement's outcome, the counts, and the metrics the
//! operations alarms read.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::{StepDeps, StepError, parse_payload};
use crate::health::skip::SkippedComponent;
use crate::ids::ImprovementId;
use crate::improvement::{Generated, ImprovementItem, Validation};
use crate::ports::Unit;

/// How an improvement's path through the state machine ended: the `$.outcome` its Map
/// iteration's last state writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemOutcome {
    /// The canary took all traffic.
    Promoted,
    /// The canary was rolled back.
    RolledBack,
    /// The window ended without evidence; stable kept.
    Inconclusive,
    /// The halt switch froze the canary where it was.
    Frozen,
    /// A human or validation rejected the change.
    Rejected,
    /// Nobody approved in time.
    ApprovalTimedOut,
    /// A validated code patch was stored for review, not deployed.
    HeldForReview,
    /// Nothing to deploy (the deploy status).
    Skipped,
    /// The deploy waits for lower traffic (the deploy status).
    Deferred,
    /// The halt switch stopped the item.
    Halted,
    /// generate failed.
    GenerateFailed,
    /// validate failed.
    ValidateFailed,
    /// The approval wait failed.
    ApprovalFailed,
    /// deploy, monitor or promote failed.
    DeployFailed,
    /// rollback failed.
    RollbackFailed,
    /// No outcome, or one this version does not know.
    #[serde(other)]
    Unknown,
}

impl ItemOutcome {
    /// Every outcome but `Unknown`.
    pub const KNOWN: [Self; 15] = [
        Self::Promoted,
        Self::RolledBack,
        Self::Inconclusive,
        Self::Frozen,
        Self::Rejected,
        Self::ApprovalTimedOut,
        Self::HeldForReview,
        Self::Skipped,
        Self::Deferred,
        Self::Halted,
        Self::GenerateFailed,
        Self::ValidateFailed,
        Self::ApprovalFailed,
        Self::DeployFailed,
        Self::RollbackFailed,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Promoted => "promoted",
            Self::RolledBack => "rolled_back",
            Self::Inconclusive => "inconclusive",
            Self::Frozen => "frozen",
            Self::Rejected => "rejected",
            Self::ApprovalTimedOut => "approval_timed_out",
            Self::HeldForReview => "held_for_review",
            Self::Skipped => "skipped",
            Self::Deferred => "deferred",
            Self::Halted => "halted",
            Self::GenerateFailed => "generate_failed",
            Self::ValidateFailed => "validate_failed",
            Self::ApprovalFailed => "approval_failed",
            Self::DeployFailed => "deploy_failed",
            Self::RollbackFailed => "rollback_failed",
            Self::Unknown => "unknown",
        }
    }

    /// The outcome with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::KNOWN.into_iter().find(|o| o.as_str() == name)
    }

    /// A step failed.
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Self::GenerateFailed
                | Self::ValidateFailed
                | Self::ApprovalFailed
                | Self::DeployFailed
                | Self::RollbackFailed
        )
    }
}

/// One improvement's line in the cycle summary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImprovementSummary {
    /// `<cycle>-<rank>`.
    pub improvement_id: ImprovementId,
    /// The opportunity, `<component>:<kind>`.
    pub opportunity: String,
    /// The change, in words.
    pub change: Option<String>,
    /// The risk validation found.
    pub risk: Option<String>,
    /// auto_deploy, needs_approval or rejected.
    pub decision: Option<String>,
    /// How it ended.
    pub outcome: ItemOutcome,
    /// LLM cost in US dollars.
    pub cost_usd: f64,
}

/// The summary step's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CycleSummary {
    /// The cycle.
    pub cycle_id: String,
    /// When it was written.
    #[serde(with = "time::serde::rfc3339")]
    pub finished_at: OffsetDateTime,
    /// Opportunities found.
    pub opportunities: usize,
    /// Per improvement.
    pub improvements: Vec<ImprovementSummary>,
    /// Promoted improvements.
    pub promoted: usize,
    /// Rolled-back improvements.
    pub rolled_back: usize,
    /// Improvements that ended inconclusive (stable kept, no gain claimed).
    #[serde(default)]
    pub inconclusive: usize,
    /// A step that failed the whole cycle (analysis), if any.
    pub failure: Option<Value>,
    /// Disabled components the cycle left out, with why and how to re-enable them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedComponent>,
}

/// Builds the summary from the execution state the state machine passes at the end.
pub fn summarize(cycle: &Value, now: OffsetDateTime) -> Result<CycleSummary, StepError> {
    let cycle_id = cycle
        .get("cycle_id")
        .and_then(Value::as_str)
        .ok_or_else(|| StepError::InvalidInput("cycle.cycle_id: missing".into()))?
        .to_owned();
    let opportunities = cycle
        .pointer("/analysis/opportunities")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let skipped = match cycle.pointer("/analysis/skipped") {
        Some(raw) => parse_payload(raw)?,
        None => Vec::new(),
    };
    let mut improvements = Vec::new();
    for raw in cycle
        .get("improvements")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let item: ImprovementItem = parse_payload(raw)?;
        let outcome = raw
            .get("outcome")
            .and_then(Value::as_str)
            .and_then(ItemOutcome::parse)
            .unwrap_or(ItemOutcome::Unknown);
        let generated: Option<&Generated> = item.generated.as_ref();
        let validation: Option<&Validation> = item.validation.as_ref();
        improvements.push(ImprovementSummary {
            improvement_id: item.improvement_id(),
            opportunity: item.opportunity.id.clone(),
            change: generated.map(|g| {
                g.proposal
                    .change
                    .describe(item.opportunity.current.as_ref())
            }),
            risk: validation.map(|v| v.risk.as_str().to_owned()),
            decision: validation.and_then(|v| {
                serde_json::to_value(v.decision)
                    .ok()
                    .and_then(|d| d.as_str().map(str::to_owned))
            }),
            outcome,
            cost_usd: generated.map_or(0.0, |g| g.usage.cost_usd),
        });
    }
    let count = |o: ItemOutcome| improvements.iter().filter(|i| i.outcome == o).count();
    Ok(CycleSummary {
        promoted: count(ItemOutcome::Promoted),
        rolled_back: count(ItemOutcome::RolledBack),
        inconclusive: count(ItemOutcome::Inconclusive),
        cycle_id,
        finished_at: now,
        opportunities,
        improvements,
        failure: cycle.get("failure").cloned(),
        skipped,
    })
}

/// The cycle's outcome as the operations alarms read it: improvements attempted, failed,
/// promoted and rolled back, and the cycle's duration from its request.
pub(super) fn record_summary_metrics(deps: &StepDeps<'_>, cycle: &Value, summary: &CycleSummary) {
    let failed = summary
        .improvements
        .iter()
        .filter(|i| i.outcome.is_failure())
        .count() as f64;
    deps.metric(
        "ImprovementsAttempted",
        Unit::Count,
        summary.improvements.len() as f64,
    );
    deps.metric("ImprovementsFailed", Unit::Count, failed);
    deps.metric("ImprovementsPromoted", Unit::Count, summary.promoted as f64);
    deps.metric(
        "ImprovementsRolledBack",
        Unit::Count,
        summary.rolled_back as f64,
    );
    let requested = cycle
        .get("requested_at")
        .and_then(Value::as_str)
        .and_then(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
    if let Some(requested) = requested {
        let ms = (summary.finished_at - requested)
            .whole_milliseconds()
            .max(0) as f64;
        deps.metric("CycleDuration", Unit::Milliseconds, ms);
    }
}
