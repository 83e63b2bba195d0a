//! `generate_component` (R18): checks a request for a new component, declines it with a reason
//! and alternatives when it is incomplete, too risky or the system is too busy, and otherwise
//! registers it with a specification (settings, permissions, findings) and a status.
//!
//! Code generation for new components needs the code-patch validation that the validate step
//! does not have yet (it refuses code patches); until then the specification is derived from
//! the request by rules, not by the LLM, and nothing is deployed.

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::change::RiskLevel;
use selfbuild_core::records::{ComponentRecord, ComponentStatus, TenantScope};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::{ToolContext, ToolError, ToolSpec, function_name};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "generate_component",
    description: "Request a new component (lambda_function, step_function_task, event_consumer \
or scheduled_job) from requirements: name, description and capabilities. The request is \
checked for completeness, risk (from the capabilities) and current load; it is declined with \
the reason and suggested alternatives, or registered with its specification and status \
(registered, or awaiting_approval for high-risk capabilities).",
    scope: Scope::Trigger,
    read_only: false,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// What to build.
    component_type: ComponentType,
    /// What it must do.
    requirements: Requirements,
    /// Anything that helps: runtime, callers, data, expected traffic (a JSON object).
    #[serde(default)]
    context: Option<Map<String, Value>>,
    /// The tenant; a tenant key may only name its own.
    #[serde(default)]
    tenant_id: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
enum ComponentType {
    LambdaFunction,
    StepFunctionTask,
    EventConsumer,
    ScheduledJob,
}

impl ComponentType {
    fn as_str(self) -> &'static str {
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
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Requirements {
    /// The function name (letters, digits, '-', '_').
    name: String,
    /// What it does, in at least 20 characters.
    description: String,
    /// What it needs to be able to do, e.g. `read_dynamodb`, `call_http_api`, `send_email`.
    capabilities: Vec<String>,
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

fn declined(reason: String, alternatives: &[&str]) -> Value {
    json!({"decision": "declined", "reason": reason, "suggested_alternatives": alternatives})
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    let tenant_id = ctx.acting_tenant(args.tenant_id.as_deref())?;
    let config = &ctx.deps.config;
    let req = &args.requirements;

    if !config.component_generation {
        return Ok(declined(
            "component generation is turned off (ENABLE_COMPONENT_GENERATION=false)".into(),
            &[
                "ask an operator to enable component generation",
                "build the component by hand and let trigger_improvement_cycle tune it",
            ],
        ));
    }
    if let Some(halt) = ctx.deps.store.halt_state().await? {
        return Ok(declined(
            format!(
                "the halt switch is on ({}); nothing new is built",
                halt.reason
            ),
            &[
                "wait for resume",
                "ask an operator why the system is halted",
            ],
        ));
    }
    let name = match function_name("requirements.name", req.name.trim()) {
        Ok(name) => name,
        Err(e) => {
            return Ok(declined(
                e.to_string().replace("invalid arguments: ", ""),
                &[
                    "use a Lambda function name: letters, digits, '-' and '_', at most 64 characters",
                ],
            ));
        }
    };
    if req.description.trim().chars().count() < 20 {
        return Ok(declined(
            "requirements.description: too short to build from (at least 20 characters)".into(),
            &["describe inputs, outputs and who calls the component"],
        ));
    }
    let capabilities: Vec<String> = req
        .capabilities
        .iter()
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty())
        .collect();
    if capabilities.is_empty() || capabilities.len() > 20 {
        return Ok(declined(
            "requirements.capabilities: list 1–20 capabilities".into(),
            &["name what the component must access, e.g. read_dynamodb, call_http_api"],
        ));
    }
    let running = ctx
        .deps
        .store
        .running_cycles(&TenantScope::All, 1000)
        .await?
        .len();
    let capacity = config.max_concurrent_improvements as usize;
    if running >= capacity {
        return Ok(declined(
            format!("load too high: {running} cycle(s) running, the limit is {capacity}"),
            &["retry when running cycles finish (see get_system_status)"],
        ));
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
        return Ok(json!({
            "decision": "declined",
            "reason": "risk CRITICAL: the capabilities ask for account-wide or identity permissions",
            "risk": risk.as_str(),
            "findings": findings,
            "suggested_alternatives": [
                "split the component so no part needs IAM or admin permissions",
                "have an operator build it by hand",
            ],
        }));
    }
    let status = if risk >= RiskLevel::High {
        ComponentStatus::AwaitingApproval
    } else {
        ComponentStatus::Registered
    };
    let (memory_mb, timeout_seconds) = args.component_type.settings();
    let detail = json!({
        "description": req.description.trim(),
        "capabilities": capabilities,
        "context": args.context,
        "specification": {
            "runtime": "provided.al2023",
            "architecture": "arm64",
            "memory_mb": memory_mb,
            "timeout_seconds": timeout_seconds,
            "permissions": permissions,
        },
        "risk": risk.as_str(),
        "findings": findings,
        "requested_by": ctx.key.id,
    });
    let record = ComponentRecord {
        name: name.as_str().to_owned(),
        component_type: args.component_type.as_str().to_owned(),
        tenant_id,
        status,
        detail,
        created_at: ctx.now,
    };
    ctx.deps.store.put_component(&record).await?;
    Ok(json!({
        "decision": "accepted",
        "component": record,
    }))
}
