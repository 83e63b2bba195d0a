//! CloudWatch and CloudWatch Logs on moto: alarms, metric data and log events as the
//! AlarmSource and Telemetry tests (integration and contract) set them up.

use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::{
    ComparisonOperator, Dimension, MetricDatum, StateValue, Statistic,
};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use selfbuild_core::cycle::TimeWindow;
use time::OffsetDateTime;

/// A static-threshold alarm on one metric (Sum over a minute, ≥ 5).
pub async fn put_metric_alarm(
    client: &aws_sdk_cloudwatch::Client,
    name: &str,
    namespace: &str,
    metric: &str,
    dimensions: &[(&str, &str)],
) {
    let mut put = client
        .put_metric_alarm()
        .alarm_name(name)
        .namespace(namespace)
        .metric_name(metric)
        .statistic(Statistic::Sum)
        .period(60)
        .evaluation_periods(1)
        .threshold(5.0)
        .comparison_operator(ComparisonOperator::GreaterThanOrEqualToThreshold);
    for (k, v) in dimensions {
        put = put.dimensions(Dimension::builder().name(*k).value(*v).build());
    }
    put.send().await.expect("PutMetricAlarm on moto");
}

/// Sets an alarm's state, with `reason`.
pub async fn set_alarm_state(
    client: &aws_sdk_cloudwatch::Client,
    name: &str,
    state: StateValue,
    reason: &str,
) {
    client
        .set_alarm_state()
        .alarm_name(name)
        .state_value(state)
        .state_reason(reason)
        .send()
        .await
        .expect("SetAlarmState on moto");
}

/// A five-minute window starting on a minute half an hour ago (moto's Logs keeps only events
/// of the last 14 days, so the times cannot be fixed).
pub fn recent_window() -> TimeWindow {
    let now = OffsetDateTime::now_utc();
    let start = now
        .replace_second(0)
        .and_then(|t| t.replace_nanosecond(0))
        .expect("a valid instant")
        - time::Duration::minutes(30);
    TimeWindow {
        start,
        end: start + time::Duration::minutes(5),
    }
}

/// One data point of a metric.
pub async fn put_metric(
    client: &aws_sdk_cloudwatch::Client,
    namespace: &str,
    name: &str,
    dimensions: &[(&str, &str)],
    timestamp: OffsetDateTime,
    value: f64,
) {
    let mut datum = MetricDatum::builder()
        .metric_name(name)
        .value(value)
        .timestamp(DateTime::from_secs(timestamp.unix_timestamp()));
    for (k, v) in dimensions {
        datum = datum.dimensions(Dimension::builder().name(*k).value(*v).build());
    }
    client
        .put_metric_data()
        .namespace(namespace)
        .metric_data(datum.build())
        .send()
        .await
        .expect("PutMetricData on moto");
}

/// The log group `/aws/lambda/<function>` with one stream holding `events`.
pub async fn log_group(
    logs: &aws_sdk_cloudwatchlogs::Client,
    function: &str,
    events: &[(OffsetDateTime, &str)],
) {
    let group = format!("/aws/lambda/{function}");
    let stream = "2026/01/01/[$LATEST]0123abcd";
    logs.create_log_group()
        .log_group_name(&group)
        .send()
        .await
        .expect("CreateLogGroup on moto");
    logs.create_log_stream()
        .log_group_name(&group)
        .log_stream_name(stream)
        .send()
        .await
        .expect("CreateLogStream on moto");
    let mut put = logs
        .put_log_events()
        .log_group_name(&group)
        .log_stream_name(stream);
    for (at, message) in events {
        let millis = i64::try_from(at.unix_timestamp_nanos() / 1_000_000).expect("a log time");
        put = put.log_events(
            InputLogEvent::builder()
                .timestamp(millis)
                .message(*message)
                .build()
                .expect("a log event"),
        );
    }
    put.send().await.expect("PutLogEvents on moto");
}
