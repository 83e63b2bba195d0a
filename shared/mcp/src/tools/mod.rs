//! The MCP tools (R16): one enum to dispatch on, one file per tool. Each file has its
//! arguments (a JSON Schema through schemars), its [`ToolSpec`] and its `call`.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use schemars::JsonSchema;
use selfbuild_core::analyze::{AnalysisReport, analyze};
use selfbuild_core::apikeys::{ApiKey, Scope};
use selfbuild_core::approval::ApprovalError;
use selfbuild_core::canary::CanaryError;
use selfbuild_core::cycle::{CycleMode, CycleRequest, TimeWindow, Trigger};
use selfbuild_core::error::{ErrorType, StableError, StoreError, TelemetryError};
use selfbuild_core::ids::{ComponentId, CycleId, DedupKey, ImprovementId, TenantId};
use selfbuild_core::intake::IntakeError;
use selfbuild_core::records::TenantScope;
use serde::de::DeserializeOwned;
use serde_json::Value;
use time::OffsetDateTime;

use crate::McpDeps;

mod approve_improvement;
mod emergency_stop;
mod enable_component;
mod generate_component;
mod get_component;
mod get_improvement;
mod get_system_status;

pub use get_system_status::{STATUS_CACHE_TTL, StatusCache};
mod list_agents;
mod list_improvements;
mod query_telemetry_insights;
mod register_agent;
mod reject_improvement;
mod resume;
mod rollback_improvement;
mod trigger_improvement_cycle;

/// What a tool is, as `tools/list` shows it and the guard checks it.
#[derive(Debug, Clone, Copy)]
pub struct ToolSpec {
    /// The tool's name.
    pub name: &'static str,
    /// What it does, for the agent.
    pub description: &'static str,
    /// The scope a key needs to call it.
    pub scope: Scope,
    /// It changes nothing.
    pub read_only: bool,
    /// It may undo or stop something.
    pub destructive: bool,
    /// Calling it twice with the same arguments does no more than once.
    pub idempotent: bool,
}

/// Every tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolName {
    /// Starts a cycle through the intake's dedup.
    TriggerImprovementCycle,
    /// Halt state, running cycles, improvements, health, breakers, budget.
    GetSystemStatus,
    /// Error templates, metric summaries and ranked opportunities.
    QueryTelemetryInsights,
    /// Decides a component request, then has it drafted by the LLM and validated.
    GenerateComponent,
    /// One requested component with its draft and findings.
    GetComponent,
    /// Improvements, filtered and paged.
    ListImprovements,
    /// One improvement with its audit trail.
    GetImprovement,
    /// Approves a waiting improvement.
    ApproveImprovement,
    /// Rejects a waiting improvement.
    RejectImprovement,
    /// Restores a deployed improvement's baseline.
    RollbackImprovement,
    /// Sets the halt switch.
    EmergencyStop,
    /// Clears the halt switch.
    Resume,
    /// Re-enables a component the health pass disabled.
    EnableComponent,
    /// Registers another agent.
    RegisterAgent,
    /// Lists registered agents.
    ListAgents,
}

impl ToolName {
    /// Every tool, in listing order.
    pub const ALL: [Self; 15] = [
        Self::TriggerImprovementCycle,
        Self::GetSystemStatus,
        Self::QueryTelemetryInsights,
        Self::GenerateComponent,
        Self::GetComponent,
        Self::ListImprovements,
        Self::GetImprovement,
        Self::ApproveImprovement,
        Self::RejectImprovement,
        Self::RollbackImprovement,
        Self::EmergencyStop,
        Self::Resume,
        Self::EnableComponent,
        Self::RegisterAgent,
        Self::ListAgents,
    ];

    /// The tool's spec.
    pub fn spec(self) -> &'static ToolSpec {
        match self {
            Self::TriggerImprovementCycle => &trigger_improvement_cycle::SPEC,
            Self::GetSystemStatus => &get_system_status::SPEC,
            Self::QueryTelemetryInsights => &query_telemetry_insights::SPEC,
            Self::GenerateComponent => &generate_component::SPEC,
            Self::GetComponent => &get_component::SPEC,
            Self::ListImprovements => &list_improvements::SPEC,
            Self::GetImprovement => &get_improvement::SPEC,
            Self::ApproveImprovement => &approve_improvement::SPEC,
            Self::RejectImprovement => &reject_improvement::SPEC,
            Self::RollbackImprovement => &rollback_improvement::SPEC,
            Self::EmergencyStop => &emergency_stop::SPEC,
            Self::Resume => &resume::SPEC,
            Self::EnableComponent => &enable_component::SPEC,
            Self::RegisterAgent => &register_agent::SPEC,
            Self::ListAgents => &list_agents::SPEC,
        }
    }

    /// The tool's name.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// The scope a key needs to call it.
    pub fn scope(self) -> Scope {
        self.spec().scope
    }

    /// The tool with this name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.name() == name)
    }

    fn input_schema(self) -> Arc<JsonObject> {
        match self {
            Self::TriggerImprovementCycle => schema::<trigger_improvement_cycle::Args>(),
            Self::GetSystemStatus => schema::<get_system_status::Args>(),
            Self::QueryTelemetryInsights => schema::<query_telemetry_insights::Args>(),
            Self::GenerateComponent => schema::<generate_component::Args>(),
            Self::GetComponent => schema::<get_component::Args>(),
            Self::ListImprovements => schema::<list_improvements::Args>(),
            Self::GetImprovement => schema::<get_improvement::Args>(),
            Self::ApproveImprovement => schema::<approve_improvement::Args>(),
            Self::RejectImprovement => schema::<reject_improvement::Args>(),
            Self::RollbackImprovement => schema::<rollback_improvement::Args>(),
            Self::EmergencyStop => schema::<emergency_stop::Args>(),
            Self::Resume => schema::<resume::Args>(),
            Self::EnableComponent => schema::<enable_component::Args>(),
            Self::RegisterAgent => schema::<register_agent::Args>(),
            Self::ListAgents => schema::<list_agents::Args>(),
        }
    }

    /// Reads `args` as this tool's arguments, as [`ToolName::call`] does first, without
    /// calling it (absent arguments are `{}`); an error names the field that is wrong.
    pub fn parse_arguments(self, args: Value) -> Result<(), ToolError> {
        match self {
            Self::TriggerImprovementCycle => {
                parse_args::<trigger_improvement_cycle::Args>(args).map(drop)
            }
            Self::GetSystemStatus => parse_args::<get_system_status::Args>(args).map(drop),
            Self::QueryTelemetryInsights => {
                parse_args::<query_telemetry_insights::Args>(args).map(drop)
            }
            Self::GenerateComponent => parse_args::<generate_component::Args>(args).map(drop),
            Self::GetComponent => parse_args::<get_component::Args>(args).map(drop),
            Self::ListImprovements => parse_args::<list_improvements::Args>(args).map(drop),
            Self::GetImprovement => parse_args::<get_improvement::Args>(args).map(drop),
            Self::ApproveImprovement => parse_args::<approve_improvement::Args>(args).map(drop),
            Self::RejectImprovement => parse_args::<reject_improvement::Args>(args).map(drop),
            Self::RollbackImprovement => parse_args::<rollback_improvement::Args>(args).map(drop),
            Self::EmergencyStop => parse_args::<emergency_stop::Args>(args).map(drop),
            Self::Resume => parse_args::<resume::Args>(args).map(drop),
            Self::EnableComponent => parse_args::<enable_component::Args>(args).map(drop),
            Self::RegisterAgent => parse_args::<register_agent::Args>(args).map(drop),
            Self::ListAgents => parse_args::<list_agents::Args>(args).map(drop),
        }
    }

    /// The definition `tools/list` returns.
    pub fn definition(self) -> Tool {
        let spec = self.spec();
        let annotations = ToolAnnotations::with_title(title(spec.name))
            .read_only(spec.read_only)
            .destructive(spec.destructive)
            .idempotent(spec.idempotent)
            .open_world(false);
        Tool::new(
            Cow::Borrowed(spec.name),
            Cow::Borrowed(spec.description),
            self.input_schema(),
        )
        .with_annotations(annotations)
    }

    /// Runs the tool on its raw arguments.
    pub async fn call(self, ctx: &ToolContext<'_>, args: Value) -> Result<Value, ToolError> {
        match self {
            Self::TriggerImprovementCycle => {
                trigger_improvement_cycle::call(ctx, parse_args(args)?).await
            }
            Self::GetSystemStatus => get_system_status::call(ctx, parse_args(args)?).await,
            Self::QueryTelemetryInsights => {
                query_telemetry_insights::call(ctx, parse_args(args)?).await
            }
            Self::GenerateComponent => generate_component::call(ctx, parse_args(args)?).await,
            Self::GetComponent => get_component::call(ctx, parse_args(args)?).await,
            Self::ListImprovements => list_improvements::call(ctx, parse_args(args)?).await,
            Self::GetImprovement => get_improvement::call(ctx, parse_args(args)?).await,
            Self::ApproveImprovement => approve_improvement::call(ctx, parse_args(args)?).await,
            Self::RejectImprovement => reject_improvement::call(ctx, parse_args(args)?).await,
            Self::RollbackImprovement => rollback_improvement::call(ctx, parse_args(args)?).await,
            Self::EmergencyStop => emergency_stop::call(ctx, parse_args(args)?).await,
            Self::Resume => resume::call(ctx, parse_args(args)?).await,
            Self::EnableComponent => enable_component::call(ctx, parse_args(args)?).await,
            Self::RegisterAgent => register_agent::call(ctx, parse_args(args)?).await,
            Self::ListAgents => list_agents::call(ctx, parse_args(args)?).await,
        }
    }
}

/// Every tool's definition, built once.
pub static DEFINITIONS: LazyLock<Vec<Tool>> = LazyLock::new(|| {
    ToolName::ALL
        .into_iter()
        .map(ToolName::definition)
        .collect()
});

/// `trigger_improvement_cycle` → `Trigger improvement cycle`.
fn title(name: &str) -> String {
    let words = name.replace('_', " ");
    let mut chars = words.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

fn schema<T: JsonSchema>() -> Arc<JsonObject> {
    let mut value = serde_json::to_value(schemars::schema_for!(T)).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut value {
        map.remove("$schema");
        map.remove("title");
        map.entry("type").or_insert_with(|| Value::from("object"));
        map.entry("properties")
            .or_insert_with(|| Value::Object(JsonObject::new()));
    }
    match value {
        Value::Object(map) => Arc::new(map),
        _ => Arc::new(JsonObject::new()),
    }
}

/// Parses arguments, naming the field that is wrong (absent arguments are `{}`).
fn parse_args<T: DeserializeOwned>(args: Value) -> Result<T, ToolError> {
    let args = if args.is_null() {
        Value::Object(JsonObject::new())
    } else {
        args
    };
    serde_path_to_error::deserialize(args).map_err(|e| {
        // The path holds the caller's keys and serde quotes the value it rejects: both whole.
        let path = crate::jsonrpc::cut(&e.path().to_string());
        let inner = crate::jsonrpc::cut(&e.into_inner().to_string());
        if path == "." {
            ToolError::InvalidArguments(format!("arguments: {inner}"))
        } else {
            ToolError::InvalidArguments(format!("{path}: {inner}"))
        }
    })
}

/// `value` if it is within `min..=max`, else an error naming `field`.
fn in_range(field: &str, value: u32, min: u32, max: u32) -> Result<u32, ToolError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ToolError::InvalidArguments(format!(
            "{field}: {value} is out of range; must be {min}–{max}"
        )))
    }
}

/// A non-blank line of text (no control characters), trimmed, or an error naming `field`.
fn required_text(field: &str, value: &str, max_len: usize) -> Result<String, ToolError> {
    selfbuild_core::text::single_line(field, value, max_len)
        .map_err(|e| ToolError::InvalidArguments(e.to_string()))
}

/// An improvement id (`<cycle>-<rank>`), or an error naming `field`.
fn improvement_id(field: &str, value: &str) -> Result<ImprovementId, ToolError> {
    ImprovementId::parse(value).map_err(|e| ToolError::InvalidArguments(format!("{field}: {e}")))
}

/// A Lambda function name as a component id, or an error naming `field`.
fn function_name(field: &str, value: &str) -> Result<ComponentId, ToolError> {
    selfbuild_core::component::function_name(field, value).map_err(ToolError::InvalidArguments)
}

/// Why a tool call failed; becomes a tool result with `isError: true`.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// An argument is wrong; names the field and why.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The key may not see or act on this (another tenant, a disabled feature).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// No such record (or not visible to the key).
    #[error("not found: {0}")]
    NotFound(String),
    /// The record is not in a state that allows this.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The call was counted over the key's rate limit.
    #[error("rate limited: {0}")]
    RateLimited(String),
    /// A dependency was unavailable; trying again later may work.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A dependency refused or failed.
    #[error("failed: {0}")]
    Failed(String),
}

impl ToolError {
    /// The error's stable name in results and the access log.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::InvalidArguments(_) => "invalid_arguments",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::RateLimited(_) => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Failed(_) => "failed",
        }
    }
}

impl ToolError {
    /// The tool error for a core error, by its stable type: the one mapping every tool uses.
    fn of(e: &dyn StableError) -> Self {
        let message = e.to_string();
        match e.error_type() {
            ErrorType::Retryable => Self::Unavailable(message),
            ErrorType::InvalidInput | ErrorType::InvalidEvent => Self::InvalidArguments(message),
            ErrorType::NotPending | ErrorType::NotFound => Self::NotFound(message),
            ErrorType::Halted | ErrorType::ApprovalClosed => Self::Conflict(message),
            ErrorType::DependencyFailed
            | ErrorType::StoreFault
            | ErrorType::StoreCorrupt
            | ErrorType::DeployRejected
            | ErrorType::RollbackDisabled
            | ErrorType::BudgetExceeded
            | ErrorType::InvalidProposal
            | ErrorType::NoProposal
            | ErrorType::ConfigError => Self::Failed(message),
        }
    }
}

/// `From` a core error through [`ToolError::of`].
macro_rules! tool_error_from {
    ($($error:ty),+) => {$(
        impl From<$error> for ToolError {
            fn from(e: $error) -> Self {
                Self::of(&e)
            }
        }
    )+};
}

tool_error_from!(
    StoreError,
    TelemetryError,
    IntakeError,
    ApprovalError,
    CanaryError
);

/// What a tool call runs with: the ports, the calling key and the time.
pub struct ToolContext<'a> {
    /// The ports and settings.
    pub deps: &'a McpDeps,
    /// The calling key.
    pub key: &'a ApiKey,
    /// When the call arrived.
    pub now: OffsetDateTime,
    /// `get_system_status`'s recent answers.
    pub status_cache: &'a StatusCache,
}

impl ToolContext<'_> {
    /// The actor name audit events record for this key.
    pub fn actor(&self) -> String {
        format!("key:{}", self.key.id)
    }

    /// The tenant a call acts for: the requested one if the key may act on it, else the key's.
    fn acting_tenant(&self, requested: Option<&str>) -> Result<Option<TenantId>, ToolError> {
        let requested = requested
            .map(|t| {
                TenantId::parse(t)
                    .map_err(|e| ToolError::InvalidArguments(format!("tenant_id: {e}")))
            })
            .transpose()?;
        match (&self.key.tenant, requested) {
            (TenantScope::All, requested) => Ok(requested),
            (TenantScope::Only(own), None) => Ok(Some(own.clone())),
            (TenantScope::Only(own), Some(t)) if &t == own => Ok(Some(t)),
            (TenantScope::Only(own), Some(t)) => Err(ToolError::Forbidden(format!(
                "API key {:?} is limited to tenant {own}; tenant {t} is not visible to it",
                self.key.id
            ))),
        }
    }

    /// What a listing shows: the requested tenant (if the key may see it), else the key's scope.
    fn listing_scope(&self, requested: Option<&str>) -> Result<TenantScope, ToolError> {
        Ok(match self.acting_tenant(requested)? {
            Some(t) => TenantScope::Only(t),
            None => TenantScope::All,
        })
    }

    /// Runs analyze over the last `hours` for a tenant and components, as a dry-run cycle that
    /// is never started (no claim, no execution): the report only.
    async fn analysis(
        &self,
        tenant: Option<TenantId>,
        components: Vec<ComponentId>,
        hours: u32,
        max_opportunities: u32,
    ) -> Result<AnalysisReport, TelemetryError> {
        let now = self.now;
        let key = DedupKey::new(tenant.clone(), components.first().cloned());
        let request = CycleRequest {
            cycle_id: CycleId::for_claim(&key, now, self.deps.ids.suffix()),
            // Emergency mode reads per-minute periods: what a window of an hour needs.
            mode: if hours <= 1 {
                CycleMode::Emergency
            } else {
                CycleMode::Routine
            },
            tenant_id: tenant,
            components,
            analysis_window: TimeWindow {
                start: now - time::Duration::hours(i64::from(hours)),
                end: now,
            },
            max_improvements: max_opportunities,
            max_concurrency: 1,
            dry_run: true,
            trigger: Trigger::Manual {
                requested_by: self.actor(),
            },
            dedup_key: key.as_str().to_owned(),
            requested_at: now,
        };
        analyze(&*self.deps.telemetry, &*self.deps.deployer, &request).await
    }

    /// Whether the key may see a record of `tenant`. A record it may not see is answered
    /// exactly as a missing one: a different answer would confirm that the id exists.
    fn sees(&self, tenant: Option<&TenantId>) -> bool {
        self.key.tenant.allows(tenant)
    }
}

/// RFC 3339 text of a time.
fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_argument_error_names_the_field_and_never_echoes_a_long_key_whole() {
        let err = ToolName::ListImprovements
            .parse_arguments(json!({"limit": "ten"}))
            .unwrap_err();
        assert!(
            err.to_string().starts_with("invalid arguments: limit: "),
            "{err}"
        );
        // Found by fuzzing: an unknown key of any length became the path, which was not cut.
        let key = "k".repeat(100_000);
        let err = ToolName::ListImprovements
            .parse_arguments(json!({ key: 1 }))
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("invalid arguments: kkkk"),
            "{}",
            &text[..80]
        );
        assert!(text.contains("unknown field"), "{}", &text[..80]);
        assert!(text.len() < 600, "{} bytes", text.len());
    }

    #[test]
    fn arguments_are_only_those_the_schema_declares() {
        // Found with the fuzz target's schema check: register_agent also took `tenant`, which
        // its tools/list schema (additionalProperties: false) does not declare.
        let args = json!({"name": "a", "url": "https://agent.example", "capabilities": [], "tenant": "acme"});
        let err = ToolName::RegisterAgent.parse_arguments(args).unwrap_err();
        assert!(err.to_string().contains("unknown field `tenant`"), "{err}");
        let schema = ToolName::RegisterAgent.definition().input_schema;
        assert_eq!(schema["additionalProperties"], false);
        assert!(schema["properties"].get("tenant").is_none());
        assert!(schema["properties"].get("tenant_id").is_some());
    }

    #[test]
    fn register_agent_declares_the_agent_metrics_it_takes() {
        let schema = ToolName::RegisterAgent.definition().input_schema;
        assert!(schema["properties"].get("metrics").is_some(), "{schema:?}");
        let metrics = &schema["$defs"]["AgentMetrics"];
        assert_eq!(metrics["additionalProperties"], false, "{schema:?}");
        assert_eq!(metrics["required"], json!(["namespace"]));
        for role in [
            "requests",
            "errors",
            "latency_avg",
            "latency_p99",
            "memory_utilization",
            "concurrency",
            "dimensions",
        ] {
            assert!(
                metrics["properties"].get(role).is_some(),
                "{role}: {metrics}"
            );
        }
    }
}
