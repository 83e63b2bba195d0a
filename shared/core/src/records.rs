//! What the store keeps besides claims, cycles, approvals and audit events: each
//! improvement's latest state, LLM spend and provider health per day, agents and components
//! registered through MCP, and per-key tool-call accounting (rate limit and access log).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::change::RiskLevel;
use crate::error::StoreError;
use crate::ids::{CycleId, ImprovementId, TenantId};
use crate::improvement::ImprovementItem;

/// Which tenants' records a caller may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenantScope {
    /// Every tenant's and the system-wide records (a `*` key).
    All,
    /// Only this tenant's records.
    Only(TenantId),
}

impl TenantScope {
    /// Whether a record of `tenant` (none: system-wide) is visible.
    pub fn allows(&self, tenant: Option<&TenantId>) -> bool {
        match self {
            Self::All => true,
            Self::Only(own) => tenant == Some(own),
        }
    }

    /// The tenant this scope is limited to, if any.
    pub fn tenant(&self) -> Option<&TenantId> {
        match self {
            Self::All => None,
            Self::Only(t) => Some(t),
        }
    }
}

/// Where an improvement is; the last audited transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImprovementStatus {
    /// Validated; deploys next or waits for approval.
    Validated,
    /// Waiting for approvals.
    AwaitingApproval,
    /// Approved; deploys next.
    Approved,
    /// Rejected by validation, an approver or the approval timeout.
    Rejected,
    /// A validated code patch, stored with its findings for people to review (code delivery
    /// is not built yet).
    HeldForReview,
    /// The canary is live and watched.
    Deployed,
    /// The deploy waits for a low-traffic window.
    Deferred,
    /// The halt switch stopped it before it changed anything, or is rolling its canary back.
    Halted,
    /// The halt switch froze its canary at the traffic split (`HALT_IN_FLIGHT=freeze`).
    Frozen,
    /// Not deployed (dry run or nothing to change).
    Skipped,
    /// The canary took all traffic.
    Promoted,
    /// The baseline was restored.
    RolledBack,
    /// The canary never gave enough evidence: the baseline was restored, no gain claimed.
    Inconclusive,
    /// The deploy failed; what it left was undone (the audit says what, and why it failed).
    DeployFailed,
    /// A rollback (or the undo of a failed deploy) failed: needs a person; the audit says
    /// what it left.
    RollbackFailed,
}

impl ImprovementStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [Self; 15] = [
        Self::Validated,
        Self::AwaitingApproval,
        Self::Approved,
        Self::Rejected,
        Self::HeldForReview,
        Self::Deployed,
        Self::Deferred,
        Self::Halted,
        Self::Frozen,
        Self::Skipped,
        Self::Promoted,
        Self::RolledBack,
        Self::Inconclusive,
        Self::DeployFailed,
        Self::RollbackFailed,
    ];

    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validated => "validated",
            Self::AwaitingApproval => "awaiting_approval",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::HeldForReview => "held_for_review",
            Self::Deployed => "deployed",
            Self::Deferred => "deferred",
            Self::Halted => "halted",
            Self::Frozen => "frozen",
            Self::Skipped => "skipped",
            Self::Promoted => "promoted",
            Self::RolledBack => "rolled_back",
            Self::Inconclusive => "inconclusive",
            Self::DeployFailed => "deploy_failed",
            Self::RollbackFailed => "rollback_failed",
        }
    }

    /// The status with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Whether an improvement in this status has a deployment a rollback can undo.
    pub fn can_be_rolled_back(self) -> bool {
        matches!(
            self,
            Self::Deployed | Self::Frozen | Self::Promoted | Self::RollbackFailed
        )
    }
}

/// An improvement's latest state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImprovementRecord {
    /// `<cycle>-<rank>`.
    pub improvement_id: ImprovementId,
    /// Its cycle.
    pub cycle_id: CycleId,
    /// Its tenant, or none for system-wide.
    pub tenant_id: Option<TenantId>,
    /// The component it changes.
    pub component: String,
    /// Where it is.
    pub status: ImprovementStatus,
    /// The risk validation found.
    pub risk: Option<RiskLevel>,
    /// The change, in words.
    pub change: Option<String>,
    /// The Map item as the last step saw it (proposal, validation, deployment).
    pub item: ImprovementItem,
    /// When the status was set.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl ImprovementRecord {
    /// The record of `item` entering `status` at `at`.
    pub fn of_item(item: &ImprovementItem, status: ImprovementStatus, at: OffsetDateTime) -> Self {
        Self {
            improvement_id: item.improvement_id(),
            cycle_id: item.cycle_id.clone(),
            tenant_id: item.tenant_id.clone(),
            component: item.opportunity.component.as_str().to_owned(),
            status,
            risk: item.validation.as_ref().map(|v| v.risk),
            change: item.generated.as_ref().map(|g| {
                g.proposal
                    .change
                    .describe(item.opportunity.current.as_ref())
            }),
            item: item.clone(),
            updated_at: at,
        }
    }
}

/// A page of a listing.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    /// The records, in the listing's order.
    pub items: Vec<T>,
    /// Pass back to get the next page; none on the last page.
    pub next_cursor: Option<String>,
}

/// Which improvements to list: newest improvement id first.
#[derive(Debug, Clone, PartialEq)]
pub struct ImprovementQuery {
    /// Whose.
    pub scope: TenantScope,
    /// Only this status.
    pub status: Option<ImprovementStatus>,
    /// At most this many (1–100).
    pub limit: usize,
    /// From a previous page's `next_cursor`.
    pub cursor: Option<String>,
}

impl ImprovementQuery {
    /// The most records a page holds.
    pub const MAX_LIMIT: usize = 100;

    /// `limit`, clamped to 1–100.
    pub fn page_size(&self) -> usize {
        self.limit.clamp(1, Self::MAX_LIMIT)
    }

    /// The cursor, if it can be one a store returned: an improvement id
    /// (`[A-Za-z0-9_-]`, 1–120 characters); anything else is `StoreError::Rejected`.
    pub fn checked_cursor(&self) -> Result<Option<&str>, StoreError> {
        let Some(cursor) = self.cursor.as_deref() else {
            return Ok(None);
        };
        let id_like = (1..=120).contains(&cursor.len())
            && cursor
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
        if id_like {
            return Ok(Some(cursor));
        }
        let shown: String = cursor.chars().take(64).collect();
        Err(StoreError::Rejected(format!(
            "cursor {shown:?} is not one a listing returned"
        )))
    }
}

/// A provider's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go through.
    Closed,
    /// Calls are refused until the cool-down ends.
    Open,
    /// The next call is a trial.
    HalfOpen,
}

/// One LLM provider's circuit as the generate step last saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderHealth {
    /// `bedrock:<model>`, `openai:<model>`, …
    pub provider: String,
    /// Its circuit.
    pub state: CircuitState,
}

/// LLM spend and provider health of one UTC day.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DailyUsage {
    /// Dollars spent.
    pub cost_usd: f64,
    /// Proposals generated.
    pub calls: u64,
    /// The circuits after the latest call.
    pub providers: Vec<ProviderHealth>,
}

/// Another agent registered through MCP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentRecord {
    /// Unique within its tenant.
    pub name: String,
    /// Where it is reached.
    pub url: String,
    /// What it can do.
    pub capabilities: Vec<String>,
    /// Its MCP endpoint (Streamable HTTP), when selfbuild may call it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mcp_url: Option<String>,
    /// The secret holding the bearer key selfbuild calls it with (never the key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret_id: Option<String>,
    /// The functions it owns.
    #[serde(default)]
    pub components: Vec<String>,
    /// The agents (by name) it depends on; it hears of their changes.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// When its components are quiet (UTC), for deploys it gives no window for.
    #[serde(default)]
    pub low_traffic_windows: Vec<crate::agents::LowTrafficWindow>,
    /// Its deployment-window tool (none: [`crate::agents::DEFAULT_WINDOW_TOOL`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_tool: Option<String>,
    /// Its notification tool (none: [`crate::agents::DEFAULT_NOTIFY_TOOL`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_tool: Option<String>,
    /// Where its own metrics are (request count, errors, latency, resource use), read by
    /// analysis like a component's (seed R10.2); none: it has no telemetry of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<crate::agents::metrics::AgentMetrics>,
    /// Its tenant, or none for a fleet-wide agent.
    pub tenant_id: Option<TenantId>,
    /// The API key that registered it.
    pub registered_by: String,
    /// When it was (last) registered.
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
}

/// Where a requested component is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentStatus {
    /// Validated and recorded; ready to be built.
    Registered,
    /// Validated, but needs approval before it is built.
    AwaitingApproval,
    /// Declined; see the reason.
    Declined,
    /// No draft came (the LLM failed or refused); see the reason.
    Failed,
}

/// A component requested through MCP `generate_component`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComponentRecord {
    /// Unique within its tenant.
    pub name: String,
    /// `lambda_function`, …
    pub component_type: String,
    /// Its tenant, or none.
    pub tenant_id: Option<TenantId>,
    /// Where it is.
    pub status: ComponentStatus,
    /// What was asked for and what generate and validate made of it.
    pub detail: serde_json::Value,
    /// When it was recorded.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One MCP `tools/call`, as the access log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCallEvent {
    /// When it was answered.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The API key's id.
    pub key_id: String,
    /// The key's tenant, or none for a `*` key.
    pub tenant_id: Option<TenantId>,
    /// The tool.
    pub tool: String,
    /// `ok`, `error`, `denied` or `rate_limited`.
    pub outcome: String,
    /// In words (the error, when there was one).
    pub detail: String,
}

/// How long the access log keeps a tool call: a TTL on DynamoDB, lazy deletion offline.
pub const TOOL_CALL_RETENTION: time::Duration = time::Duration::days(30);

/// A change waiting for approval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingApproval {
    /// The improvement.
    pub improvement_id: ImprovementId,
    /// Its cycle.
    pub cycle_id: CycleId,
    /// Its tenant.
    pub tenant_id: Option<TenantId>,
    /// The token the execution waits on.
    pub task_token: String,
    /// The change, in words.
    pub change: String,
    /// The risk level.
    pub risk: String,
    /// Distinct approvals needed.
    pub approvals_required: u8,
    /// Who approved so far.
    pub approvers: Vec<String>,
    /// When it was asked for.
    #[serde(with = "time::serde::rfc3339")]
    pub requested_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agent_stored_before_the_peer_fields_still_reads() {
        let old = r#"{"name":"scout","url":"https://a.example","capabilities":["x"],
            "tenant_id":null,"registered_by":"k","registered_at":"2026-01-01T00:00:00Z"}"#;
        let agent: AgentRecord = serde_json::from_str(old).unwrap();
        assert_eq!(agent.mcp_url, None);
        assert!(agent.components.is_empty() && agent.low_traffic_windows.is_empty());
    }

    #[test]
    fn a_stored_window_that_no_longer_parses_names_itself() {
        let bad = r#"{"name":"scout","url":"https://a.example","capabilities":["x"],
            "low_traffic_windows":["25:00-01:00"],
            "tenant_id":null,"registered_by":"k","registered_at":"2026-01-01T00:00:00Z"}"#;
        let e = serde_json::from_str::<AgentRecord>(bad).unwrap_err();
        assert!(e.to_string().contains("25:00-01:00"), "{e}");
    }
}
