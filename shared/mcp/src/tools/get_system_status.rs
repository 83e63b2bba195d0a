//! `get_system_status`: halt switch, running cycles, improvements by status, component health,
//! LLM circuit breakers, today's LLM spend and the evolution level.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use schemars::JsonSchema;
use selfbuild_core::apikeys::Scope;
use selfbuild_core::health::skip::SkippedComponent;
use selfbuild_core::ids::TenantId;
use selfbuild_core::records::{ImprovementStatus, TenantScope};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::{ToolContext, ToolError, ToolSpec, rfc3339};

pub(crate) const SPEC: ToolSpec = ToolSpec {
    name: "get_system_status",
    description: "The state of selfbuild: halt switch, running cycles, improvements by status, \
component health over the last hour (error and throttle rates), LLM circuit breakers, LLM \
spend today against the per-request budget, the last self health report, the components the \
health pass disabled (with why and how to re-enable them: enable_component), and the evolution \
level (promoted improvements). \
The halt switch is read on every call; the rest may be up to 5 s old (as_of, age_seconds).",
    scope: Scope::Read,
    read_only: true,
    destructive: false,
    idempotent: true,
};

/// Arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Args {
    /// Include component health from the last hour of metrics (one telemetry query).
    #[serde(default = "yes")]
    include_health: bool,
}

fn yes() -> bool {
    true
}

/// A component is degraded above these rates.
const DEGRADED_ERROR_RATE: f64 = 0.05;
const DEGRADED_THROTTLE_RATE: f64 = 0.01;

/// How long a status answer is reused: the answer says how old it is (`as_of`,
/// `age_seconds`). The halt switch is read on every call; a tool call of this endpoint that
/// changes something makes the next status call read everything again.
pub const STATUS_CACHE_TTL: time::Duration = time::Duration::seconds(5);

/// Status answers of the last [`STATUS_CACHE_TTL`], per tenant scope and health option.
#[derive(Default)]
pub struct StatusCache {
    /// Bumped by every change made through the endpoint; an answer of an older one is stale.
    generation: AtomicU64,
    entries: Mutex<HashMap<(Option<TenantId>, bool), Cached>>,
    /// One refresh at a time; the others wait for its answer.
    refresh: tokio::sync::Mutex<()>,
}

#[derive(Clone)]
struct Cached {
    as_of: OffsetDateTime,
    generation: u64,
    body: Arc<Map<String, Value>>,
}

impl StatusCache {
    /// Makes every cached answer stale.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    fn fresh(&self, key: &(Option<TenantId>, bool), now: OffsetDateTime) -> Option<Cached> {
        let generation = self.generation.load(Ordering::SeqCst);
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entries
            .get(key)
            .filter(|c| {
                c.generation == generation && c.as_of <= now && now - c.as_of < STATUS_CACHE_TTL
            })
            .cloned()
    }

    fn put(&self, key: (Option<TenantId>, bool), cached: Cached) {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key, cached);
    }
}

pub(crate) async fn call(ctx: &ToolContext<'_>, args: Args) -> Result<Value, ToolError> {
    // The switch that stops everything is never answered from a cache.
    let halt = ctx.deps.store.halt_state().await?;
    let cache = ctx.status_cache;
    let key = (ctx.key.tenant.tenant().cloned(), args.include_health);
    let cached = match cache.fresh(&key, ctx.now) {
        Some(cached) => cached,
        None => {
            let _refresh = cache.refresh.lock().await;
            match cache.fresh(&key, ctx.now) {
                Some(cached) => cached,
                None => {
                    let generation = cache.generation.load(Ordering::SeqCst);
                    let cached = Cached {
                        as_of: ctx.now,
                        generation,
                        body: Arc::new(summary(ctx, &args).await?),
                    };
                    cache.put(key, cached.clone());
                    cached
                }
            }
        }
    };
    let mut answer = Map::with_capacity(cached.body.len() + 3);
    answer.insert(
        "halt".into(),
        match &halt {
            Some(h) => {
                json!({"on": true, "reason": h.reason, "actor": h.actor, "since": rfc3339(h.since)})
            }
            None => json!({"on": false}),
        },
    );
    answer.extend(cached.body.iter().map(|(k, v)| (k.clone(), v.clone())));
    let age = (ctx.now - cached.as_of).as_seconds_f64();
    answer.insert("as_of".into(), json!(rfc3339(cached.as_of)));
    answer.insert("age_seconds".into(), json!((age * 1000.0).round() / 1000.0));
    Ok(Value::Object(answer))
}

/// Everything but the halt switch, read from the store and telemetry.
async fn summary(ctx: &ToolContext<'_>, args: &Args) -> Result<Map<String, Value>, ToolError> {
    let deps = ctx.deps;
    let scope = ctx.key.tenant.clone();
    let running = deps.store.running_cycles(&scope, 50).await?;
    let counts = deps.store.improvement_counts(&scope).await?;
    let usage = deps.store.llm_usage(ctx.now.date()).await?;

    let mut by_status = Map::new();
    for status in ImprovementStatus::ALL {
        by_status.insert(
            status.as_str().into(),
            json!(counts.get(&status).copied().unwrap_or(0)),
        );
    }
    let health = if args.include_health {
        component_health(ctx, &scope).await
    } else {
        Value::Null
    };
    let last_health = last_health(ctx, &scope).await;
    let disabled = disabled_components(ctx, &scope).await;
    let body = json!({
        "running_cycles": running.iter().map(|c| json!({
            "cycle_id": c.request.cycle_id,
            "tenant_id": c.request.tenant_id,
            "mode": c.request.mode.as_str(),
            "started_at": rfc3339(c.started_at),
            "execution": c.execution_ref,
        })).collect::<Vec<_>>(),
        "improvements_by_status": by_status,
        "component_health": health,
        "circuit_breakers": usage.providers,
        "budget": {
            "llm_spent_today_usd": usage.cost_usd,
            "llm_calls_today": usage.calls,
            "per_request_limit_usd": deps.config.llm_budget_usd,
        },
        "last_health": last_health,
        "disabled_components": disabled,
        "evolution_level": counts.get(&ImprovementStatus::Promoted).copied().unwrap_or(0),
        "features": {
            "autonomous_improvements": deps.config.autonomous_improvements,
            "improvement_rollback": deps.config.improvement_rollback,
        },
    });
    match body {
        Value::Object(map) => Ok(map),
        _ => Ok(Map::new()),
    }
}

/// The last self health report: whole for a `*` key; for a tenant's key only when it ran and
/// whether it found problems, with each check's status (the details name other tenants'
/// cycles). Null where no pass ran; a read failure is reported.
async fn last_health(ctx: &ToolContext<'_>, scope: &TenantScope) -> Value {
    match ctx.deps.store.last_health_report().await {
        Ok(None) => Value::Null,
        Ok(Some(report)) => match scope {
            TenantScope::All => {
                serde_json::to_value(&report).unwrap_or_else(|e| json!({"error": e.to_string()}))
            }
            TenantScope::Only(_) => json!({
                "at": rfc3339(report.at),
                "healthy": report.healthy,
                "checks": report.checks.iter().map(|c| json!({
                    "name": c.name,
                    "status": c.status,
                })).collect::<Vec<_>>(),
            }),
        },
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// The components the health pass disabled, as the heal ledgers say now (a re-enable shows
/// at once): all for a `*` key; for a tenant's key those registered to its tenant. Each with
/// since when, why and how to re-enable; a read failure is reported, not raised.
async fn disabled_components(ctx: &ToolContext<'_>, scope: &TenantScope) -> Value {
    let ledgers = match ctx.deps.store.component_health().await {
        Ok(ledgers) => ledgers,
        Err(e) => return json!({"error": e.to_string()}),
    };
    let visible: Option<Vec<String>> = match scope {
        // Nothing disabled (the usual case): no registry read.
        _ if ledgers.iter().all(|l| l.disabled.is_none()) => None,
        TenantScope::All => None,
        TenantScope::Only(_) => match ctx.deps.store.list_components(scope).await {
            Ok(components) => Some(components.into_iter().map(|c| c.name).collect()),
            Err(e) => return json!({"error": e.to_string()}),
        },
    };
    Value::Array(
        ledgers
            .iter()
            .filter(|l| visible.as_ref().is_none_or(|v| v.contains(&l.component)))
            .filter_map(SkippedComponent::of)
            .map(|s| {
                json!({
                    "component": s.component,
                    "since": rfc3339(s.since),
                    "why": s.why,
                    "reason": s.reason,
                })
            })
            .collect(),
    )
}

/// Per component over the last hour; a telemetry failure is reported, not raised.
async fn component_health(ctx: &ToolContext<'_>, scope: &TenantScope) -> Value {
    match ctx
        .analysis(scope.tenant().cloned(), Vec::new(), 1, 0)
        .await
    {
        Ok(report) => Value::Array(
            report
                .components
                .iter()
                .map(|c| {
                    let degraded = c.error_rate > DEGRADED_ERROR_RATE
                        || c.throttle_rate > DEGRADED_THROTTLE_RATE;
                    json!({
                        "component": c.component,
                        "health": if degraded { "degraded" } else { "healthy" },
                        "invocations": c.invocations,
                        "error_rate": c.error_rate,
                        "throttle_rate": c.throttle_rate,
                        "p99_ms": c.p99_ms,
                    })
                })
                .collect(),
        ),
        Err(e) => json!({"error": e.to_string()}),
    }
}
