//! The Llm port over real providers: each answers one forced tool call
//! ([`Llm::call_tool`](selfbuild_core::ports::Llm::call_tool)) whose name, description and input
//! schema come with the request: `propose_change` for a proposal (its schema is
//! [`proposal_schema`](selfbuild_core::generate::proposal_schema)), `draft_component` for a new
//! component. A proposal is the tool input parsed by the port's default `propose`.
//!
//! - [`bedrock`]: [`BedrockLlm`], the Bedrock Converse API.
//! - [`openai`]: [`OpenAiCompatibleLlm`], any `POST /chat/completions` endpoint with tools.
//! - [`resilient`]: [`ResilientLlm`], providers in order, each with retries and a circuit breaker.
//!
//! What they share lives here: the price of a model ([`ModelPrice`]), the budget arithmetic
//! that turns a request's `budget_usd` into a `maxTokens` before any call ([`TokenLimits`]).
//! A tool call's input becomes a proposal through the provider-independent
//! [`parse_proposal`](selfbuild_core::generate::parse_proposal) of `selfbuild-core`.

pub mod bedrock;
pub mod openai;
pub mod resilient;

pub use bedrock::BedrockLlm;
pub use openai::{OpenAiCompatibleLlm, OpenAiConfig};
pub use resilient::{
    BreakerPolicy, BreakerState, ManualTimer, ResilientLlm, RetryPolicy, Timer, TokioTimer,
};

use selfbuild_core::config::{ConfigError, Env};
use selfbuild_core::improvement::LlmUsage;
use selfbuild_core::ports::{LlmError, ToolRequest};

/// The name of the tool a proposal request forces.
pub use selfbuild_core::generate::PROPOSAL_TOOL_NAME as TOOL_NAME;

/// What a model costs, in US dollars per million tokens.
///
/// The defaults ([`ModelPrice::for_model`]) are the providers' on-demand list prices at the
/// time of writing (Bedrock, us-east-1); prices change, so override them with
/// `LLM_INPUT_USD_PER_MTOK` / `LLM_OUTPUT_USD_PER_MTOK` ([`ModelPrice::from_env`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelPrice {
    /// USD per million input (prompt) tokens.
    pub input_per_mtok: f64,
    /// USD per million output (completion) tokens.
    pub output_per_mtok: f64,
}

impl ModelPrice {
    /// Claude Sonnet 3.5 / 3.7 / 4 / 4.5: $3 in, $15 out; the default for `anthropic.claude-*`.
    pub const CLAUDE_SONNET: Self = Self::new(3.0, 15.0);
    /// Claude Opus 4 / 4.1: $15 in, $75 out. Also the price assumed for a model not in the table,
    /// so that a budget is never underestimated.
    pub const CLAUDE_OPUS: Self = Self::new(15.0, 75.0);
    /// Claude Opus 4.5: $5 in, $25 out.
    pub const CLAUDE_OPUS_4_5: Self = Self::new(5.0, 25.0);
    /// Claude Haiku 4.5: $1 in, $5 out.
    pub const CLAUDE_HAIKU_4_5: Self = Self::new(1.0, 5.0);
    /// Claude 3.5 Haiku: $0.80 in, $4 out.
    pub const CLAUDE_3_5_HAIKU: Self = Self::new(0.8, 4.0);
    /// Claude 3 Haiku: $0.25 in, $1.25 out.
    pub const CLAUDE_3_HAIKU: Self = Self::new(0.25, 1.25);
    /// The price assumed for a model the table does not know: the most expensive listed one.
    pub const UNKNOWN: Self = Self::CLAUDE_OPUS;

    /// A price from USD per million input and output tokens.
    pub const fn new(input_per_mtok: f64, output_per_mtok: f64) -> Self {
        Self {
            input_per_mtok,
            output_per_mtok,
        }
    }

    /// The list price of a model id (with or without a cross-region prefix such as `us.`),
    /// or `None` when the table does not know it.
    pub fn for_model(model: &str) -> Option<Self> {
        let m = model.to_ascii_lowercase();
        if !m.contains("anthropic.claude") {
            return None;
        }
        let price = if m.contains("opus-4-5") {
            Self::CLAUDE_OPUS_4_5
        } else if m.contains("opus") {
            Self::CLAUDE_OPUS
        } else if m.contains("haiku-4-5") {
            Self::CLAUDE_HAIKU_4_5
        } else if m.contains("3-5-haiku") {
            Self::CLAUDE_3_5_HAIKU
        } else if m.contains("3-haiku") {
            Self::CLAUDE_3_HAIKU
        } else {
            Self::CLAUDE_SONNET
        };
        Some(price)
    }

    /// The price of `model` from the process environment, over the table's default.
    pub fn from_env(model: &str) -> Result<Self, ConfigError> {
        Self::from_lookup(model, |name| std::env::var(name).ok())
    }

    /// The price of `model`: [`ModelPrice::for_model`] (or [`ModelPrice::UNKNOWN`]), with
    /// `LLM_INPUT_USD_PER_MTOK` and `LLM_OUTPUT_USD_PER_MTOK` from `lookup` overriding each half.
    pub fn from_lookup(
        model: &str,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let default = Self::for_model(model).unwrap_or(Self::UNKNOWN);
        let env = Env::new(&lookup);
        // USD per million tokens: no model costs a million dollars per million tokens.
        let read = |name, default| env.float(name, default, 0.0, 1e6);
        Ok(Self {
            input_per_mtok: read("LLM_INPUT_USD_PER_MTOK", default.input_per_mtok)?,
            output_per_mtok: read("LLM_OUTPUT_USD_PER_MTOK", default.output_per_mtok)?,
        })
    }

    /// What `input` and `output` tokens cost, in USD.
    pub fn cost_usd(&self, input: u64, output: u64) -> f64 {
        (input as f64 * self.input_per_mtok + output as f64 * self.output_per_mtok) / 1e6
    }
}

/// Bounds on the `maxTokens` a provider is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenLimits {
    /// Never ask for more output tokens than this (default 4096: a proposal with a diff fits).
    pub max_output_tokens: u32,
    /// Refuse to call when the budget affords fewer output tokens than this (default 512: a
    /// shorter answer would be cut off mid-proposal, money spent for nothing).
    pub min_output_tokens: u32,
}

impl Default for TokenLimits {
    fn default() -> Self {
        Self {
            max_output_tokens: 4096,
            min_output_tokens: 512,
        }
    }
}

/// What a request may ask for, decided before the call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BudgetPlan {
    /// Estimated input tokens: characters / 4 of system prompt, prompt and schema.
    pub(crate) input_tokens: u64,
    /// The `maxTokens` to send: as many as the budget affords, within the limits.
    pub(crate) max_tokens: u32,
    /// The most the call can cost if the estimate holds.
    pub(crate) estimated_usd: f64,
}

/// The `maxTokens` the budget affords: `(budget − input estimate × input price) / output price`,
/// capped at `limits.max_output_tokens`; `BudgetExceeded` when that is under
/// `limits.min_output_tokens`, so nothing is sent.
pub(crate) fn plan_budget(
    provider: &str,
    request: &ToolRequest,
    price: ModelPrice,
    limits: TokenLimits,
) -> Result<BudgetPlan, LlmError> {
    let chars = request.system.chars().count()
        + request.prompt.chars().count()
        + request.tool.description.chars().count()
        + request.tool.input_schema.to_string().chars().count();
    let input_tokens = chars.div_ceil(4) as u64;
    let input_usd = price.cost_usd(input_tokens, 0);
    let per_output_token = price.output_per_mtok / 1e6;
    let affordable = if per_output_token > 0.0 {
        ((request.budget_usd - input_usd) / per_output_token).floor()
    } else {
        f64::from(limits.max_output_tokens)
    };
    let max_tokens = affordable.min(f64::from(limits.max_output_tokens));
    if max_tokens.is_nan() || max_tokens < f64::from(limits.min_output_tokens.max(1)) {
        let needed = price.cost_usd(input_tokens, u64::from(limits.min_output_tokens));
        return Err(LlmError::BudgetExceeded(format!(
            "{provider}: about {input_tokens} input tokens and at least {} output tokens \
             would cost ${needed:.4}, over the ${:.4} budget",
            limits.min_output_tokens, request.budget_usd
        )));
    }
    // In range: at least min_output_tokens (≥ 1) and at most max_output_tokens (a u32).
    let max_tokens = max_tokens as u32;
    Ok(BudgetPlan {
        input_tokens,
        max_tokens,
        estimated_usd: price.cost_usd(input_tokens, u64::from(max_tokens)),
    })
}

/// The usage of an answer, or `BudgetExceeded` when it cost more than the budget.
pub(crate) fn charge(
    provider: &str,
    request: &ToolRequest,
    price: ModelPrice,
    input_tokens: u64,
    output_tokens: u64,
) -> Result<LlmUsage, LlmError> {
    let usage = LlmUsage {
        input_tokens,
        output_tokens,
        cost_usd: price.cost_usd(input_tokens, output_tokens),
    };
    if usage.cost_usd > request.budget_usd {
        tracing::warn!(
            provider,
            input_tokens,
            output_tokens,
            cost_usd = usage.cost_usd,
            budget_usd = request.budget_usd,
            "the answer cost more than its budget; it is discarded"
        );
        return Err(LlmError::BudgetExceeded(format!(
            "{provider}: the answer cost ${:.4} ({input_tokens} input + {output_tokens} output \
             tokens), over the ${:.4} budget",
            usage.cost_usd, request.budget_usd
        )));
    }
    Ok(usage)
}

/// At most `max` characters of `text`, with `…` when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// An item about `orders-api` timing out at 3 s with 128 MB.
    pub(crate) fn sample_item() -> selfbuild_core::improvement::ImprovementItem {
        use selfbuild_core::change::LambdaSettings;
        use selfbuild_core::cycle::CycleMode;
        use selfbuild_core::ids::{ComponentId, CycleId};
        use selfbuild_core::opportunity::{Opportunity, OpportunityKind, Priority};
        let parsed = |r: Result<ComponentId, _>| r.unwrap_or_else(|e| panic!("{e}"));
        selfbuild_core::improvement::ImprovementItem {
            cycle_id: CycleId::parse("c1").unwrap_or_else(|e| panic!("{e}")),
            tenant_id: None,
            mode: CycleMode::Routine,
            dry_run: false,
            opportunity: Opportunity {
                id: "orders-api:timeouts".into(),
                rank: 1,
                component: parsed(ComponentId::parse("orders-api")),
                tenant_id: None,
                kind: OpportunityKind::Timeouts,
                evidence: vec![],
                expected_gain: 0.9,
                affected_requests: 100.0,
                impact_score: 90.0,
                priority: Priority::High,
                current: Some(LambdaSettings {
                    memory_mb: 128,
                    timeout_seconds: 3,
                    reserved_concurrency: None,
                    environment: Default::default(),
                }),
                top_errors: vec![],
                stack_traces: vec![],
                agents: vec![],
            },
            generated: None,
            validation: None,
            approval: None,
            deploy: None,
            monitor: None,
        }
    }

    fn request(prompt_chars: usize, budget_usd: f64) -> ToolRequest {
        ToolRequest {
            system: String::new(),
            prompt: "x".repeat(prompt_chars),
            tool: selfbuild_core::ports::ForcedTool {
                name: "t".into(),
                description: String::new(),
                input_schema: Value::Null,
            },
            subject: "orders-api".into(),
            budget_usd,
        }
    }

    #[test]
    fn claude_models_have_list_prices_and_unknown_models_the_highest() {
        assert_eq!(
            ModelPrice::for_model("anthropic.claude-sonnet-4-20250514-v1:0"),
            Some(ModelPrice::CLAUDE_SONNET)
        );
        assert_eq!(
            ModelPrice::for_model("us.anthropic.claude-3-5-haiku-20241022-v1:0"),
            Some(ModelPrice::CLAUDE_3_5_HAIKU)
        );
        assert_eq!(
            ModelPrice::for_model("global.anthropic.claude-opus-4-5-20251101-v1:0"),
            Some(ModelPrice::CLAUDE_OPUS_4_5)
        );
        assert_eq!(ModelPrice::for_model("meta.llama3-70b-instruct-v1:0"), None);
        let price = ModelPrice::from_lookup("meta.llama3-70b-instruct-v1:0", |_| None)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(price, ModelPrice::UNKNOWN);
    }

    #[test]
    fn env_overrides_each_half_of_the_price_and_bad_values_name_themselves() {
        let price = ModelPrice::from_lookup("anthropic.claude-3-haiku", |name| {
            (name == "LLM_OUTPUT_USD_PER_MTOK").then(|| "2.5".to_owned())
        })
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(price, ModelPrice::new(0.25, 2.5));
        let err = ModelPrice::from_lookup("m", |name| {
            (name == "LLM_INPUT_USD_PER_MTOK").then(|| "-1".to_owned())
        })
        .expect_err("a negative price is refused");
        assert!(err.to_string().contains("LLM_INPUT_USD_PER_MTOK"), "{err}");
    }

    #[test]
    fn max_tokens_is_what_the_budget_affords_within_the_limits() {
        let price = ModelPrice::new(3.0, 15.0);
        // 4000 chars ≈ 1000 tokens = $0.003 in; $0.018 left buys 1200 output tokens.
        let plan = plan_budget(
            "p",
            &request(4000 - 4, 0.021),
            price,
            TokenLimits::default(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plan.input_tokens, 1000);
        assert_eq!(plan.max_tokens, 1200);
        assert!(plan.estimated_usd <= 0.021 + 1e-12);
        let rich = plan_budget("p", &request(10, 100.0), price, TokenLimits::default())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rich.max_tokens, 4096);
        let poor = plan_budget("p", &request(4000, 0.005), price, TokenLimits::default());
        assert!(matches!(poor, Err(LlmError::BudgetExceeded(_))), "{poor:?}");
    }

    #[test]
    fn truncation_counts_characters() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hé", 2), "hé");
    }
}
