//! Embedded Llm adapters: a deterministic rule planner, and recorded answers that replay
//! what a model said for a component (so a scenario can carry a bad proposal on purpose) or
//! the draft it wrote for a new component (`generate_component` offline, where no model is).

use async_trait::async_trait;
use selfbuild_core::change::{Change, LambdaConfigChange, Proposal, RiskLevel};
use selfbuild_core::component::COMPONENT_TOOL_NAME;
use selfbuild_core::generate::parse_proposal;
use selfbuild_core::improvement::LlmUsage;
use selfbuild_core::opportunity::OpportunityKind;
use selfbuild_core::ports::{Llm, LlmAnswer, LlmError, LlmRequest, ToolAnswer, ToolRequest};
use serde::Deserialize;

use crate::fleet::Scenario;

/// Proposes the textbook configuration fix for each kind of opportunity.
#[derive(Debug, Clone, Copy, Default)]
pub struct RulePlanner;

/// Memory sizes the planner steps through.
const MEMORY_STEPS: [u32; 8] = [128, 256, 512, 1024, 1769, 2048, 3008, 4096];

fn next_memory(current: u32) -> u32 {
    MEMORY_STEPS
        .iter()
        .copied()
        .find(|m| *m > current)
        .unwrap_or(current.saturating_mul(2).min(10_240))
}

#[async_trait]
impl Llm for RulePlanner {
    /// Refused: rules write no code, so a new component needs a model or a recorded draft.
    async fn call_tool(&self, request: &ToolRequest) -> Result<ToolAnswer, LlmError> {
        Err(LlmError::NoProposal(format!(
            "{}: component generation needs an LLM, and offline there is none: record a draft \
             for it under `llm.components` in the scenario (docs/mcp.md), or use the endpoint \
             on AWS (BEDROCK_MODEL_ID)",
            request.subject
        )))
    }

    async fn propose(&self, request: &LlmRequest) -> Result<LlmAnswer, LlmError> {
        let o = &request.item.opportunity;
        let current = o.current.as_ref().ok_or_else(|| {
            LlmError::NoProposal(format!(
                "{}: settings unknown, the rule planner only tunes Lambda configuration",
                o.component
            ))
        })?;
        let (config, rationale, risk) = match o.kind {
            OpportunityKind::Timeouts => (
                LambdaConfigChange {
                    // More memory is more CPU: shorter runs; a longer timeout absorbs the tail.
                    memory_mb: Some(
                        next_memory(current.memory_mb)
                            .max(512)
                            .min(current.memory_mb.saturating_mul(4)),
                    ),
                    timeout_seconds: Some(
                        (current.timeout_seconds.saturating_mul(3))
                            .clamp(current.timeout_seconds + 1, 900),
                    ),
                    ..Default::default()
                },
                "Invocations hit the timeout; more memory (and so CPU) shortens them and a longer timeout absorbs the tail.",
                RiskLevel::Low,
            ),
            OpportunityKind::MemoryPressure => (
                LambdaConfigChange {
                    memory_mb: Some(next_memory(current.memory_mb)),
                    ..Default::default()
                },
                "Memory use is at the limit or invocations were killed; the next memory size gives headroom.",
                RiskLevel::Low,
            ),
            OpportunityKind::Throttling => {
                let reserved = f64::from(current.reserved_concurrency.unwrap_or(1).max(1));
                let throttle_rate = o
                    .evidence
                    .iter()
                    .find(|e| e.measure == "throttle_rate")
                    .map_or(0.5, |e| e.value)
                    .clamp(0.0, 0.95);
                // Demand ≈ served ÷ (1 − throttled share); 50 % headroom on top.
                let needed = (reserved / (1.0 - throttle_rate) * 1.5).ceil();
                (
                    LambdaConfigChange {
                        reserved_concurrency: Some(needed.clamp(reserved + 1.0, 1000.0) as u32),
                        ..Default::default()
                    },
                    "Invocations are throttled at the reserved concurrency; raising it serves the demand.",
                    RiskLevel::Medium,
                )
            }
            OpportunityKind::LatencyRegression => (
                LambdaConfigChange {
                    memory_mb: Some(next_memory(current.memory_mb)),
                    ..Default::default()
                },
                "p99 latency rose; more memory brings proportionally more CPU.",
                RiskLevel::Low,
            ),
            OpportunityKind::ErrorBurst => {
                return Err(LlmError::NoProposal(format!(
                    "{}: application errors need a code change, which the rule planner does not write",
                    o.component
                )));
            }
        };
        Ok(LlmAnswer {
            proposal: Proposal {
                change: Change::LambdaConfig {
                    function: o.component.clone(),
                    config,
                },
                rationale: rationale.to_owned(),
                expected_gain: o.expected_gain,
                claimed_risk: risk,
            },
            usage: LlmUsage::default(),
            provider: "rule-planner".to_owned(),
        })
    }
}

/// One recorded answer: the proposal a model gave for a component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedAnswer {
    /// The component it answers for.
    pub component: String,
    /// The proposal, as the model's tool call gave it.
    pub proposal: serde_json::Value,
    /// Tokens the call used (for cost accounting).
    #[serde(default)]
    pub input_tokens: u64,
    /// Tokens the answer used.
    #[serde(default)]
    pub output_tokens: u64,
}

/// One recorded draft: what a model wrote for a new component (`generate_component`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedDraft {
    /// The component's name (`requirements.name`).
    pub component: String,
    /// The `draft_component` tool input, as the model gave it.
    pub draft: serde_json::Value,
    /// Tokens the call used (for cost accounting).
    #[serde(default)]
    pub input_tokens: u64,
    /// Tokens the answer used.
    #[serde(default)]
    pub output_tokens: u64,
}

/// Replays recorded answers and drafts; components without one go to the fallback.
pub struct RecordedLlm<F> {
    answers: Vec<RecordedAnswer>,
    drafts: Vec<RecordedDraft>,
    fallback: F,
}

impl<F: Llm> RecordedLlm<F> {
    /// Answers from `answers`, else from `fallback`.
    pub fn new(answers: Vec<RecordedAnswer>, fallback: F) -> Self {
        Self {
            answers,
            drafts: Vec::new(),
            fallback,
        }
    }

    /// The same, with recorded component drafts.
    pub fn with_drafts(mut self, drafts: Vec<RecordedDraft>) -> Self {
        self.drafts = drafts;
        self
    }
}

/// The scenario's LLM: its recorded answers (`llm.recorded`) and drafts (`llm.components`)
/// over the rule planner; a malformed entry is an error naming its field.
pub fn scenario_llm(scenario: &Scenario) -> Result<RecordedLlm<RulePlanner>, String> {
    fn list<T: serde::de::DeserializeOwned>(
        scenario: &Scenario,
        key: &str,
    ) -> Result<Vec<T>, String> {
        let Some(value) = scenario.llm.as_ref().and_then(|l| l.get(key)) else {
            return Ok(Vec::new());
        };
        serde_path_to_error::deserialize(value)
            .map_err(|e| format!("{}: llm.{key}.{}: {}", scenario.name, e.path(), e.inner()))
    }
    Ok(RecordedLlm::new(list(scenario, "recorded")?, RulePlanner)
        .with_drafts(list(scenario, "components")?))
}

/// What `input_tokens` and `output_tokens` cost at Claude-class prices.
fn recorded_cost(input_tokens: u64, output_tokens: u64) -> f64 {
    input_tokens as f64 / 1e6 * PRICE_PER_MILLION.0
        + output_tokens as f64 / 1e6 * PRICE_PER_MILLION.1
}

/// Claude-class prices per million tokens (input, output), for recorded answers' cost.
const PRICE_PER_MILLION: (f64, f64) = (3.0, 15.0);

#[async_trait]
impl<F: Llm> Llm for RecordedLlm<F> {
    async fn propose(&self, request: &LlmRequest) -> Result<LlmAnswer, LlmError> {
        let component = request.item.opportunity.component.as_str();
        let Some(answer) = self.answers.iter().find(|a| a.component == component) else {
            return self.fallback.propose(request).await;
        };
        // The same parser as the providers' answers (an invalid one names its field).
        let proposal = parse_proposal(
            &format!("recorded answer for {component}"),
            answer.proposal.clone(),
        )?;
        let cost_usd = recorded_cost(answer.input_tokens, answer.output_tokens);
        Ok(LlmAnswer {
            proposal,
            usage: LlmUsage {
                input_tokens: answer.input_tokens,
                output_tokens: answer.output_tokens,
                cost_usd,
            },
            provider: "recorded".to_owned(),
        })
    }

    async fn call_tool(&self, request: &ToolRequest) -> Result<ToolAnswer, LlmError> {
        let recorded = (request.tool.name == COMPONENT_TOOL_NAME)
            .then(|| self.drafts.iter().find(|d| d.component == request.subject))
            .flatten();
        let Some(recorded) = recorded else {
            return self.fallback.call_tool(request).await;
        };
        Ok(ToolAnswer {
            input: recorded.draft.clone(),
            usage: LlmUsage {
                input_tokens: recorded.input_tokens,
                output_tokens: recorded.output_tokens,
                cost_usd: recorded_cost(recorded.input_tokens, recorded.output_tokens),
            },
            provider: "recorded".to_owned(),
            truncated: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use selfbuild_core::ports::ForcedTool;
    use serde_json::json;

    fn draft_request(subject: &str) -> ToolRequest {
        ToolRequest {
            system: String::new(),
            prompt: String::new(),
            tool: ForcedTool {
                name: COMPONENT_TOOL_NAME.into(),
                description: String::new(),
                input_schema: json!({}),
            },
            subject: subject.into(),
            budget_usd: 1.0,
        }
    }

    #[tokio::test]
    async fn recorded_drafts_are_replayed_by_name_and_others_need_an_llm() {
        let llm = RecordedLlm::new(Vec::new(), RulePlanner).with_drafts(vec![RecordedDraft {
            component: "acme-refunds".into(),
            draft: json!({"handler": "app.handler"}),
            input_tokens: 1_000_000,
            output_tokens: 0,
        }]);
        let answer = llm
            .call_tool(&draft_request("acme-refunds"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(answer.input, json!({"handler": "app.handler"}));
        assert_eq!(
            (answer.provider.as_str(), answer.usage.cost_usd),
            ("recorded", 3.0)
        );
        let refused = llm.call_tool(&draft_request("other")).await;
        assert!(
            matches!(&refused, Err(LlmError::NoProposal(m)) if m.starts_with("other: component generation needs an LLM")),
            "{refused:?}"
        );
    }
}
