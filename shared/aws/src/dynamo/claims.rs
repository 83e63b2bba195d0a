//! Dedup claims (one conditional put, then a counted increment) and the halt switch.

use super::*;

impl DynamoStore {
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
}

/// What a claim's conditional put did.
enum ClaimPut {
    /// The claim was written: it won.
    Written,
    /// The condition failed on this item (none when DynamoDB did not return it).
    Refused(Option<Item>),
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

/// The claim item's partition key.
fn dedup_pk(key: &DedupKey) -> String {
    format!("DEDUP#{}", key.as_str())
}

#[cfg(test)]
mod claim_rounds {
    //! The put/increment loop against a mocked client, for races moto cannot stage.

    use super::*;
    use crate::dynamo::tests::claim_item;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::operation::update_item::{UpdateItemError, UpdateItemOutput};
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{RuleMode, mock, mock_client};
    use selfbuild_core::ports::IdSource;
    use time::macros::datetime;

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
                    && r.update_expression() == Some("SET #last = :claimant ADD #suppressed :one")
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
