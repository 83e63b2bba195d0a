//! The store ports over one DynamoDB table: dedup claims, the halt switch and cycle records.
//!
//! Single-table design with string keys `pk` and `sk`:
//!
//! | item        | `pk`            | `sk`    | attributes |
//! |-------------|-----------------|---------|------------|
//! | dedup claim | `DEDUP#<key>`   | `CLAIM` | `cycle_id`, `claimed_at_ms`, `window_end_ms`, `expires_at` (TTL, unix seconds), `suppressed_count`, `started`, `execution_ref`?, `cycle_input`, `dedup_key` |
//! | halt switch | `CONTROL`       | `HALT`  | `reason`, `actor`, `since` (RFC 3339) |
//! | cycle       | `CYCLE#<id>`    | `META`  | `body` (the record as JSON), `status`, `started_at`, `tenant_id`? |
//! | approval    | `APPROVAL#<improvement>` | `PENDING` | `body` (JSON), `approvers` (string set) |
//! | audit event | `AUDIT#<cycle>` | `<at ms, 20 digits>#<hash>` | `body` (JSON), `action`, `actor` |
//!
//! Every decision is a conditional write; the TTL only tidies up and is never relied on.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, ReturnValue,
    ScalarAttributeType, TimeToLiveSpecification, TimeToLiveStatus,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::ProvideErrorKind;
use selfbuild_core::approval::{ApprovalStore, PendingApproval};
use selfbuild_core::audit::{AuditEvent, AuditLog};
use selfbuild_core::cycle::{CycleRecord, CycleStatus};
use selfbuild_core::error::StoreError;
use selfbuild_core::ids::{CycleId, DedupKey};
use selfbuild_core::ports::{
    ClaimOutcome, CycleStore, DedupClaim, DedupStore, HaltState, HaltSwitch, HeldClaim,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::{debug, warn};

use crate::sdk_error::{ErrorChain, is_transient};

/// The partition key attribute.
const PK: &str = "pk";
/// The sort key attribute.
const SK: &str = "sk";
/// The table's TTL attribute, in unix seconds.
pub const TTL_ATTRIBUTE: &str = "expires_at";
/// How many put/increment rounds a claim tries before giving up as contended.
const CLAIM_ROUNDS: u32 = 3;
/// How long `create_table` waits for the table to become active.
const CREATE_TABLE_WAIT: Duration = Duration::from_secs(300);

const CLAIM_SK: &str = "CLAIM";
const HALT_PK: &str = "CONTROL";
const HALT_SK: &str = "HALT";
const CYCLE_SK: &str = "META";
const APPROVAL_SK: &str = "PENDING";

type Item = HashMap<String, AttributeValue>;

/// The store ports (`DedupStore`, `HaltSwitch`, `CycleStore`) over one DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// A store on `table`, with a client built from `config`.
    pub fn new(config: &aws_config::SdkConfig, table: impl Into<String>) -> Self {
        Self::from_client(Client::new(config), table)
    }

    /// A store on `table` using an existing client.
    pub fn from_client(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand, `pk` HASH + `sk` RANGE, both strings) unless it exists,
    /// waits for it to be active, and enables TTL on `expires_at`. For tests and local dev;
    /// deployed tables come from the SAM template.
    pub async fn create_table(&self) -> Result<(), StoreError> {
        let build = |e: BuildError| {
            StoreError::Unavailable(format!("CreateTable {}: {}", self.table, ErrorChain(&e)))
        };
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(build)
        };
        let key = |name: &str, key_type: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .map_err(build)
        };
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute(PK)?)
            .attribute_definitions(attribute(SK)?)
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .send()
            .await;
        match created {
            Ok(_) => debug!(table = %self.table, "table created"),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_in_use_exception()) =>
            {
                debug!(table = %self.table, "table already exists");
            }
            Err(e) => return Err(self.sdk_error("CreateTable", &e)),
        }
        self.client
            .wait_until_table_exists()
            .table_name(&self.table)
            .wait(CREATE_TABLE_WAIT)
            .await
            .map_err(|e| {
                StoreError::Unavailable(format!(
                    "waiting for table {} to be active: {}",
                    self.table,
                    ErrorChain(&e)
                ))
            })?;
        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|e| self.sdk_error("DescribeTimeToLive", &e))?;
        let enabled = ttl.time_to_live_description().is_some_and(|d| {
            d.attribute_name() == Some(TTL_ATTRIBUTE)
                && matches!(
                    d.time_to_live_status(),
                    Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
                )
        });
        if !enabled {
            let spec = TimeToLiveSpecification::builder()
                .attribute_name(TTL_ATTRIBUTE)
                .enabled(true)
                .build()
                .map_err(build)?;
            self.client
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(|e| self.sdk_error("UpdateTimeToLive", &e))?;
        }
        Ok(())
    }

    /// Maps a failed call to `Unavailable` when trying again may work (throttling, 5xx,
    /// timeouts), else to `Rejected` (missing table, no permission, a malformed request),
    /// logged at warn with the full error context.
    fn sdk_error<E>(&self, operation: &'static str, err: &SdkError<E, HttpResponse>) -> StoreError
    where
        E: ProvideErrorKind + std::error::Error + 'static,
    {
        let message = format!("{operation} on table {}: {}", self.table, ErrorChain(err));
        if is_transient(err) {
            debug!(table = %self.table, operation, error = %DisplayErrorContext(err), "DynamoDB call failed");
            StoreError::Unavailable(message)
        } else {
            warn!(
                table = %self.table,
                operation,
                error = %DisplayErrorContext(err),
                "DynamoDB rejected a request; retrying will not help"
            );
            StoreError::Rejected(message)
        }
    }

    /// One conditional put: the claim wins if no claim holds the key or the holder's window
    /// ended before `claimed_at`. Ok(false) when the condition failed.
    async fn put_claim(
        &self,
        claim: &DedupClaim,
        pk: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(pk))
            .item(SK, s(CLAIM_SK))
            .item("cycle_id", s(claim.cycle_id.as_str()))
            .item("claimed_at_ms", n(now_ms))
            .item("window_end_ms", n(unix_millis(claim.window_end)))
            .item(TTL_ATTRIBUTE, n(claim.expires_at.unix_timestamp()))
            .item("suppressed_count", n(0))
            .item("started", AttributeValue::Bool(false))
            .item("cycle_input", s(&claim.cycle_input))
            .item("dedup_key", s(claim.key.as_str()))
            .condition_expression("attribute_not_exists(#pk) OR #window_end < :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#window_end", "window_end_ms")
            .expression_attribute_values(":now", n(now_ms))
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.sdk_error("PutItem", &e)),
        }
    }

    /// Counts one suppressed event on the claim holding the key, if its window has not ended
    /// at `now_ms`; returns the claim as it is now, or None when the condition failed.
    async fn count_suppressed(
        &self,
        pk: &str,
        now_ms: i64,
    ) -> Result<Option<HeldClaim>, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(CLAIM_SK))
            .update_expression("ADD #suppressed :one")
            .condition_expression("attribute_exists(#pk) AND #window_end >= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#window_end", "window_end_ms")
            .expression_attribute_names("#suppressed", "suppressed_count")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now_ms))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match update {
            Ok(out) => {
                let record = Record::new(pk, CLAIM_SK, out.attributes());
                record.held_claim().map(Some)
            }
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.sdk_error("UpdateItem", &e)),
        }
    }

    /// Reads one item with a consistent read.
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| self.sdk_error("GetItem", &e))?;
        Ok(out.item)
    }
}

#[async_trait]
impl DedupStore for DynamoStore {
    async fn claim(&self, claim: &DedupClaim) -> Result<ClaimOutcome, StoreError> {
        let pk = dedup_pk(&claim.key);
        let now_ms = unix_millis(claim.claimed_at);
        for round in 1..=CLAIM_ROUNDS {
            if self.put_claim(claim, &pk, now_ms).await? {
                debug!(key = %claim.key, cycle_id = %claim.cycle_id, round, "dedup claim won");
                return Ok(ClaimOutcome::Won);
            }
            if let Some(held) = self.count_suppressed(&pk, now_ms).await? {
                debug!(
                    key = %claim.key,
                    holder = %held.cycle_id,
                    suppressed = held.suppressed_count,
                    round,
                    "dedup claim held by another cycle"
                );
                return Ok(ClaimOutcome::Held(held));
            }
            // The holder's window ended or it was released between the two writes.
            debug!(key = %claim.key, round, "dedup claim changed hands mid-claim; trying again");
        }
        warn!(key = %claim.key, rounds = CLAIM_ROUNDS, "dedup claim kept changing hands");
        Err(StoreError::Unavailable(format!(
            "dedup claim {pk} kept changing hands for {CLAIM_ROUNDS} rounds"
        )))
    }

    async fn mark_started(
        &self,
        key: &DedupKey,
        cycle_id: &CycleId,
        execution_ref: &str,
    ) -> Result<(), StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(&dedup_pk(key)))
            .key(SK, s(CLAIM_SK))
            .update_expression("SET #started = :true, #execution_ref = :ref")
            .condition_expression("#cycle_id = :id")
            .expression_attribute_names("#started", "started")
            .expression_attribute_names("#execution_ref", "execution_ref")
            .expression_attribute_names("#cycle_id", "cycle_id")
            .expression_attribute_values(":true", AttributeValue::Bool(true))
            .expression_attribute_values(":ref", s(execution_ref))
            .expression_attribute_values(":id", s(cycle_id.as_str()))
            .send()
            .await;
        match update {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                warn!(
                    key = %key,
                    cycle_id = %cycle_id,
                    execution_ref,
                    "dedup claim was replaced before its cycle was marked started"
                );
                Ok(())
            }
            Err(e) => Err(self.sdk_error("UpdateItem", &e)),
        }
    }

    async fn release(&self, key: &DedupKey, cycle_id: &CycleId) -> Result<bool, StoreError> {
        let delete = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(&dedup_pk(key)))
            .key(SK, s(CLAIM_SK))
            .condition_expression("#cycle_id = :id")
            .expression_attribute_names("#cycle_id", "cycle_id")
            .expression_attribute_values(":id", s(cycle_id.as_str()))
            .send()
            .await;
        match delete {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.sdk_error("DeleteItem", &e)),
        }
    }
}

#[async_trait]
impl HaltSwitch for DynamoStore {
    async fn halt_state(&self) -> Result<Option<HaltState>, StoreError> {
        let Some(item) = self.get(HALT_PK, HALT_SK).await? else {
            return Ok(None);
        };
        let record = Record::new(HALT_PK, HALT_SK, Some(&item));
        Ok(Some(HaltState {
            reason: record.s("reason")?.to_owned(),
            actor: record.s("actor")?.to_owned(),
            since: record.rfc3339("since")?,
        }))
    }

    async fn set_halt(&self, halt: &HaltState) -> Result<(), StoreError> {
        let since = halt
            .since
            .format(&Rfc3339)
            .map_err(|e| StoreError::Corrupt {
                record: record_name(HALT_PK, HALT_SK),
                problem: format!("since {} cannot be written as RFC 3339: {e}", halt.since),
            })?;
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(HALT_PK))
            .item(SK, s(HALT_SK))
            .item("reason", s(&halt.reason))
            .item("actor", s(&halt.actor))
            .item("since", s(&since))
            .send()
            .await
            .map_err(|e| self.sdk_error("PutItem", &e))?;
        Ok(())
    }

    async fn clear_halt(&self) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(HALT_PK))
            .key(SK, s(HALT_SK))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| self.sdk_error("DeleteItem", &e))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }
}

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
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(cycle_item(&pk, cycle, body, started_at)))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match put {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_conditional_check_failed_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(self.sdk_error("PutItem", &e)),
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
}

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
        improvement_id: &str,
    ) -> Result<Option<PendingApproval>, StoreError> {
        let pk = approval_pk(improvement_id);
        let Some(item) = self.get(&pk, APPROVAL_SK).await? else {
            return Ok(None);
        };
        pending_from(&pk, &item).map(Some)
    }

    async fn add_approver(
        &self,
        improvement_id: &str,
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

    async fn remove_pending(&self, improvement_id: &str) -> Result<bool, StoreError> {
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
            .item("action", s(&event.action))
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

fn approval_pk(improvement_id: &str) -> String {
    format!("APPROVAL#{improvement_id}")
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

/// The claim item's partition key.
fn dedup_pk(key: &DedupKey) -> String {
    format!("DEDUP#{}", key.as_str())
}

/// The cycle item's partition key.
fn cycle_pk(id: &CycleId) -> String {
    format!("CYCLE#{}", id.as_str())
}

/// How a record is named in errors.
fn record_name(pk: &str, sk: &str) -> String {
    format!("{pk}/{sk}")
}

/// The `status` attribute: the same snake_case names the JSON body uses.
fn status_name(status: CycleStatus) -> &'static str {
    match status {
        CycleStatus::Running => "running",
        CycleStatus::Succeeded => "succeeded",
        CycleStatus::Failed => "failed",
    }
}

fn s(text: &str) -> AttributeValue {
    AttributeValue::S(text.to_owned())
}

fn n(number: i64) -> AttributeValue {
    AttributeValue::N(number.to_string())
}

/// Unix milliseconds (floored), the resolution claims are stored at.
fn unix_millis(at: OffsetDateTime) -> i64 {
    at.unix_timestamp() * 1000 + i64::from(at.millisecond())
}

/// An item read back, with typed accessors whose errors name the record and attribute.
struct Record<'a> {
    pk: &'a str,
    sk: &'a str,
    item: Option<&'a Item>,
}

impl<'a> Record<'a> {
    fn new(pk: &'a str, sk: &'a str, item: Option<&'a Item>) -> Self {
        Self { pk, sk, item }
    }

    fn corrupt(&self, problem: String) -> StoreError {
        StoreError::Corrupt {
            record: record_name(self.pk, self.sk),
            problem,
        }
    }

    fn attribute(&self, name: &str) -> Result<&'a AttributeValue, StoreError> {
        self.item
            .and_then(|item| item.get(name))
            .ok_or_else(|| self.corrupt(format!("attribute {name} is missing")))
    }

    fn wrong_type(&self, name: &str, wanted: &str) -> StoreError {
        self.corrupt(format!("attribute {name} is not {wanted}"))
    }

    fn s(&self, name: &str) -> Result<&'a str, StoreError> {
        match self.attribute(name)? {
            AttributeValue::S(text) => Ok(text),
            _ => Err(self.wrong_type(name, "a string (S)")),
        }
    }

    fn number<T: std::str::FromStr>(&self, name: &str) -> Result<T, StoreError> {
        match self.attribute(name)? {
            AttributeValue::N(text) => text
                .parse()
                .map_err(|_| self.corrupt(format!("attribute {name} = {text:?} is out of range"))),
            _ => Err(self.wrong_type(name, "a number (N)")),
        }
    }

    fn bool(&self, name: &str) -> Result<bool, StoreError> {
        match self.attribute(name)? {
            AttributeValue::Bool(value) => Ok(*value),
            _ => Err(self.wrong_type(name, "a boolean (BOOL)")),
        }
    }

    fn unix_millis(&self, name: &str) -> Result<OffsetDateTime, StoreError> {
        let millis: i64 = self.number(name)?;
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
            .map_err(|e| self.corrupt(format!("attribute {name} = {millis} is not a time: {e}")))
    }

    fn rfc3339(&self, name: &str) -> Result<OffsetDateTime, StoreError> {
        let text = self.s(name)?;
        OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
            self.corrupt(format!(
                "attribute {name} = {text:?} is not an RFC 3339 time: {e}"
            ))
        })
    }

    fn held_claim(&self) -> Result<HeldClaim, StoreError> {
        let cycle_id = self.s("cycle_id")?;
        Ok(HeldClaim {
            cycle_id: CycleId::parse(cycle_id)
                .map_err(|e| self.corrupt(format!("attribute cycle_id: {e}")))?,
            claimed_at: self.unix_millis("claimed_at_ms")?,
            window_end: self.unix_millis("window_end_ms")?,
            suppressed_count: self.number("suppressed_count")?,
            started: self.bool("started")?,
            cycle_input: self.s("cycle_input")?.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn claim_item() -> Item {
        Item::from([
            ("pk".to_owned(), s("DEDUP#acme#orders")),
            ("sk".to_owned(), s("CLAIM")),
            (
                "cycle_id".to_owned(),
                s("acme-orders-20261122T050000Z-0a1b2c3d"),
            ),
            ("claimed_at_ms".to_owned(), n(1_795_323_600_250)),
            ("window_end_ms".to_owned(), n(1_795_324_500_250)),
            ("suppressed_count".to_owned(), n(2)),
            ("started".to_owned(), AttributeValue::Bool(true)),
            ("cycle_input".to_owned(), s("{}")),
        ])
    }

    #[test]
    fn millis_round_trip_at_millisecond_resolution() {
        let at = datetime!(2026-11-22 05:00:00.250_999 UTC);
        assert_eq!(unix_millis(at), 1_795_323_600_250);
        let before_epoch = datetime!(1969-12-31 23:59:59.5 UTC);
        assert_eq!(unix_millis(before_epoch), -500);
    }

    #[test]
    fn a_held_claim_reads_back_from_its_item() {
        let item = claim_item();
        let held = Record::new("DEDUP#acme#orders", "CLAIM", Some(&item))
            .held_claim()
            .unwrap();
        assert_eq!(
            held.cycle_id.as_str(),
            "acme-orders-20261122T050000Z-0a1b2c3d"
        );
        assert_eq!(held.claimed_at, datetime!(2026-11-22 05:00:00.250 UTC));
        assert_eq!(held.window_end, datetime!(2026-11-22 05:15:00.250 UTC));
        assert_eq!(held.suppressed_count, 2);
        assert!(held.started);
    }

    #[test]
    fn a_missing_or_mistyped_attribute_is_corrupt_and_named() {
        let mut item = claim_item();
        item.remove("window_end_ms");
        let err = Record::new("DEDUP#k", "CLAIM", Some(&item))
            .held_claim()
            .unwrap_err();
        let StoreError::Corrupt { record, problem } = err else {
            panic!("expected Corrupt, got {err:?}");
        };
        assert_eq!(record, "DEDUP#k/CLAIM");
        assert!(problem.contains("window_end_ms"), "{problem}");

        let mut item = claim_item();
        item.insert("started".to_owned(), s("yes"));
        let err = Record::new("DEDUP#k", "CLAIM", Some(&item))
            .held_claim()
            .unwrap_err();
        assert!(
            err.to_string().contains("started is not a boolean"),
            "{err}"
        );

        let mut item = claim_item();
        item.insert("suppressed_count".to_owned(), n(-1));
        assert!(
            Record::new("DEDUP#k", "CLAIM", Some(&item))
                .held_claim()
                .is_err()
        );
    }

    mod claim_rounds {
        //! The put/increment loop against a mocked client, for races moto cannot stage.

        use super::*;
        use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
        use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
        use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};

        fn put_failed() -> PutItemError {
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder().build(),
            )
        }

        fn update_failed() -> UpdateItemError {
            UpdateItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder().build(),
            )
        }

        fn claim() -> DedupClaim {
            let at = datetime!(2026-11-22 05:00:00.250 UTC);
            let key = DedupKey::new(None, None);
            DedupClaim {
                cycle_id: CycleId::for_claim(&key, at),
                key,
                claimed_at: at,
                window_end: at + time::Duration::minutes(15),
                expires_at: at + time::Duration::hours(2),
                cycle_input: "{}".into(),
            }
        }

        #[tokio::test]
        async fn a_window_that_ends_between_the_writes_sends_the_claim_back_to_the_put() {
            // GIVEN the put loses, the holder's window ends before the increment, the put wins
            let put = mock!(Client::put_item)
                .sequence()
                .error(put_failed)
                .output(|| PutItemOutput::builder().build())
                .build();
            let update = mock!(Client::update_item).then_error(update_failed);
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &update]);
            // WHEN claimed THEN it is won in round two
            let outcome = DynamoStore::from_client(client, "t")
                .claim(&claim())
                .await
                .unwrap();
            assert_eq!(outcome, ClaimOutcome::Won);
            assert_eq!((put.num_calls(), update.num_calls()), (2, 1));
        }

        #[tokio::test]
        async fn a_held_claim_comes_back_from_the_increment() {
            let put = mock!(Client::put_item).then_error(put_failed);
            let update = mock!(Client::update_item)
                .match_requests(|r| {
                    r.return_values() == Some(&ReturnValue::AllNew)
                        && r.update_expression() == Some("ADD #suppressed :one")
                })
                .then_output(|| {
                    UpdateItemOutput::builder()
                        .set_attributes(Some(claim_item()))
                        .build()
                });
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &update]);
            let outcome = DynamoStore::from_client(client, "t")
                .claim(&claim())
                .await
                .unwrap();
            let ClaimOutcome::Held(held) = outcome else {
                panic!("expected Held, got {outcome:?}");
            };
            assert_eq!(held.suppressed_count, 2);
        }

        #[tokio::test]
        async fn a_claim_that_keeps_changing_hands_gives_up_after_three_rounds() {
            let put = mock!(Client::put_item).then_error(put_failed);
            let update = mock!(Client::update_item).then_error(update_failed);
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &update]);
            let err = DynamoStore::from_client(client, "t")
                .claim(&claim())
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
            assert_eq!((put.num_calls(), update.num_calls()), (3, 3));
        }
    }

    #[test]
    fn no_attributes_at_all_is_corrupt() {
        let err = Record::new("DEDUP#k", "CLAIM", None)
            .held_claim()
            .unwrap_err();
        assert!(err.to_string().contains("cycle_id is missing"), "{err}");
    }
}
