//! generate (R7): an opportunity, its evidence, the code it points at and the component's
//! history → a typed proposal from the Llm port, with one repair round for a code patch that
//! fails the checks.
//!
//! - [`context`]: stack-trace frames → the target's files, read and cut to a token budget.

pub mod context;

use std::sync::LazyLock;

use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::{info, instrument, warn};

use crate::change::{Change, Proposal};
use crate::ids::ImprovementId;
use crate::improvement::{Generated, ImprovementItem, LlmUsage};
use crate::ports::{
    CodeChecker, CodeFinding, CodeSource, ImprovementStore, Llm, LlmError, LlmRequest,
};
use crate::records::{ImprovementQuery, ImprovementStatus, TenantScope};
use crate::text::Escaped;
use crate::validate::check_code_patch;

pub use context::{CODE_TOKEN_BUDGET, CodeContext, read_code};

/// The name of the one tool every LLM provider is forced to call; its input is a [`Proposal`].
pub const PROPOSAL_TOOL_NAME: &str = "propose_change";

/// What the [`PROPOSAL_TOOL_NAME`] tool is for, as the model reads it.
pub const PROPOSAL_TOOL_DESCRIPTION: &str = "Propose exactly one change that fixes the \
opportunity: a Lambda configuration change or a code patch, with its rationale, expected gain \
(0-1) and an honest risk level.";

/// Parses the input of a forced [`PROPOSAL_TOOL_NAME`] call into a proposal, for any provider;
/// a mismatch is an `InvalidAnswer` that starts with `provider` and names the field
/// (`change.config`, `expected_gain`, …). Ranges are [`validate`](crate::validate)'s job.
pub fn parse_proposal(provider: &str, input: Value) -> Result<Proposal, LlmError> {
    parse_tool_input(provider, PROPOSAL_TOOL_NAME, "a proposal", input)
}

/// Parses the input of a forced `tool` call as `T` (`what` names it in the error); a mismatch
/// is an `InvalidAnswer` that starts with `provider` and names the field.
pub fn parse_tool_input<T: serde::de::DeserializeOwned>(
    provider: &str,
    tool: &str,
    what: &str,
    input: Value,
) -> Result<T, LlmError> {
    serde_path_to_error::deserialize(input).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!(" at `{path}`")
        };
        LlmError::InvalidAnswer(format!(
            "{provider}: the {tool} input{at} is not {what}: {}",
            e.inner()
        ))
    })
}

/// The JSON Schema of a proposal, derived from [`Proposal`]: the input schema of the forced
/// tool call. Subschemas are inlined (no `$ref`: one self-contained object, as tool schemas
/// are sent), and `$schema`, `title` and schemars' `format` names (`uint32`, `double`,
/// which are no JSON Schema formats; the ranges say the same) are left out.
pub fn proposal_schema() -> Value {
    // Derived once per process: every request carries it.
    static SCHEMA: LazyLock<Value> = LazyLock::new(tool_input_schema::<Proposal>);
    SCHEMA.clone()
}

/// The JSON Schema of `T` as a forced tool's input schema: subschemas inlined, no
/// `$schema`, `title` or schemars' `format` names (see [`proposal_schema`]).
pub fn tool_input_schema<T: schemars::JsonSchema>() -> Value {
    let schema = SchemaSettings::draft07()
        .with(|s| s.inline_subschemas = true)
        .into_generator()
        .into_root_schema_for::<T>();
    let mut value = schema.to_value();
    if let Value::Object(root) = &mut value {
        root.remove("$schema");
        root.remove("title");
    }
    drop_formats(&mut value);
    value
}

/// Removes every `format` keyword whose value is a string, at any depth; a property named
/// `format` (an object under `properties`) stays.
fn drop_formats(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("format").is_some_and(Value::is_string) {
                map.remove("format");
            }
            map.values_mut().for_each(drop_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_formats),
        _ => {}
    }
}

const SYSTEM_PROMPT: &str = "You improve AWS Lambda functions (Python, Node.js, Rust). A change \
ships as a 10 % canary behind the `live` alias and is rolled back when error rate, p99 latency or \
throttles get worse. Answer with ONE change, only through the propose_change tool:\n\
- a `lambda_config` change (memory, timeout, reserved concurrency, environment) when the evidence \
is about capacity (timeouts, memory pressure, throttling, latency): the smallest change that fixes \
it;\n\
- a `code_patch` when the evidence points at the code: stack traces or exceptions raised in the \
function's own files, shown under `code`. One unified diff per file against the file exactly as \
shown (without the `N| ` line-number prefixes): `--- a/<path>` and `+++ b/<path>` with the path as \
shown, `@@` hunks with the right line numbers and 3 lines of context. Keep it small and focused on \
the failure: no refactoring, no new dependencies, no weakened checks (TLS verification, \
authentication), no credentials in code.\n\
Patch only code that is shown. Never touch other components or other tenants' components.";

/// The task of a repair round's request.
const REPAIR_TASK: &str = "Your previous code patch for this opportunity failed validation with \
the findings below. Propose one corrected change that fixes the opportunity and resolves every \
finding. Diffs are against the files as shown in the original request, not against your previous \
patch.";

/// The most findings a repair request lists.
const MAX_REPAIR_FINDINGS: usize = 20;

/// The most earlier changes of the component a prompt lists.
pub const HISTORY_LIMIT: usize = 5;

/// How many of the latest improvement records are searched for the component's history.
const HISTORY_SCAN: usize = 50;

/// Rules of findings about the code source or the checker, not the patch: a repair cannot
/// resolve them.
const NOT_THE_PATCH: [&str; 2] = ["code_source", "code_validation"];

/// A change already made to the component, as the prompt lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PastChange {
    /// The improvement.
    pub improvement_id: ImprovementId,
    /// Where it ended (or is).
    pub status: ImprovementStatus,
    /// The change, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change: Option<String>,
    /// When its status was set.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// What a prompt carries besides the item: the target's code and the component's history.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromptContext {
    /// The code the evidence points at, when it points at code and it could be read.
    pub code: Option<CodeContext>,
    /// The component's latest earlier changes, newest first.
    pub history: Vec<PastChange>,
}

/// The context of the item's prompt: its code read through `code` (see [`read_code`]) and
/// the component's last [`HISTORY_LIMIT`] changes from the latest [`HISTORY_SCAN`] records of
/// its tenant. Never fails: a part that cannot be read is logged and left out.
pub async fn prompt_context(
    code: &dyn CodeSource,
    improvements: &dyn ImprovementStore,
    item: &ImprovementItem,
) -> PromptContext {
    PromptContext {
        code: read_code(code, item).await,
        history: change_history(improvements, item).await,
    }
}

/// The component's latest earlier changes (this improvement excluded), newest first.
async fn change_history(
    improvements: &dyn ImprovementStore,
    item: &ImprovementItem,
) -> Vec<PastChange> {
    let scope = match &item.tenant_id {
        Some(tenant) => TenantScope::Only(tenant.clone()),
        None => TenantScope::All,
    };
    let query = ImprovementQuery {
        scope,
        status: None,
        limit: HISTORY_SCAN,
        cursor: None,
    };
    let page = match improvements.list_improvements(&query).await {
        Ok(page) => page,
        Err(e) => {
            warn!(error = %Escaped(&e), "change history not read; the prompt goes without it");
            return Vec::new();
        }
    };
    let own = item.improvement_id();
    page.items
        .into_iter()
        .filter(|r| r.component == item.opportunity.component.as_str() && r.improvement_id != own)
        .take(HISTORY_LIMIT)
        .map(|r| PastChange {
            improvement_id: r.improvement_id,
            status: r.status,
            change: r.change,
            updated_at: r.updated_at,
        })
        .collect()
}

/// Builds the request for an item without code or history: see [`build_request_with`].
pub fn build_request(item: &ImprovementItem, budget_usd: f64) -> LlmRequest {
    build_request_with(item, &PromptContext::default(), budget_usd)
}

/// Builds the request for an item: evidence, current settings, requirements, the
/// component's stack traces (exception, message, count, frames) when its logs had any, the
/// code they point at and the component's earlier changes.
pub fn build_request_with(
    item: &ImprovementItem,
    context: &PromptContext,
    budget_usd: f64,
) -> LlmRequest {
    let o = &item.opportunity;
    let mut opportunity = json!({
        "component": o.component,
        "kind": o.kind,
        "priority": o.priority,
        "evidence": o.evidence,
        "affected_requests": o.affected_requests,
        "top_error_templates": o.top_errors,
    });
    if !o.agents.is_empty() {
        // The owner agent's own metric, in words: what its callers saw, not the function's.
        opportunity["agents"] = json!(o.agents);
    }
    if !o.stack_traces.is_empty() {
        // Frames innermost first: the file, line and function a code change would touch.
        opportunity["stack_traces"] = json!(o.stack_traces);
    }
    let mut prompt = json!({
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
    if let Some(code) = &context.code {
        prompt["code"] = json!(code);
    }
    if !context.history.is_empty() {
        prompt["change_history"] = json!(context.history);
    }
    LlmRequest {
        system: SYSTEM_PROMPT.to_owned(),
        prompt: prompt.to_string(),
        proposal_schema: proposal_schema(),
        item: item.clone(),
        budget_usd,
    }
}

/// The ports generate uses: the LLM, and the target's code and checker for the repair round.
#[derive(Clone, Copy)]
pub struct GenerateDeps<'a> {
    /// Proposals.
    pub llm: &'a dyn Llm,
    /// The target's deployed code, that a patch is checked against.
    pub code: &'a dyn CodeSource,
    /// Checks a code patch; unavailable: no repair round.
    pub checker: &'a dyn CodeChecker,
}

/// generate failed; `spent` is what the answers it received cost (zero when none came), so
/// the day's spend stays true.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct GenerateError {
    /// Why.
    pub error: LlmError,
    /// What was spent before it failed.
    pub spent: LlmUsage,
}

impl GenerateError {
    fn new(error: LlmError, spent: LlmUsage) -> Self {
        Self { error, spent }
    }
}

/// Asks the Llm for a proposal for the item, within `budget_usd` in all. A code patch with
/// blocking findings of the checker (the same check validate runs) is sent back once with
/// them; the answer replaces it whatever it is (validate judges it and records its findings).
/// A repair round that fails is logged and the first patch kept, except over the budget.
#[instrument(skip_all, fields(improvement = %item.improvement_id()))]
pub async fn generate(
    deps: GenerateDeps<'_>,
    item: &ImprovementItem,
    context: &PromptContext,
    budget_usd: f64,
) -> Result<Generated, GenerateError> {
    let request = build_request_with(item, context, budget_usd);
    let answer = deps
        .llm
        .propose(&request)
        .await
        .map_err(|e| GenerateError::new(e, LlmUsage::default()))?;
    within_budget(answer.usage, budget_usd)?;
    let mut generated = Generated {
        improvement_id: item.improvement_id(),
        proposal: answer.proposal,
        provider: answer.provider,
        usage: answer.usage,
        repair_rounds: 0,
    };
    if let Some(findings) = repairable_findings(deps, item, &generated).await {
        let left = budget_usd - generated.usage.cost_usd;
        let repair = repair_request(&request, &generated.proposal, &findings, left);
        info!(
            findings = findings.len(),
            "the code patch failed the checks: one repair round"
        );
        match deps.llm.propose(&repair).await {
            Ok(answer) => {
                let spent = generated.usage.plus(answer.usage);
                within_budget(spent, budget_usd)?;
                generated.proposal = answer.proposal;
                generated.provider = answer.provider;
                generated.usage = spent;
                generated.repair_rounds = 1;
            }
            Err(e @ LlmError::BudgetExceeded(_)) => {
                return Err(GenerateError::new(e, generated.usage));
            }
            Err(e) => warn!(
                error = %Escaped(&e),
                "the repair round failed; the first patch goes on to validate"
            ),
        }
    }
    info!(
        provider = %generated.provider,
        change = %Escaped(generated.proposal.change.describe(item.opportunity.current.as_ref())),
        cost_usd = generated.usage.cost_usd,
        repair_rounds = generated.repair_rounds,
        "proposal generated"
    );
    Ok(generated)
}

/// `BudgetExceeded`, with what was spent, when `spent` is over `budget_usd`.
fn within_budget(spent: LlmUsage, budget_usd: f64) -> Result<(), GenerateError> {
    if spent.cost_usd > budget_usd {
        return Err(GenerateError::new(
            LlmError::BudgetExceeded(format!(
                "the answers cost ${:.4}, over the ${budget_usd:.2} budget",
                spent.cost_usd
            )),
            spent,
        ));
    }
    Ok(())
}

/// The blocking findings a corrected patch could resolve, when the proposal is a code patch
/// and this process has a checker; a code source that fails is logged and skips the round
/// (validate reads the code again).
async fn repairable_findings(
    deps: GenerateDeps<'_>,
    item: &ImprovementItem,
    generated: &Generated,
) -> Option<Vec<CodeFinding>> {
    if !matches!(generated.proposal.change, Change::CodePatch { .. })
        || !deps.checker.is_available()
    {
        return None;
    }
    let mut proposed = item.clone();
    proposed.generated = Some(generated.clone());
    let check = match check_code_patch(deps.code, deps.checker, &proposed).await {
        Ok(check) => check?,
        Err(e) => {
            warn!(error = %Escaped(&e), "the code patch was not checked; no repair round");
            return None;
        }
    };
    let findings: Vec<CodeFinding> = check
        .findings
        .into_iter()
        .filter(|f| f.summary.blocking && !NOT_THE_PATCH.contains(&f.summary.rule.as_str()))
        .collect();
    (!findings.is_empty()).then_some(findings)
}

/// The follow-up to `first`: the previous patch, its findings (rule, `path:line`, message)
/// and the original request, within what is left of the budget.
fn repair_request(
    first: &LlmRequest,
    previous: &Proposal,
    findings: &[CodeFinding],
    budget_usd: f64,
) -> LlmRequest {
    let files: Vec<Value> = match &previous.change {
        Change::CodePatch { files, .. } => files
            .iter()
            .map(|f| json!({"path": f.path, "diff": f.diff}))
            .collect(),
        Change::LambdaConfig { .. } => Vec::new(),
    };
    let findings: Vec<Value> = findings
        .iter()
        .take(MAX_REPAIR_FINDINGS)
        .map(|f| {
            json!({
                "rule": f.summary.rule,
                "location": format!("{}:{}", f.path, f.line),
                "message": f.message,
            })
        })
        .collect();
    let original: Value =
        serde_json::from_str(&first.prompt).unwrap_or_else(|_| Value::String(first.prompt.clone()));
    let prompt = json!({
        "task": REPAIR_TASK,
        "previous_patch": files,
        "findings": findings,
        "original_request": original,
    });
    LlmRequest {
        system: first.system.clone(),
        prompt: prompt.to_string(),
        proposal_schema: first.proposal_schema.clone(),
        item: first.item.clone(),
        budget_usd,
    }
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
            serde_json::from_str(include_str!("../../../../events/steps/generate.json")).unwrap();
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

    /// Whether `value` conforms to `schema`, for the keywords the proposal schema uses
    /// (type, const, enum, properties, required, additionalProperties, items, minItems,
    /// minimum, maximum, oneOf); the error says where it does not.
    fn conforms(schema: &Value, value: &Value, at: &str) -> Result<(), String> {
        let fail = |why: String| Err(format!("{at}: {why}"));
        if let Some(types) = schema.get("type") {
            let names: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            let is = |t: &str| match t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                "null" => value.is_null(),
                _ => false,
            };
            if !names.iter().any(|t| is(t)) {
                return fail(format!("{value} is not {names:?}"));
            }
        }
        if let Some(c) = schema.get("const")
            && c != value
        {
            return fail(format!("{value} is not {c}"));
        }
        if let Some(Value::Array(options)) = schema.get("enum")
            && !options.contains(value)
        {
            return fail(format!("{value} is not one of {options:?}"));
        }
        if let Some(n) = value.as_f64() {
            if schema
                .get("minimum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n < m)
            {
                return fail(format!("{n} is under the minimum"));
            }
            if schema
                .get("maximum")
                .and_then(Value::as_f64)
                .is_some_and(|m| n > m)
            {
                return fail(format!("{n} is over the maximum"));
            }
        }
        if let Some(Value::Array(options)) = schema.get("oneOf") {
            let passing = options
                .iter()
                .filter(|o| conforms(o, value, at).is_ok())
                .count();
            if passing != 1 {
                return fail(format!("{passing} of oneOf match"));
            }
        }
        if let Value::Object(object) = value {
            let properties = schema.get("properties").and_then(Value::as_object);
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if !object.contains_key(name) {
                    return fail(format!("`{name}` is missing"));
                }
            }
            for (name, member) in object {
                let at = format!("{at}.{name}");
                match (
                    properties.and_then(|p| p.get(name)),
                    schema.get("additionalProperties"),
                ) {
                    (Some(sub), _) => conforms(sub, member, &at)?,
                    (None, Some(Value::Bool(false))) => return Err(format!("{at}: not allowed")),
                    (None, Some(sub @ Value::Object(_))) => conforms(sub, member, &at)?,
                    (None, _) => {}
                }
            }
        }
        if let Value::Array(items) = value {
            if schema
                .get("minItems")
                .and_then(Value::as_u64)
                .is_some_and(|m| (items.len() as u64) < m)
            {
                return fail("too few items".into());
            }
            if let Some(sub) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    conforms(sub, item, &format!("{at}[{i}]"))?;
                }
            }
        }
        Ok(())
    }

    #[test]
    fn the_derived_schema_accepts_what_the_parser_accepts_and_keeps_the_ranges() {
        let schema = proposal_schema();
        let accepted = [
            json!({
                "change": {"type": "lambda_config", "function": "orders-api",
                    "config": {"memory_mb": 512, "timeout_seconds": 30, "reserved_concurrency": 5,
                               "environment": {"LOG_LEVEL": "info"}}},
                "rationale": "r", "expected_gain": 0.2, "claimed_risk": "LOW"
            }),
            json!({
                "change": {"type": "code_patch", "component": "orders-api", "handler": "app.handler",
                    "files": [{"path": "app.py", "language": "python",
                               "diff": "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-a\n+b\n"}]},
                "rationale": "r", "expected_gain": 1, "claimed_risk": "MEDIUM"
            }),
            json!({
                "change": {"type": "code_patch", "component": "orders-api",
                    "files": [{"path": "new.js", "diff": "--- /dev/null\n+++ b/new.js\n"}]},
                "rationale": "r", "expected_gain": 0, "claimed_risk": "SAFE"
            }),
        ];
        for proposal in &accepted {
            assert!(parse_proposal("p", proposal.clone()).is_ok(), "{proposal}");
            conforms(&schema, proposal, "$").unwrap();
        }
        // What the parser refuses, the schema refuses too; the ranges are the schema's own.
        let refused = [
            ("/change/type", json!("lambda")),
            ("/change/config/memory", json!(512)),
            ("/claimed_risk", json!("MODERATE")),
            ("/rationale", Value::Null),
        ];
        // The schema's own: ranges, and no extra members (the parser tolerates them).
        let ranged = [
            ("/extra", json!(1)),
            ("/change/config/memory_mb", json!(64)),
            ("/change/config/memory_mb", json!(10_241)),
            ("/change/config/timeout_seconds", json!(0)),
            ("/change/config/timeout_seconds", json!(901)),
            ("/expected_gain", json!(1.5)),
            ("/expected_gain", json!(-0.1)),
        ];
        for (pointer, bad) in refused.iter().chain(&ranged) {
            let mut proposal = accepted[0].clone();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            proposal
                .pointer_mut(parent)
                .and_then(Value::as_object_mut)
                .unwrap()
                .insert(key.to_owned(), bad.clone());
            assert!(
                conforms(&schema, &proposal, "$").is_err(),
                "{pointer} = {bad} passed the schema"
            );
            if refused.iter().any(|(p, b)| (p, b) == (pointer, bad)) {
                assert!(parse_proposal("p", proposal).is_err(), "{pointer} = {bad}");
            }
        }
        let mut no_files = accepted[1].clone();
        no_files["change"]["files"] = json!([]);
        assert!(conforms(&schema, &no_files, "$").is_err());
        let mut bad_language = accepted[1].clone();
        bad_language["change"]["files"][0]["language"] = json!("cobol");
        assert!(conforms(&schema, &bad_language, "$").is_err());
        // The key facts, as a tool schema needs them: one self-contained object.
        assert_eq!(schema["type"], "object");
        assert_eq!(schema["additionalProperties"], false);
        assert_eq!(
            schema["required"],
            json!(["change", "rationale", "expected_gain", "claimed_risk"])
        );
        let kinds: Vec<&Value> = schema["properties"]["change"]["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| &v["properties"]["type"]["const"])
            .collect();
        assert_eq!(kinds, [&json!("lambda_config"), &json!("code_patch")]);
        let text = schema.to_string();
        for absent in ["$ref", "$defs", "definitions", "$schema", "\"format\""] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
        let file = &schema["properties"]["change"]["oneOf"][1]["properties"]["files"]["items"];
        assert!(
            file["properties"]["diff"]["description"]
                .as_str()
                .unwrap()
                .contains("--- a/<path>")
        );
        assert!(
            file["properties"]["path"]["description"]
                .as_str()
                .unwrap()
                .contains("package")
        );
    }
}
