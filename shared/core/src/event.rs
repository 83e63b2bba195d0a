//! The events alarm-intake accepts, parsed from the EventBridge envelope.
//!
//! - `CloudWatch Alarm State Change` (source `aws.cloudwatch`): metric, metric-math,
//!   anomaly-detection and composite alarms.
//! - `Scheduled Event` (source `aws.events`): the 24 h routine rule, or the 5-minute poll
//!   rule when a rule name in `resources` contains `poll` or `detail.action` is `"poll"`.

use std::fmt::{self, Display};

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

use crate::alarm::{AlarmKind, AlarmSignal, AlarmState, MetricRef};
use crate::text::Excerpt;

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

    /// `alarm_state_change`, `routine` or `poll`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::AlarmStateChange { .. } => "alarm_state_change",
            Self::Routine { .. } => "routine",
            Self::Poll { .. } => "poll",
        }
    }
}

/// The detail-type of CloudWatch alarm state changes.
pub const ALARM_STATE_CHANGE: &str = "CloudWatch Alarm State Change";
/// The detail-type of EventBridge schedules.
pub const SCHEDULED_EVENT: &str = "Scheduled Event";

/// EventBridge's limit on one event, in bytes of compact JSON (256 KB).
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// The most JSON text read for one event: room for an indented file of a
/// [`MAX_EVENT_BYTES`] event, so that a huge input is refused before it is parsed.
pub const MAX_EVENT_TEXT_BYTES: usize = 1024 * 1024;
/// The earliest event or state-change time intake accepts.
pub const EARLIEST_TIME: OffsetDateTime = datetime!(2000-01-01 00:00:00 UTC);
/// The first event or state-change time intake no longer accepts.
pub const END_OF_TIME: OffsetDateTime = datetime!(2100-01-01 00:00:00 UTC);

/// Longest values, in characters, as the EventBridge and CloudWatch APIs document them.
mod limits {
    /// `PutEventsRequestEntry.DetailType`.
    pub const DETAIL_TYPE: usize = 128;
    /// `PutEventsRequestEntry.Source`.
    pub const SOURCE: usize = 256;
    /// `PutEventsRequestEntry.Resources`: items, and characters of each.
    pub const RESOURCES: usize = 100;
    pub const RESOURCE: usize = 2048;
    /// `version`, `id`, `account`, `region`: far above what AWS sends.
    pub const ENVELOPE_TEXT: usize = 256;
    /// `PutMetricAlarm.AlarmName`.
    pub const ALARM_NAME: usize = 255;
    /// `PutMetricAlarm.AlarmDescription`.
    pub const DESCRIPTION: usize = 1024;
    /// `SetAlarmState.StateReason` and `StateReasonData`.
    pub const STATE_REASON: usize = 1023;
    pub const STATE_REASON_DATA: usize = 4000;
    /// `PutCompositeAlarm.AlarmRule`.
    pub const ALARM_RULE: usize = 10240;
    /// `MetricDataQuery.Id`, `ThresholdMetricId`, `Metric.Namespace`, `Metric.MetricName`,
    /// `Dimension.Name`.
    pub const NAME: usize = 255;
    /// `MetricDataQuery.Expression`.
    pub const EXPRESSION: usize = 2048;
    /// `Dimension.Value`.
    pub const DIMENSION_VALUE: usize = 1024;
    /// Dimensions of one metric.
    pub const DIMENSIONS: usize = 30;
    /// `MetricDataQuery.Label`, `MetricStat.Stat`, `detail.action` and the like.
    pub const SHORT_TEXT: usize = 1024;
}

/// Reads an event from JSON text: at most [`MAX_EVENT_TEXT_BYTES`], and no object may
/// repeat a key (serde_json would silently keep the last).
pub fn read_event(text: &str) -> Result<Value, EventError> {
    if text.len() > MAX_EVENT_TEXT_BYTES {
        return Err(EventError(format!(
            "event: {} bytes of JSON, more than the {MAX_EVENT_TEXT_BYTES} intake reads \
             (EventBridge events are at most {MAX_EVENT_BYTES} bytes)",
            text.len()
        )));
    }
    let delivered: EventJson =
        serde_json::from_str(text).map_err(|e| EventError(format!("event: not JSON: {e}")))?;
    delivered.into_value()
}

/// An event as delivered (the Lambda payload), before its repeated keys are refused.
///
/// Deserializing it succeeds on any JSON, so that a repeated key is reported as an invalid
/// event by [`EventJson::into_value`] rather than as a runtime deserialization failure.
#[derive(Debug, Clone, PartialEq)]
pub struct EventJson {
    value: Value,
    repeated: Option<String>,
}

impl EventJson {
    /// The event, or an error naming the first key an object repeats.
    pub fn into_value(self) -> Result<Value, EventError> {
        match self.repeated {
            Some(problem) => Err(EventError(problem)),
            None => Ok(self.value),
        }
    }

    /// The event without taking it, when no key repeats.
    pub fn peek(&self) -> Option<&Value> {
        self.repeated.is_none().then_some(&self.value)
    }
}

impl<'de> Deserialize<'de> for EventJson {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut state = Strict::default();
        let value = StrictSeed(&mut state).deserialize(deserializer)?;
        Ok(Self {
            value,
            repeated: state.repeated,
        })
    }
}

/// Where the reader is, and the first repeated key it saw.
#[derive(Default)]
struct Strict {
    path: Vec<Segment>,
    repeated: Option<String>,
}

enum Segment {
    Key(String),
    Index(usize),
}

fn path_text(path: &[Segment]) -> String {
    let mut text = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(&Excerpt(key).to_string().replace('"', ""));
            }
            Segment::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    if text.is_empty() {
        text.push_str("event");
    }
    text
}

/// A JSON value like `serde_json::Value`'s own, noting a repeated key instead of
/// overwriting it.
struct StrictSeed<'a>(&'a mut Strict);

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            self.0.path.push(Segment::Index(items.len()));
            let item = seq.next_element_seed(StrictSeed(&mut *self.0));
            self.0.path.pop();
            match item? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.0.path.push(Segment::Key(key));
            let value = map.next_value_seed(StrictSeed(&mut *self.0))?;
            if let Some(Segment::Key(key)) = self.0.path.last()
                && object.contains_key(key)
            {
                if self.0.repeated.is_none() {
                    self.0.repeated = Some(format!(
                        "{}: the key appears more than once in its object (JSON readers \
                         disagree on which one counts)",
                        path_text(&self.0.path)
                    ));
                }
                self.0.path.pop();
                continue;
            }
            if let Some(Segment::Key(key)) = self.0.path.pop() {
                object.insert(key, value);
            }
        }
        Ok(Value::Object(object))
    }
}

/// Parses an EventBridge event into what intake does with it, with the types, sizes and
/// lengths AWS documents; an error names the field as a path like `detail.state.value`.
pub fn parse_event(value: &Value) -> Result<IntakeEvent, EventError> {
    if !value.is_object() {
        return Err(EventError(format!(
            "event: must be a JSON object (an EventBridge event), got {}",
            json_kind(value)
        )));
    }
    let size = compact_size(value);
    if size > MAX_EVENT_BYTES {
        return Err(EventError(format!(
            "event: {size} bytes, more than EventBridge's limit of {MAX_EVENT_BYTES} bytes \
             (256 KB) for one event"
        )));
    }
    let root = At::root(value);
    let detail_type = root.required("detail-type")?.name(limits::DETAIL_TYPE)?;
    let source = root.required("source")?.name(limits::SOURCE)?;
    for key in ["version", "id", "account", "region"] {
        root.optional_text(key, limits::ENVELOPE_TEXT)?;
    }
    let time = root.required("time")?.timestamp(TimestampFormat::Rfc3339)?;
    let mut resources = Vec::new();
    if let Some(list) = root.optional("resources")? {
        for i in 0..list.array(limits::RESOURCES)?.len() {
            resources.push(list.item(i).text(limits::RESOURCE)?.to_owned());
        }
    }
    let detail = root.optional("detail")?;
    if let Some(detail) = &detail {
        detail.object()?;
    }
    match (detail_type, source) {
        (ALARM_STATE_CHANGE, "aws.cloudwatch") => {
            let detail = root.required("detail")?;
            let alarm = parse_alarm_detail(&detail, &resources)?;
            Ok(IntakeEvent::AlarmStateChange { alarm, time })
        }
        (SCHEDULED_EVENT, "aws.events") => {
            let rule = resources
                .iter()
                .find_map(|arn| arn.split_once(":rule/").map(|(_, name)| name.to_owned()));
            let action = match &detail {
                Some(detail) => detail.optional("action")?,
                None => None,
            };
            let is_poll = match action {
                Some(action) => match action.text(limits::SHORT_TEXT)? {
                    "poll" => true,
                    "routine" => false,
                    other => {
                        return Err(action.error(format_args!(
                            "{} is not \"poll\" or \"routine\"",
                            Excerpt(other)
                        )));
                    }
                },
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
            "source: {} does not send {detail_type:?} events",
            Excerpt(source)
        ))),
        (other, _) => Err(EventError(format!(
            "detail-type: {} is not handled; expected {ALARM_STATE_CHANGE:?} or {SCHEDULED_EVENT:?}",
            Excerpt(other)
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

/// Bytes of the value as compact JSON, counted without building the text.
fn compact_size(value: &Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // A Value written to a sink that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

enum TimestampFormat {
    /// EventBridge's `time`.
    Rfc3339,
    /// CloudWatch's `2019-10-02T17:04:40.989+0000`, or RFC 3339.
    Alarm,
}

static NULL: Value = Value::Null;

/// A value in the event and its path, read with the type AWS documents for it.
struct At<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> At<'a> {
    fn root(value: &'a Value) -> Self {
        Self {
            value,
            path: String::new(),
        }
    }

    fn error(&self, problem: impl Display) -> EventError {
        let name = if self.path.is_empty() {
            "event"
        } else {
            &self.path
        };
        EventError(format!("{name}: {problem}"))
    }

    fn expected(&self, what: &str) -> EventError {
        self.error(format_args!(
            "must be {what}, got {}",
            json_kind(self.value)
        ))
    }

    /// The member `key` (a name intake knows, so the path stays short).
    fn child(&self, key: &str) -> At<'a> {
        let value = self.value.get(key).unwrap_or(&NULL);
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        At { value, path }
    }

    fn item(&self, i: usize) -> At<'a> {
        At {
            value: self.value.get(i).unwrap_or(&NULL),
            path: format!("{}[{i}]", self.path),
        }
    }

    fn object(&self) -> Result<&'a Map<String, Value>, EventError> {
        self.value
            .as_object()
            .ok_or_else(|| self.expected("an object"))
    }

    fn array(&self, max_items: usize) -> Result<&'a [Value], EventError> {
        let items = self
            .value
            .as_array()
            .ok_or_else(|| self.expected("an array"))?;
        if items.len() > max_items {
            return Err(self.error(format_args!(
                "{} items, more than the {max_items} allowed",
                items.len()
            )));
        }
        Ok(items)
    }

    /// The member `key`; absent or null is `None` (AWS leaves optional fields out).
    fn optional(&self, key: &str) -> Result<Option<At<'a>>, EventError> {
        Ok(match self.object()?.get(key) {
            None | Some(Value::Null) => None,
            Some(_) => Some(self.child(key)),
        })
    }

    fn required(&self, key: &str) -> Result<At<'a>, EventError> {
        self.optional(key)?
            .ok_or_else(|| self.child(key).error("missing"))
    }

    /// A string of at most `max` characters.
    fn text(&self, max: usize) -> Result<&'a str, EventError> {
        let text = self
            .value
            .as_str()
            .ok_or_else(|| self.expected("a string"))?;
        // Bytes bound characters from above: count them only when there could be too many.
        if text.len() > max {
            let chars = text.chars().count();
            if chars > max {
                return Err(self.error(format_args!(
                    "{chars} characters, more than the {max} allowed"
                )));
            }
        }
        Ok(text)
    }

    /// A string of 1 to `max` characters.
    fn non_empty(&self, max: usize) -> Result<&'a str, EventError> {
        let text = self.text(max)?;
        if text.is_empty() {
            return Err(self.error("must not be empty"));
        }
        Ok(text)
    }

    /// A name or id: 1 to `max` characters and no control characters, as CloudWatch and
    /// EventBridge require of names.
    fn name(&self, max: usize) -> Result<&'a str, EventError> {
        let text = self.non_empty(max)?;
        if text.chars().any(char::is_control) {
            return Err(self.error(format_args!(
                "{} contains control characters",
                Excerpt(text)
            )));
        }
        Ok(text)
    }

    fn optional_text(&self, key: &str, max: usize) -> Result<Option<&'a str>, EventError> {
        self.optional(key)?.map(|f| f.text(max)).transpose()
    }

    fn optional_name(&self, key: &str, max: usize) -> Result<Option<&'a str>, EventError> {
        self.optional(key)?.map(|f| f.name(max)).transpose()
    }

    fn whole_number(&self) -> Result<u64, EventError> {
        self.value
            .as_u64()
            .ok_or_else(|| self.expected("a whole number"))
    }

    fn timestamp(&self, format: TimestampFormat) -> Result<OffsetDateTime, EventError> {
        let text = self.name(64)?;
        let (parsed, like) = match format {
            TimestampFormat::Rfc3339 => (
                OffsetDateTime::parse(text, &Rfc3339).ok(),
                "an RFC 3339 timestamp like 2019-10-02T17:04:40Z",
            ),
            TimestampFormat::Alarm => (
                parse_alarm_timestamp(text),
                "a timestamp like 2019-10-02T17:04:40.989+0000",
            ),
        };
        let t =
            parsed.ok_or_else(|| self.error(format_args!("{} is not {like}", Excerpt(text))))?;
        if !(EARLIEST_TIME..END_OF_TIME).contains(&t) {
            return Err(self.error(format_args!(
                "{} is not between 2000-01-01 and 2099-12-31 (UTC)",
                Excerpt(text)
            )));
        }
        Ok(t)
    }
}

fn parse_alarm_detail(detail: &At<'_>, resources: &[String]) -> Result<AlarmSignal, EventError> {
    let name_field = detail.required("alarmName")?;
    let name = name_field.name(limits::ALARM_NAME)?;
    if name.trim().is_empty() {
        return Err(name_field.error("must not be blank"));
    }
    let state = parse_state(&detail.required("state")?)?;
    if let Some(previous) = detail.optional("previousState")? {
        parse_state(&previous)?;
    }
    let mut expressions = Vec::new();
    let mut metrics = Vec::new();
    let mut has_threshold_metric = false;
    let mut alarm_rule = None;
    if let Some(configuration) = detail.optional("configuration")? {
        configuration.object()?;
        configuration.optional_text("description", limits::DESCRIPTION)?;
        if let Some(list) = configuration.optional("metrics")? {
            // The 256 KB event limit bounds how many there are.
            for i in 0..list.array(usize::MAX)?.len() {
                let query = list.item(i);
                query.object()?;
                query.optional_name("id", limits::NAME)?;
                query.optional_text("label", limits::SHORT_TEXT)?;
                if let Some(flag) = query.optional("returnData")? {
                    flag.value
                        .as_bool()
                        .ok_or_else(|| flag.expected("a boolean"))?;
                }
                if let Some(period) = query.optional("period")? {
                    period.whole_number()?;
                }
                if let Some(expression) = query.optional("expression")? {
                    expressions.push(expression.non_empty(limits::EXPRESSION)?);
                }
                if let Some(stat) = query.optional("metricStat")? {
                    metrics.push(parse_metric_stat(&stat)?);
                }
            }
        }
        has_threshold_metric = configuration
            .optional_name("thresholdMetricId", limits::NAME)?
            .is_some();
        alarm_rule = configuration
            .optional("alarmRule")?
            .map(|rule| rule.non_empty(limits::ALARM_RULE).map(str::to_owned))
            .transpose()?;
    }
    let kind = if alarm_rule.is_some() {
        AlarmKind::Composite
    } else {
        AlarmKind::for_metric_alarm(&expressions, has_threshold_metric)
    };
    Ok(AlarmSignal {
        arn: resources.iter().find(|r| r.contains(":alarm:")).cloned(),
        name: name.to_owned(),
        kind,
        state: state.value,
        reason: state.reason,
        state_changed_at: state.timestamp,
        metrics,
        alarm_rule,
    })
}

struct StateDetail {
    value: AlarmState,
    reason: Option<String>,
    timestamp: Option<OffsetDateTime>,
}

fn parse_state(state: &At<'_>) -> Result<StateDetail, EventError> {
    state.object()?;
    let value_field = state.required("value")?;
    let value = match value_field.text(limits::SHORT_TEXT)? {
        "ALARM" => AlarmState::Alarm,
        "OK" => AlarmState::Ok,
        "INSUFFICIENT_DATA" => AlarmState::InsufficientData,
        other => {
            return Err(value_field.error(format_args!(
                "{} is not ALARM, OK or INSUFFICIENT_DATA",
                Excerpt(other)
            )));
        }
    };
    let reason = state
        .optional_text("reason", limits::STATE_REASON)?
        .map(str::to_owned);
    state.optional_text("reasonData", limits::STATE_REASON_DATA)?;
    let timestamp = state
        .optional("timestamp")?
        .map(|t| t.timestamp(TimestampFormat::Alarm))
        .transpose()?;
    Ok(StateDetail {
        value,
        reason,
        timestamp,
    })
}

fn parse_metric_stat(stat: &At<'_>) -> Result<MetricRef, EventError> {
    stat.object()?;
    stat.optional_text("stat", limits::SHORT_TEXT)?;
    if let Some(period) = stat.optional("period")? {
        period.whole_number()?;
    }
    let metric = stat.required("metric")?;
    metric.object()?;
    let namespace = metric.optional_name("namespace", limits::NAME)?;
    let name = metric.optional_name("name", limits::NAME)?;
    let mut dimensions = Vec::new();
    if let Some(field) = metric.optional("dimensions")? {
        let map = field.object()?;
        if map.len() > limits::DIMENSIONS {
            return Err(field.error(format_args!(
                "{} dimensions, more than CloudWatch allows ({})",
                map.len(),
                limits::DIMENSIONS
            )));
        }
        for key in map.keys() {
            // The name is checked before it becomes part of a path.
            let valid = !key.is_empty()
                && key.chars().count() <= limits::NAME
                && !key.chars().any(char::is_control);
            if !valid {
                return Err(field.error(format_args!(
                    "dimension name {} is not 1-{} characters without control characters",
                    Excerpt(key),
                    limits::NAME
                )));
            }
            let value = field.child(key).name(limits::DIMENSION_VALUE)?;
            dimensions.push((key.clone(), value.to_owned()));
        }
    }
    Ok(MetricRef {
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        dimensions,
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
            ("/detail-type", None, "detail-type"),
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

    /// `base` with the value at `pointer` replaced.
    fn with(base: &Value, pointer: &str, value: Value) -> Value {
        let mut e = base.clone();
        *e.pointer_mut(pointer).unwrap() = value;
        e
    }

    #[test]
    fn shapes_aws_never_sends_are_refused_naming_the_field() {
        let alarm = event(include_str!("../../../events/alarm-metric.json"));
        let schedule = event(include_str!("../../../events/scheduled-24h.json"));
        let cases = [
            (
                with(&alarm, "/detail/state", json!(["ALARM"])),
                "detail.state: must be an object, got an array",
            ),
            (
                with(&alarm, "/detail/configuration", json!([])),
                "detail.configuration: must be an object, got an array",
            ),
            (
                with(&alarm, "/detail/previousState", json!("OK")),
                "detail.previousState: must be an object",
            ),
            (
                with(
                    &alarm,
                    "/detail/configuration/metrics/0/metricStat/metric/dimensions",
                    json!([["FunctionName", "x"]]),
                ),
                "detail.configuration.metrics[0].metricStat.metric.dimensions: must be an object",
            ),
            (
                with(
                    &alarm,
                    "/detail/configuration/metrics/0/metricStat/metric/dimensions/FunctionName",
                    json!(7),
                ),
                "detail.configuration.metrics[0].metricStat.metric.dimensions.FunctionName: must be a string, got a number",
            ),
            (
                with(&alarm, "/detail/state/reason", json!(5)),
                "detail.state.reason: must be a string",
            ),
            (
                with(
                    &alarm,
                    "/detail/configuration/metrics/0/returnData",
                    json!("yes"),
                ),
                "detail.configuration.metrics[0].returnData: must be a boolean",
            ),
            (
                with(&alarm, "/resources", json!("arn:aws:cloudwatch:x")),
                "resources: must be an array",
            ),
            (
                with(&alarm, "/resources/0", json!({})),
                "resources[0]: must be a string",
            ),
            (
                with(&alarm, "/account", json!(123456789012_u64)),
                "account: must be a string",
            ),
            (
                with(&schedule, "/detail", json!(5)),
                "detail: must be an object, got a number",
            ),
            (
                with(&schedule, "/detail", json!({"action": 5})),
                "detail.action: must be a string, got a number",
            ),
            (
                with(&schedule, "/detail", json!({"action": ["poll"]})),
                "detail.action: must be a string, got an array",
            ),
        ];
        for (e, expected) in cases {
            let err = parse_event(&e).unwrap_err();
            assert!(
                err.0.starts_with(expected),
                "expected {expected:?}, got {err}"
            );
        }
    }

    #[test]
    fn null_counts_as_absent_for_optional_fields() {
        let schedule = event(include_str!("../../../events/scheduled-24h.json"));
        let e = with(&schedule, "/detail", Value::Null);
        assert!(matches!(parse_event(&e), Ok(IntakeEvent::Routine { .. })));
        let alarm = event(include_str!("../../../events/alarm-metric.json"));
        let e = with(&alarm, "/detail/state/reason", Value::Null);
        assert_eq!(self::alarm(&e.to_string()).reason, None);
    }

    #[test]
    fn lengths_are_bounded_as_aws_documents_them_and_never_echoed_whole() {
        let alarm = event(include_str!("../../../events/alarm-metric.json"));
        let dims = "/detail/configuration/metrics/0/metricStat/metric/dimensions";
        let cases = [
            ("/detail/alarmName", 255, "detail.alarmName"),
            ("/detail-type", 128, "detail-type"),
            ("/source", 256, "source"),
            ("/detail/state/reason", 1023, "detail.state.reason"),
            (
                "/detail/configuration/metrics/0/metricStat/metric/namespace",
                255,
                "detail.configuration.metrics[0].metricStat.metric.namespace",
            ),
            (
                &format!("{dims}/FunctionName"),
                1024,
                "detail.configuration.metrics[0].metricStat.metric.dimensions.FunctionName",
            ),
        ];
        for (pointer, max, field) in cases {
            // At the limit: no length error (a wrong detail-type or source is refused for
            // what it says, not its length).
            let at_limit = parse_event(&with(&alarm, pointer, json!("a".repeat(max))));
            if let Err(e) = &at_limit {
                assert!(!e.0.contains("characters, more than"), "{pointer}: {e}");
            }
            let err = parse_event(&with(&alarm, pointer, json!("a".repeat(max + 1)))).unwrap_err();
            assert_eq!(
                err.0,
                format!(
                    "{field}: {} characters, more than the {max} allowed",
                    max + 1
                )
            );
        }
        let mut e = alarm.clone();
        let map = e.pointer_mut(dims).unwrap().as_object_mut().unwrap();
        for i in 0..30 {
            map.insert(format!("d{i}"), json!("v"));
        }
        let err = parse_event(&e).unwrap_err();
        assert!(err.0.contains("31 dimensions"), "{err}");
        let err = parse_event(&with(
            &alarm,
            "/detail/alarmName",
            json!("orders\nHighErrorRate"),
        ))
        .unwrap_err();
        assert!(
            err.0.starts_with(
                "detail.alarmName: \"orders\\nHighErrorRate\" contains control characters"
            ),
            "{err}"
        );

        // 10 MB of source: refused for its size, echoing at most a prefix.
        let huge = "s".repeat(10 * 1024 * 1024);
        let err = parse_event(&with(&alarm, "/source", json!(huge))).unwrap_err();
        assert!(err.0.len() < 200, "{}", &err.0[..200]);
        assert!(err.0.starts_with("event: 1048"), "{err}");
        // Within the event limit, a wrong source is echoed as a short prefix.
        let err = parse_event(&with(&alarm, "/source", json!("s".repeat(256)))).unwrap_err();
        assert!(err.0.starts_with("source: \"ssss"), "{err}");
        assert!(err.0.len() < 200, "{err}");
    }

    #[test]
    fn an_event_over_256_kb_is_refused() {
        let alarm = event(include_str!("../../../events/alarm-metric.json"));
        let size = compact_size(&alarm);
        let mut e = alarm.clone();
        // Padding in a field intake ignores, to exactly the limit and one byte over.
        e["padding"] = json!("");
        let room = MAX_EVENT_BYTES - compact_size(&e);
        e["padding"] = json!("p".repeat(room));
        assert_eq!(compact_size(&e), MAX_EVENT_BYTES);
        assert!(parse_event(&e).is_ok());
        e["padding"] = json!("p".repeat(room + 1));
        let err = parse_event(&e).unwrap_err();
        assert_eq!(
            err.0,
            format!(
                "event: {} bytes, more than EventBridge's limit of 262144 bytes (256 KB) for one event",
                MAX_EVENT_BYTES + 1
            )
        );
        assert!(size < 4096);
    }

    #[test]
    fn timestamps_must_be_valid_and_in_range() {
        let alarm = event(include_str!("../../../events/alarm-metric.json"));
        let cases = [
            (
                "/time",
                "0000-01-01T00:00:00Z",
                "time: \"0000-01-01T00:00:00Z\" is not between",
            ),
            (
                "/time",
                "2100-01-01T00:00:00Z",
                "time: \"2100-01-01T00:00:00Z\" is not between",
            ),
            (
                "/time",
                "1999-12-31T23:59:59Z",
                "time: \"1999-12-31T23:59:59Z\" is not between",
            ),
            (
                "/time",
                "2026-02-30T00:00:00Z",
                "time: \"2026-02-30T00:00:00Z\" is not an RFC 3339",
            ),
            (
                "/time",
                "2026-11-22 05:00:00",
                "time: \"2026-11-22 05:00:00\" is not an RFC 3339",
            ),
            (
                "/detail/state/timestamp",
                "0000-01-01T00:00:00.000+0000",
                "detail.state.timestamp: \"0000-01-01T00:00:00.000+0000\" is not between",
            ),
            (
                "/detail/previousState/timestamp",
                "9999-12-31T23:59:59.000+0000",
                "detail.previousState.timestamp: ",
            ),
        ];
        for (pointer, text, expected) in cases {
            let err = parse_event(&with(&alarm, pointer, json!(text))).unwrap_err();
            assert!(
                err.0.starts_with(expected),
                "expected {expected:?}, got {err}"
            );
        }
        let err = parse_event(&with(&alarm, "/time", json!(1_700_000_000))).unwrap_err();
        assert!(err.0.starts_with("time: must be a string"), "{err}");
        for ok in [
            "2000-01-01T00:00:00Z",
            "2099-12-31T23:59:59.999+00:00",
            "2026-11-22T06:00:00+01:00",
        ] {
            assert!(
                parse_event(&with(&alarm, "/time", json!(ok))).is_ok(),
                "{ok}"
            );
        }
    }

    #[test]
    fn repeated_keys_are_refused_naming_the_path() {
        let text = include_str!("../../../events/alarm-metric.json");
        assert_eq!(read_event(text).unwrap(), event(text));
        let repeated = text.replacen(
            "\"value\": \"ALARM\",",
            "\"value\": \"OK\", \"value\": \"ALARM\",",
            1,
        );
        assert_ne!(repeated, text);
        let err = read_event(&repeated).unwrap_err();
        assert!(
            err.0
                .starts_with("detail.state.value: the key appears more than once"),
            "{err}"
        );
        let err = read_event(r#"{"a": [{"b": 1}, {"b": 2, "b": 3}]}"#).unwrap_err();
        assert!(err.0.starts_with("a[1].b: "), "{err}");
        let err = read_event(r#"{"source": 1, "source": 2}"#).unwrap_err();
        assert!(err.0.starts_with("source: "), "{err}");
        // The same key in different objects is no repeat.
        assert!(read_event(r#"{"a": {"k": 1}, "b": {"k": 1}, "k": [1, 1]}"#).is_ok());
    }

    #[test]
    fn numbers_read_back_exactly() {
        // Found by fuzzing: without serde_json's `float_roundtrip`, 24 digits parsed one
        // unit in the last place off, so the stored event read back as another number.
        let text = r#"{"n": 222222222222222222222222, "x": 2.0999999992e+114}"#;
        let value = read_event(text).unwrap();
        assert_eq!(value["n"].as_f64(), Some(2.222_222_222_222_222_2e23));
        assert_eq!(read_event(&value.to_string()).unwrap(), value);
    }

    #[test]
    fn event_text_is_bounded_before_it_is_parsed() {
        let text = format!("{{\"x\": \"{}\"}}", "y".repeat(MAX_EVENT_TEXT_BYTES));
        let err = read_event(&text).unwrap_err();
        assert!(
            err.0
                .starts_with("event: 1048585 bytes of JSON, more than the 1048576"),
            "{err}"
        );
        let err = read_event("{\"detail-type\": ").unwrap_err();
        assert!(err.0.starts_with("event: not JSON"), "{err}");
        // Nesting deeper than serde_json's limit is an error, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(read_event(&deep).is_err());
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
