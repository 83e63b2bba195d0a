//! An agent's own telemetry (seed R10.2): where its metrics are in CloudWatch, which of them
//! is its request count, errors, latency and resource use, and the checks a declaration
//! passes before it is recorded. Defaults are on [`AgentMetrics`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::TenantId;
use crate::records::AgentRecord;
use crate::telemetry::{AgentSource, MetricName};

/// The dimension that selects an agent's metrics when it declares none (value: its name).
pub const DEFAULT_AGENT_DIMENSION: &str = "Agent";
/// The most dimensions a CloudWatch metric may have.
pub const MAX_DIMENSIONS: usize = 30;
/// The dimension naming a tenant in the services' metrics: a tenant's agent may only name its own.
pub const TENANT_DIMENSION: &str = "TenantId";

/// One CloudWatch dimension: a name and the value that selects the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MetricDimension {
    /// 1–255 ASCII characters, not starting with `:`.
    pub name: String,
    /// 1–1024 ASCII characters.
    pub value: String,
}

/// A metric in the agent's namespace and the statistic read of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentStat {
    /// The CloudWatch metric name (1–255 ASCII characters).
    pub metric: String,
    /// `SampleCount`, `Average`, `Sum`, `Minimum`, `Maximum` or `pNN[.NN]`; none: the role's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat: Option<String>,
}

/// Where an agent publishes its own metrics and which is which; every role has a default,
/// so `{"namespace": "Acme/Agents"}` alone reads `Requests` (Sum), `Errors` (Sum),
/// `Latency` (Average and p99) and `MemoryUtilization` (Maximum, percent) by `Agent=<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentMetrics {
    /// The CloudWatch namespace (1–255 characters; not `AWS/…`).
    pub namespace: String,
    /// The dimensions selecting the agent (0–30); none: `Agent` = the agent's name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<MetricDimension>,
    /// Requests handled (default `Requests`, Sum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<AgentStat>,
    /// Requests that failed (default `Errors`, Sum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors: Option<AgentStat>,
    /// Mean latency, ms (default `Latency`, Average).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_avg: Option<AgentStat>,
    /// Tail latency, ms (default `Latency`, p99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_p99: Option<AgentStat>,
    /// Memory in use, percent (default `MemoryUtilization`, Maximum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_utilization: Option<AgentStat>,
    /// Requests in flight (no default: read only when declared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<AgentStat>,
}

/// A role's default metric name and statistic; none: not read unless declared.
type RoleDefault = Option<(&'static str, &'static str)>;

/// Each role: the metric it is read as, its field, its default.
const ROLES: [(MetricName, &str, RoleDefault); 6] = [
    (
        MetricName::Invocations,
        "requests",
        Some(("Requests", "Sum")),
    ),
    (MetricName::Errors, "errors", Some(("Errors", "Sum"))),
    (
        MetricName::DurationAvg,
        "latency_avg",
        Some(("Latency", "Average")),
    ),
    (
        MetricName::DurationP99,
        "latency_p99",
        Some(("Latency", "p99")),
    ),
    (
        MetricName::MemoryUtilization,
        "memory_utilization",
        Some(("MemoryUtilization", "Maximum")),
    ),
    (MetricName::ConcurrentExecutions, "concurrency", None),
];

impl AgentMetrics {
    fn role(&self, field: &str) -> Option<&AgentStat> {
        match field {
            "requests" => self.requests.as_ref(),
            "errors" => self.errors.as_ref(),
            "latency_avg" => self.latency_avg.as_ref(),
            "latency_p99" => self.latency_p99.as_ref(),
            "memory_utilization" => self.memory_utilization.as_ref(),
            "concurrency" => self.concurrency.as_ref(),
            _ => None,
        }
    }

    /// Checks the declaration against CloudWatch's limits and the tenant rule; the error
    /// names the field (`metrics.dimensions[1].value: …`).
    pub fn check(&self, tenant: Option<&TenantId>) -> Result<(), String> {
        namespace("metrics.namespace", &self.namespace)?;
        if self.dimensions.len() > MAX_DIMENSIONS {
            return Err(format!(
                "metrics.dimensions: at most {MAX_DIMENSIONS} dimensions (CloudWatch's limit)"
            ));
        }
        for (n, d) in self.dimensions.iter().enumerate() {
            let field = format!("metrics.dimensions[{n}]");
            ascii(&format!("{field}.name"), &d.name, 255)?;
            if d.name.starts_with(':') {
                return Err(format!("{field}.name: must not start with ':'"));
            }
            ascii(&format!("{field}.value"), &d.value, 1024)?;
            if self.dimensions[..n].iter().any(|e| e.name == d.name) {
                return Err(format!("{field}.name: {:?} is given twice", d.name));
            }
            if d.name == TENANT_DIMENSION
                && let Some(own) = tenant
                && d.value != own.as_str()
            {
                return Err(format!(
                    "{field}.value: a {TENANT_DIMENSION} dimension must be the agent's tenant ({own})"
                ));
            }
        }
        for (_, field, _) in ROLES {
            if let Some(s) = self.role(field) {
                ascii(&format!("metrics.{field}.metric"), &s.metric, 255)?;
                if let Some(stat) = &s.stat {
                    statistic(&format!("metrics.{field}.stat"), stat)?;
                }
            }
        }
        Ok(())
    }

    /// The dimensions that select `agent`: those declared, or `Agent` = its name.
    pub fn dimensions_for(&self, agent: &str) -> Vec<MetricDimension> {
        if self.dimensions.is_empty() {
            vec![MetricDimension {
                name: DEFAULT_AGENT_DIMENSION.to_owned(),
                value: agent.to_owned(),
            }]
        } else {
            self.dimensions.clone()
        }
    }

    /// Every metric read, as (what it is read as, CloudWatch metric name, statistic), defaults
    /// filled in, in the order of [`MetricName::ALL`].
    pub fn stats(&self) -> Vec<(MetricName, String, String)> {
        ROLES
            .iter()
            .filter_map(|(metric, field, default)| {
                let declared = self.role(field);
                let (name, stat) = match (declared, default) {
                    (Some(s), Some((_, default_stat))) => (
                        s.metric.clone(),
                        s.stat.clone().unwrap_or_else(|| (*default_stat).to_owned()),
                    ),
                    (Some(s), None) => (
                        s.metric.clone(),
                        s.stat.clone().unwrap_or_else(|| "Maximum".to_owned()),
                    ),
                    (None, Some((name, stat))) => ((*name).to_owned(), (*stat).to_owned()),
                    (None, None) => return None,
                };
                Some((*metric, name, stat))
            })
            .collect()
    }
}

/// Why a tenant's agent may not read `namespace` by `dimensions`: the namespace is one of
/// `shared` (they hold every tenant's metrics, e.g. `CUSTOM_METRICS_NAMESPACE`) and no
/// `TenantId` dimension narrows it to the agent's own tenant; none when it may.
pub fn shared_namespace_problem(
    namespace: &str,
    dimensions: &[MetricDimension],
    tenant: Option<&TenantId>,
    shared: &[&str],
) -> Option<String> {
    let own = tenant?;
    if !shared.contains(&namespace) || dimensions.iter().any(|d| d.name == TENANT_DIMENSION) {
        return None;
    }
    Some(format!(
        "metrics.namespace: {namespace:?} holds every tenant's metrics; a tenant's agent reads \
         it only with a {TENANT_DIMENSION} dimension of its own tenant ({own})"
    ))
}

/// What analysis reads for `agent`, if it declares metrics that pass the checks (a record
/// written before a check existed, or by hand, is left out, not failed on).
pub fn agent_source(agent: &AgentRecord) -> Option<Result<AgentSource, String>> {
    let metrics = agent.metrics.as_ref()?;
    Some(
        metrics
            .check(agent.tenant_id.as_ref())
            .map(|()| AgentSource {
                agent: agent.name.clone(),
                tenant_id: agent.tenant_id.clone(),
                namespace: metrics.namespace.clone(),
                dimensions: metrics.dimensions_for(&agent.name),
                stats: metrics.stats(),
            }),
    )
}

/// A namespace: 1–255 of `0-9A-Za-z . - _ / # : space`, not `AWS/…` (AWS's own: no agent
/// can publish there, and reading it would let an agent point at resources it does not own).
fn namespace(field: &str, value: &str) -> Result<(), String> {
    ascii(field, value, 255)?;
    if let Some(bad) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || ".-_/#: ".contains(*c)))
    {
        return Err(format!(
            "{field}: {bad:?} is not allowed (letters, digits and . - _ / # : space)"
        ));
    }
    if value.starts_with("AWS/") {
        return Err(format!(
            "{field}: {value:?}: AWS/ namespaces are AWS's own; an agent's metrics are in a namespace it publishes to"
        ));
    }
    Ok(())
}

/// 1–`max` printable ASCII characters, not only spaces.
fn ascii(field: &str, value: &str, max: usize) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{field}: must not be empty"));
    }
    if value.len() > max {
        return Err(format!("{field}: at most {max} characters"));
    }
    if !value.chars().all(|c| c.is_ascii() && !c.is_ascii_control()) {
        return Err(format!("{field}: printable ASCII characters only"));
    }
    Ok(())
}

/// `SampleCount`, `Average`, `Sum`, `Minimum`, `Maximum` or `pNN[.NN]` (0–100).
fn statistic(field: &str, value: &str) -> Result<(), String> {
    if matches!(
        value,
        "SampleCount" | "Average" | "Sum" | "Minimum" | "Maximum"
    ) {
        return Ok(());
    }
    let level = value.strip_prefix('p').filter(|l| {
        let (whole, fraction) = l.split_once('.').unwrap_or((l, ""));
        (1..=3).contains(&whole.len())
            && fraction.len() <= 2
            && !l.ends_with('.')
            && whole
                .chars()
                .chain(fraction.chars())
                .all(|c| c.is_ascii_digit())
    });
    match level.and_then(|l| l.parse::<f64>().ok()) {
        Some(l) if (0.0..=100.0).contains(&l) => Ok(()),
        _ => Err(format!(
            "{field}: {:?} is not SampleCount, Average, Sum, Minimum, Maximum or pNN.NN",
            crate::text::Excerpt(value)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(json: serde_json::Value) -> AgentMetrics {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_namespace_alone_reads_every_role_by_the_agent_dimension() {
        let m = declared(serde_json::json!({"namespace": "Acme/Agents"}));
        assert_eq!(m.check(None), Ok(()));
        assert_eq!(
            m.dimensions_for("orders"),
            [MetricDimension {
                name: "Agent".into(),
                value: "orders".into()
            }]
        );
        let stats = m.stats();
        let stats: Vec<(MetricName, &str, &str)> = stats
            .iter()
            .map(|(k, n, s)| (*k, n.as_str(), s.as_str()))
            .collect();
        assert_eq!(
            stats,
            [
                (MetricName::Invocations, "Requests", "Sum"),
                (MetricName::Errors, "Errors", "Sum"),
                (MetricName::DurationAvg, "Latency", "Average"),
                (MetricName::DurationP99, "Latency", "p99"),
                (
                    MetricName::MemoryUtilization,
                    "MemoryUtilization",
                    "Maximum"
                ),
            ]
        );
        let m = declared(
            serde_json::json!({"namespace": "A", "latency_p99": {"metric": "RespTime"},
            "concurrency": {"metric": "InFlight"}}),
        );
        let stats = m.stats();
        assert!(stats.contains(&(MetricName::DurationP99, "RespTime".into(), "p99".into())));
        assert!(stats.contains(&(
            MetricName::ConcurrentExecutions,
            "InFlight".into(),
            "Maximum".into()
        )));
    }

    #[test]
    fn bad_declarations_name_the_field() {
        let acme = TenantId::parse("acme").unwrap();
        let long = "x".repeat(256);
        let too_many: Vec<serde_json::Value> = (0..31)
            .map(|n| serde_json::json!({"name": format!("d{n}"), "value": "v"}))
            .collect();
        for (json, says) in [
            (
                serde_json::json!({"namespace": ""}),
                "metrics.namespace: must not be empty",
            ),
            (
                serde_json::json!({"namespace": long}),
                "metrics.namespace: at most 255",
            ),
            (
                serde_json::json!({"namespace": "AWS/Lambda"}),
                "metrics.namespace: \"AWS/Lambda\": AWS/",
            ),
            (
                serde_json::json!({"namespace": "a*b"}),
                "metrics.namespace: '*' is not allowed",
            ),
            (
                serde_json::json!({"namespace": "A", "dimensions": too_many}),
                "metrics.dimensions: at most 30",
            ),
            (
                serde_json::json!({"namespace": "A", "dimensions": [{"name": "Agent", "value": "a"}, {"name": " ", "value": "b"}]}),
                "metrics.dimensions[1].name: must not be empty",
            ),
            (
                serde_json::json!({"namespace": "A", "dimensions": [{"name": ":x", "value": "a"}]}),
                "metrics.dimensions[0].name: must not start with ':'",
            ),
            (
                serde_json::json!({"namespace": "A", "dimensions": [{"name": "x", "value": "é"}]}),
                "metrics.dimensions[0].value: printable ASCII",
            ),
            (
                serde_json::json!({"namespace": "A", "dimensions": [{"name": "x", "value": "1"}, {"name": "x", "value": "2"}]}),
                "metrics.dimensions[1].name: \"x\" is given twice",
            ),
            (
                serde_json::json!({"namespace": "A", "dimensions": [{"name": "TenantId", "value": "globex"}]}),
                "metrics.dimensions[0].value: a TenantId dimension must be the agent's tenant (acme)",
            ),
            (
                serde_json::json!({"namespace": "A", "errors": {"metric": ""}}),
                "metrics.errors.metric: must not be empty",
            ),
            (
                serde_json::json!({"namespace": "A", "latency_p99": {"metric": "L", "stat": "p999"}}),
                "metrics.latency_p99.stat: \"p999\" is not",
            ),
            (
                serde_json::json!({"namespace": "A", "latency_p99": {"metric": "L", "stat": "p101"}}),
                "metrics.latency_p99.stat",
            ),
            (
                serde_json::json!({"namespace": "A", "requests": {"metric": "R", "stat": "Total"}}),
                "metrics.requests.stat",
            ),
        ] {
            let e = declared(json.clone()).check(Some(&acme)).unwrap_err();
            assert!(e.starts_with(says), "{json}: {e}");
        }
        for good in ["p99", "p99.9", "p99.99", "p0", "p100", "SampleCount"] {
            let m = declared(
                serde_json::json!({"namespace": "A", "latency_p99": {"metric": "L", "stat": good}}),
            );
            assert_eq!(m.check(None), Ok(()), "{good}");
        }
        // a tenant's agent may name its own tenant; a fleet-wide one any
        let own = declared(
            serde_json::json!({"namespace": "A", "dimensions": [{"name": "TenantId", "value": "acme"}]}),
        );
        assert_eq!(own.check(Some(&acme)), Ok(()));
        let other = declared(
            serde_json::json!({"namespace": "A", "dimensions": [{"name": "TenantId", "value": "globex"}]}),
        );
        assert_eq!(other.check(None), Ok(()));
    }

    #[test]
    fn a_tenants_agent_reads_a_shared_namespace_only_by_its_own_tenant() {
        let acme = TenantId::parse("acme").unwrap();
        let dim = |name: &str, value: &str| MetricDimension {
            name: name.into(),
            value: value.into(),
        };
        let shared = ["Selfbuild/Services", "Selfbuild"];
        let by_function = [dim("FunctionName", "globex-orders")];
        let problem =
            shared_namespace_problem("Selfbuild/Services", &by_function, Some(&acme), &shared)
                .unwrap();
        assert!(
            problem.starts_with("metrics.namespace: \"Selfbuild/Services\" holds every tenant's"),
            "{problem}"
        );
        let by_tenant = [dim("FunctionName", "orders"), dim("TenantId", "acme")];
        assert_eq!(
            shared_namespace_problem("Selfbuild/Services", &by_tenant, Some(&acme), &shared),
            None
        );
        // its own namespace, or a fleet-wide agent: no rule
        assert_eq!(
            shared_namespace_problem("Acme/Agents", &by_function, Some(&acme), &shared),
            None
        );
        assert_eq!(
            shared_namespace_problem("Selfbuild/Services", &by_function, None, &shared),
            None
        );
    }
}
