//! One improvement as it moves through the Map iteration of the state machine: each step
//! adds its result under its own key (`ResultPath`), so every step sees what came before.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::change::{CodeBase, LambdaSettings, Proposal, RiskLevel};
use crate::cycle::CycleMode;
use crate::deployment::CanaryDeployment;
use crate::ids::{CycleId, ImprovementId, TenantId};
use crate::opportunity::Opportunity;
use crate::telemetry::Quantiles;

/// The Map item: the cycle's context, the opportunity, and each step's result so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImprovementItem {
    /// The cycle.
    pub cycle_id: CycleId,
    /// The cycle's tenant, or none for system-wide.
    pub tenant_id: Option<TenantId>,
    /// Emergency or routine.
    pub mode: CycleMode,
    /// Propose and validate, never deploy.
    #[serde(default)]
    pub dry_run: bool,
    /// What to improve.
    pub opportunity: Opportunity,
    /// generate's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<Generated>,
    /// validate's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
    /// The approval decision, when one was needed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalDecision>,
    /// deploy's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy: Option<DeployOutcome>,
    /// monitor's latest report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor: Option<MonitorReport>,
}

impl ImprovementItem {
    /// `<cycle>-<rank>`: stable across retries of any step.
    pub fn improvement_id(&self) -> ImprovementId {
        ImprovementId::new(&self.cycle_id, self.opportunity.rank)
    }
}

/// Tokens and money one LLM call used.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct LlmUsage {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cost in US dollars.
    pub cost_usd: f64,
}

impl LlmUsage {
    /// The usage of two calls together.
    pub fn plus(self, other: Self) -> Self {
        Self {
            input_tokens: self.input_tokens.saturating_add(other.input_tokens),
            output_tokens: self.output_tokens.saturating_add(other.output_tokens),
            cost_usd: self.cost_usd + other.cost_usd,
        }
    }
}

/// generate's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    /// `<cycle>-<rank>`.
    pub improvement_id: ImprovementId,
    /// The proposal.
    pub proposal: Proposal,
    /// Which provider answered (`bedrock:<model>`, `rule-planner`, `recorded`, …).
    pub provider: String,
    /// What it cost (every answer, a repair round's included).
    pub usage: LlmUsage,
    /// 1 when a code patch that failed the checks was sent back once with the findings and
    /// this proposal is the answer; 0 otherwise.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub repair_rounds: u8,
}

fn is_zero<N: Default + PartialEq>(n: &N) -> bool {
    *n == N::default()
}

/// One thing validation found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The rule, e.g. `config_bounds`.
    pub rule: String,
    /// How bad it is.
    pub risk: RiskLevel,
    /// What is wrong, in words.
    pub message: String,
    /// Where (a config field, or `path:line:col`).
    pub location: Option<String>,
    /// No approval can ship a change with this finding (R8: secrets, exfiltration, code
    /// execution from data, syntax errors, a patch that does not apply).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub blocking: bool,
}

/// What happens to a validated change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValidationDecision {
    /// Deploy without a human.
    AutoDeploy,
    /// Wait for approvals.
    NeedsApproval,
    /// Never deploy.
    Rejected,
}

/// validate's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Validation {
    /// The overall risk.
    pub risk: RiskLevel,
    /// What the rules found.
    pub findings: Vec<Finding>,
    /// Distinct approvers needed (0, 1 or 2).
    pub approvals_required: u8,
    /// Auto-deploy, needs approval, or rejected.
    pub decision: ValidationDecision,
    /// The settings before the change.
    pub before: Option<LambdaSettings>,
    /// The settings after it (what deploy applies).
    pub after: Option<LambdaSettings>,
    /// The deployed code a code patch was judged against; none for other changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code_base: Option<CodeBase>,
    /// A code patch that passed but that selfbuild does not ship itself (a compiled runtime, a
    /// container image, an unknown runtime): stored with its findings for people to review.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub held_for_review: bool,
}

/// The outcome of waiting for approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    /// Approved (true) or rejected / timed out (false).
    pub approved: bool,
    /// Who decided.
    pub approvers: Vec<String>,
    /// Their comment or the reason.
    pub comment: Option<String>,
}

/// What deploy did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployStatus {
    /// A canary is live.
    Deployed,
    /// Traffic is too high; try again at `wait_until`.
    Deferred,
    /// The halt switch is on.
    Halted,
    /// Nothing deployed: a dry run, or deferred past `DEPLOY_MAX_DEFER_SECONDS` or
    /// [`MAX_DEFERRALS`](crate::canary::MAX_DEFERRALS) times.
    Skipped,
}

/// deploy's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployOutcome {
    /// What happened.
    pub status: DeployStatus,
    /// The canary, when deployed.
    pub deployment: Option<CanaryDeployment>,
    /// When to try again, when deferred.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub wait_until: Option<OffsetDateTime>,
    /// Why, in words.
    pub reason: String,
    /// Seconds between monitor checks (the state machine's Wait reads this).
    pub monitor_interval_seconds: u32,
    /// When the deploy was first deferred, while it waits (or when it gave up waiting).
    #[serde(
        with = "time::serde::rfc3339::option",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub deferred_since: Option<OffsetDateTime>,
    /// How many times it was deferred so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub deferrals: u32,
}

/// How the canary compares on one metric: pooled counts of both versions and the test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricVerdict {
    /// `error_rate`, `throttle_rate` or `slow_rate` (share slower than the latency threshold).
    pub metric: String,
    /// The stable version's rate.
    pub baseline: f64,
    /// The canary's rate.
    pub canary: f64,
    /// (canary − baseline) ÷ baseline; none on a zero baseline with a non-zero canary.
    pub delta: Option<f64>,
    /// One-sided p-value that the canary's rate exceeds (1 + `DEGRADATION_THRESHOLD`) × the
    /// stable's (exact conditional test on the counts).
    pub p_value: Option<f64>,
    /// One-sided p-value that the canary's rate is below the stable's.
    #[serde(default)]
    pub p_better: Option<f64>,
    /// Worse: a guardrail fired, or the test is significant at this look's level.
    pub degraded: bool,
    /// The stable version's events (errors, throttles, slow invocations).
    #[serde(default)]
    pub baseline_events: f64,
    /// The stable version's requests the rate is over.
    #[serde(default)]
    pub baseline_total: f64,
    /// The canary's events.
    #[serde(default)]
    pub canary_events: f64,
    /// The canary's requests the rate is over.
    #[serde(default)]
    pub canary_total: f64,
    /// 95 % Wilson interval of the stable version's rate.
    #[serde(default)]
    pub baseline_interval: Option<(f64, f64)>,
    /// 95 % Wilson interval of the canary's rate.
    #[serde(default)]
    pub canary_interval: Option<(f64, f64)>,
    /// The significance level this look tested at (its share of the α budget).
    #[serde(default)]
    pub alpha: f64,
    /// The rule that decided this metric, in words.
    #[serde(default)]
    pub rule: String,
    /// One-sided p-value that the canary is within `LATENCY_NON_INFERIORITY_MARGIN` of stable
    /// (the median share only): small enough at a decision point lets it be promoted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p_non_inferior: Option<f64>,
}

/// The canary's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// No metric is significantly worse.
    Healthy,
    /// At least one metric is significantly worse: roll back.
    Degraded,
    /// Not enough evidence yet (too few requests, or latency not shown within the margin);
    /// at the end of the extended window: keep stable.
    Inconclusive,
    /// The halt switch is on (`HALT_IN_FLIGHT=rollback`): roll back now.
    Halted,
    /// The halt switch is on (`HALT_IN_FLIGHT=freeze`): leave the split, stop watching.
    Frozen,
}

/// Pooled latency of both versions over the look's window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyReport {
    /// The stable version's duration quantiles.
    pub stable: Option<Quantiles>,
    /// The canary's duration quantiles.
    pub canary: Option<Quantiles>,
    /// Invocations slower than this count as slow (`LATENCY_SLO_MS`, else stable's p99).
    pub threshold_ms: Option<f64>,
    /// Stable's median: the canary's share above it tests a shift of every request.
    #[serde(default)]
    pub median_threshold_ms: Option<f64>,
    /// 95 % distribution-free intervals of stable's p50 and p99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_intervals: Option<QuantileIntervals>,
    /// The same for the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_intervals: Option<QuantileIntervals>,
    /// Stable's successful invocations alone; none where the source cannot tell them apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable_successes: Option<SuccessLatency>,
    /// The same for the canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_successes: Option<SuccessLatency>,
}

/// The latency of one version's successful invocations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SuccessLatency {
    /// Invocations that succeeded.
    pub requests: f64,
    /// Their duration quantiles, ms.
    pub quantiles: Quantiles,
    /// 95 % distribution-free intervals of their p50 and p99.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intervals: Option<QuantileIntervals>,
}

/// Confidence intervals of a version's pooled duration quantiles, ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct QuantileIntervals {
    /// The median's (low, high).
    pub p50: (f64, f64),
    /// The 99th percentile's (low, high).
    pub p99: (f64, f64),
}

/// monitor's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorReport {
    /// The verdict.
    pub verdict: Verdict,
    /// The monitor window has passed (promote if healthy).
    pub window_over: bool,
    /// When the check ran.
    #[serde(with = "time::serde::rfc3339")]
    pub checked_at: OffsetDateTime,
    /// Per-metric comparison.
    pub metrics: Vec<MetricVerdict>,
    /// Why the verdict, in words (the rule that fired).
    #[serde(default)]
    pub reason: String,
    /// Canary invocations in the window so far.
    #[serde(default)]
    pub canary_requests: f64,
    /// Stable invocations in the window so far.
    #[serde(default)]
    pub stable_requests: f64,
    /// The window was extended once for too few canary requests.
    #[serde(default)]
    pub extended: bool,
    /// The α budget spent up to and including this look.
    #[serde(default)]
    pub alpha_spent: f64,
    /// Pooled latency of both versions.
    #[serde(default)]
    pub latency: Option<LatencyReport>,
}

/// What promote did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PromoteStatus {
    /// All traffic goes to the canary.
    Promoted,
    /// Refused: the halt switch is on; the next look applies `HALT_IN_FLIGHT`.
    Halted,
    /// Refused: the canary was rolled back by hand while it was watched.
    RolledBack,
}

/// promote's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PromoteOutcome {
    /// What happened.
    pub status: PromoteStatus,
    /// Why, in words.
    pub reason: String,
}
