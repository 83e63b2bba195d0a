//! Saved log-miner states: one item per scope, replaced under a version condition.

use super::*;

const MINER_SK: &str = "STATE";

fn miner_pk(scope: &str) -> String {
    format!("MINER#{scope}")
}

#[async_trait]
impl MinerStateStore for DynamoStore {
    async fn load_miner_state(&self, scope: &str) -> Result<Option<SavedMinerState>, StoreError> {
        let pk = miner_pk(scope);
        let Some(item) = self.get(&pk, MINER_SK).await? else {
            return Ok(None);
        };
        let record = Record::new(&pk, MINER_SK, Some(&item));
        Ok(Some(SavedMinerState {
            body: record.s("body")?.to_owned(),
            version: record.number("version")?,
        }))
    }

    async fn save_miner_state(
        &self,
        scope: &str,
        body: &str,
        expected: u64,
    ) -> Result<bool, StoreError> {
        let pk = miner_pk(scope);
        let next = i64::try_from(expected.saturating_add(1)).map_err(|_| {
            StoreError::Rejected(format!("miner state version {expected} is out of range"))
        })?;
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(&pk))
            .item(SK, s(MINER_SK))
            .item("body", s(body))
            .item("version", n(next));
        // One conditional write decides, as for claims.
        let put = if expected == 0 {
            put.condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
        } else {
            put.condition_expression("#version = :expected")
                .expression_attribute_names("#version", "version")
                .expression_attribute_values(":expected", n(next - 1))
        };
        match put.send().await {
            Ok(_) => Ok(true),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => Ok(false),
                _ => Err(self.sdk_error("PutItem", &e)),
            },
        }
    }
}
