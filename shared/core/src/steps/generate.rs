//! `generate` (R7): a proposal from the LLM within the budget, unless halted; a refused
//! proposal is audited and recorded.

use serde_json::Value;

use super::{StepDeps, StepError, parse_payload, to_value};
use crate::audit::AuditAction;
use crate::config::Config;
use crate::error::StableError;
use crate::generate::generate;
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
    let generated = generate(deps.llm, &item, config.llm_budget_usd).await;
    let providers = deps.llm.provider_health();
    let open = providers
        .iter()
        .filter(|p| p.state == CircuitState::Open)
        .count();
    deps.metric("CircuitBreakerOpen", Unit::Count, open as f64);
    let generated = match generated {
        Ok(generated) => generated,
        // A refused proposal leaves an audit event and a record, as one refused in
        // validate does.
        Err(e @ (LlmError::InvalidAnswer(_) | LlmError::NoProposal(_))) => {
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
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    deps.metric("LlmCostUsd", Unit::None, generated.usage.cost_usd);
    // Spend is already incurred: a ledger failure must not lose the proposal.
    if let Err(e) = deps
        .store
        .record_llm_usage(deps.clock.now(), generated.usage.cost_usd, &providers)
        .await
    {
        tracing::warn!(error = %Escaped(&e), "LLM usage not recorded");
    }
    to_value(&generated)
}
