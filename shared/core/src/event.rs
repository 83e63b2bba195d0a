//! The events alarm-intake accepts, parsed from the EventBridge envelope.
//!
//! - `CloudWatch Alarm State Change` (source `aws.cloudwatch`): metric, metric-math,
//!   anomaly-detection and composite alarms.
//! - `Scheduled Event` (source `aws.events`): the 24 h routine rule, or the 5-minute poll
//!   rule when a rule name in `resources` contains `poll` or `detail.action` is `"poll"`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::alarm::{AlarmKind, AlarmSignal, AlarmState, MetricRef};

/// An event is malformed or not one intake handles; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EventError(pub String);

/// An event intake understands.
#[derive(Debug, Clone, PartialEq)]
pub enum IntakeEvent {
    /// An alarm changed state.
    AlarmStateChange {
        /// The alarm as it is now.
        alarm: AlarmSignal,
        /// When EventBridge saw the change.
        time: OffsetDateTime,
    },
    /// The daily schedule ticked: a routine cycle over the whole fleet.
    Routine {
        /// The rule that fired.
        rule: Option<String>,
        /// When it fired.
        time: OffsetDateTime,
    },
    /// The poll schedule ticked: look for alarms in ALARM.
    Poll {
        /// The rule that fired.
        rule: Option<String>,
        /// When it fired.
        time: OffsetDateTime,
    },
}

impl IntakeEvent {
    /// When the event happened, for intake latency.
    pub fn time(&self) -> OffsetDateTime {
        match self {
            Self::AlarmStateChange { time, .. }
            | Self::Routine { time, .. }
            | Self::Poll { time, .. } => *time,
        }
    }
}

/// The detail-type of CloudWatch alarm state changes.
pub const ALARM_STATE_CHANGE: &str = "CloudWatch Alarm State Change";
/// The detail-type of EventBridge schedules.
pub const SCHEDULED_EVENT: &str = "Scheduled Event";

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "detail-type")]
    detail_type: String,
    source: String,
    time: String,
    #[serde(default)]
    resources: Vec<String>,
    #[serde(default)]
    detail: Value,
}

/// Parses an EventBridge event into what intake does with it.
pub fn parse_event(value: &Value) -> Result<IntakeEvent, EventError> {
    if !value.is_object() {
        return Err(EventError(format!(
            "event must be a JSON object (an EventBridge event), got {}",
            json_kind(value)
        )));
    }
    let envelope: Envelope = from_value(value, "")?;
    let time = OffsetDateTime::parse(&envelope.time, &Rfc3339).map_err(|e| {
        EventError(format!(
            "time: {:?} is not an RFC 3339 timestamp: {e}",
            envelope.time
        ))
    })?;
    match (envelope.detail_type.as_str(), envelope.source.as_str()) {
        (ALARM_STATE_CHANGE, "aws.cloudwatch") => {
            let alarm = parse_alarm_detail(&envelope.detail, &envelope.resources)?;
            Ok(IntakeEvent::AlarmStateChange { alarm, time })
        }
        (SCHEDULED_EVENT, "aws.events") => {
            let rule = envelope
                .resources
                .iter()
                .find_map(|arn| arn.split_once(":rule/").map(|(_, name)| name.to_owned()));
            let action = envelope.detail.get("action").and_then(Value::as_str);
            let is_poll = match action {
                Some("poll") => true,
                Some("routine") => false,
                Some(other) => {
                    return Err(EventError(format!(
                        "detail.action: {other:?} is not \"poll\" or \"routine\""
                    )));
                }
                None => rule
                    .as_deref()
                    .is_some_and(|r| r.to_ascii_lowercase().contains("poll")),
            };
            Ok(if is_poll {
                IntakeEvent::Poll { rule, time }
            } else {
                IntakeEvent::Routine { rule, time }
            })
        }
        (ALARM_STATE_CHANGE | SCHEDULED_EVENT, source) => Err(EventError(format!(
            "source: {source:?} does not send {:?} events",
            envelope.detail_type
        ))),
        (other, _) => Err(EventError(format!(
            "detail-type: {other:?} is not handled; expected {ALARM_STATE_CHANGE:?} or {SCHEDULED_EVENT:?}"
        ))),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Deserializes with the failing field's path in the error, prefixed by `at`.
fn from_value<T: for<'de> Deserialize<'de>>(value: &Value, at: &str) -> Result<T, EventError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = match (at.is_empty(), path == ".") {
            (true, true) => "event".to_owned(),
            (true, false) => path,
            (false, true) => at.to_owned(),
            (false, false) => format!("{at}.{path}"),
        };
        EventError(format!("{field}: {}", e.into_inner()))
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlarmDetail {
    alarm_name: String,
    state: StateDetail,
    #[serde(default)]
    configuration: Configuration,
}

#[derive(Deserialize)]
struct StateDetail {
    value: AlarmState,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Configuration {
    #[serde(default)]
    metrics: Vec<MetricQuery>,
    #[serde(default)]
    alarm_rule: Option<String>,
    #[serde(default)]
    threshold_metric_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MetricQuery {
    #[serde(default)]
    metric_stat: Option<MetricStat>,
    #[serde(default)]
    expression: Option<String>,
}

#[derive(Deserialize)]
struct MetricStat {
    metric: Metric,
}

#[derive(Deserialize)]
struct Metric {
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    dimensions: BTreeMap<String, String>,
}

fn parse_alarm_detail(detail: &Value, resources: &[String]) -> Result<AlarmSignal, EventError> {
    if !detail.is_object() {
        return Err(EventError(format!(
            "detail: must be an object, got {}",
            json_kind(detail)
        )));
    }
    let d: AlarmDetail = from_value(detail, "detail")?;
    if d.alarm_name.trim().is_empty() {
        return Err(EventError("detail.alarmName: must not be empty".into()));
    }
    let state_changed_at = d
        .state
        .timestamp
        .as_deref()
        .map(|t| {
            parse_alarm_timestamp(t).ok_or_else(|| {
                EventError(format!(
                    "detail.state.timestamp: {t:?} is not a timestamp like 2019-10-02T17:04:40.989+0000"
                ))
            })
        })
        .transpose()?;
    let expressions: Vec<&str> = d
        .configuration
        .metrics
        .iter()
        .filter_map(|m| m.expression.as_deref())
        .collect();
    let kind = if d.configuration.alarm_rule.is_some() {
        AlarmKind::Composite
    } else {
        AlarmKind::for_metric_alarm(&expressions, d.configuration.threshold_metric_id.is_some())
    };
    let metrics = d
        .configuration
        .metrics
        .into_iter()
        .filter_map(|m| m.metric_stat)
        .map(|s| MetricRef {
            namespace: s.metric.namespace,
            name: s.metric.name,
            dimensions: s.metric.dimensions.into_iter().collect(),
        })
        .collect();
    Ok(AlarmSignal {
        arn: resources.iter().find(|r| r.contains(":alarm:")).cloned(),
        name: d.alarm_name,
        kind,
        state: d.state.value,
        reason: d.state.reason,
        state_changed_at,
        metrics,
        alarm_rule: d.configuration.alarm_rule,
    })
}

/// Parses CloudWatch's alarm timestamps (`2019-10-02T17:04:40.989+0000`) and RFC 3339.
pub fn parse_alarm_timestamp(text: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(text, &Rfc3339) {
        return Some(t);
    }
    // `+0000` → `+00:00`, then RFC 3339.
    let split = text.len().checked_sub(5)?;
    if !text.is_char_boundary(split) {
        return None;
    }
    let (head, offset) = text.split_at(split);
    let bytes = offset.as_bytes();
    if matches!(bytes[0], b'+' | b'-') && bytes[1..].iter().all(u8::is_ascii_digit) {
        let fixed = format!("{head}{}:{}", &offset[..3], &offset[3..]);
        return OffsetDateTime::parse(&fixed, &Rfc3339).ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    fn alarm(text: &str) -> AlarmSignal {
        match parse_event(&event(text)).unwrap() {
            IntakeEvent::AlarmStateChange { alarm, .. } => alarm,
            other => panic!("expected an alarm, got {other:?}"),
        }
    }

    #[test]
    fn metric_alarm() {
        let a = alarm(include_str!("../../../events/alarm-metric.json"));
        assert_eq!(a.kind, AlarmKind::Metric);
        assert_eq!(a.state, AlarmState::Alarm);
        assert_eq!(a.name, "orders-api-HighErrorRate");
        assert!(
            a.arn
                .as_deref()
                .unwrap()
                .ends_with(":alarm:orders-api-HighErrorRate")
        );
        assert_eq!(a.metrics[0].namespace.as_deref(), Some("AWS/Lambda"));
        assert!(a.state_changed_at.is_some());
    }

    #[test]
    fn metric_math_alarm() {
        let a = alarm(include_str!("../../../events/alarm-metric-math.json"));
        assert_eq!(a.kind, AlarmKind::MetricMath);
        assert_eq!(a.metrics.len(), 2);
    }

    #[test]
    fn anomaly_detection_alarm() {
        let a = alarm(include_str!("../../../events/alarm-anomaly-detection.json"));
        assert_eq!(a.kind, AlarmKind::AnomalyDetection);
        assert_eq!(a.metrics.len(), 1);
    }

    #[test]
    fn composite_alarm() {
        let a = alarm(include_str!("../../../events/alarm-composite.json"));
        assert_eq!(a.kind, AlarmKind::Composite);
        assert!(a.metrics.is_empty());
        assert!(a.alarm_rule.is_some());
    }

    #[test]
    fn ok_and_insufficient_data_transitions() {
        assert_eq!(
            alarm(include_str!("../../../events/alarm-ok.json")).state,
            AlarmState::Ok
        );
        assert_eq!(
            alarm(include_str!("../../../events/alarm-insufficient-data.json")).state,
            AlarmState::InsufficientData
        );
    }

    #[test]
    fn scheduled_and_poll_events() {
        let routine = parse_event(&event(include_str!("../../../events/scheduled-24h.json")));
        assert!(
            matches!(routine, Ok(IntakeEvent::Routine { .. })),
            "{routine:?}"
        );
        let poll = parse_event(&event(include_str!("../../../events/scheduled-poll.json")));
        assert!(matches!(poll, Ok(IntakeEvent::Poll { .. })), "{poll:?}");
    }

    #[test]
    fn detail_action_overrides_the_rule_name() {
        let mut e = event(include_str!("../../../events/scheduled-24h.json"));
        e["detail"] = json!({"action": "poll"});
        assert!(matches!(parse_event(&e), Ok(IntakeEvent::Poll { .. })));
        e["detail"] = json!({"action": "explode"});
        let err = parse_event(&e).unwrap_err();
        assert!(err.0.starts_with("detail.action"), "{err}");
    }

    #[test]
    fn malformed_events_name_the_field() {
        let base = event(include_str!("../../../events/alarm-metric.json"));
        // (JSON pointer to change, new value or None to remove it, field the error names)
        let cases = [
            (
                "/detail/state/value",
                Some(json!("BROKEN")),
                "detail.state.value",
            ),
            ("/detail/alarmName", None, "detail"),
            ("/detail/alarmName", Some(json!(" ")), "detail.alarmName"),
            ("/detail-type", None, "event"),
            (
                "/detail-type",
                Some(json!("EC2 Instance State-change Notification")),
                "detail-type",
            ),
            ("/time", Some(json!("yesterday")), "time"),
            ("/detail", Some(json!([])), "detail"),
            (
                "/detail/configuration/metrics",
                Some(json!({})),
                "detail.configuration.metrics",
            ),
            (
                "/detail/state/timestamp",
                Some(json!("soon")),
                "detail.state.timestamp",
            ),
            ("/source", Some(json!("my.app")), "source"),
        ];
        for (pointer, value, field) in cases {
            let mut e = base.clone();
            match value {
                Some(v) => *e.pointer_mut(pointer).unwrap() = v,
                None => {
                    let (parent, name) = pointer.rsplit_once('/').unwrap();
                    let parent = if parent.is_empty() {
                        &mut e
                    } else {
                        e.pointer_mut(parent).unwrap()
                    };
                    parent.as_object_mut().unwrap().remove(name);
                }
            }
            let err = parse_event(&e).unwrap_err();
            assert!(
                err.0.starts_with(field),
                "{pointer}: expected {field}: got {err}"
            );
        }
        let err = parse_event(&json!("text")).unwrap_err();
        assert!(err.0.contains("JSON object"), "{err}");
    }

    #[test]
    fn missing_fields_say_which() {
        let mut e = event(include_str!("../../../events/alarm-metric.json"));
        e["detail"].as_object_mut().unwrap().remove("alarmName");
        let err = parse_event(&e).unwrap_err();
        assert!(err.0.contains("alarmName"), "{err}");
    }

    #[test]
    fn alarm_timestamps() {
        let t = parse_alarm_timestamp("2019-10-02T17:04:40.989+0000").unwrap();
        assert_eq!(t.unix_timestamp(), 1_570_035_880);
        assert!(parse_alarm_timestamp("2019-10-02T17:04:40Z").is_some());
        assert!(parse_alarm_timestamp("x").is_none());
        assert!(parse_alarm_timestamp("").is_none());
    }
}
