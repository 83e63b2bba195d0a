//! Every store port over one DynamoDB table: dedup claims, the halt switch, cycles,
//! approvals, the audit log, improvement records, LLM usage, the MCP registry, the MCP
//! access accounting and the self health pass's records.
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
//! | miner state | `MINER#<tenant or *>#<function>` | `STATE` | `body` (JSON), `version` (number, conditional) |
//! | tool call   | `TOOLCALL#<YYYY-MM-DD>` | `<at ms, 20 digits>#<random>` | `body` (JSON), `key_id`, `tool`, `outcome`, `expires_at` (TTL) |
//! | heal ledger | `HEALTH`        | `LEDGER#<component>` | `body` (JSON), `component`, `disabled` (BOOL) |
//! | last health report | `HEALTH` | `REPORT` | `body` (JSON), `healthy` (BOOL) |
//! | health event number | `HEALTH` | `EVENT_SEQ` | `n` (ADDed) |
//! | health event | `HEALTH_EVENT` | `<at ms, 20 digits>#<number, 20 digits>` | `body` (JSON), `kind`, `component`? |
//!
//! The `mcp` function keeps its access log in CloudWatch Logs (structured records, see
//! `selfbuild_mcp::access_log`), so it writes no tool call items; the port is still served
//! here for other callers and the contract suite. It counts calls with one `ADD` per key
//! per 100 ms of activity, from a background task (`selfbuild_mcp::rate_limit`).
//!
//! A running cycle is a second item, written with its cycle in one transaction and deleted
//! with its completion in another, so listing running cycles is one Query, not a Scan.
//! Improvements, agents and components each share one partition: listings are Queries in
//! key order, and the volumes (a few improvements per cycle) stay far below a partition's
//! limits. `*` sorts before every tenant id and `#` before every tenant character, so the
//! agent and component keys sort by tenant, then name.
//!
//! Every decision is a conditional write; the TTL only tidies up and is never relied on.
//!
//! The ports are implemented one area per file: `claims` (dedup claims, the halt switch),
//! `cycles` (cycles, the audit log), `approvals`, `records` (improvements, LLM usage,
//! the registry, the access log), `miners` and `health` (heal ledgers, health events, the
//! last health report); the table, its keys and item codecs are here.

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
use selfbuild_core::health::{ComponentHealth, HealthEvent, HealthEventKind, HealthReport};
use selfbuild_core::ids::{CycleId, DedupKey, ImprovementId, TenantId};
use selfbuild_core::ports::{
    AccessLog, ApprovalStore, AuditLog, ClaimOutcome, CycleStore, DedupClaim, DedupStore,
    HaltState, HaltSwitch, HealthStore, HeldClaim, ImprovementStore, MinerStateStore, Registry,
    SavedMinerState, UsageLedger,
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

mod approvals;
mod claims;
mod cycles;
mod health;
mod miners;
mod records;

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

/// How a record is named in errors.
fn record_name(pk: &str, sk: &str) -> String {
    format!("{pk}/{sk}")
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

    pub(super) fn claim_item() -> Item {
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

    #[test]
    fn no_attributes_at_all_is_corrupt() {
        let err = Record::new("DEDUP#k", "CLAIM", None)
            .held_claim()
            .unwrap_err();
        assert!(err.to_string().contains("cycle_id is missing"), "{err}");
    }
}
