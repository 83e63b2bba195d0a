//! Re-sending intake's dead letters once (the `ResendDlq` heal).
//!
//! Two kinds of message reach the queue: an event EventBridge could not deliver (the body
//! **is** the event, as AWS documents for rule-target DLQs) and an invocation record of
//! Lambda's on-failure destination when intake failed after its retries (the event is its
//! `requestPayload`). Either way the event goes back to intake as an asynchronous
//! invocation with the original event, carrying [`RESENT_MARKER`] (the id of the message it
//! came from) as an extra top-level member, which intake ignores. If intake fails on it
//! again, Lambda's on-failure record brings it back with the marker inside, and it is never
//! re-sent: it stays for an operator. A message is deleted only after its re-send was
//! accepted; should the delete then fail, the next pass re-sends it once more, which intake's
//! dedup claims absorb.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The top-level member a re-sent event carries: the id of the dead letter it came from.
pub const RESENT_MARKER: &str = "selfbuild-resent-from";

/// The most messages one heal re-sends (the rest wait for the next pass).
pub const RESEND_LIMIT: usize = 100;

/// What one dead letter is.
#[derive(Debug, Clone, PartialEq)]
pub enum Letter {
    /// An event to re-send.
    Event(Value),
    /// An event selfbuild re-sent once already (it failed again): left for an operator.
    AlreadyResent,
    /// Not an event intake could take: left for an operator.
    Unreadable(String),
}

/// Reads a dead letter's body.
pub fn read_letter(body: &str) -> Letter {
    let value: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return Letter::Unreadable(format!("not JSON: {e}")),
    };
    let event = match value {
        Value::Object(mut record)
            if record.contains_key("requestContext") && record.contains_key("requestPayload") =>
        {
            record.remove("requestPayload").unwrap_or(Value::Null)
        }
        other => other,
    };
    match &event {
        Value::Object(map) if map.contains_key(RESENT_MARKER) => Letter::AlreadyResent,
        Value::Object(_) => Letter::Event(event),
        _ => Letter::Unreadable("the event is not a JSON object".to_owned()),
    }
}

/// The event as re-sent: with [`RESENT_MARKER`] set to the dead letter's id.
pub fn marked(mut event: Value, message_id: &str) -> Value {
    if let Value::Object(map) = &mut event {
        map.insert(
            RESENT_MARKER.to_owned(),
            Value::String(message_id.to_owned()),
        );
    }
    event
}

/// What one re-send round did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resent {
    /// Re-sent to intake and deleted.
    pub resent: u64,
    /// Re-sent, but the delete failed (the next pass may re-send it once more).
    pub not_deleted: u64,
    /// Re-sent once before: left for an operator.
    pub already_resent: u64,
    /// Not an event: left for an operator.
    pub unreadable: u64,
    /// The re-send failed: left for the next pass.
    pub failed: u64,
    /// The first problem met, in words.
    pub problem: Option<String>,
}

impl Resent {
    /// Every message seen was re-sent and deleted.
    pub fn all_done(&self) -> bool {
        self.not_deleted + self.already_resent + self.unreadable + self.failed == 0
    }

    /// In words.
    pub fn describe(&self) -> String {
        let mut text = format!("re-sent {} dead letter(s) to intake", self.resent);
        for (n, what) in [
            (self.not_deleted, "re-sent but not deleted"),
            (
                self.already_resent,
                "re-sent once before, left for an operator",
            ),
            (self.unreadable, "not an event, left for an operator"),
            (self.failed, "not re-sent, tried again next pass"),
        ] {
            if n > 0 {
                text.push_str(&format!("; {n} {what}"));
            }
        }
        if let Some(problem) = &self.problem {
            text.push_str(&format!(" ({problem})"));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const POLL: &str = include_str!("../../../../events/scheduled-poll.json");

    #[test]
    fn an_eventbridge_dead_letter_is_the_event() {
        let Letter::Event(event) = read_letter(POLL) else {
            panic!("not an event")
        };
        assert_eq!(event["detail-type"], "Scheduled Event");
    }

    #[test]
    fn a_lambda_failure_record_carries_the_event_as_request_payload() {
        let event: Value = serde_json::from_str(POLL).unwrap();
        let record = json!({
            "version": "1.0",
            "timestamp": "2026-12-05T12:00:00.000Z",
            "requestContext": {"requestId": "r", "condition": "RetriesExhausted", "approximateInvokeCount": 3},
            "requestPayload": event,
            "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
            "responsePayload": {"errorType": "Retryable"}
        });
        assert_eq!(read_letter(&record.to_string()), Letter::Event(event));
    }

    #[test]
    fn a_resent_event_is_never_resent_again_either_way_it_comes_back() {
        let Letter::Event(event) = read_letter(POLL) else {
            panic!("not an event")
        };
        let resent = marked(event, "msg-1");
        assert_eq!(resent[RESENT_MARKER], "msg-1");
        assert_eq!(read_letter(&resent.to_string()), Letter::AlreadyResent);
        let record = json!({"requestContext": {}, "requestPayload": resent});
        assert_eq!(read_letter(&record.to_string()), Letter::AlreadyResent);
    }

    #[test]
    fn a_resent_event_is_still_one_intake_takes() {
        let Letter::Event(event) = read_letter(POLL) else {
            panic!("not an event")
        };
        let parsed = crate::event::parse_event(&marked(event, "msg-1"));
        assert!(
            matches!(parsed, Ok(crate::event::IntakeEvent::Poll { .. })),
            "{parsed:?}"
        );
    }

    #[test]
    fn what_is_no_event_is_unreadable() {
        for body in [
            "",
            "not json",
            "[1,2]",
            "\"text\"",
            r#"{"requestContext":{},"requestPayload":3}"#,
        ] {
            assert!(matches!(read_letter(body), Letter::Unreadable(_)), "{body}");
        }
    }

    #[test]
    fn the_round_is_done_only_when_nothing_was_left() {
        let mut r = Resent {
            resent: 2,
            ..Resent::default()
        };
        assert!(r.all_done());
        assert_eq!(r.describe(), "re-sent 2 dead letter(s) to intake");
        r.already_resent = 1;
        assert!(!r.all_done());
        assert!(
            r.describe()
                .contains("1 re-sent once before, left for an operator")
        );
    }
}
