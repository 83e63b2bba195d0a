//! An improvement opportunity: a problem of one component, the evidence for it, and how much
//! fixing it is worth. analyze finds them; generate, validate and the records carry them.

use serde::{Deserialize, Serialize};

use crate::change::LambdaSettings;
use crate::ids::{ComponentId, TenantId};
use crate::logfacts::TraceGroup;

/// What kind of problem an opportunity fixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpportunityKind {
    /// Invocations hit the configured timeout (spread over the window or clustered in it).
    Timeouts,
    /// Invocations ran out of memory or came close (memory metric, `REPORT` lines).
    MemoryPressure,
    /// Invocations were throttled.
    Throttling,
    /// Application errors above the normal rate, or runtime exits (`Runtime.ExitError`).
    ErrorBurst,
    /// p99 latency rose in the latest part of the window.
    LatencyRegression,
}

impl OpportunityKind {
    /// The name used in ids and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeouts => "timeouts",
            Self::MemoryPressure => "memory_pressure",
            Self::Throttling => "throttling",
            Self::ErrorBurst => "error_burst",
            Self::LatencyRegression => "latency_regression",
        }
    }

    /// The share of affected requests a fix is expected to recover.
    pub fn expected_gain(self) -> f64 {
        match self {
            Self::Timeouts | Self::Throttling => 0.9,
            Self::MemoryPressure => 0.8,
            Self::ErrorBurst => 0.5,
            Self::LatencyRegression => 0.3,
        }
    }

    /// 3 for failed requests, 2 for slow ones.
    pub(crate) fn severity(self) -> u8 {
        match self {
            Self::LatencyRegression => 2,
            _ => 3,
        }
    }
}

/// How urgent an opportunity is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    /// Rare or mild.
    Low,
    /// Noticeable.
    Medium,
    /// Frequent.
    High,
    /// Frequent failures of a large share of requests.
    Critical,
}

/// One measured fact behind an opportunity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// What was measured.
    pub measure: String,
    /// Its value.
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
}

/// Something worth improving, with its evidence and score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opportunity {
    /// `<component>:<kind>`.
    pub id: String,
    /// 1 for the highest impact.
    pub rank: u32,
    /// The component.
    pub component: ComponentId,
    /// Its tenant, if any.
    pub tenant_id: Option<TenantId>,
    /// The problem.
    pub kind: OpportunityKind,
    /// What was measured.
    pub evidence: Vec<Evidence>,
    /// Share of affected requests a fix should recover (0–1).
    pub expected_gain: f64,
    /// Requests in the window that hit the problem.
    pub affected_requests: f64,
    /// expected_gain × affected_requests.
    pub impact_score: f64,
    /// Urgency from frequency and severity.
    pub priority: Priority,
    /// The function's settings when analysed, if it is a Lambda function.
    pub current: Option<LambdaSettings>,
    /// The most frequent error templates of the component.
    pub top_errors: Vec<String>,
    /// The component's most frequent stack traces, grouped by exception type and top frame,
    /// with their frames (file, line, function) for the prompt.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stack_traces: Vec<TraceGroup>,
    /// The agents whose own metrics found this problem (seed R10.2), when any did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<AgentFinding>,
}

/// An agent's own metric behind an opportunity on one of its components.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentFinding {
    /// The agent.
    pub agent: String,
    /// The metric read: `<namespace> <metric> <statistic>`.
    pub metric: String,
    /// What it showed, in words (`agent orders's p99 latency …`).
    pub description: String,
    /// Why this component of the agent's was chosen.
    pub attribution: String,
}
