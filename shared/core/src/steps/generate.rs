//! `generate` (R7): a proposal from the LLM within the budget, unless halted, with the
//! target's code and the component's history in the prompt; a refused proposal is audited
//! and recorded, and what the answers cost is added to the day's spend either way.

use serde_json::Value;

use super::{StepDeps, StepError, parse_payload, to_value};
use crate::audit::AuditAction;
use crate::config::Config;
use crate::error::StableError;
use crate::generate::{GenerateDeps, GenerateError, generate, prompt_context};
use crate::improvement::ImprovementItem;
use crate::ports::{LlmError, Unit};
use crate::records::CircuitState;
use crate::text::Escaped;

/// Runs the `generate` function on `payload`.
pub(super) async fn run(
    deps: StepDeps<'_>,
    config: &Config,
    payload: &Value,
) -> Result<Value, StepError> {
    let item: ImprovementItem = parse_payload(payload)?;
    // A halted cycle's later items stop before the LLM is asked or anything is spent.
    if let Some(halt) = deps.store.halt_state().await? {
        let detail = format!(
            "halt switch is on ({}: {}): not generated",
            halt.actor, halt.reason
        );
        deps.record(
            &item,
            AuditAction::GenerateHalted,
            None,
            None,
            detail.clone(),
            None,
        )
        .await?;
        return Err(StepError::Halted(detail));
    }
    let context = prompt_context(deps.code, deps.store, &item).await;
    let generate_deps = GenerateDeps {
        llm: deps.llm,
        code: deps.code,
        checker: deps.checker,
    };
    let generated = generate(generate_deps, &item, &context, config.llm_budget_usd).await;
    let providers = deps.llm.provider_health();
    let open = providers
        .iter()
        .filter(|p| p.state == CircuitState::Open)
        .count();
    deps.metric("CircuitBreakerOpen", Unit::Count, open as f64);
    let spent = match &generated {
        Ok(generated) => generated.usage,
        Err(failure) => failure.spent,
    };
    // Spend is incurred whether or not a proposal came of it.
    if spent.cost_usd > 0.0 || generated.is_ok() {
        deps.metric("LlmCostUsd", Unit::None, spent.cost_usd);
        // A ledger failure must not lose the proposal.
        if let Err(e) = deps
            .store
            .record_llm_usage(deps.clock.now(), spent.cost_usd, &providers)
            .await
        {
            tracing::warn!(error = %Escaped(&e), "LLM usage not recorded");
        }
    }
    match generated {
        Ok(generated) => to_value(&generated),
        // A refused proposal leaves an audit event and a record, as one refused in
        // validate does.
        Err(GenerateError {
            error: e @ (LlmError::InvalidAnswer(_) | LlmError::NoProposal(_)),
            ..
        }) => {
            let detail = format!("{}: {e}", e.error_type());
            deps.record(
                &item,
                AuditAction::ProposalRefused,
                None,
                None,
                detail,
                None,
            )
            .await?;
            Err(e.into())
        }
        Err(failure) => Err(failure.error.into()),
    }
}
