//! Improvement records, LLM usage per day, the MCP registry and the MCP access accounting.

use super::*;

impl DynamoStore {
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
    async fn count_calls(
        &self,
        key_id: &str,
        window_start: OffsetDateTime,
        calls: u64,
        expires_at: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        let pk = format!("RATE#{key_id}");
        let sk = window_start.unix_timestamp().to_string();
        // ALL_NEW: an ADD of 0 (a read) changes no value, and UPDATED_NEW may then leave it out.
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(&pk))
            .key(SK, s(&sk))
            .update_expression("ADD #n :one SET #expires = :expires")
            .expression_attribute_names("#n", "n")
            .expression_attribute_names("#expires", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", AttributeValue::N(calls.to_string()))
            .expression_attribute_values(":expires", n(expires_at.unix_timestamp()))
            .return_values(ReturnValue::AllNew)
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

#[cfg(test)]
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
            .set_last_evaluated_key(
                last.map(|sk| {
                    Item::from([(PK.to_owned(), s(IMPROVEMENT_PK)), (SK.to_owned(), s(sk))])
                }),
            )
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
