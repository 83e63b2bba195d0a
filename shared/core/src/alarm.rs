//! CloudWatch alarms as intake sees them: one shape for EventBridge state changes and for
//! `DescribeAlarms` results, with tenant/component extraction (R4) and critical
//! classification (R1).

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::ids::{ComponentId, IdError, TenantId};

/// Alarm names that always start an emergency cycle (matched anywhere in the name, any case).
pub const BUILT_IN_CRITICAL_ALARMS: [&str; 3] =
    ["HighErrorRate", "HighLatency", "LowResourceOperations"];

/// Metric dimensions that carry the tenant, in order of preference.
pub const TENANT_DIMENSIONS: [&str; 5] = ["tenant_id", "TenantId", "tenantId", "Tenant", "tenant"];

/// Metric dimensions that name the component, in order of preference.
pub const COMPONENT_DIMENSIONS: [&str; 17] = [
    "component",
    "Component",
    "ComponentId",
    "component_id",
    "FunctionName",
    "ServiceName",
    "ApiName",
    "ApiId",
    "StateMachineArn",
    "TableName",
    "QueueName",
    "TopicName",
    "StreamName",
    "DBInstanceIdentifier",
    "DBClusterIdentifier",
    "LoadBalancer",
    "InstanceId",
];

/// The state an alarm is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AlarmState {
    /// Breaching: starts work.
    Alarm,
    /// Not breaching.
    Ok,
    /// Not enough data to decide.
    InsufficientData,
}

impl AlarmState {
    /// The name CloudWatch uses (`ALARM`, `OK`, `INSUFFICIENT_DATA`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alarm => "ALARM",
            Self::Ok => "OK",
            Self::InsufficientData => "INSUFFICIENT_DATA",
        }
    }
}

/// What kind of alarm it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlarmKind {
    /// A static threshold on one metric.
    Metric,
    /// A threshold on a metric-math expression.
    MetricMath,
    /// A band from `ANOMALY_DETECTION_BAND`.
    AnomalyDetection,
    /// A rule over other alarms.
    Composite,
}

impl AlarmKind {
    /// `metric`, `metric_math`, `anomaly_detection` or `composite`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metric => "metric",
            Self::MetricMath => "metric_math",
            Self::AnomalyDetection => "anomaly_detection",
            Self::Composite => "composite",
        }
    }

    /// The kind of a metric alarm from its metric-query expressions and whether it has a
    /// threshold metric (`ThresholdMetricId`, set only by anomaly-detection alarms).
    pub fn for_metric_alarm(expressions: &[&str], has_threshold_metric: bool) -> Self {
        if has_threshold_metric
            || expressions
                .iter()
                .any(|e| e.to_ascii_uppercase().contains("ANOMALY_DETECTION_BAND"))
        {
            Self::AnomalyDetection
        } else if expressions.is_empty() {
            Self::Metric
        } else {
            Self::MetricMath
        }
    }
}

/// One metric an alarm watches.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct MetricRef {
    /// The metric's namespace, e.g. `AWS/Lambda`.
    pub namespace: Option<String>,
    /// The metric's name, e.g. `Errors`.
    pub name: Option<String>,
    /// The metric's dimensions as (name, value), in the order the source gave them.
    pub dimensions: Vec<(String, String)>,
}

/// An alarm, from an EventBridge state change or from `DescribeAlarms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlarmSignal {
    /// The alarm's name.
    pub name: String,
    /// The alarm's ARN, when the source gave it.
    pub arn: Option<String>,
    /// Metric, metric math, anomaly detection or composite.
    pub kind: AlarmKind,
    /// The state it is in now.
    pub state: AlarmState,
    /// CloudWatch's reason for the state.
    pub reason: Option<String>,
    /// When it entered this state.
    #[serde(with = "time::serde::rfc3339::option")]
    pub state_changed_at: Option<OffsetDateTime>,
    /// The metrics it watches (empty for composite alarms).
    pub metrics: Vec<MetricRef>,
    /// For composite alarms, the alarm rule, e.g. `ALARM(a) OR ALARM(b)`.
    pub alarm_rule: Option<String>,
}

/// Where an alarm's tenant and component were found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmScope {
    /// The tenant, or none for system-wide.
    pub tenant: Option<TenantId>,
    /// The component, or none for the whole fleet.
    pub component: Option<ComponentId>,
    /// `dimension:<name>`, `alarm_name` or `none`: for the decision's reason.
    pub component_source: String,
}

/// An alarm's metric dimension or name gives an id that is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{from} gives an unusable id: {id}")]
pub struct ScopeError {
    /// Where the id came from: `dimension <name>` or `the alarm name`.
    pub from: String,
    /// What is wrong with it.
    pub id: IdError,
}

impl AlarmSignal {
    /// Finds tenant and component in the metric dimensions, falling back to the alarm name.
    ///
    /// Name convention: `<tenant>/<component>/<anything>` or `<component>-<AlarmKind>`
    /// (the kind being a critical name or pattern is stripped), see `docs/intake.md`. A name
    /// in the tenant form whose first segment is no tenant id is an error wherever the name
    /// is read, never a component named after the whole name.
    pub fn scope(&self, critical: &[AlarmPattern]) -> Result<AlarmScope, ScopeError> {
        let dimension = |names: &[&str]| {
            names.iter().find_map(|wanted| {
                self.metrics.iter().find_map(|m| {
                    m.dimensions
                        .iter()
                        .find(|(name, value)| name == wanted && !value.trim().is_empty())
                        .map(|(name, value)| (name.clone(), value.trim().to_owned()))
                })
            })
        };
        let segments: Vec<&str> = self
            .name
            .split('/')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        let from_name = |id| ScopeError {
            from: "the alarm name".into(),
            id,
        };
        let name_tenant = || match segments.as_slice() {
            [first, _, ..] => TenantId::parse(first).map(Some).map_err(from_name),
            _ => Ok(None),
        };
        fn from_dimension(name: &str) -> impl Fn(IdError) -> ScopeError + '_ {
            move |id| ScopeError {
                from: format!("dimension {name}"),
                id,
            }
        }
        let tenant = match dimension(&TENANT_DIMENSIONS) {
            Some((name, value)) => Some(TenantId::parse(&value).map_err(from_dimension(&name))?),
            None => name_tenant()?,
        };
        let (component, component_source) = match dimension(&COMPONENT_DIMENSIONS) {
            Some((name, value)) => {
                let id = ComponentId::parse(&value).map_err(from_dimension(&name))?;
                (Some(id), format!("dimension:{name}"))
            }
            None => {
                let text = match (name_tenant()?, segments.as_slice()) {
                    (Some(_), [_, second, ..]) => (*second).to_owned(),
                    _ => strip_alarm_kind(&self.name, critical),
                };
                if text.is_empty() {
                    (None, "none".to_owned())
                } else {
                    let id = ComponentId::parse(&text).map_err(from_name)?;
                    (Some(id), "alarm_name".to_owned())
                }
            }
        };
        Ok(AlarmScope {
            tenant,
            component,
            component_source,
        })
    }

    /// True when the alarm (or, for a composite, one of its children) is critical.
    pub fn is_critical(&self, extra: &[AlarmPattern]) -> bool {
        let critical_name = |name: &str| {
            let lower = name.to_ascii_lowercase();
            BUILT_IN_CRITICAL_ALARMS
                .iter()
                .any(|c| lower.contains(&c.to_ascii_lowercase()))
                || extra.iter().any(|p| p.matches(name))
        };
        critical_name(&self.name)
            || self
                .alarm_rule
                .as_deref()
                .is_some_and(|rule| child_alarms(rule).iter().any(|c| critical_name(c)))
    }
}

/// Removes a known alarm kind (built-in critical names, or a configured pattern's literal
/// text) and separators from the end or start of an alarm name, leaving the component.
fn strip_alarm_kind(name: &str, patterns: &[AlarmPattern]) -> String {
    let separators: &[char] = &['-', '_', '.', ':', ' ', '/'];
    let lower = name.to_ascii_lowercase();
    let kinds = BUILT_IN_CRITICAL_ALARMS
        .iter()
        .map(|k| k.to_ascii_lowercase())
        .chain(patterns.iter().filter_map(AlarmPattern::literal_affix));
    for kind in kinds {
        if kind.is_empty() {
            continue;
        }
        if let Some(rest) = lower.strip_suffix(&kind) {
            return name[..rest.len()].trim_end_matches(separators).to_owned();
        }
        if lower.starts_with(&kind) {
            return name[kind.len()..].trim_start_matches(separators).to_owned();
        }
    }
    name.trim_matches(separators).to_owned()
}

/// The alarm names inside `ALARM(...)`, `OK(...)` or `INSUFFICIENT_DATA(...)` of a rule.
pub fn child_alarms(rule: &str) -> Vec<String> {
    let mut children = Vec::new();
    let mut rest = rule;
    while let Some(open) = rest.find('(') {
        let function = rest[..open]
            .rsplit(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .next()
            .unwrap_or("");
        rest = &rest[open + 1..];
        if !matches!(function, "ALARM" | "OK" | "INSUFFICIENT_DATA") {
            continue;
        }
        let Some(close) = rest.find(')') else { break };
        let inner = rest[..close].trim().trim_matches(|c| c == '"' || c == '\'');
        let name = inner.rsplit(":alarm:").next().unwrap_or(inner);
        if !name.is_empty() {
            children.push(name.to_owned());
        }
        rest = &rest[close + 1..];
    }
    children
}

/// An alarm-name glob: `*` matches any run of characters, `?` one; case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmPattern {
    glob: String,
}

impl AlarmPattern {
    /// Parses a glob; it must contain at least one character other than `*`.
    pub fn parse(glob: &str) -> Result<Self, &'static str> {
        if glob.chars().all(|c| c == '*') {
            return Err("matches every alarm; name at least one literal character");
        }
        if glob.chars().any(char::is_control) {
            return Err("contains control characters");
        }
        Ok(Self {
            glob: glob.to_ascii_lowercase(),
        })
    }

    /// True when `name` matches the whole glob, ignoring case.
    pub fn matches(&self, name: &str) -> bool {
        crate::text::glob_matches(&self.glob, name)
    }

    /// The literal text of a `*text` or `text*` pattern, for stripping it from alarm names.
    fn literal_affix(&self) -> Option<String> {
        let trimmed = self.glob.trim_matches('*');
        (!trimmed.contains(['*', '?'])).then(|| trimmed.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(name: &str, dims: &[(&str, &str)]) -> AlarmSignal {
        AlarmSignal {
            name: name.into(),
            arn: None,
            kind: AlarmKind::Metric,
            state: AlarmState::Alarm,
            reason: None,
            state_changed_at: None,
            metrics: vec![MetricRef {
                namespace: Some("AWS/Lambda".into()),
                name: Some("Errors".into()),
                dimensions: dims
                    .iter()
                    .map(|(k, v)| ((*k).into(), (*v).into()))
                    .collect(),
            }],
            alarm_rule: None,
        }
    }

    #[test]
    fn dimensions_give_tenant_and_component() {
        let s = signal("x", &[("TenantId", "acme"), ("FunctionName", "orders-api")]);
        let scope = s.scope(&[]).unwrap();
        assert_eq!(scope.tenant.unwrap().as_str(), "acme");
        assert_eq!(scope.component.unwrap().as_str(), "orders-api");
        assert_eq!(scope.component_source, "dimension:FunctionName");
    }

    #[test]
    fn explicit_component_dimension_wins_over_function_name() {
        let s = signal(
            "x",
            &[
                ("FunctionName", "fn"),
                ("component", "checkout"),
                ("tenant_id", "t1"),
            ],
        );
        let scope = s.scope(&[]).unwrap();
        assert_eq!(scope.component.unwrap().as_str(), "checkout");
        assert_eq!(scope.tenant.unwrap().as_str(), "t1");
    }

    #[test]
    fn the_alarm_name_gives_the_tenant_when_no_dimension_does() {
        let scope = signal(
            "acme/checkout/error-ratio",
            &[("FunctionName", "checkout-fn")],
        )
        .scope(&[])
        .unwrap();
        assert_eq!(scope.tenant.unwrap().as_str(), "acme");
        assert_eq!(scope.component.unwrap().as_str(), "checkout-fn");
    }

    #[test]
    fn alarm_name_is_the_fallback() {
        let scope = signal("orders-api-HighErrorRate", &[]).scope(&[]).unwrap();
        assert_eq!(scope.component.unwrap().as_str(), "orders-api");
        assert_eq!(scope.component_source, "alarm_name");
        assert!(scope.tenant.is_none());

        let scope = signal("acme/payments/HighLatency", &[]).scope(&[]).unwrap();
        assert_eq!(scope.tenant.unwrap().as_str(), "acme");
        assert_eq!(scope.component.unwrap().as_str(), "payments");

        let pattern = AlarmPattern::parse("*-P1").unwrap();
        let scope = signal("billing-P1", &[]).scope(&[pattern]).unwrap();
        assert_eq!(scope.component.unwrap().as_str(), "billing");
    }

    #[test]
    fn a_bare_critical_name_is_system_wide() {
        let scope = signal("HighErrorRate", &[]).scope(&[]).unwrap();
        assert!(scope.component.is_none());
        assert!(scope.tenant.is_none());
        assert_eq!(scope.component_source, "none");
    }

    #[test]
    fn a_bad_tenant_dimension_is_an_error_that_names_it() {
        let err = signal("x", &[("tenant_id", "has space")])
            .scope(&[])
            .unwrap_err();
        assert_eq!(err.id.kind, "tenant_id");
        assert_eq!(err.from, "dimension tenant_id");
    }

    #[test]
    fn a_bad_tenant_prefix_in_the_alarm_name_is_an_error_not_a_component() {
        for name in [
            "-acme/orders/HighErrorRate",
            "ac me/orders/x",
            "a{b}/orders/x",
        ] {
            let err = signal(name, &[]).scope(&[]).unwrap_err();
            assert_eq!(err.id.kind, "tenant_id", "{name}");
            assert_eq!(err.from, "the alarm name", "{name}");
        }
        // Also when only the component is read from the name.
        let err = signal("-acme/orders/HighErrorRate", &[("TenantId", "acme")])
            .scope(&[])
            .unwrap_err();
        assert_eq!(err.id.kind, "tenant_id");
        // The name is not read when dimensions give both.
        let scope = signal(
            "-acme/orders/HighErrorRate",
            &[("TenantId", "acme"), ("FunctionName", "orders")],
        )
        .scope(&[])
        .unwrap();
        assert_eq!(scope.tenant.unwrap().as_str(), "acme");
    }

    #[test]
    fn critical_names_and_patterns() {
        assert!(signal("orders-HIGHERRORRATE", &[]).is_critical(&[]));
        assert!(signal("LowResourceOperations", &[]).is_critical(&[]));
        assert!(!signal("orders-cpu", &[]).is_critical(&[]));
        let p = AlarmPattern::parse("payments-*-sev1").unwrap();
        assert!(signal("Payments-api-SEV1", &[]).is_critical(std::slice::from_ref(&p)));
        assert!(!signal("payments-api-sev2", &[]).is_critical(&[p]));
    }

    #[test]
    fn composite_alarms_are_critical_through_their_children() {
        let mut s = signal("checkout-aggregate", &[]);
        s.kind = AlarmKind::Composite;
        s.metrics.clear();
        s.alarm_rule = Some(
            "ALARM(\"checkout-HighErrorRate\") OR ALARM(arn:aws:cloudwatch:us-east-1:1:alarm:cpu)"
                .into(),
        );
        assert_eq!(
            child_alarms(s.alarm_rule.as_deref().unwrap()),
            ["checkout-HighErrorRate", "cpu"]
        );
        assert!(s.is_critical(&[]));
    }

    #[test]
    fn globs() {
        let p = |g| AlarmPattern::parse(g).unwrap();
        assert!(p("a*c").matches("abbbc"));
        assert!(p("a?c").matches("abc"));
        assert!(!p("a?c").matches("abbc"));
        assert!(p("*x*").matches("x"));
        assert!(AlarmPattern::parse("***").is_err());
    }
}
