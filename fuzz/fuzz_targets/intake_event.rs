//! The text an event arrives as at intake: `read_event` (size bound, repeated keys) then
//! `parse_event` (EventBridge alarm state changes and scheduled events), then the scope
//! intake derives from an alarm.
//!
//! Properties: what is read re-serialises and reads back the same (nothing is lost); parsing
//! is the same on the re-read value; an accepted event is within the limits intake
//! documents; an error names a field that is in the event (or `event`), and its description
//! never echoes the input whole.
//!
//! CloudWatch Logs subscription deliveries: an event with `awslogs` is decoded as one, and
//! every input is also packed as one (gzip, base64, `{"awslogs": {"data": …}}`) so that
//! the fuzzer reaches the JSON inside. Properties: decoding fails only with an
//! `awslogs: …` error of bounded length; a decoded delivery mines without a panic into a
//! state within its caps that reads back and mines again the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use selfbuild_core::alarm::{AlarmKind, AlarmPattern, AlarmSignal};
use selfbuild_core::event::{
    EARLIEST_TIME, END_OF_TIME, IntakeEvent, MAX_EVENT_BYTES, parse_event, read_event,
};
use selfbuild_core::logstream::{
    MAX_MINED_MESSAGE_BYTES, MAX_STATE_BYTES, MAX_STREAM_TEMPLATES, StreamState, decode_delivery,
    error_text, is_delivery, mine_delivery,
};
use selfbuild_fuzz::{field_of, names_a_field};

/// The longest an error's description (after the field) may be: excerpts, not input.
const MAX_DESCRIPTION: usize = 600;

fuzz_target!(|data: &[u8]| {
    check_delivery(&pack(data));
    // The Lambda runtime hands intake UTF-8 text; anything else never reaches it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let value = match read_event(text) {
        Ok(value) => value,
        Err(e) => {
            let field = field_of(&e.0);
            assert!(!field.is_empty(), "no field named: {e}");
            assert!(
                e.0.len() - field.len() <= MAX_DESCRIPTION,
                "read_event echoes too much: {} bytes",
                e.0.len()
            );
            return;
        }
    };
    if is_delivery(&value) {
        check_delivery(&value);
        return;
    }
    // No data lost: the compact text reads back to the same value.
    let compact = value.to_string();
    let again = read_event(&compact).unwrap_or_else(|e| panic!("re-read failed: {e}"));
    assert_eq!(again, value, "re-read differs");

    let parsed = parse_event(&value);
    assert_eq!(parse_event(&again), parsed, "parse is not deterministic");
    let event = match parsed {
        Ok(event) => event,
        Err(e) => {
            let field = field_of(&e.0);
            assert!(
                field == "event" || names_a_field(&value, field),
                "the error names no field of the event: {e}"
            );
            assert!(
                e.0.len() - field.len() <= MAX_DESCRIPTION,
                "parse_event echoes too much: {} bytes",
                e.0.len()
            );
            return;
        }
    };
    assert!(compact.len() <= MAX_EVENT_BYTES, "over the event limit");
    assert!((EARLIEST_TIME..END_OF_TIME).contains(&event.time()));
    match event {
        IntakeEvent::AlarmStateChange { alarm, .. } => check_alarm(&alarm),
        IntakeEvent::Routine { rule, .. } | IntakeEvent::Poll { rule, .. } => {
            if let Some(rule) = rule {
                assert!(rule.chars().count() <= 2048);
            }
        }
    }
});

fn check_alarm(alarm: &AlarmSignal) {
    let chars = alarm.name.chars().count();
    assert!(
        (1..=255).contains(&chars),
        "alarm name of {chars} characters"
    );
    assert!(!alarm.name.trim().is_empty(), "blank alarm name");
    assert!(!alarm.name.chars().any(char::is_control));
    if let Some(t) = alarm.state_changed_at {
        assert!((EARLIEST_TIME..END_OF_TIME).contains(&t));
    }
    if let Some(reason) = &alarm.reason {
        assert!(reason.chars().count() <= 1023);
    }
    if let Some(arn) = &alarm.arn {
        assert!(arn.contains(":alarm:"));
    }
    assert_eq!(
        alarm.kind == AlarmKind::Composite,
        alarm.alarm_rule.is_some(),
        "composite iff there is an alarm rule"
    );
    if let Some(rule) = &alarm.alarm_rule {
        assert!((1..=10240).contains(&rule.chars().count()));
    }
    for metric in &alarm.metrics {
        assert!(metric.dimensions.len() <= 30);
        for (name, value) in &metric.dimensions {
            assert!((1..=255).contains(&name.chars().count()));
            assert!((1..=1024).contains(&value.chars().count()));
        }
    }
    // What intake stores of the alarm reads back the same.
    let stored = serde_json::to_string(alarm).unwrap_or_else(|e| panic!("{e}"));
    let back: AlarmSignal = serde_json::from_str(&stored).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(&back, alarm, "the stored alarm differs");
    // Intake's next step: the tenant and component, or an error (never a panic).
    let patterns: Vec<AlarmPattern> = ["*-P1", "*Critical*"]
        .iter()
        .filter_map(|g| AlarmPattern::parse(g).ok())
        .collect();
    let _ = alarm.scope(&patterns);
}

/// `data` as CloudWatch Logs delivers a payload: gzip, base64, in `awslogs.data`.
fn pack(data: &[u8]) -> serde_json::Value {
    use base64::Engine;
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(data).unwrap_or_else(|e| panic!("{e}"));
    let gz = gz.finish().unwrap_or_else(|e| panic!("{e}"));
    serde_json::json!({"awslogs": {"data": base64::engine::general_purpose::STANDARD.encode(gz)}})
}

fn check_delivery(event: &serde_json::Value) {
    let delivery = match decode_delivery(event) {
        Ok(delivery) => delivery,
        Err(e) => {
            assert!(e.0.starts_with("awslogs: "), "unnamed delivery error: {e}");
            assert!(
                e.0.len() <= MAX_DESCRIPTION + 200,
                "echoes too much: {} bytes",
                e.0.len()
            );
            return;
        }
    };
    for event in &delivery.log_events {
        if let Some(text) = error_text(&event.message) {
            assert!(
                text.len() <= MAX_MINED_MESSAGE_BYTES + 64,
                "mined text of {} bytes",
                text.len()
            );
        }
    }
    let (state, mined) = mine_delivery(None, &delivery).unwrap_or_else(|e| panic!("{e}"));
    assert!(mined.signals.len() <= MAX_STREAM_TEMPLATES.max(mined.error_lines));
    assert!(state.miner.templates.len() <= MAX_STREAM_TEMPLATES);
    let saved = serde_json::to_string(&state).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        saved.len() <= MAX_STATE_BYTES,
        "state of {} bytes",
        saved.len()
    );
    let back: StreamState = serde_json::from_str(&saved).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(back, state, "the saved state reads back different");
    // Resumed from the saved state, the same delivery mines the same way twice.
    let once = mine_delivery(Some(back.clone()), &delivery).unwrap_or_else(|e| panic!("{e}"));
    let twice = mine_delivery(Some(back), &delivery).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(once, twice, "mining is not deterministic");
}
