//! generate (R7): an opportunity and its evidence → a typed proposal from the Llm port.

use serde_json::{Value, json};
use tracing::{info, instrument};

use crate::change::Proposal;
use crate::improvement::{Generated, ImprovementItem};
use crate::ports::{Llm, LlmError, LlmRequest};
use crate::text::Escaped;

/// The name of the one tool every LLM provider is forced to call; its input is a [`Proposal`].
pub const PROPOSAL_TOOL_NAME: &str = "propose_change";

/// Parses the input of a forced [`PROPOSAL_TOOL_NAME`] call into a proposal, for any provider;
/// a mismatch is an `InvalidAnswer` that starts with `provider` and names the field
/// (`change.config`, `expected_gain`, …). Ranges are [`validate`](crate::validate)'s job.
pub fn parse_proposal(provider: &str, input: Value) -> Result<Proposal, LlmError> {
    serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        LlmError::InvalidAnswer(format!(
            "{provider}: the {PROPOSAL_TOOL_NAME} input{at} is not a proposal: {}",
            e.inner()
        ))
    })
}

/// The JSON Schema of a proposal: the input schema of the forced tool call.
pub fn proposal_schema() -> Value {
    json!({
        "type": "object",
        "additionalProperties": false,
        "required": ["change", "rationale", "expected_gain", "claimed_risk"],
        "properties": {
            "change": {
                "oneOf": [
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["type", "function", "config"],
                        "properties": {
                            "type": {"const": "lambda_config"},
                            "function": {"type": "string"},
                            "config": {
                                "type": "object",
                                "additionalProperties": false,
                                "properties": {
                                    "memory_mb": {"type": "integer", "minimum": 128, "maximum": 10240},
                                    "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 900},
                                    "reserved_concurrency": {"type": "integer", "minimum": 0},
                                    "environment": {"type": "object", "additionalProperties": {"type": "string"}}
                                }
                            }
                        }
                    },
                    {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["type", "component", "files"],
                        "properties": {
                            "type": {"const": "code_patch"},
                            "component": {"type": "string"},
                            "files": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "additionalProperties": false,
                                    "required": ["path", "diff"],
                                    "properties": {
                                        "path": {"type": "string", "description": "repository-relative path"},
                                        "language": {"enum": ["python", "javascript", "typescript", "tsx", "rust", "json", "yaml", "text"]},
                                        "diff": {"type": "string", "description": "unified diff against the deployed file: --- a/<path> / +++ b/<path>, or --- /dev/null for a new file"}
                                    }
                                }
                            },
                            "handler": {"type": "string", "description": "the function's configured handler, e.g. orders.handler"}
                        }
                    }
                ]
            },
            "rationale": {"type": "string"},
            "expected_gain": {"type": "number", "minimum": 0, "maximum": 1},
            "claimed_risk": {"enum": ["SAFE", "LOW", "MEDIUM", "HIGH", "CRITICAL"]}
        }
    })
}

const SYSTEM_PROMPT: &str = "You improve AWS Lambda services. The fleet runs Rust and Python \
Lambda functions behind a `live` alias; changes ship as a 10 % canary and are rolled back when \
error rate, p99 latency or throttles get worse. Prefer the smallest configuration change that \
fixes the evidence (memory, timeout, reserved concurrency, environment) over code changes. \
Never touch other tenants' components. Answer only through the propose_change tool.";

/// Builds the request for an item: evidence, current settings, requirements, and the
/// component's stack traces (exception, message, frames) when its logs had any.
pub fn build_request(item: &ImprovementItem, budget_usd: f64) -> LlmRequest {
    let o = &item.opportunity;
    let mut opportunity = json!({
        "component": o.component,
        "kind": o.kind,
        "priority": o.priority,
        "evidence": o.evidence,
        "affected_requests": o.affected_requests,
        "top_error_templates": o.top_errors,
    });
    if !o.stack_traces.is_empty() {
        // Frames innermost first: the file, line and function a code change would touch.
        opportunity["stack_traces"] = json!(o.stack_traces);
    }
    let prompt = json!({
        "task": "Propose one change that fixes this opportunity.",
        "opportunity": opportunity,
        "current_settings": o.current,
        "requirements": [
            "memory_mb 128-10240, timeout_seconds at most 900",
            "change only the component named above",
            "claimed_risk must be honest: decreases of memory or timeout are at least MEDIUM",
        ],
        "tenant_id": item.tenant_id,
    });
    LlmRequest {
        system: SYSTEM_PROMPT.to_owned(),
        prompt: prompt.to_string(),
        proposal_schema: proposal_schema(),
        item: item.clone(),
        budget_usd,
    }
}

/// Asks the Llm for a proposal for the item.
#[instrument(skip_all, fields(improvement = %item.improvement_id()))]
pub async fn generate(
    llm: &dyn Llm,
    item: &ImprovementItem,
    budget_usd: f64,
) -> Result<Generated, LlmError> {
    let request = build_request(item, budget_usd);
    let answer = llm.propose(&request).await?;
    if answer.usage.cost_usd > budget_usd {
        return Err(LlmError::BudgetExceeded(format!(
            "the answer cost ${:.4}, over the ${budget_usd:.2} budget",
            answer.usage.cost_usd
        )));
    }
    info!(
        provider = %answer.provider,
        change = %Escaped(answer.proposal.change.describe(item.opportunity.current.as_ref())),
        cost_usd = answer.usage.cost_usd,
        "proposal generated"
    );
    Ok(Generated {
        improvement_id: item.improvement_id(),
        proposal: answer.proposal,
        provider: answer.provider,
        usage: answer.usage,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_input_names_the_field() {
        let mut input = json!({
            "change": {"type": "lambda_config", "function": "orders-api", "config": {"memory_mb": 512}},
            "rationale": "r", "expected_gain": 0.2, "claimed_risk": "LOW"
        });
        assert!(parse_proposal("p", input.clone()).is_ok());
        input["claimed_risk"] = json!("MODERATE");
        let Err(LlmError::InvalidAnswer(message)) = parse_proposal("p", input) else {
            panic!("expected InvalidAnswer");
        };
        assert!(
            message.starts_with("p: the propose_change input at `claimed_risk`"),
            "{message}"
        );
        // The schema the tool is given is the one the parser expects.
        assert_eq!(proposal_schema()["required"][0], "change");
        let patch = json!({
            "change": {"type": "code_patch", "component": "orders-api", "handler": "app.handler",
                "files": [{"path": "app.py", "language": "python", "diff": "--- a/app.py\n+++ b/app.py\n"}]},
            "rationale": "r", "expected_gain": 0.2, "claimed_risk": "LOW"
        });
        assert!(parse_proposal("p", patch.clone()).is_ok());
        let mut missing = patch;
        missing["change"]["files"][0]
            .as_object_mut()
            .unwrap()
            .remove("diff");
        let Err(LlmError::InvalidAnswer(message)) = parse_proposal("p", missing) else {
            panic!("expected InvalidAnswer");
        };
        assert!(
            message.contains("`change`") && message.contains("diff"),
            "{message}"
        );
    }

    #[test]
    fn stack_traces_reach_the_prompt_with_their_frames() {
        let mut item: ImprovementItem =
            serde_json::from_str(include_str!("../../../events/steps/generate.json")).unwrap();
        // Without traces the prompt has no such member.
        let plain: Value = serde_json::from_str(&build_request(&item, 5.0).prompt).unwrap();
        assert!(plain["opportunity"].get("stack_traces").is_none());
        item.opportunity.stack_traces = serde_json::from_value(json!([{
            "exception": "KeyError", "language": "python", "count": 12, "message": "'sku'",
            "frames": [{"function": "load", "file": "/var/task/orders/cart.py", "line": 27},
                       {"function": "handler", "file": "/var/task/app.py", "line": 9}],
            "components": ["orders-api"],
            "first_seen": "2026-11-22T09:00:00Z", "last_seen": "2026-11-22T09:05:00Z"
        }]))
        .unwrap();
        let prompt: Value = serde_json::from_str(&build_request(&item, 5.0).prompt).unwrap();
        let trace = &prompt["opportunity"]["stack_traces"][0];
        assert_eq!(trace["exception"], "KeyError");
        assert_eq!(trace["frames"][0]["file"], "/var/task/orders/cart.py");
        assert_eq!(trace["frames"][0]["line"], 27);
    }
}
