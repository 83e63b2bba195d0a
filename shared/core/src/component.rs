//! New components agents ask for (R18): whether a request is complete, how risky its
//! capabilities are, whether the system can take it now, and the specification it is
//! registered with.
//!
//! Code generation for new components needs the code-patch pipeline; until then the
//! specification is derived from the request by rules, not by the LLM, and nothing is
//! deployed.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::change::RiskLevel;
use crate::ids::ComponentId;
use crate::records::ComponentStatus;
use crate::text::Excerpt;

/// What kind of component to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ComponentType {
    /// A Lambda function called directly.
    LambdaFunction,
    /// A Step Functions task.
    StepFunctionTask,
    /// A consumer of events.
    EventConsumer,
    /// A scheduled job.
    ScheduledJob,
}

impl ComponentType {
    /// The snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::LambdaFunction => "lambda_function",
            Self::StepFunctionTask => "step_function_task",
            Self::EventConsumer => "event_consumer",
            Self::ScheduledJob => "scheduled_job",
        }
    }

    /// Memory (MB) and timeout (s) to start from.
    fn settings(self) -> (u32, u32) {
        match self {
            Self::LambdaFunction => (512, 30),
            Self::StepFunctionTask => (512, 120),
            Self::EventConsumer => (256, 60),
            Self::ScheduledJob => (1024, 900),
        }
    }
}

/// What the component must do.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// The function name (letters, digits, '-', '_').
    pub name: String,
    /// What it does, in at least 20 characters.
    pub description: String,
    /// What it needs to be able to do, e.g. `read_dynamodb`, `call_http_api`, `send_email`.
    pub capabilities: Vec<String>,
}

/// A request for a new component.
#[derive(Debug, Clone)]
pub struct ComponentRequest {
    /// What to build.
    pub component_type: ComponentType,
    /// What it must do.
    pub requirements: Requirements,
    /// Anything that helps: runtime, callers, data, expected traffic.
    pub context: Option<Map<String, Value>>,
}

/// What the system is like when the request comes.
#[derive(Debug, Clone)]
pub struct Conditions {
    /// `ENABLE_COMPONENT_GENERATION`.
    pub enabled: bool,
    /// The halt switch's reason, when it is on.
    pub halted: Option<String>,
    /// Cycles running now.
    pub running_cycles: usize,
    /// `MAX_CONCURRENT_IMPROVEMENTS`.
    pub capacity: usize,
}

/// What becomes of a request.
#[derive(Debug, Clone, PartialEq)]
pub enum ComponentDecision {
    /// Not built: why, and what to do instead.
    Declined {
        /// Why.
        reason: String,
        /// The risk, when the capabilities were assessed.
        risk: Option<RiskLevel>,
        /// One finding per risky capability.
        findings: Vec<Value>,
        /// What to do instead.
        alternatives: Vec<&'static str>,
    },
    /// Registered with this specification.
    Accepted(ComponentPlan),
}

/// An accepted component.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentPlan {
    /// Its function name.
    pub name: ComponentId,
    /// The status it is registered with: awaiting approval from high risk on.
    pub status: ComponentStatus,
    /// The risk of its capabilities.
    pub risk: RiskLevel,
    /// What was asked for and the specification derived from it.
    pub detail: Value,
}

/// Capability words and the risk and AWS permissions they bring.
const CAPABILITY_RULES: &[(&str, RiskLevel, &str)] = &[
    ("iam", RiskLevel::Critical, "iam:*"),
    ("admin", RiskLevel::Critical, "*"),
    ("delete", RiskLevel::High, "delete actions"),
    ("payment", RiskLevel::High, "payment provider access"),
    ("pii", RiskLevel::High, "personal data access"),
    ("secret", RiskLevel::High, "secretsmanager:GetSecretValue"),
    ("write", RiskLevel::Medium, "write actions"),
    ("email", RiskLevel::Medium, "ses:SendEmail"),
    ("http", RiskLevel::Medium, "outbound network"),
    ("dynamodb", RiskLevel::Low, "dynamodb:GetItem/Query"),
    ("s3", RiskLevel::Low, "s3:GetObject"),
    ("read", RiskLevel::Low, "read actions"),
];

/// A Lambda function name (1–64 letters, digits, '-' or '_') as a component id, or an error
/// naming `field`.
pub fn function_name(field: &str, value: &str) -> Result<ComponentId, String> {
    let valid = (1..=64).contains(&value.len())
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'));
    if !valid {
        return Err(format!(
            "{field}: {} is not a Lambda function name (1–64 letters, digits, '-' or '_')",
            Excerpt(value)
        ));
    }
    ComponentId::parse(value).map_err(|e| format!("{field}: {e}"))
}

fn declined(reason: impl Into<String>, alternatives: &[&'static str]) -> ComponentDecision {
    ComponentDecision::Declined {
        reason: reason.into(),
        risk: None,
        findings: Vec::new(),
        alternatives: alternatives.to_vec(),
    }
}

/// Decides a request: declined when turned off, halted, incomplete, too busy or of critical
/// risk; otherwise a plan, awaiting approval from high risk on.
pub fn decide(request: &ComponentRequest, conditions: &Conditions) -> ComponentDecision {
    let req = &request.requirements;
    if !conditions.enabled {
        return declined(
            "component generation is turned off (ENABLE_COMPONENT_GENERATION=false)",
            &[
                "ask an operator to enable component generation",
                "build the component by hand and let trigger_improvement_cycle tune it",
            ],
        );
    }
    if let Some(reason) = &conditions.halted {
        return declined(
            format!("the halt switch is on ({reason}); nothing new is built"),
            &[
                "wait for resume",
                "ask an operator why the system is halted",
            ],
        );
    }
    let name = match function_name("requirements.name", req.name.trim()) {
        Ok(name) => name,
        Err(reason) => {
            return declined(
                reason,
                &[
                    "use a Lambda function name: letters, digits, '-' and '_', at most 64 characters",
                ],
            );
        }
    };
    if req.description.trim().chars().count() < 20 {
        return declined(
            "requirements.description: too short to build from (at least 20 characters)",
            &["describe inputs, outputs and who calls the component"],
        );
    }
    let capabilities: Vec<String> = req
        .capabilities
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    if capabilities.is_empty() || capabilities.len() > 20 {
        return declined(
            "requirements.capabilities: list 1–20 capabilities",
            &["name what the component must access, e.g. read_dynamodb, call_http_api"],
        );
    }
    if conditions.running_cycles >= conditions.capacity {
        return declined(
            format!(
                "load too high: {} cycle(s) running, the limit is {}",
                conditions.running_cycles, conditions.capacity
            ),
            &["retry when running cycles finish (see get_system_status)"],
        );
    }

    let mut risk = RiskLevel::Safe;
    let mut findings = Vec::new();
    let mut permissions = Vec::new();
    for capability in &capabilities {
        for (word, level, permission) in CAPABILITY_RULES {
            if capability.contains(word) {
                risk = risk.max(*level);
                permissions.push(*permission);
                findings.push(json!({
                    "rule": "capability_risk",
                    "risk": level.as_str(),
                    "message": format!("capability {capability:?} needs {permission}"),
                }));
            }
        }
    }
    permissions.sort_unstable();
    permissions.dedup();
    if risk == RiskLevel::Critical {
        return ComponentDecision::Declined {
            reason: "risk CRITICAL: the capabilities ask for account-wide or identity permissions"
                .into(),
            risk: Some(risk),
            findings,
            alternatives: vec![
                "split the component so no part needs IAM or admin permissions",
                "have an operator build it by hand",
            ],
        };
    }
    let status = if risk >= RiskLevel::High {
        ComponentStatus::AwaitingApproval
    } else {
        ComponentStatus::Registered
    };
    let (memory_mb, timeout_seconds) = request.component_type.settings();
    let detail = json!({
        "description": req.description.trim(),
        "capabilities": capabilities,
        "context": request.context,
        "specification": {
            "runtime": "provided.al2023",
            "architecture": "arm64",
            "memory_mb": memory_mb,
            "timeout_seconds": timeout_seconds,
            "permissions": permissions,
        },
        "risk": risk.as_str(),
        "findings": findings,
    });
    ComponentDecision::Accepted(ComponentPlan {
        name,
        status,
        risk,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(name: &str, capabilities: &[&str]) -> ComponentRequest {
        ComponentRequest {
            component_type: ComponentType::EventConsumer,
            requirements: Requirements {
                name: name.into(),
                description: "Consumes order events and writes a summary row".into(),
                capabilities: capabilities.iter().map(|c| (*c).to_owned()).collect(),
            },
            context: None,
        }
    }

    fn open() -> Conditions {
        Conditions {
            enabled: true,
            halted: None,
            running_cycles: 0,
            capacity: 3,
        }
    }

    #[test]
    fn the_riskiest_capability_sets_the_status() {
        let ComponentDecision::Accepted(plan) = decide(
            &request("orders-summary", &["read_dynamodb", "write_s3"]),
            &open(),
        ) else {
            panic!("declined");
        };
        assert_eq!(
            (plan.risk, plan.status),
            (RiskLevel::Medium, ComponentStatus::Registered)
        );
        assert_eq!(plan.detail["specification"]["memory_mb"], 256);
        let ComponentDecision::Accepted(plan) =
            decide(&request("refunds", &["delete_orders"]), &open())
        else {
            panic!("declined");
        };
        assert_eq!(plan.status, ComponentStatus::AwaitingApproval);
    }

    #[test]
    fn critical_busy_halted_or_bad_names_are_declined_with_a_reason() {
        let critical = decide(&request("grant", &["iam_admin"]), &open());
        assert!(matches!(
            critical,
            ComponentDecision::Declined {
                risk: Some(RiskLevel::Critical),
                ..
            }
        ));
        let busy = Conditions {
            running_cycles: 3,
            ..open()
        };
        let ComponentDecision::Declined { reason, .. } =
            decide(&request("orders-summary", &["read"]), &busy)
        else {
            panic!("accepted while busy");
        };
        assert!(reason.contains("load too high"), "{reason}");
        let halted = Conditions {
            halted: Some("incident 42".into()),
            ..open()
        };
        assert!(matches!(
            decide(&request("orders-summary", &["read"]), &halted),
            ComponentDecision::Declined { reason, .. } if reason.contains("incident 42")
        ));
        assert!(matches!(
            decide(&request("bad name!", &["read"]), &open()),
            ComponentDecision::Declined { reason, .. } if reason.starts_with("requirements.name:")
        ));
    }
}
