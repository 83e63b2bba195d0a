//! The LLM: a proposal for an improvement item, within a budget (Bedrock and
//! OpenAI-compatible providers on AWS, the rule planner offline).

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
    /// The provider answered with something that is not a valid proposal.
    #[error("LLM answer is not a valid proposal: {0}")]
    InvalidAnswer(String),
    /// No provider can propose a change for this opportunity.
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

/// Proposes a change.
#[async_trait]
pub trait Llm: Send + Sync {
    /// A proposal for the request, within its budget.
    async fn propose(&self, request: &LlmRequest) -> Result<LlmAnswer, LlmError>;

    /// Each provider's circuit breaker; empty for an adapter without breakers.
    fn provider_health(&self) -> Vec<ProviderHealth> {
        Vec::new()
    }
}
