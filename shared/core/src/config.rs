//! Configuration from environment variables: one typed struct with documented defaults.
//!
//! Every variable is listed in `docs/configuration.md`; a missing or bad one names itself.

use std::time::Duration;

use crate::alarm::AlarmPattern;

/// A configuration variable is missing or has a value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {name} is required but not set")]
    Missing {
        /// The variable's name.
        name: &'static str,
    },
    /// A variable is set to a value that cannot be used.
    #[error("environment variable {name}={value:?} is invalid: {problem}")]
    Invalid {
        /// The variable's name.
        name: &'static str,
        /// The value it has.
        value: String,
        /// Why it cannot be used.
        problem: String,
    },
}

impl crate::error::StableError for ConfigError {
    fn error_type(&self) -> crate::error::ErrorType {
        crate::error::ErrorType::ConfigError
    }
}

/// What an emergency stop does to a canary in flight (`HALT_IN_FLIGHT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltInFlight {
    /// Restore stable at the next look (the default).
    Rollback,
    /// Leave the canary's traffic split as it is, neither watched nor promoted.
    Freeze,
}

impl HaltInFlight {
    /// The variable's value for this setting.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rollback => "rollback",
            Self::Freeze => "freeze",
        }
    }
}

/// Everything selfbuild reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `TABLE_NAME`: the DynamoDB table holding claims, cycles, audit and control items.
    pub table_name: String,
    /// `STATE_MACHINE_ARN`: the improvement-cycle state machine (required by alarm-intake on AWS).
    pub state_machine_arn: Option<String>,
    /// `DEDUP_WINDOW_SECONDS`: at most one cycle per (tenant, component) in this window.
    pub dedup_window: Duration,
    /// `POLL_LOOKBACK_SECONDS`: the poller acts on alarms that entered ALARM this recently.
    pub poll_lookback: Duration,
    /// `CRITICAL_ALARM_PATTERNS`: extra alarm-name globs that start an emergency cycle.
    pub critical_alarm_patterns: Vec<AlarmPattern>,
    /// `ROUTINE_WINDOW_HOURS`: how much history a routine cycle analyses.
    pub routine_window_hours: u32,
    /// `EMERGENCY_WINDOW_MINUTES`: how much history before the alarm an emergency cycle analyses.
    pub emergency_window_minutes: u32,
    /// `MAX_IMPROVEMENTS`: the most opportunities one cycle acts on.
    pub max_improvements: u32,
    /// `MAX_CONCURRENT_IMPROVEMENTS`: the Map state's MaxConcurrency.
    pub max_concurrent_improvements: u32,
    /// `METRICS_NAMESPACE`: the CloudWatch namespace of the EMF metrics selfbuild emits.
    pub metrics_namespace: String,
    /// `POWERTOOLS_SERVICE_NAME`: the `service` dimension of those metrics, as Powertools names it.
    pub service_name: String,
    /// `ENABLE_AUTONOMOUS_IMPROVEMENTS`: deploy SAFE/LOW changes without a human (off: every
    /// change waits for approval).
    pub autonomous_improvements: bool,
    /// `ENABLE_IMPROVEMENT_ROLLBACK`: roll a degraded canary back automatically.
    pub improvement_rollback: bool,
    /// `ENABLE_COMPONENT_GENERATION`: accept MCP `generate_component` requests.
    pub component_generation: bool,
    /// `MEDIUM_RISK_APPROVALS`: approvals a MEDIUM-risk change needs (0 or 1).
    pub medium_risk_approvals: u8,
    /// `PROTECTED_FUNCTIONS`: function names (globs) selfbuild never changes.
    pub protected_functions: Vec<AlarmPattern>,
    /// `LLM_BUDGET_USD`: the most one generate request may cost.
    pub llm_budget_usd: f64,
    /// `CANARY_WEIGHT`: the canary's share of traffic (0–1).
    pub canary_weight: f64,
    /// `MONITOR_WINDOW_SECONDS`: how long a canary is watched before promotion.
    pub monitor_window_seconds: u32,
    /// `MONITOR_INTERVAL_SECONDS`: time between monitor checks.
    pub monitor_interval_seconds: u32,
    /// `DEGRADATION_THRESHOLD`: relative worsening that counts as degraded (0.10 = 10 %).
    pub degradation_threshold: f64,
    /// `SIGNIFICANCE_LEVEL`: the p-value below which a worsening is believed.
    pub significance_level: f64,
    /// `MIN_CANARY_REQUESTS`: canary invocations needed to promote; fewer at the end of the
    /// window extend it once, then keep stable as inconclusive.
    pub min_canary_requests: u32,
    /// `GUARDRAIL_ERROR_RATE`: a canary error or throttle rate at or above this (and
    /// `GUARDRAIL_RATIO` × stable's, on `GUARDRAIL_MIN_REQUESTS`) rolls back at once.
    pub guardrail_error_rate: f64,
    /// `GUARDRAIL_RATIO`: how many times stable's rate the guardrail needs.
    pub guardrail_ratio: f64,
    /// `GUARDRAIL_MIN_REQUESTS`: canary requests the guardrail needs.
    pub guardrail_min_requests: u32,
    /// `LATENCY_SLO_MS`: invocations slower than this are slow; unset: stable's pooled p99.
    pub latency_slo_ms: Option<f64>,
    /// `LATENCY_TRADE_BOUND`: when the canary's error rate is significantly lower, its p99
    /// may be up to (1 + this) × stable's without counting as a latency regression.
    pub latency_trade_bound: f64,
    /// `LATENCY_NON_INFERIORITY_MARGIN`: to be promoted, the canary's share of requests slower
    /// than stable's median must be shown below (1 + this) × stable's.
    pub latency_non_inferiority_margin: f64,
    /// `CANARY_SUCCESS_LATENCY`: monitor also reads the successful invocations' durations (on
    /// AWS one Logs Insights query per look over `platform.report` records) to report them
    /// and to bound a latency bought by fewer errors.
    pub canary_success_latency: bool,
    /// `LOW_TRAFFIC_INVOCATIONS_PER_MINUTE`: deploys wait while traffic is above this.
    pub low_traffic_invocations_per_minute: f64,
    /// `DEPLOY_DEFER_SECONDS`: how long a deferred deploy waits before trying again.
    pub deploy_defer_seconds: u32,
    /// `DEPLOY_MAX_DEFER_SECONDS`: the longest a deploy may wait, from its first deferral;
    /// then nothing is deployed and the item ends `skipped`.
    pub deploy_max_defer_seconds: u32,
    /// `AGENT_CALL_TIMEOUT_SECONDS`: the longest one MCP call to a registered agent may take
    /// (connect, initialize, the request).
    pub agent_call_timeout_seconds: u32,
    /// `AGENT_NOTIFY_ATTEMPTS`: calls made per notification to a dependent agent.
    pub agent_notify_attempts: u32,
    /// `HALT_IN_FLIGHT`: what the halt switch does to a canary already deployed.
    pub halt_in_flight: HaltInFlight,
    /// `BEDROCK_MODEL_ID`: the Bedrock model generate asks.
    pub bedrock_model_id: String,
    /// `EVENT_BUS_NAME`: where notifications for other agents go.
    pub event_bus_name: String,
    /// `CUSTOM_METRICS_NAMESPACE`: the services' own metrics (MemoryUtilization, tenant-scoped).
    pub custom_metrics_namespace: String,
    /// `LOG_GROUP_PREFIX`: a component's logs are in `<prefix><component>`.
    pub log_group_prefix: String,
    /// `ENABLE_SELF_BUILDING`: the master switch; off, intake acknowledges alarms, schedule
    /// ticks, log deliveries and manual requests but starts no cycle.
    pub self_building: bool,
    /// `ENABLE_CLOUDWATCH_STREAMING`: alarm-intake mines CloudWatch Logs subscription
    /// deliveries and starts emergency cycles on new or jumping error templates (off: they
    /// are acknowledged and ignored).
    pub cloudwatch_streaming: bool,
    /// `LLM_FALLBACK_SECRET_ID`: a Secrets Manager secret `{base_url, api_key, model}` of an
    /// OpenAI-compatible endpoint tried when Bedrock fails; none means no fallback.
    pub llm_fallback_secret_id: Option<String>,
    /// `SELF_FUNCTION_NAMES`: selfbuild's own Lambda functions, whose `Errors` and
    /// `Throttles` the health pass reads (empty: not observed).
    pub self_function_names: Vec<String>,
    /// `INTAKE_DLQ_URL`: the SQS queue of events intake could not take, which the health pass
    /// watches and re-sends from (none: not observed).
    pub intake_dlq_url: Option<String>,
    /// `INTAKE_FUNCTION_NAME`: the function dead letters are re-sent to (none: not re-sent).
    pub intake_function_name: Option<String>,
    /// `ROLLBACK_FUNCTION_NAME`: the function the AWS health pass hands its rollback heal to
    /// (none: the heal is refused, saying so).
    pub rollback_function_name: Option<String>,
    /// `SELFBUILD_AGENT_KEYS_FILE` (offline only): a JSON file `{"<secret id>": {"api_key":
    /// …}}` standing in for Secrets Manager when the CLI calls registered agents.
    pub agent_keys_file: Option<String>,
}

impl Config {
    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (a variable name to its value, if set).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env::new(&lookup);
        Ok(Self {
            table_name: env.string("TABLE_NAME", "selfbuild")?,
            state_machine_arn: env.optional("STATE_MACHINE_ARN"),
            dedup_window: Duration::from_secs(env.number(
                "DEDUP_WINDOW_SECONDS",
                300,
                1,
                86_400,
            )?),
            poll_lookback: Duration::from_secs(env.number(
                "POLL_LOOKBACK_SECONDS",
                900,
                60,
                7 * 86_400,
            )?),
            critical_alarm_patterns: env.patterns("CRITICAL_ALARM_PATTERNS")?,
            routine_window_hours: env.number("ROUTINE_WINDOW_HOURS", 24, 1, 168)?,
            emergency_window_minutes: env.number("EMERGENCY_WINDOW_MINUTES", 60, 5, 1440)?,
            max_improvements: env.number("MAX_IMPROVEMENTS", 3, 1, 10)?,
            max_concurrent_improvements: env.number("MAX_CONCURRENT_IMPROVEMENTS", 3, 1, 10)?,
            metrics_namespace: env.string("METRICS_NAMESPACE", "Selfbuild")?,
            service_name: env.string("POWERTOOLS_SERVICE_NAME", "selfbuild")?,
            autonomous_improvements: env.flag("ENABLE_AUTONOMOUS_IMPROVEMENTS", false)?,
            improvement_rollback: env.flag("ENABLE_IMPROVEMENT_ROLLBACK", true)?,
            component_generation: env.flag("ENABLE_COMPONENT_GENERATION", true)?,
            medium_risk_approvals: env.number("MEDIUM_RISK_APPROVALS", 1, 0, 1)?,
            protected_functions: own_functions(&env)?
                .into_iter()
                .chain(env.patterns("PROTECTED_FUNCTIONS")?)
                .collect(),
            llm_budget_usd: env.float("LLM_BUDGET_USD", 5.0, 0.0, 1000.0)?,
            canary_weight: env.float("CANARY_WEIGHT", 0.10, 0.01, 1.0)?,
            monitor_window_seconds: env.number("MONITOR_WINDOW_SECONDS", 3600, 60, 86_400)?,
            monitor_interval_seconds: env.number("MONITOR_INTERVAL_SECONDS", 300, 10, 3600)?,
            degradation_threshold: env.float("DEGRADATION_THRESHOLD", 0.10, 0.0, 10.0)?,
            significance_level: env.float("SIGNIFICANCE_LEVEL", 0.05, 0.0001, 0.5)?,
            min_canary_requests: env.number("MIN_CANARY_REQUESTS", 60, 1, 1_000_000)?,
            guardrail_error_rate: env.float("GUARDRAIL_ERROR_RATE", 0.05, 0.0001, 1.0)?,
            guardrail_ratio: env.float("GUARDRAIL_RATIO", 5.0, 1.0, 1000.0)?,
            guardrail_min_requests: env.number("GUARDRAIL_MIN_REQUESTS", 10, 1, 1_000_000)?,
            latency_slo_ms: env
                .optional("LATENCY_SLO_MS")
                .map(|_| env.float("LATENCY_SLO_MS", 0.0, 1.0, 900_000.0))
                .transpose()?,
            latency_trade_bound: env.float("LATENCY_TRADE_BOUND", 1.0, 0.0, 10.0)?,
            latency_non_inferiority_margin: env.float(
                "LATENCY_NON_INFERIORITY_MARGIN",
                0.25,
                0.0,
                1.0,
            )?,
            canary_success_latency: env.flag("CANARY_SUCCESS_LATENCY", true)?,
            low_traffic_invocations_per_minute: env.float(
                "LOW_TRAFFIC_INVOCATIONS_PER_MINUTE",
                10_000.0,
                0.0,
                1e9,
            )?,
            deploy_defer_seconds: env.number("DEPLOY_DEFER_SECONDS", 1800, 60, 86_400)?,
            deploy_max_defer_seconds: env.number(
                "DEPLOY_MAX_DEFER_SECONDS",
                86_400,
                60,
                604_800,
            )?,
            agent_call_timeout_seconds: env.number("AGENT_CALL_TIMEOUT_SECONDS", 5, 1, 30)?,
            agent_notify_attempts: env.number("AGENT_NOTIFY_ATTEMPTS", 3, 1, 5)?,
            halt_in_flight: env.halt_in_flight("HALT_IN_FLIGHT")?,
            bedrock_model_id: env.string(
                "BEDROCK_MODEL_ID",
                "anthropic.claude-3-5-sonnet-20240620-v1:0",
            )?,
            event_bus_name: env.string("EVENT_BUS_NAME", "default")?,
            custom_metrics_namespace: env
                .string("CUSTOM_METRICS_NAMESPACE", "Selfbuild/Services")?,
            log_group_prefix: env.string("LOG_GROUP_PREFIX", "/aws/lambda/")?,
            self_building: env.flag("ENABLE_SELF_BUILDING", true)?,
            cloudwatch_streaming: env.flag("ENABLE_CLOUDWATCH_STREAMING", false)?,
            self_function_names: env.list("SELF_FUNCTION_NAMES").unwrap_or_default(),
            intake_dlq_url: env.optional("INTAKE_DLQ_URL"),
            intake_function_name: env.optional("INTAKE_FUNCTION_NAME"),
            rollback_function_name: env.optional("ROLLBACK_FUNCTION_NAME"),
            llm_fallback_secret_id: env.optional("LLM_FALLBACK_SECRET_ID"),
            agent_keys_file: env.optional("SELFBUILD_AGENT_KEYS_FILE"),
        })
    }

    /// The state machine ARN, or an error naming `STATE_MACHINE_ARN`.
    pub fn require_state_machine_arn(&self) -> Result<&str, ConfigError> {
        self.state_machine_arn
            .as_deref()
            .ok_or(ConfigError::Missing {
                name: "STATE_MACHINE_ARN",
            })
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::from_lookup(|_| None).expect("the defaults are valid")
    }
}

/// The suffixes of the stack's function names (`<stack>-<suffix>`, infra/template.yaml).
const OWN_FUNCTION_SUFFIXES: [&str; 8] = [
    "alarm-intake",
    "analyze",
    "generate",
    "validate",
    "deploy",
    "monitor",
    "rollback",
    "mcp",
];

/// selfbuild's own functions, protected in every mode whatever `PROTECTED_FUNCTIONS` says:
/// `selfbuild` and `selfbuild-*`, and on Lambda the running function and its stack's
/// (`<stack>-*`, read from `AWS_LAMBDA_FUNCTION_NAME`).
fn own_functions(env: &Env<'_>) -> Result<Vec<AlarmPattern>, ConfigError> {
    let mut globs = vec!["selfbuild".to_owned(), "selfbuild-*".to_owned()];
    if let Some(name) = env.optional("AWS_LAMBDA_FUNCTION_NAME") {
        let name = name.trim().to_owned();
        if let Some(stack) = OWN_FUNCTION_SUFFIXES
            .iter()
            .find_map(|suffix| name.strip_suffix(&format!("-{suffix}")))
            .filter(|stack| !stack.is_empty())
        {
            globs.push(format!("{stack}-*"));
        }
        globs.push(name);
    }
    globs
        .iter()
        .map(|g| {
            AlarmPattern::parse(g).map_err(|problem| ConfigError::Invalid {
                name: "AWS_LAMBDA_FUNCTION_NAME",
                value: g.clone(),
                problem: problem.to_owned(),
            })
        })
        .collect()
}

/// Environment variables read through a lookup, each error naming its variable: the one
/// parser every crate's settings use.
pub struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Env<'a> {
    /// Variables read through `lookup` (`std::env::var` in production, a map in tests).
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { lookup }
    }

    /// The variable's value; set-but-blank counts as unset.
    pub fn optional(&self, name: &str) -> Option<String> {
        (self.lookup)(name).filter(|v| !v.trim().is_empty())
    }

    /// A text without control characters, or `default`.
    pub fn string(&self, name: &'static str, default: &str) -> Result<String, ConfigError> {
        let value = self.optional(name).unwrap_or_else(|| default.to_owned());
        if value.chars().any(char::is_control) {
            return Err(ConfigError::Invalid {
                name,
                value,
                problem: "must not contain control characters".into(),
            });
        }
        Ok(value)
    }

    /// A whole number from `min` to `max`, or `default`.
    pub fn number<T>(
        &self,
        name: &'static str,
        default: T,
        min: T,
        max: T,
    ) -> Result<T, ConfigError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        let invalid = |problem: String| ConfigError::Invalid {
            name,
            value: raw.clone(),
            problem,
        };
        let value: T = raw
            .trim()
            .parse()
            .map_err(|_| invalid(format!("expected a whole number from {min} to {max}")))?;
        if value < min || value > max {
            return Err(invalid(format!("must be from {min} to {max}")));
        }
        Ok(value)
    }

    /// `true`/`false` (also `1`/`0`, `yes`/`no`, `on`/`off`), or `default`.
    pub fn flag(&self, name: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::Invalid {
                name,
                value: raw,
                problem: "expected true or false".into(),
            }),
        }
    }

    /// A number from `min` to `max`, or `default`.
    pub fn float(
        &self,
        name: &'static str,
        default: f64,
        min: f64,
        max: f64,
    ) -> Result<f64, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(default);
        };
        let value: f64 = raw.trim().parse().map_err(|_| ConfigError::Invalid {
            name,
            value: raw.clone(),
            problem: format!("expected a number from {min} to {max}"),
        })?;
        if !(min..=max).contains(&value) {
            return Err(ConfigError::Invalid {
                name,
                value: raw,
                problem: format!("must be from {min} to {max}"),
            });
        }
        Ok(value)
    }

    fn halt_in_flight(&self, name: &'static str) -> Result<HaltInFlight, ConfigError> {
        let Some(raw) = self.optional(name) else {
            return Ok(HaltInFlight::Rollback);
        };
        match raw.trim().to_ascii_lowercase().as_str() {
            "rollback" => Ok(HaltInFlight::Rollback),
            "freeze" => Ok(HaltInFlight::Freeze),
            _ => Err(ConfigError::Invalid {
                name,
                value: raw,
                problem: "expected rollback or freeze".into(),
            }),
        }
    }

    /// A comma-separated list, each item trimmed and blank ones dropped (set but blank is an
    /// empty list); none when unset.
    pub fn list(&self, name: &str) -> Option<Vec<String>> {
        let raw = (self.lookup)(name)?;
        Some(
            raw.split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    fn patterns(&self, name: &'static str) -> Result<Vec<AlarmPattern>, ConfigError> {
        let Some(items) = self.list(name) else {
            return Ok(Vec::new());
        };
        items
            .iter()
            .map(|p| {
                AlarmPattern::parse(p).map_err(|problem| ConfigError::Invalid {
                    name,
                    value: (self.lookup)(name).unwrap_or_default(),
                    problem: format!("pattern {p:?}: {problem}"),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let c = config(&[]).unwrap();
        assert_eq!(c.table_name, "selfbuild");
        assert_eq!(c.dedup_window, Duration::from_secs(300));
        assert_eq!(c.routine_window_hours, 24);
        assert_eq!(c.max_improvements, 3);
        assert!(c.critical_alarm_patterns.is_empty());
        assert_eq!(
            c.require_state_machine_arn().unwrap_err(),
            ConfigError::Missing {
                name: "STATE_MACHINE_ARN"
            }
        );
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = config(&[("DEDUP_WINDOW_SECONDS", "five")]).unwrap_err();
        assert!(err.to_string().contains("DEDUP_WINDOW_SECONDS"), "{err}");
        let err = config(&[("MAX_IMPROVEMENTS", "11")]).unwrap_err();
        assert!(err.to_string().contains("MAX_IMPROVEMENTS"), "{err}");
        assert!(err.to_string().contains("from 1 to 10"), "{err}");
        let err = config(&[("ENABLE_AUTONOMOUS_IMPROVEMENTS", "maybe")]).unwrap_err();
        assert!(
            err.to_string().contains("ENABLE_AUTONOMOUS_IMPROVEMENTS"),
            "{err}"
        );
        let err = config(&[("CANARY_WEIGHT", "1.5")]).unwrap_err();
        assert!(err.to_string().contains("CANARY_WEIGHT"), "{err}");
        let err = config(&[("CRITICAL_ALARM_PATTERNS", "ok,**")]).unwrap_err();
        assert!(err.to_string().contains("CRITICAL_ALARM_PATTERNS"), "{err}");
    }

    #[test]
    fn selfbuilds_own_functions_are_protected_in_every_mode() {
        let local = config(&[]).unwrap();
        let protects =
            |c: &Config, name: &str| c.protected_functions.iter().any(|p| p.matches(name));
        assert!(protects(&local, "selfbuild-generate"));
        assert!(protects(&local, "selfbuild"));
        assert!(!protects(&local, "orders-api"));
        let on_lambda = config(&[
            ("AWS_LAMBDA_FUNCTION_NAME", "prod-loop-deploy"),
            ("PROTECTED_FUNCTIONS", "payments-*"),
        ])
        .unwrap();
        for name in [
            "prod-loop-deploy",
            "prod-loop-mcp",
            "prod-loop-alarm-intake",
            "payments-api",
        ] {
            assert!(protects(&on_lambda, name), "{name}");
        }
        assert!(!protects(&on_lambda, "prod-orders"));
    }

    #[test]
    fn halt_in_flight_rolls_back_unless_set_to_freeze() {
        assert_eq!(config(&[]).unwrap().halt_in_flight, HaltInFlight::Rollback);
        let frozen = config(&[("HALT_IN_FLIGHT", " Freeze ")]).unwrap();
        assert_eq!(frozen.halt_in_flight, HaltInFlight::Freeze);
        let err = config(&[("HALT_IN_FLIGHT", "pause")]).unwrap_err();
        assert!(err.to_string().contains("HALT_IN_FLIGHT"), "{err}");
        assert!(err.to_string().contains("rollback or freeze"), "{err}");
    }

    #[test]
    fn patterns_are_a_comma_separated_list() {
        let c = config(&[("CRITICAL_ALARM_PATTERNS", " *-P1 , Payments* ,")]).unwrap();
        assert_eq!(c.critical_alarm_patterns.len(), 2);
        assert!(c.critical_alarm_patterns[0].matches("orders-p1"));
    }
}
