//! Audit events (R13): every transition of an improvement, who made it, before and after.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::ids::{CycleId, ImprovementId, TenantId};
use crate::records::ImprovementStatus;

/// One transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The tenant, or none for system-wide.
    pub tenant_id: Option<TenantId>,
    /// The cycle.
    pub cycle_id: CycleId,
    /// The improvement, when the event is about one.
    pub improvement_id: Option<ImprovementId>,
    /// Who: `selfbuild:<function>`, or the approver.
    pub actor: String,
    /// What happened.
    pub action: AuditAction,
    /// State before, when it changed.
    pub before: Option<Value>,
    /// State after.
    pub after: Option<Value>,
    /// In words.
    pub detail: String,
}

/// What an audit event records; stored by its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A proposal passed validation.
    Validated,
    /// A proposal waits for a human.
    ApprovalRequested,
    /// A human approved.
    Approved,
    /// A human rejected.
    Rejected,
    /// A validated code patch was stored for people to review, not deployed.
    HeldForReview,
    /// The approval window closed unanswered: rejected by the timeout.
    ApprovalExpired,
    /// generate refused the model's proposal.
    ProposalRefused,
    /// The halt switch stopped generate.
    GenerateHalted,
    /// The canary was deployed.
    Deployed,
    /// The deploy waits for lower traffic.
    DeployDeferred,
    /// The halt switch stopped the deploy.
    DeployHalted,
    /// Nothing to deploy.
    DeploySkipped,
    /// The halt switch found a canary in flight.
    HaltedInFlight,
    /// One look at the canary: its report (`after`) and the look before it (`before`).
    CanaryChecked,
    /// Deployed code is in no source repository until the stored patch is merged there.
    SourceDrifted,
    /// The canary took all traffic.
    Promoted,
    /// The baseline was restored after a degradation or by hand.
    RolledBack,
    /// The baseline was restored for want of evidence.
    Inconclusive,
    /// The deploy failed; what it left was undone (or left for a human).
    DeployFailed,
    /// A rollback, or the undo of a failed deploy, failed; the event says what it left.
    RollbackFailed,
    /// The cycle left out a component the health pass disabled.
    ComponentSkipped,
    /// A dependent agent received the notice of a change (`after`: agent, tool, attempts).
    AgentNotified,
    /// Every attempt to notify a dependent agent failed (`after` says why); the cycle goes on.
    AgentNotificationFailed,
}

impl AuditAction {
    /// Every action.
    pub const ALL: [Self; 23] = [
        Self::Validated,
        Self::ApprovalRequested,
        Self::Approved,
        Self::Rejected,
        Self::HeldForReview,
        Self::ApprovalExpired,
        Self::ProposalRefused,
        Self::GenerateHalted,
        Self::Deployed,
        Self::DeployDeferred,
        Self::DeployHalted,
        Self::DeploySkipped,
        Self::HaltedInFlight,
        Self::CanaryChecked,
        Self::SourceDrifted,
        Self::Promoted,
        Self::RolledBack,
        Self::Inconclusive,
        Self::DeployFailed,
        Self::RollbackFailed,
        Self::ComponentSkipped,
        Self::AgentNotified,
        Self::AgentNotificationFailed,
    ];

    /// The snake_case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Validated => "validated",
            Self::ApprovalRequested => "approval_requested",
            Self::Approved => "approved",
            Self::Rejected => "rejected",
            Self::HeldForReview => "held_for_review",
            Self::ApprovalExpired => "approval_expired",
            Self::ProposalRefused => "proposal_refused",
            Self::GenerateHalted => "generate_halted",
            Self::Deployed => "deployed",
            Self::DeployDeferred => "deploy_deferred",
            Self::DeployHalted => "deploy_halted",
            Self::DeploySkipped => "deploy_skipped",
            Self::HaltedInFlight => "halted_in_flight",
            Self::CanaryChecked => "canary_checked",
            Self::SourceDrifted => "source_drifted",
            Self::Promoted => "promoted",
            Self::RolledBack => "rolled_back",
            Self::Inconclusive => "inconclusive",
            Self::DeployFailed => "deploy_failed",
            Self::RollbackFailed => "rollback_failed",
            Self::ComponentSkipped => "component_skipped",
            Self::AgentNotified => "agent_notified",
            Self::AgentNotificationFailed => "agent_notification_failed",
        }
    }

    /// The status the action leaves an improvement in; none when it leaves it as it is.
    pub fn status_after(self) -> Option<ImprovementStatus> {
        Some(match self {
            Self::Validated => ImprovementStatus::Validated,
            Self::ApprovalRequested => ImprovementStatus::AwaitingApproval,
            Self::Approved => ImprovementStatus::Approved,
            Self::Rejected | Self::ApprovalExpired | Self::ProposalRefused => {
                ImprovementStatus::Rejected
            }
            Self::HeldForReview => ImprovementStatus::HeldForReview,
            Self::Deployed => ImprovementStatus::Deployed,
            Self::DeployDeferred => ImprovementStatus::Deferred,
            Self::DeployHalted | Self::GenerateHalted => ImprovementStatus::Halted,
            Self::DeploySkipped => ImprovementStatus::Skipped,
            Self::Promoted => ImprovementStatus::Promoted,
            Self::RolledBack => ImprovementStatus::RolledBack,
            Self::Inconclusive => ImprovementStatus::Inconclusive,
            Self::DeployFailed => ImprovementStatus::DeployFailed,
            Self::RollbackFailed => ImprovementStatus::RollbackFailed,
            Self::HaltedInFlight
            | Self::CanaryChecked
            | Self::SourceDrifted
            | Self::ComponentSkipped
            | Self::AgentNotified
            | Self::AgentNotificationFailed => return None,
        })
    }

    /// The step function that performs the action when selfbuild does.
    pub fn step_function(self) -> &'static str {
        match self {
            Self::ComponentSkipped => "analyze",
            Self::ProposalRefused | Self::GenerateHalted => "generate",
            Self::HaltedInFlight | Self::CanaryChecked => "monitor",
            Self::Validated
            | Self::ApprovalRequested
            | Self::Approved
            | Self::Rejected
            | Self::HeldForReview
            | Self::ApprovalExpired => "validate",
            Self::RolledBack | Self::Inconclusive | Self::DeployFailed | Self::RollbackFailed => {
                "rollback"
            }
            Self::Deployed
            | Self::DeployDeferred
            | Self::DeployHalted
            | Self::DeploySkipped
            | Self::SourceDrifted
            | Self::Promoted
            | Self::AgentNotified
            | Self::AgentNotificationFailed => "deploy",
        }
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_stored_by_their_names() {
        for action in AuditAction::ALL {
            let json = serde_json::to_value(action).unwrap();
            assert_eq!(json, action.as_str());
            assert_eq!(serde_json::from_value::<AuditAction>(json).unwrap(), action);
        }
        assert!(serde_json::from_str::<AuditAction>("\"cycle_finished\"").is_err());
    }
}
