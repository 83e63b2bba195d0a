//! The R8 policy for code patches: which findings block outright, how scope raises the
//! risk, and what a risk needs (allow, one or two approvals).
//!
//! The pipeline that finds problems (`selfbuild-validate`) is a crate of its own, with the
//! parsers; it hands this module a [`FindingSummary`] per finding. The policy stays here so
//! that the validate step, the CLI and any later caller decide the same way.

use serde::{Deserialize, Serialize};

use crate::change::RiskLevel;
use crate::improvement::ValidationDecision;

/// The rule ids whose findings block a patch outright: no approval can ship it.
///
/// Secrets, exfiltration, code execution from data and syntax errors (R8); a patch that does
/// not apply cannot ship either.
pub const BLOCKING_RULES: [&str; 5] = [
    "secret",
    "exfiltration",
    "code_execution",
    "syntax",
    "patch_applies",
];

/// The rule id of an edit to a protected path: at least CRITICAL, never automatic.
pub const PROTECTED_PATH_RULE: &str = "protected_path";

/// More files than this in one patch raise its risk to at least MEDIUM.
pub const MANY_FILES: usize = 5;

/// True when a finding of `rule` blocks the patch outright.
pub fn rule_blocks(rule: &str) -> bool {
    BLOCKING_RULES.contains(&rule)
}

/// What the policy needs to know of one finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FindingSummary {
    /// The rule id, e.g. `sql_injection`.
    pub rule: String,
    /// How bad the finding is.
    pub risk: RiskLevel,
    /// Whether it blocks the patch (a blocking rule's finding on what the patch changes).
    pub blocking: bool,
}

/// How far a patch reaches beyond its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PatchScope {
    /// Files the patch touches.
    pub files: usize,
    /// Whether it changes a handler (the configured one or a conventional entry point).
    pub handler_changed: bool,
    /// Whether it adds a dependency (a package manifest entry).
    pub new_dependency: bool,
}

/// The configuration the decision reads (`ENABLE_AUTONOMOUS_IMPROVEMENTS`,
/// `MEDIUM_RISK_APPROVALS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodePolicy {
    /// SAFE/LOW patches ship without a person.
    pub autonomous: bool,
    /// Approvals a MEDIUM patch needs (0 or 1).
    pub medium_risk_approvals: u8,
}

impl CodePolicy {
    /// The policy of a configuration.
    pub fn from_config(config: &crate::Config) -> Self {
        Self {
            autonomous: config.autonomous_improvements,
            medium_risk_approvals: config.medium_risk_approvals,
        }
    }
}

/// What happens to a validated patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CodeDecision {
    /// Ships without a person.
    Allow,
    /// Waits for `approvals_required` approvers.
    NeedsApproval,
    /// Never ships, whoever approves.
    Block,
}

impl CodeDecision {
    /// `allow`, `needs_approval` or `block`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::NeedsApproval => "needs_approval",
            Self::Block => "block",
        }
    }
}

impl From<CodeDecision> for ValidationDecision {
    fn from(decision: CodeDecision) -> Self {
        match decision {
            CodeDecision::Allow => Self::AutoDeploy,
            CodeDecision::NeedsApproval => Self::NeedsApproval,
            CodeDecision::Block => Self::Rejected,
        }
    }
}

/// The policy's answer for a patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CodeVerdict {
    /// Allow, needs approval, or block.
    pub decision: CodeDecision,
    /// The overall risk: the highest finding, raised by scope.
    pub risk: RiskLevel,
    /// Distinct approvers needed (0, 1 or 2); 0 when blocked.
    pub approvals_required: u8,
}

fn step_up(risk: RiskLevel) -> RiskLevel {
    match risk {
        RiskLevel::Safe => RiskLevel::Low,
        RiskLevel::Low => RiskLevel::Medium,
        RiskLevel::Medium => RiskLevel::High,
        RiskLevel::High | RiskLevel::Critical => RiskLevel::Critical,
    }
}

/// The overall risk: the highest finding; a protected path makes it CRITICAL; a handler
/// change makes it at least LOW and raises a MEDIUM-or-worse risk one step; more than
/// [`MANY_FILES`] files or a new dependency make it at least MEDIUM.
pub fn overall_risk(findings: &[FindingSummary], scope: &PatchScope) -> RiskLevel {
    let mut risk = findings
        .iter()
        .map(|f| f.risk)
        .max()
        .unwrap_or(RiskLevel::Safe);
    if scope.handler_changed {
        risk = if risk >= RiskLevel::Medium {
            step_up(risk)
        } else {
            risk.max(RiskLevel::Low)
        };
    }
    if scope.files > MANY_FILES || scope.new_dependency {
        risk = risk.max(RiskLevel::Medium);
    }
    if findings.iter().any(|f| f.rule == PROTECTED_PATH_RULE) {
        risk = RiskLevel::Critical;
    }
    risk
}

/// Approvers a change of `risk` needs (R8): SAFE/LOW none when autonomous (else one),
/// MEDIUM `medium_risk_approvals` (at least one when not autonomous), HIGH one, CRITICAL two.
pub fn approvals_for(risk: RiskLevel, policy: &CodePolicy) -> u8 {
    let not_autonomous = u8::from(!policy.autonomous);
    match risk {
        RiskLevel::Safe | RiskLevel::Low => not_autonomous,
        RiskLevel::Medium => policy.medium_risk_approvals.max(not_autonomous),
        RiskLevel::High => 1,
        RiskLevel::Critical => 2,
    }
}

/// Decides a patch (R8): block when a finding blocks; else SAFE/LOW allow (when autonomous),
/// MEDIUM needs `medium_risk_approvals`, HIGH one approval, CRITICAL two.
pub fn judge(findings: &[FindingSummary], scope: &PatchScope, policy: &CodePolicy) -> CodeVerdict {
    let risk = overall_risk(findings, scope);
    if findings.iter().any(|f| f.blocking) {
        return CodeVerdict {
            decision: CodeDecision::Block,
            risk,
            approvals_required: 0,
        };
    }
    let approvals_required = approvals_for(risk, policy);
    CodeVerdict {
        decision: if approvals_required == 0 {
            CodeDecision::Allow
        } else {
            CodeDecision::NeedsApproval
        },
        risk,
        approvals_required,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(rule: &str, risk: RiskLevel) -> FindingSummary {
        FindingSummary {
            rule: rule.to_owned(),
            risk,
            blocking: rule_blocks(rule),
        }
    }

    const AUTO: CodePolicy = CodePolicy {
        autonomous: true,
        medium_risk_approvals: 1,
    };
    const ONE_FILE: PatchScope = PatchScope {
        files: 1,
        handler_changed: false,
        new_dependency: false,
    };

    #[test]
    fn risk_maps_to_approvals() {
        let cases = [
            (RiskLevel::Safe, CodeDecision::Allow, 0),
            (RiskLevel::Low, CodeDecision::Allow, 0),
            (RiskLevel::Medium, CodeDecision::NeedsApproval, 1),
            (RiskLevel::High, CodeDecision::NeedsApproval, 1),
            (RiskLevel::Critical, CodeDecision::NeedsApproval, 2),
        ];
        for (risk, decision, approvals) in cases {
            let v = judge(&[f("sql_injection", risk)], &ONE_FILE, &AUTO);
            assert_eq!(
                (v.decision, v.approvals_required),
                (decision, approvals),
                "{risk:?}"
            );
        }
        let lenient = CodePolicy {
            medium_risk_approvals: 0,
            ..AUTO
        };
        let v = judge(
            &[f("import_allowlist", RiskLevel::Medium)],
            &ONE_FILE,
            &lenient,
        );
        assert_eq!(v.decision, CodeDecision::Allow);
    }

    #[test]
    fn without_autonomy_nothing_ships_alone() {
        let manual = CodePolicy {
            autonomous: false,
            medium_risk_approvals: 0,
        };
        let v = judge(&[], &ONE_FILE, &manual);
        assert_eq!(
            (v.decision, v.approvals_required),
            (CodeDecision::NeedsApproval, 1)
        );
    }

    #[test]
    fn blocking_rules_block_whatever_their_risk() {
        for rule in BLOCKING_RULES {
            let v = judge(&[f(rule, RiskLevel::Low)], &ONE_FILE, &AUTO);
            assert_eq!(v.decision, CodeDecision::Block, "{rule}");
        }
        // A finding of a blocking rule marked not blocking (pre-existing) does not block.
        let pre = FindingSummary {
            rule: "code_execution".into(),
            risk: RiskLevel::Low,
            blocking: false,
        };
        assert_eq!(
            judge(&[pre], &ONE_FILE, &AUTO).decision,
            CodeDecision::Allow
        );
    }

    #[test]
    fn a_protected_path_is_critical_and_needs_two() {
        let v = judge(&[f(PROTECTED_PATH_RULE, RiskLevel::Low)], &ONE_FILE, &AUTO);
        assert_eq!(v.risk, RiskLevel::Critical);
        assert_eq!(v.approvals_required, 2);
    }

    #[test]
    fn scope_raises_the_risk() {
        let handler = PatchScope {
            handler_changed: true,
            ..ONE_FILE
        };
        assert_eq!(overall_risk(&[], &handler), RiskLevel::Low);
        assert_eq!(
            overall_risk(&[f("tls_verification", RiskLevel::High)], &handler),
            RiskLevel::Critical
        );
        let many = PatchScope {
            files: MANY_FILES + 1,
            ..ONE_FILE
        };
        assert_eq!(overall_risk(&[], &many), RiskLevel::Medium);
        let dep = PatchScope {
            new_dependency: true,
            ..ONE_FILE
        };
        assert_eq!(overall_risk(&[], &dep), RiskLevel::Medium);
    }
}
