//! Every store port over one DynamoDB table: dedup claims, the halt switch, cycles,
//! approvals, the audit log, improvement records, LLM usage, the MCP registry and the MCP
//! access accounting.
//!
//! Single-table design with string keys `pk` and `sk`:
//!
//! | item        | `pk`            | `sk`    | attributes |
//! |-------------|-----------------|---------|------------|
//! | dedup claim | `DEDUP#<key>`   | `CLAIM` | `cycle_id`, `claimed_at_ms`, `window_end_ms`, `expires_at` (TTL, unix seconds), `suppressed_count`, `last_suppressed_by`? (the cycle id of the last event counted), `started`, `execution_ref`?, `cycle_input`, `dedup_key` |
//! | halt switch | `CONTROL`       | `HALT`  | `reason`, `actor`, `since` (RFC 3339) |
//! | cycle       | `CYCLE#<id>`    | `META`  | `body` (the record as JSON), `status`, `started_at`, `tenant_id`?, `finished_at`? |
//! | running cycle | `RUNNING_CYCLE` | `<started ms, 20 digits>#<cycle>` | `body` (JSON), `cycle_id`, `tenant_id`? |
//! | approval    | `APPROVAL#<improvement>` | `PENDING` | `body` (JSON), `approvers` (string set) |
//! | audit event | `AUDIT#<cycle>` | `<at ms, 20 digits>#<hash>` | `body` (JSON), `action`, `actor` |
//! | improvement | `IMPROVEMENT`   | `<improvement id>` | `body` (JSON), `status`, `tenant_id`? |
//! | LLM usage   | `USAGE`         | `<YYYY-MM-DD>` (UTC) | `cost_usd`, `calls` (numbers, ADDed), `providers` (JSON) |
//! | agent       | `AGENT`         | `<tenant or *>#<name>` | `body` (JSON), `tenant_id`? |
//! | component   | `COMPONENT`     | `<tenant or *>#<name>` | `body` (JSON), `tenant_id`? |
//! | call count  | `RATE#<key id>` | `<window start, unix s>` | `n` (ADDed), `expires_at` (TTL) |
//! | tool call   | `TOOLCALL#<YYYY-MM-DD>` | `<at ms, 20 digits>#<random>` | `body` (JSON), `key_id`, `tool`, `outcome`, `expires_at` (TTL) |
//!
//! A running cycle is a second item, written with its cycle in one transaction and deleted
//! with its completion in another, so listing running cycles is one Query, not a Scan.
//! Improvements, agents and components each share one partition: listings are Queries in
//! key order, and the volumes (a few improvements per cycle) stay far below a partition's
//! limits. `*` sorts before every tenant id and `#` before every tenant character, so the
//! agent and component keys sort by tenant, then name.
//!
//! Every decision is a conditional write; the TTL only tidies up and is never relied on.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::error::BuildError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType, Put,
    ReturnValue, ReturnValuesOnConditionCheckFailure, ScalarAttributeType, TimeToLiveSpecification,
    TimeToLiveStatus, TransactWriteItem, Update,
};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::retry::ProvideErrorKind;
use selfbuild_core::audit::AuditEvent;
use selfbuild_core::cycle::{CycleRecord, CycleStatus};
use selfbuild_core::error::StoreError;
use selfbuild_core::ids::{CycleId, DedupKey, ImprovementId, TenantId};
use selfbuild_core::ports::{
    AccessLog, ApprovalStore, AuditLog, ClaimOutcome, CycleStore, DedupClaim, DedupStore,
    HaltState, HaltSwitch, HeldClaim, ImprovementStore, Registry, UsageLedger,
};
use selfbuild_core::records::{
    AgentRecord, ComponentRecord, DailyUsage, ImprovementQuery, ImprovementRecord, Page,
    PendingApproval, ProviderHealth, TOOL_CALL_RETENTION, TenantScope, ToolCallEvent,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, UtcOffset};
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
const RUNNING_CYCLE_PK: &str = "RUNNING_CYCLE";
const IMPROVEMENT_PK: &str = "IMPROVEMENT";
const USAGE_PK: &str = "USAGE";
const AGENT_PK: &str = "AGENT";
const COMPONENT_PK: &str = "COMPONENT";
/// How many UTC days back `recent_tool_calls` looks (one partition per day).
const TOOL_CALL_DAYS: i64 = 7;

type Item = HashMap<String, AttributeValue>;

/// What a claim's conditional put did.
enum ClaimPut {
    /// The claim was written: it won.
    Written,
    /// The condition failed on this item (none when DynamoDB did not return it).
    Refused(Option<Item>),
}

/// Every store port (`selfbuild_core::ports::Store`) over one DynamoDB table.
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
    /// ended before `claimed_at`. When the condition fails, the item it failed on.
    async fn put_claim(
        &self,
        claim: &DedupClaim,
        pk: &str,
        now_ms: i64,
    ) -> Result<ClaimPut, StoreError> {
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
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match put {
            Ok(_) => Ok(ClaimPut::Written),
            Err(e) => match e.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(failed)) => {
                    Ok(ClaimPut::Refused(failed.item().cloned()))
                }
                _ => Err(self.sdk_error("PutItem", &e)),
            },
        }
    }

    /// Counts one suppressed event, `claimant`'s, on the claim holding the key, if its window
    /// has not ended at `now_ms`; returns the claim as it is now, or None when the condition
    /// failed. The claimant is recorded with the count, so a retry of the same update (the
    /// SDK's, after an answer that was lost) finds its count already made and adds none.
    async fn count_suppressed(
        &self,
        pk: &str,
        claimant: &CycleId,
        now_ms: i64,
    ) -> Result<Option<HeldClaim>, StoreError> {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(CLAIM_SK))
            .update_expression("SET #last = :claimant ADD #suppressed :one")
            .condition_expression(
                "attribute_exists(#pk) AND #window_end >= :now \
                 AND (attribute_not_exists(#last) OR #last <> :claimant)",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#window_end", "window_end_ms")
            .expression_attribute_names("#suppressed", "suppressed_count")
            .expression_attribute_names("#last", "last_suppressed_by")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":now", n(now_ms))
            .expression_attribute_values(":claimant", s(claimant.as_str()))
            .return_values(ReturnValue::AllNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match update {
            Ok(out) => {
                let record = Record::new(pk, CLAIM_SK, out.attributes());
                record.held_claim().map(Some)
            }
            Err(e) => match e.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    // Counted already when the item names this claimant and still holds.
                    let Some(item) = failed.item() else {
                        return Ok(None);
                    };
                    let counted = item
                        .get("last_suppressed_by")
                        .and_then(|v| v.as_s().ok())
                        .is_some_and(|last| last == claimant.as_str());
                    let record = Record::new(pk, CLAIM_SK, Some(item));
                    let holds = record.number::<i64>("window_end_ms")? >= now_ms;
                    if counted && holds {
                        debug!(key = pk, claimant = %claimant, "suppression already counted");
                        record.held_claim().map(Some)
                    } else {
                        Ok(None)
                    }
                }
                _ => Err(self.sdk_error("UpdateItem", &e)),
            },
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

    /// A request the SDK could not build (a required field missing): a bug, not retryable.
    fn build_error(&self, operation: &'static str, err: &BuildError) -> StoreError {
        StoreError::Rejected(format!(
            "{operation} on table {}: {}",
            self.table,
            ErrorChain(err)
        ))
    }

    /// Maps a failed transaction like [`Self::sdk_error`], except that a transaction
    /// cancelled by a conflicting one or by throttling is `Unavailable` (retrying may work)
    /// while one cancelled by an invalid item is `Rejected`.
    fn transaction_error(
        &self,
        err: &SdkError<TransactWriteItemsError, HttpResponse>,
    ) -> StoreError {
        let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            err.as_service_error()
        else {
            return self.sdk_error("TransactWriteItems", err);
        };
        let codes: Vec<&str> = cancelled
            .cancellation_reasons()
            .iter()
            .filter_map(|r| r.code())
            .filter(|code| *code != "None")
            .collect();
        let message = format!(
            "TransactWriteItems on table {} cancelled: {}",
            self.table,
            codes.join(", ")
        );
        let retryable = codes.iter().all(|code| {
            matches!(
                *code,
                "TransactionConflict"
                    | "ThrottlingError"
                    | "ProvisionedThroughputExceeded"
                    | "RequestLimitExceeded"
            )
        });
        if retryable {
            debug!(table = %self.table, reasons = ?codes, "transaction cancelled");
            StoreError::Unavailable(message)
        } else {
            warn!(
                table = %self.table,
                reasons = ?codes,
                "DynamoDB cancelled a transaction; retrying will not help"
            );
            StoreError::Rejected(message)
        }
    }

    /// Runs a Query page by page (following `LastEvaluatedKey`, so a filter that matches
    /// nothing on one page does not end it) until `wanted` items matched or it ends.
    async fn query_items(
        &self,
        query: QueryFluentBuilder,
        wanted: usize,
    ) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        if wanted == 0 {
            return Ok(items);
        }
        let mut pages = query
            .table_name(&self.table)
            .consistent_read(true)
            .into_paginator()
            .send();
        while let Some(page) = pages
            .try_next()
            .await
            .map_err(|e| self.sdk_error("Query", &e))?
        {
            for item in page.items.unwrap_or_default() {
                items.push(item);
                if items.len() == wanted {
                    return Ok(items);
                }
            }
        }
        Ok(items)
    }

    /// A `pk = :pk` Query, optionally limited to sort keys starting with `prefix`.
    fn partition_query(&self, pk: &str, prefix: Option<&str>) -> QueryFluentBuilder {
        let query = self
            .client
            .query()
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(pk));
        match prefix {
            Some(prefix) => query
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":prefix", s(prefix)),
            None => query.key_condition_expression("#pk = :pk"),
        }
    }

    /// Puts a registry item (agent or component): `pk`, `<tenant or *>#<name>`, the body.
    async fn put_registered<T: Serialize>(
        &self,
        pk: &str,
        tenant: Option<&TenantId>,
        name: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let sk = registry_sk(tenant, name);
        let body = encode(pk, &sk, value)?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(pk))
            .item(SK, s(&sk))
            .item("name", s(name))
            .item("body", AttributeValue::S(body));
        if let Some(tenant) = tenant {
            put = put.item("tenant_id", s(tenant.as_str()));
        }
        put.send()
            .await
            .map_err(|e| self.sdk_error("PutItem", &e))?;
        Ok(())
    }

    /// The registry items (agents or components) `scope` may see, by tenant then name.
    async fn list_registered<T: DeserializeOwned>(
        &self,
        pk: &str,
        scope: &TenantScope,
    ) -> Result<Vec<T>, StoreError> {
        let prefix = scope.tenant().map(|t| format!("{t}#"));
        let items = self
            .query_items(self.partition_query(pk, prefix.as_deref()), usize::MAX)
            .await?;
        items.iter().map(|item| decode_body(pk, item)).collect()
    }
}

#[async_trait]
impl DedupStore for DynamoStore {
    async fn claim(&self, claim: &DedupClaim) -> Result<ClaimOutcome, StoreError> {
        let pk = dedup_pk(&claim.key);
        let now_ms = unix_millis(claim.claimed_at);
        for round in 1..=CLAIM_ROUNDS {
            match self.put_claim(claim, &pk, now_ms).await? {
                ClaimPut::Written => {
                    debug!(key = %claim.key, cycle_id = %claim.cycle_id, round, "dedup claim won");
                    return Ok(ClaimOutcome::Won);
                }
                // This claim's own item: an earlier attempt of the same put took effect and its
                // answer was lost (the SDK retried it).
                ClaimPut::Refused(Some(item))
                    if item
                        .get("cycle_id")
                        .and_then(|v| v.as_s().ok())
                        .is_some_and(|id| id == claim.cycle_id.as_str()) =>
                {
                    debug!(key = %claim.key, cycle_id = %claim.cycle_id, round, "dedup claim won by an earlier attempt");
                    return Ok(ClaimOutcome::Won);
                }
                ClaimPut::Refused(_) => {}
            }
            if let Some(held) = self.count_suppressed(&pk, &claim.cycle_id, now_ms).await? {
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

#[async_trait]
impl ImprovementStore for DynamoStore {
    async fn put_improvement(&self, record: &ImprovementRecord) -> Result<(), StoreError> {
        let sk = record.improvement_id.as_str();
        let body = encode(IMPROVEMENT_PK, sk, record)?;
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(IMPROVEMENT_PK))
            .item(SK, s(sk))
            .item("status", s(record.status.as_str()))
            .item("body", AttributeValue::S(body));
        if let Some(tenant) = &record.tenant_id {
            put = put.item("tenant_id", s(tenant.as_str()));
        }
        put.send()
            .await
            .map_err(|e| self.sdk_error("PutItem", &e))?;
        Ok(())
    }

    async fn get_improvement(
        &self,
        id: &ImprovementId,
    ) -> Result<Option<ImprovementRecord>, StoreError> {
        let Some(item) = self.get(IMPROVEMENT_PK, id.as_str()).await? else {
            return Ok(None);
        };
        decode_body(IMPROVEMENT_PK, &item).map(Some)
    }

    async fn list_improvements(
        &self,
        query: &ImprovementQuery,
    ) -> Result<Page<ImprovementRecord>, StoreError> {
        let cursor = query.checked_cursor()?;
        let size = query.page_size();
        let mut request = self
            .client
            .query()
            .scan_index_forward(false)
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(IMPROVEMENT_PK));
        // The cursor is the last id returned: the next page is every id below it. A key
        // condition rather than an ExclusiveStartKey, so a page may end mid-Query-page.
        request = match cursor {
            Some(cursor) => request
                .key_condition_expression("#pk = :pk AND #sk < :cursor")
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":cursor", s(cursor)),
            None => request.key_condition_expression("#pk = :pk"),
        };
        let mut filters = Vec::new();
        if let Some(tenant) = query.scope.tenant() {
            filters.push("#tenant = :tenant");
            request = request
                .expression_attribute_names("#tenant", "tenant_id")
                .expression_attribute_values(":tenant", s(tenant.as_str()));
        }
        if let Some(status) = query.status {
            filters.push("#status = :status");
            request = request
                .expression_attribute_names("#status", "status")
                .expression_attribute_values(":status", s(status.as_str()));
        }
        if !filters.is_empty() {
            request = request.filter_expression(filters.join(" AND "));
        }
        // One item more than the page tells whether another page follows.
        let items = self.query_items(request, size + 1).await?;
        let mut records = items
            .iter()
            .map(|item| decode_body::<ImprovementRecord>(IMPROVEMENT_PK, item))
            .collect::<Result<Vec<_>, _>>()?;
        let next_cursor = if records.len() > size {
            records.truncate(size);
            records.last().map(|r| r.improvement_id.to_string())
        } else {
            None
        };
        Ok(Page {
            items: records,
            next_cursor,
        })
    }
}

#[async_trait]
impl UsageLedger for DynamoStore {
    async fn record_llm_usage(
        &self,
        at: OffsetDateTime,
        cost_usd: f64,
        providers: &[ProviderHealth],
    ) -> Result<(), StoreError> {
        if !cost_usd.is_finite() {
            return Err(StoreError::Rejected(format!(
                "LLM cost {cost_usd} is not a number of dollars"
            )));
        }
        let sk = day_key(at.to_offset(UtcOffset::UTC).date());
        let providers = encode(USAGE_PK, &sk, &providers)?;
        // ADD is atomic: concurrent generate calls of one day never lose each other's cost.
        self.client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(USAGE_PK))
            .key(SK, s(&sk))
            .update_expression("ADD #cost :cost, #calls :one SET #providers = :providers")
            .expression_attribute_names("#cost", "cost_usd")
            .expression_attribute_names("#calls", "calls")
            .expression_attribute_names("#providers", "providers")
            // Display never uses an exponent: a valid DynamoDB number.
            .expression_attribute_values(":cost", AttributeValue::N(cost_usd.to_string()))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":providers", AttributeValue::S(providers))
            .send()
            .await
            .map_err(|e| self.sdk_error("UpdateItem", &e))?;
        Ok(())
    }

    async fn llm_usage(&self, day: Date) -> Result<DailyUsage, StoreError> {
        let sk = day_key(day);
        let Some(item) = self.get(USAGE_PK, &sk).await? else {
            return Ok(DailyUsage::default());
        };
        let record = Record::new(USAGE_PK, &sk, Some(&item));
        let providers = serde_json::from_str(record.s("providers")?).map_err(|e| {
            record.corrupt(format!("attribute providers is not a provider list: {e}"))
        })?;
        Ok(DailyUsage {
            cost_usd: record.number("cost_usd")?,
            calls: record.number("calls")?,
            providers,
        })
    }
}

#[async_trait]
impl Registry for DynamoStore {
    async fn register_agent(&self, agent: &AgentRecord) -> Result<(), StoreError> {
        self.put_registered(AGENT_PK, agent.tenant_id.as_ref(), &agent.name, agent)
            .await
    }

    async fn list_agents(&self, scope: &TenantScope) -> Result<Vec<AgentRecord>, StoreError> {
        self.list_registered(AGENT_PK, scope).await
    }

    async fn put_component(&self, component: &ComponentRecord) -> Result<(), StoreError> {
        self.put_registered(
            COMPONENT_PK,
            component.tenant_id.as_ref(),
            &component.name,
            component,
        )
        .await
    }

    async fn list_components(
        &self,
        scope: &TenantScope,
    ) -> Result<Vec<ComponentRecord>, StoreError> {
        self.list_registered(COMPONENT_PK, scope).await
    }
}

#[async_trait]
impl AccessLog for DynamoStore {
    async fn count_call(
        &self,
        key_id: &str,
        window_start: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let pk = format!("RATE#{key_id}");
        let sk = window_start.unix_timestamp().to_string();
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(&pk))
            .key(SK, s(&sk))
            .update_expression("ADD #n :one SET #expires = :expires")
            .expression_attribute_names("#n", "n")
            .expression_attribute_names("#expires", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires", n(expires_at.unix_timestamp()))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| self.sdk_error("UpdateItem", &e))?;
        Record::new(&pk, &sk, out.attributes()).number("n")
    }

    async fn record_tool_call(&self, event: &ToolCallEvent) -> Result<(), StoreError> {
        let pk = tool_call_pk(event.at.to_offset(UtcOffset::UTC).date());
        let stamp = format!("{:020}", unix_millis(event.at).max(0));
        let body = encode(&pk, &stamp, event)?;
        // Time-ordered; the random part keeps two calls of one millisecond apart.
        let sk = format!("{stamp}#{:016x}", unique_suffix(&body));
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(&pk))
            .item(SK, s(&sk))
            .item("key_id", s(&event.key_id))
            .item("tool", s(&event.tool))
            .item("outcome", s(&event.outcome))
            .item("body", AttributeValue::S(body))
            .item(
                TTL_ATTRIBUTE,
                n((event.at + TOOL_CALL_RETENTION).unix_timestamp()),
            )
            .send()
            .await
            .map_err(|e| self.sdk_error("PutItem", &e))?;
        Ok(())
    }

    async fn recent_tool_calls(
        &self,
        now: OffsetDateTime,
        limit: usize,
    ) -> Result<Vec<ToolCallEvent>, StoreError> {
        // The partition of `now`'s day newest first, then the days before, up to TOOL_CALL_DAYS.
        let today = now.date();
        let mut events = Vec::new();
        for back in 0..TOOL_CALL_DAYS {
            if events.len() >= limit {
                break;
            }
            let Some(day) = today.checked_sub(time::Duration::days(back)) else {
                break;
            };
            let pk = tool_call_pk(day);
            let query = self.partition_query(&pk, None).scan_index_forward(false);
            for item in self.query_items(query, limit - events.len()).await? {
                events.push(decode_body::<ToolCallEvent>(&pk, &item)?);
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

fn approval_pk(improvement_id: &ImprovementId) -> String {
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

/// The sort key of an agent or component: `<tenant or *>#<name>`.
fn registry_sk(tenant: Option<&TenantId>, name: &str) -> String {
    format!("{}#{name}", tenant.map_or("*", TenantId::as_str))
}

/// A UTC day as `YYYY-MM-DD`.
fn day_key(day: Date) -> String {
    format!(
        "{:04}-{:02}-{:02}",
        day.year(),
        u8::from(day.month()),
        day.day()
    )
}

/// The access log's partition of a UTC day.
fn tool_call_pk(day: Date) -> String {
    format!("TOOLCALL#{}", day_key(day))
}

/// 64 random bits (a randomly keyed hash of the body and a per-process counter).
fn unique_suffix(body: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write(body.as_bytes());
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// A record as the JSON of its `body` attribute.
fn encode<T: Serialize>(pk: &str, sk: &str, value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt {
        record: record_name(pk, sk),
        problem: format!("body cannot be written: {e}"),
    })
}

/// The record in an item's `body` attribute, named by its keys when unreadable.
fn decode_body<T: DeserializeOwned>(pk: &str, item: &Item) -> Result<T, StoreError> {
    let sk = item
        .get(SK)
        .and_then(|v| v.as_s().ok())
        .map_or("", String::as_str);
    let record = Record::new(pk, sk, Some(item));
    serde_json::from_str(record.s("body")?)
        .map_err(|e| record.corrupt(format!("attribute body is unreadable: {e}")))
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

    mod listing_pages {
        //! A filter that empties whole Query pages, which moto never stages (it answers a
        //! small partition in one page).

        use super::*;
        use aws_sdk_dynamodb::operation::query::QueryOutput;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        use selfbuild_core::records::ImprovementStatus;

        fn improvement(id: &str) -> Item {
            let body = serde_json::json!({
                "improvement_id": id, "cycle_id": "c", "tenant_id": "acme",
                "component": "orders", "status": "validated", "risk": null, "change": null,
                "updated_at": "2026-11-22T05:00:00Z",
                "item": {
                    "cycle_id": "c", "tenant_id": "acme", "mode": "routine",
                    "opportunity": {
                        "id": "orders:timeouts", "rank": 1, "component": "orders",
                        "tenant_id": "acme", "kind": "timeouts", "evidence": [],
                        "expected_gain": 0.5, "affected_requests": 10.0, "impact_score": 5.0,
                        "priority": "high", "current": null, "top_errors": []
                    }
                }
            });
            Item::from([
                (PK.to_owned(), s(IMPROVEMENT_PK)),
                (SK.to_owned(), s(id)),
                ("body".to_owned(), s(&body.to_string())),
            ])
        }

        fn page(ids: &[&str], last: Option<&str>) -> QueryOutput {
            QueryOutput::builder()
                .set_items(Some(ids.iter().map(|id| improvement(id)).collect()))
                .set_last_evaluated_key(last.map(|sk| {
                    Item::from([(PK.to_owned(), s(IMPROVEMENT_PK)), (SK.to_owned(), s(sk))])
                }))
                .build()
        }

        #[tokio::test]
        async fn a_page_the_filter_emptied_does_not_end_the_listing() {
            // GIVEN a first Query page with no match, then two matches, then more
            let query = mock!(Client::query)
                .match_requests(|r| {
                    r.filter_expression() == Some("#tenant = :tenant AND #status = :status")
                        && r.key_condition_expression() == Some("#pk = :pk AND #sk < :cursor")
                        && r.scan_index_forward() == Some(false)
                })
                .sequence()
                .output(|| page(&[], Some("c-09-1")))
                .output(|| page(&["c-05-1", "c-04-1"], Some("c-04-1")))
                .output(|| page(&["c-02-1"], None))
                .build();
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&query]);
            // WHEN a page of two is asked for
            let listed = DynamoStore::from_client(client, "t")
                .list_improvements(&ImprovementQuery {
                    scope: TenantScope::Only(TenantId::parse("acme").unwrap()),
                    status: Some(ImprovementStatus::Validated),
                    limit: 2,
                    cursor: Some("c-10-1".into()),
                })
                .await
                .unwrap();
            // THEN the Query went on past the empty page and stopped at the third match
            let ids: Vec<&str> = listed
                .items
                .iter()
                .map(|r| r.improvement_id.as_str())
                .collect();
            assert_eq!(ids, ["c-05-1", "c-04-1"]);
            assert_eq!(listed.next_cursor.as_deref(), Some("c-04-1"));
            assert_eq!(query.num_calls(), 3);
        }
    }

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

    mod claim_rounds {
        //! The put/increment loop against a mocked client, for races moto cannot stage.

        use super::*;
        use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
        use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
        use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
        use aws_smithy_mocks::{RuleMode, mock, mock_client};
        use selfbuild_core::ports::IdSource;

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
                cycle_id: CycleId::for_claim(&key, at, selfbuild_core::idsource::OsRandom.suffix()),
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
                        && r.update_expression()
                            == Some("SET #last = :claimant ADD #suppressed :one")
                        && r.return_values_on_condition_check_failure()
                            == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
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
        async fn a_put_refused_on_its_own_claim_is_won() {
            // GIVEN the put's condition fails on the claim an earlier attempt of it wrote
            let mine = claim();
            let mut item = claim_item();
            item.insert("cycle_id".into(), s(mine.cycle_id.as_str()));
            let put = mock!(Client::put_item)
                .match_requests(|r| {
                    r.return_values_on_condition_check_failure()
                        == Some(&ReturnValuesOnConditionCheckFailure::AllOld)
                })
                .then_error(move || {
                    PutItemError::ConditionalCheckFailedException(
                        ConditionalCheckFailedException::builder()
                            .set_item(Some(item.clone()))
                            .build(),
                    )
                });
            let update = mock!(Client::update_item).then_error(update_failed);
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &update]);
            // WHEN claimed THEN it is won, and no suppression is counted
            let outcome = DynamoStore::from_client(client, "t")
                .claim(&mine)
                .await
                .unwrap();
            assert_eq!(outcome, ClaimOutcome::Won);
            assert_eq!((put.num_calls(), update.num_calls()), (1, 0));
        }

        #[tokio::test]
        async fn an_increment_refused_on_its_own_count_is_counted_once() {
            // GIVEN the count's condition fails on an item whose last count is this claimant's
            let mine = claim();
            let mut item = claim_item();
            item.insert("last_suppressed_by".into(), s(mine.cycle_id.as_str()));
            let put = mock!(Client::put_item).then_error(put_failed);
            let update = mock!(Client::update_item).then_error(move || {
                UpdateItemError::ConditionalCheckFailedException(
                    ConditionalCheckFailedException::builder()
                        .set_item(Some(item.clone()))
                        .build(),
                )
            });
            let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &update]);
            // WHEN claimed THEN the claim is held, with the count as it stands
            let outcome = DynamoStore::from_client(client, "t")
                .claim(&mine)
                .await
                .unwrap();
            let ClaimOutcome::Held(held) = outcome else {
                panic!("expected Held, got {outcome:?}");
            };
            assert_eq!(held.suppressed_count, 2);
            assert_eq!((put.num_calls(), update.num_calls()), (1, 1));
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
