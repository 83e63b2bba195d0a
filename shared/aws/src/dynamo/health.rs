//! The self health pass's records: one heal ledger per component, the health events in
//! append order, and the last report.

use super::*;

const HEALTH_PK: &str = "HEALTH";
const HEALTH_EVENT_PK: &str = "HEALTH_EVENT";
const LEDGER_PREFIX: &str = "LEDGER#";
const REPORT_SK: &str = "REPORT";
const EVENT_SEQ_SK: &str = "EVENT_SEQ";

fn ledger_sk(component: &str) -> String {
    format!("{LEDGER_PREFIX}{component}")
}

impl DynamoStore {
    /// The next health event number (an atomic `ADD`), so events of one millisecond keep
    /// their append order, as the embedded store's sequence does.
    async fn next_health_event_seq(&self) -> Result<u64, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(HEALTH_PK))
            .key(SK, s(EVENT_SEQ_SK))
            .update_expression("ADD #n :one")
            .expression_attribute_names("#n", "n")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await
            .map_err(|e| self.sdk_error("UpdateItem", &e))?;
        Record::new(HEALTH_PK, EVENT_SEQ_SK, out.attributes()).number("n")
    }
}

#[async_trait]
impl HealthStore for DynamoStore {
    async fn component_health(&self) -> Result<Vec<ComponentHealth>, StoreError> {
        let query = self.partition_query(HEALTH_PK, Some(LEDGER_PREFIX));
        let items = self.query_items(query, usize::MAX).await?;
        items
            .iter()
            .map(|item| decode_body(HEALTH_PK, item))
            .collect()
    }

    async fn put_component_health(&self, ledger: &ComponentHealth) -> Result<(), StoreError> {
        let sk = ledger_sk(&ledger.component);
        let body = encode(HEALTH_PK, &sk, ledger)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(HEALTH_PK))
            .item(SK, s(&sk))
            .item("component", s(&ledger.component))
            .item("disabled", AttributeValue::Bool(ledger.disabled.is_some()))
            .item("body", AttributeValue::S(body))
            .send()
            .await
            .map_err(|e| self.sdk_error("PutItem", &e))?;
        Ok(())
    }

    async fn enable_component(&self, component: &str) -> Result<bool, StoreError> {
        let sk = ledger_sk(component);
        // One DeleteItem that returns what it deleted: no read-then-delete race.
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(HEALTH_PK))
            .key(SK, s(&sk))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.sdk_error("DeleteItem", &e))?;
        let Some(old) = out.attributes() else {
            return Ok(false);
        };
        let ledger: ComponentHealth = decode_body(HEALTH_PK, old)?;
        Ok(ledger.disabled.is_some())
    }

    async fn append_health_event(&self, event: &HealthEvent) -> Result<(), StoreError> {
        let seq = self.next_health_event_seq().await?;
        let sk = format!("{:020}#{seq:020}", unix_millis(event.at).max(0));
        let body = encode(HEALTH_EVENT_PK, &sk, event)?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(HEALTH_EVENT_PK))
            .item(SK, s(&sk))
            .item("kind", s(health_event_kind(event.kind)))
            .item("body", AttributeValue::S(body));
        if let Some(component) = &event.component {
            put = put.item("component", s(component));
        }
        put.send()
            .await
            .map_err(|e| self.sdk_error("PutItem", &e))?;
        Ok(())
    }

    async fn health_events(
        &self,
        component: Option<&str>,
        limit: usize,
    ) -> Result<Vec<HealthEvent>, StoreError> {
        let mut query = self
            .partition_query(HEALTH_EVENT_PK, None)
            .scan_index_forward(false);
        if let Some(component) = component {
            // Events are few (heals and disables, not every pass): a filter on one
            // partition, followed page by page by `query_items`, is enough.
            query = query
                .filter_expression("#component = :component")
                .expression_attribute_names("#component", "component")
                .expression_attribute_values(":component", s(component));
        }
        let items = self.query_items(query, limit).await?;
        items
            .iter()
            .map(|item| decode_body(HEALTH_EVENT_PK, item))
            .collect()
    }

    async fn save_health_report(&self, report: &HealthReport) -> Result<(), StoreError> {
        let body = encode(HEALTH_PK, REPORT_SK, report)?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(HEALTH_PK))
            .item(SK, s(REPORT_SK))
            .item("healthy", AttributeValue::Bool(report.healthy))
            .item("body", AttributeValue::S(body))
            .send()
            .await
            .map_err(|e| self.sdk_error("PutItem", &e))?;
        Ok(())
    }

    async fn last_health_report(&self) -> Result<Option<HealthReport>, StoreError> {
        let Some(item) = self.get(HEALTH_PK, REPORT_SK).await? else {
            return Ok(None);
        };
        decode_body(HEALTH_PK, &item).map(Some)
    }
}

/// The `kind` attribute: the event kind's JSON name.
fn health_event_kind(kind: HealthEventKind) -> &'static str {
    match kind {
        HealthEventKind::HealAttempted => "heal_attempted",
        HealthEventKind::Disabled => "disabled",
        HealthEventKind::Enabled => "enabled",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_kinds_are_stored_by_their_json_names() {
        for kind in [
            HealthEventKind::HealAttempted,
            HealthEventKind::Disabled,
            HealthEventKind::Enabled,
        ] {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                health_event_kind(kind),
                "{kind:?}"
            );
        }
    }
}
