//! The Notifier port over EventBridge `PutEvents`: `Improvement Deployed`,
//! `Improvement Rolled Back` and `Approval Needed` events for other agents.

use async_trait::async_trait;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use selfbuild_core::error::StoreError;
use selfbuild_core::ports::Notifier;

use crate::sdk_error::{ErrorChain, is_transient};

/// The `source` of every event selfbuild puts.
pub const EVENT_SOURCE: &str = "selfbuild";

/// Puts selfbuild's notifications on an event bus.
#[derive(Debug, Clone)]
pub struct EventBridgeNotifier {
    client: Client,
    bus: String,
}

impl EventBridgeNotifier {
    /// A notifier on `bus` (`default` for the account's default bus).
    pub fn new(config: &aws_config::SdkConfig, bus: impl Into<String>) -> Self {
        Self {
            client: Client::new(config),
            bus: bus.into(),
        }
    }
}

/// The PutEvents entry for one notification.
pub fn entry(bus: &str, detail_type: &str, detail: &serde_json::Value) -> PutEventsRequestEntry {
    PutEventsRequestEntry::builder()
        .event_bus_name(bus)
        .source(EVENT_SOURCE)
        .detail_type(detail_type)
        .detail(detail.to_string())
        .build()
}

#[async_trait]
impl Notifier for EventBridgeNotifier {
    async fn notify(
        &self,
        detail_type: &str,
        detail: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let out = self
            .client
            .put_events()
            .entries(entry(&self.bus, detail_type, detail))
            .send()
            .await
            .map_err(|e| {
                let message = format!("PutEvents on {}: {}", self.bus, ErrorChain(&e));
                if is_transient(&e) {
                    StoreError::Unavailable(message)
                } else {
                    StoreError::Rejected(message)
                }
            })?;
        if out.failed_entry_count() > 0 {
            let reason = out
                .entries()
                .iter()
                .find_map(|e| e.error_message().map(str::to_owned))
                .unwrap_or_default();
            return Err(StoreError::Unavailable(format!(
                "PutEvents on {}: the entry failed: {reason}",
                self.bus
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_carry_source_detail_type_and_json_detail() {
        let e = entry(
            "selfbuild",
            "Improvement Deployed",
            &serde_json::json!({"cycle_id": "c1"}),
        );
        assert_eq!(e.source(), Some(EVENT_SOURCE));
        assert_eq!(e.detail_type(), Some("Improvement Deployed"));
        assert_eq!(e.event_bus_name(), Some("selfbuild"));
        assert_eq!(e.detail(), Some(r#"{"cycle_id":"c1"}"#));
    }
}
