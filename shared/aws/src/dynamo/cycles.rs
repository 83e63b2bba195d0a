//! Cycles with their running-cycle items (written and deleted in transactions) and the
//! audit log, both keyed by cycle.

use super::*;

#[async_trait]
impl CycleStore for DynamoStore {
    async fn create_cycle(&self, cycle: &CycleRecord) -> Result<bool, StoreError> {
        let pk = cycle_pk(&cycle.request.cycle_id);
        let problem = |what: &str, e: &dyn std::fmt::Display| StoreError::Corrupt {
            record: record_name(&pk, CYCLE_SK),
            problem: format!("{what} cannot be written: {e}"),
        };
        let body = serde_json::to_string(cycle).map_err(|e| problem("body", &e))?;
        let started_at = cycle
            .started_at
            .format(&Rfc3339)
            .map_err(|e| problem("started_at", &e))?;
        let build = |e: BuildError| self.build_error("TransactWriteItems", &e);
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(cycle_item(&pk, cycle, body.clone(), started_at)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .build()
            .map_err(build)?;
        let mut write = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build());
        // The cycle and its running item in one transaction: a cycle is never created
        // without showing up in `running_cycles`, whichever write a failure would hit.
        if cycle.status == CycleStatus::Running {
            let running = Put::builder()
                .table_name(&self.table)
                .set_item(Some(running_item(cycle, body)))
                .build()
                .map_err(build)?;
            write = write.transact_items(TransactWriteItem::builder().put(running).build());
        }
        match write.send().await {
            Ok(_) => Ok(true),
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.transaction_error(&e)),
        }
    }

    async fn get_cycle(&self, id: &CycleId) -> Result<Option<CycleRecord>, StoreError> {
        let pk = cycle_pk(id);
        let Some(item) = self.get(&pk, CYCLE_SK).await? else {
            return Ok(None);
        };
        let record = Record::new(&pk, CYCLE_SK, Some(&item));
        let body = record.s("body")?;
        let cycle: CycleRecord = serde_json::from_str(body)
            .map_err(|e| record.corrupt(format!("attribute body is not a cycle record: {e}")))?;
        if &cycle.request.cycle_id != id {
            return Err(record.corrupt(format!(
                "attribute body holds cycle {}",
                cycle.request.cycle_id
            )));
        }
        Ok(Some(cycle))
    }

    async fn finish_cycle(
        &self,
        id: &CycleId,
        status: CycleStatus,
        at: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        let pk = cycle_pk(id);
        let Some(item) = self.get(&pk, CYCLE_SK).await? else {
            return Ok(false);
        };
        let mut cycle: CycleRecord = decode_body(&pk, &item)?;
        cycle.status = status;
        let body = encode(&pk, CYCLE_SK, &cycle)?;
        let finished_at = at.format(&Rfc3339).map_err(|e| StoreError::Corrupt {
            record: record_name(&pk, CYCLE_SK),
            problem: format!("finished_at {at} cannot be written as RFC 3339: {e}"),
        })?;
        let build = |e: BuildError| self.build_error("TransactWriteItems", &e);
        // The body is rewritten whole: nothing but its status changes after create_cycle, so
        // two completions racing write the same record but for the status.
        let update = Update::builder()
            .table_name(&self.table)
            .key(PK, s(&pk))
            .key(SK, s(CYCLE_SK))
            .update_expression("SET #body = :body, #status = :status, #finished = :finished")
            .condition_expression("attribute_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#body", "body")
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#finished", "finished_at")
            .expression_attribute_values(":body", AttributeValue::S(body))
            .expression_attribute_values(":status", s(status_name(status)))
            .expression_attribute_values(":finished", s(&finished_at))
            .build()
            .map_err(build)?;
        let running = Delete::builder()
            .table_name(&self.table)
            .key(PK, s(RUNNING_CYCLE_PK))
            .key(SK, s(&running_sk(&cycle)))
            .build()
            .map_err(build)?;
        let write = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(TransactWriteItem::builder().delete(running).build())
            .send()
            .await;
        match write {
            Ok(_) => Ok(true),
            // Deleted between the read and the write.
            Err(e) if condition_failed(&e) => Ok(false),
            Err(e) => Err(self.transaction_error(&e)),
        }
    }

    async fn running_cycles(
        &self,
        scope: &TenantScope,
        limit: usize,
    ) -> Result<Vec<CycleRecord>, StoreError> {
        let mut query = self.partition_query(RUNNING_CYCLE_PK, None);
        if let Some(tenant) = scope.tenant() {
            query = query
                .filter_expression("#tenant = :tenant")
                .expression_attribute_names("#tenant", "tenant_id")
                .expression_attribute_values(":tenant", s(tenant.as_str()));
        }
        let items = self.query_items(query, limit).await?;
        items
            .iter()
            .map(|item| decode_body(RUNNING_CYCLE_PK, item))
            .collect()
    }
}

#[async_trait]
impl AuditLog for DynamoStore {
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError> {
        let pk = audit_pk(&event.cycle_id);
        let body = serde_json::to_string(event).map_err(|e| StoreError::Corrupt {
            record: pk.clone(),
            problem: format!("audit event cannot be written: {e}"),
        })?;
        // Time-ordered sort key; the body's hash keeps two events of one millisecond apart.
        let digest = body.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let sk = format!("{:020}#{digest:016x}", unix_millis(event.at).max(0));
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(&pk))
            .item(SK, s(&sk))
            .item("action", s(event.action.as_str()))
            .item("actor", s(&event.actor))
            .item("body", AttributeValue::S(body))
            .send()
            .await
            .map_err(|e| self.sdk_error("PutItem", &e))?;
        Ok(())
    }

    async fn cycle_events(&self, cycle_id: &CycleId) -> Result<Vec<AuditEvent>, StoreError> {
        let pk = audit_pk(cycle_id);
        let mut events = Vec::new();
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(&pk))
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| self.sdk_error("Query", &e))?
        {
            for item in page.items() {
                let sk = item
                    .get(SK)
                    .and_then(|v| v.as_s().ok())
                    .map_or("", String::as_str);
                let record = Record::new(&pk, sk, Some(item));
                let event: AuditEvent = serde_json::from_str(record.s("body")?).map_err(|e| {
                    record.corrupt(format!("attribute body is not an audit event: {e}"))
                })?;
                events.push(event);
            }
        }
        Ok(events)
    }
}

fn audit_pk(cycle_id: &CycleId) -> String {
    format!("AUDIT#{cycle_id}")
}

fn cycle_item(pk: &str, cycle: &CycleRecord, body: String, started_at: String) -> Item {
    let mut item = Item::from([
        (PK.to_owned(), s(pk)),
        (SK.to_owned(), s(CYCLE_SK)),
        ("body".to_owned(), AttributeValue::S(body)),
        ("status".to_owned(), s(status_name(cycle.status))),
        ("started_at".to_owned(), AttributeValue::S(started_at)),
    ]);
    if let Some(tenant) = &cycle.request.tenant_id {
        item.insert("tenant_id".to_owned(), s(tenant.as_str()));
    }
    item
}

/// The running-cycle item: the record as JSON, in start order.
fn running_item(cycle: &CycleRecord, body: String) -> Item {
    let mut item = Item::from([
        (PK.to_owned(), s(RUNNING_CYCLE_PK)),
        (SK.to_owned(), s(&running_sk(cycle))),
        ("cycle_id".to_owned(), s(cycle.request.cycle_id.as_str())),
        ("body".to_owned(), AttributeValue::S(body)),
    ]);
    if let Some(tenant) = &cycle.request.tenant_id {
        item.insert("tenant_id".to_owned(), s(tenant.as_str()));
    }
    item
}

/// Oldest first: the start time, then the id.
fn running_sk(cycle: &CycleRecord) -> String {
    format!(
        "{:020}#{}",
        unix_millis(cycle.started_at).max(0),
        cycle.request.cycle_id
    )
}

/// True when a transaction was cancelled because one of its conditions failed.
fn condition_failed(err: &SdkError<TransactWriteItemsError, HttpResponse>) -> bool {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled
            .cancellation_reasons()
            .iter()
            .any(|r| r.code() == Some("ConditionalCheckFailed")),
        _ => false,
    }
}

/// The cycle item's partition key.
fn cycle_pk(id: &CycleId) -> String {
    format!("CYCLE#{}", id.as_str())
}

/// The `status` attribute: the same snake_case names the JSON body uses.
fn status_name(status: CycleStatus) -> &'static str {
    match status {
        CycleStatus::Running => "running",
        CycleStatus::Succeeded => "succeeded",
        CycleStatus::Failed => "failed",
    }
}

#[cfg(test)]
mod cycle_transactions {
    //! Cancelled transactions, told apart by their cancellation reasons.

    use super::*;
    use aws_sdk_dynamodb::types::CancellationReason;
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};

    fn cycle() -> CycleRecord {
        serde_json::from_value(serde_json::json!({
            "request": {
                "cycle_id": "c1", "mode": "routine", "tenant_id": "acme", "components": [],
                "analysis_window": {
                    "start": "2026-11-22T04:00:00Z", "end": "2026-11-22T05:00:00Z"
                },
                "max_improvements": 3, "max_concurrency": 3, "dry_run": false,
                "trigger": {"kind": "schedule", "rule": null}, "dedup_key": "acme#*",
                "requested_at": "2026-11-22T05:00:00Z"
            },
            "status": "running", "execution_ref": "exec",
            "started_at": "2026-11-22T05:00:00Z"
        }))
        .unwrap()
    }

    fn cancelled(codes: &'static [&'static str]) -> TransactWriteItemsError {
        TransactWriteItemsError::TransactionCanceledException(
            TransactionCanceledException::builder()
                .set_cancellation_reasons(Some(
                    codes
                        .iter()
                        .map(|c| CancellationReason::builder().code(*c).build())
                        .collect(),
                ))
                .build(),
        )
    }

    async fn create(codes: &'static [&'static str]) -> Result<bool, StoreError> {
        let write = mock!(Client::transact_write_items)
            .match_requests(|r| r.transact_items().len() == 2)
            .then_error(move || cancelled(codes));
        let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&write]);
        DynamoStore::from_client(client, "t")
            .create_cycle(&cycle())
            .await
    }

    #[tokio::test]
    async fn an_existing_cycle_is_not_created_again() {
        assert!(!create(&["ConditionalCheckFailed", "None"]).await.unwrap());
    }

    #[tokio::test]
    async fn a_conflicting_transaction_is_retryable_and_an_invalid_one_is_not() {
        let conflict = create(&["None", "TransactionConflict"]).await.unwrap_err();
        assert!(
            matches!(conflict, StoreError::Unavailable(_)),
            "{conflict:?}"
        );
        let invalid = create(&["ValidationError", "None"]).await.unwrap_err();
        assert!(matches!(invalid, StoreError::Rejected(_)), "{invalid:?}");
        assert!(invalid.to_string().contains("ValidationError"), "{invalid}");
    }
}
