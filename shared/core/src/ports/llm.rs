//! The LLM: one forced tool call within a budget ([`Llm::call_tool`]), of which a proposal
//! for an improvement item ([`Llm::propose`]) and a new component's draft are two uses
//! (Bedrock and OpenAI-compatible providers on AWS, the rule planner and recorded answers
//! offline).

use async_trait::async_trait;
use serde_json::Value;

use crate::change::Proposal;
use crate::error::{ErrorType, StableError};
use crate::improvement::{ImprovementItem, LlmUsage};
use crate::records::ProviderHealth;

/// What an Llm adapter is asked.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// The system prompt: role, rules and the architecture.
    pub system: String,
    /// The user prompt: the opportunity, its evidence and the requirements.
    pub prompt: String,
    /// JSON Schema the answer must satisfy (the forced tool's input schema).
    pub proposal_schema: Value,
    /// The item being improved, for planners that work from structured data.
    pub item: ImprovementItem,
    /// The most this request may cost, in US dollars.
    pub budget_usd: f64,
}

impl LlmRequest {
    /// The forced [`PROPOSAL_TOOL_NAME`](crate::generate::PROPOSAL_TOOL_NAME) call that asks
    /// this request of a model.
    pub fn tool_request(&self) -> ToolRequest {
        ToolRequest {
            system: self.system.clone(),
            prompt: self.prompt.clone(),
            tool: ForcedTool {
                name: crate::generate::PROPOSAL_TOOL_NAME.to_owned(),
                description: crate::generate::PROPOSAL_TOOL_DESCRIPTION.to_owned(),
                input_schema: self.proposal_schema.clone(),
            },
            subject: self.item.opportunity.component.as_str().to_owned(),
            budget_usd: self.budget_usd,
        }
    }
}

/// The one tool a model is forced to call.
#[derive(Debug, Clone, PartialEq)]
pub struct ForcedTool {
    /// Its name (`propose_change`, `draft_component`).
    pub name: String,
    /// What it is for, as the model reads it.
    pub description: String,
    /// JSON Schema of its input: what the answer must satisfy.
    pub input_schema: Value,
}

/// A request answered by one forced tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolRequest {
    /// The system prompt: role and rules.
    pub system: String,
    /// The user prompt.
    pub prompt: String,
    /// The tool the model must call.
    pub tool: ForcedTool,
    /// What the call is about (a component name): for logs and recorded answers.
    pub subject: String,
    /// The most this request may cost, in US dollars.
    pub budget_usd: f64,
}

/// The input of a forced tool call, untyped: the caller parses it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolAnswer {
    /// The tool call's input.
    pub input: Value,
    /// What it cost.
    pub usage: LlmUsage,
    /// Which provider answered.
    pub provider: String,
    /// Whether the answer stopped at its token limit (an invalid input may be cut off).
    pub truncated: bool,
}

/// An Llm adapter's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmAnswer {
    /// The proposal, parsed and typed.
    pub proposal: Proposal,
    /// What it cost.
    pub usage: LlmUsage,
    /// Which provider answered.
    pub provider: String,
}

/// Why an Llm adapter gave no proposal.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The provider was unavailable or throttled (after retries); trying later may work.
    #[error("LLM unavailable: {0}")]
    Unavailable(String),
    /// The request would cost more than its budget.
    #[error("budget exceeded: {0}")]
    BudgetExceeded(String),
    /// The provider answered with something that is not a valid tool input (proposal, draft).
    #[error("LLM answer is not valid: {0}")]
    InvalidAnswer(String),
    /// No provider can answer this request (a proposal for this opportunity, a draft).
    #[error("no proposal: {0}")]
    NoProposal(String),
}

impl StableError for LlmError {
    fn error_type(&self) -> ErrorType {
        match self {
            Self::Unavailable(_) => ErrorType::Retryable,
            Self::BudgetExceeded(_) => ErrorType::BudgetExceeded,
            Self::InvalidAnswer(_) => ErrorType::InvalidProposal,
            Self::NoProposal(_) => ErrorType::NoProposal,
        }
    }
}

/// Answers forced tool calls; proposes changes.
///
/// A model adapter implements [`call_tool`](Llm::call_tool) and gets `propose` for free; a
/// planner that works from structured data implements `propose` and may leave `call_tool`
/// refusing.
#[async_trait]
pub trait Llm: Send + Sync {
    /// A proposal for the request, within its budget: the
    /// [`tool_request`](LlmRequest::tool_request) answered and parsed with
    /// [`parse_proposal`](crate::generate::parse_proposal).
    async fn propose(&self, request: &LlmRequest) -> Result<LlmAnswer, LlmError> {
        let answer = self.call_tool(&request.tool_request()).await?;
        let proposal = crate::generate::parse_proposal(&answer.provider, answer.input).map_err(
            |e| match e {
                LlmError::InvalidAnswer(m) if answer.truncated => LlmError::InvalidAnswer(format!(
                    "{m} (the answer was cut off at its token limit)"
                )),
                e => e,
            },
        )?;
        Ok(LlmAnswer {
            proposal,
            usage: answer.usage,
            provider: answer.provider,
        })
    }

    /// The input of one call of `request.tool`, within its budget. By default refused: an
    /// adapter without a model (a rule planner) answers only [`propose`](Llm::propose).
    async fn call_tool(&self, request: &ToolRequest) -> Result<ToolAnswer, LlmError> {
        Err(LlmError::NoProposal(format!(
            "this LLM adapter has no model to call {} ({}): it only proposes improvements",
            request.tool.name, request.subject
        )))
    }

    /// Each provider's circuit breaker; empty for an adapter without breakers.
    fn provider_health(&self) -> Vec<ProviderHealth> {
        Vec::new()
    }
}
