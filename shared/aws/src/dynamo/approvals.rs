//! Pending approvals: one item per improvement, approvers as a string set.

use super::*;

/// The cycle item: the record as JSON plus the fields worth querying on their own.
#[async_trait]
impl ApprovalStore for DynamoStore {
    async fn put_pending(&self, pending: &PendingApproval) -> Result<(), StoreError> {
        let pk = approval_pk(&pending.improvement_id);
        // Approvers live in a string set so adding one is a single atomic ADD.
        let body = PendingApproval {
            approvers: Vec::new(),
            ..pending.clone()
        };
        let body = serde_json::to_string(&body).map_err(|e| StoreError::Corrupt {
            record: record_name(&pk, APPROVAL_SK),
            problem: format!("body cannot be written: {e}"),
        })?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(&pk))
            .item(SK, s(APPROVAL_SK))
            .item("body", AttributeValue::S(body));
        if !pending.approvers.is_empty() {
            put = put.item("approvers", AttributeValue::Ss(pending.approvers.clone()));
        }
        put.send()
            .await
            .map_err(|e| self.sdk_error("PutItem", &e))?;
        Ok(())
    }

    async fn get_pending(
        &self,
        improvement_id: &ImprovementId,
    ) -> Result<Option<PendingApproval>, StoreError> {
        let pk = approval_pk(improvement_id);
        let Some(item) = self.get(&pk, APPROVAL_SK).await? else {
            return Ok(None);
        };
        pending_from(&pk, &item).map(Some)
    }

    async fn add_approver(
        &self,
        improvement_id: &ImprovementId,
        approver: &str,
    ) -> Result<Option<PendingApproval>, StoreError> {
        let pk = approval_pk(improvement_id);
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(&pk))
            .key(SK, s(APPROVAL_SK))
            .update_expression("ADD #approvers :approver")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#approvers", "approvers")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":approver", AttributeValue::Ss(vec![approver.to_owned()]))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match update {
            Ok(out) => match out.attributes {
                Some(item) => pending_from(&pk, &item).map(Some),
                None => Ok(None),
            },
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.sdk_error("UpdateItem", &e)),
        }
    }

    async fn remove_pending(&self, improvement_id: &ImprovementId) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(&approval_pk(improvement_id)))
            .key(SK, s(APPROVAL_SK))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.sdk_error("DeleteItem", &e))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }
}

fn pending_from(pk: &str, item: &Item) -> Result<PendingApproval, StoreError> {
    let record = Record::new(pk, APPROVAL_SK, Some(item));
    let mut pending: PendingApproval = serde_json::from_str(record.s("body")?)
        .map_err(|e| record.corrupt(format!("attribute body is not a pending approval: {e}")))?;
    if let Some(AttributeValue::Ss(approvers)) = item.get("approvers") {
        let mut approvers = approvers.clone();
        approvers.sort();
        pending.approvers = approvers;
    }
    Ok(pending)
}

fn approval_pk(improvement_id: &ImprovementId) -> String {
    format!("APPROVAL#{improvement_id}")
}
