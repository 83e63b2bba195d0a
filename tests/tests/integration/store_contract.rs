//! The Store contract: one suite, run against the embedded SQLite store and against
//! DynamoDB on moto.

use std::collections::BTreeMap;
use std::sync::Arc;

use selfbuild_core::audit::{AuditAction, AuditEvent};
use selfbuild_core::cycle::{
    CycleMode, CycleRecord, CycleRequest, CycleStatus, TimeWindow, Trigger,
};
use selfbuild_core::error::StoreError;
use selfbuild_core::health::{
    ComponentHealth, Disabled, HealAction, HealthEvent, HealthEventKind, HealthReport,
};
use selfbuild_core::ids::{ComponentId, CycleId, DedupKey, ImprovementId, TenantId};
use selfbuild_core::idsource::OsRandom;
use selfbuild_core::improvement::ImprovementItem;
use selfbuild_core::intake::CLAIM_RETENTION;
use selfbuild_core::opportunity::{Opportunity, OpportunityKind, Priority};
use selfbuild_core::ports::{ClaimOutcome, DedupClaim, HaltState, IdSource, Store};
use selfbuild_core::records::{
    AgentRecord, CircuitState, ComponentRecord, ComponentStatus, ImprovementQuery,
    ImprovementRecord, ImprovementStatus, PendingApproval, ProviderHealth, TOOL_CALL_RETENTION,
    TenantScope, ToolCallEvent,
};
use selfbuild_tests::improvement_id;
use time::macros::{date, datetime};
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-11-22 05:00:00 UTC);
const WINDOW: Duration = Duration::seconds(300);

fn key(component: &str) -> DedupKey {
    DedupKey::new(
        Some(TenantId::parse("acme").unwrap()),
        Some(ComponentId::parse(component).unwrap()),
    )
}

fn claim_at(key: &DedupKey, at: OffsetDateTime) -> DedupClaim {
    let window_end = at + WINDOW;
    DedupClaim {
        key: key.clone(),
        cycle_id: CycleId::for_claim(key, at, OsRandom.suffix()),
        claimed_at: at,
        window_end,
        expires_at: window_end + CLAIM_RETENTION,
        cycle_input: format!("{{\"at\":\"{at}\"}}"),
    }
}

fn held(outcome: ClaimOutcome) -> selfbuild_core::ports::HeldClaim {
    match outcome {
        ClaimOutcome::Held(h) => h,
        ClaimOutcome::Won => panic!("expected the key to be held"),
    }
}

pub async fn first_claim_wins_and_later_ones_are_counted(store: &impl Store) {
    let k = key("orders");
    let first = claim_at(&k, T0);
    assert_eq!(store.claim(&first).await.unwrap(), ClaimOutcome::Won);
    let h = held(
        store
            .claim(&claim_at(&k, T0 + Duration::seconds(10)))
            .await
            .unwrap(),
    );
    assert_eq!(h.cycle_id, first.cycle_id);
    assert_eq!(h.suppressed_count, 1);
    assert_eq!(h.claimed_at, T0);
    assert_eq!(h.window_end, T0 + WINDOW);
    assert_eq!(h.cycle_input, first.cycle_input);
    assert!(!h.started);
    let h = held(
        store
            .claim(&claim_at(&k, T0 + Duration::seconds(20)))
            .await
            .unwrap(),
    );
    assert_eq!(h.suppressed_count, 2);
}

/// A claim sent again by the cycle that won it (an SDK retry after a lost answer) is won
/// again and counts no suppressed event.
pub async fn a_claim_repeated_by_its_winner_is_won_again_uncounted(store: &impl Store) {
    let k = key("repeat");
    let first = claim_at(&k, T0);
    assert_eq!(store.claim(&first).await.unwrap(), ClaimOutcome::Won);
    assert_eq!(store.claim(&first).await.unwrap(), ClaimOutcome::Won);
    let h = held(
        store
            .claim(&claim_at(&k, T0 + Duration::seconds(1)))
            .await
            .unwrap(),
    );
    assert_eq!((h.cycle_id, h.suppressed_count), (first.cycle_id, 1));
}

pub async fn keys_are_independent(store: &impl Store) {
    assert_eq!(
        store.claim(&claim_at(&key("a"), T0)).await.unwrap(),
        ClaimOutcome::Won
    );
    assert_eq!(
        store.claim(&claim_at(&key("b"), T0)).await.unwrap(),
        ClaimOutcome::Won
    );
    let fleet = DedupKey::new(None, None);
    assert_eq!(
        store.claim(&claim_at(&fleet, T0)).await.unwrap(),
        ClaimOutcome::Won
    );
}

pub async fn the_window_end_still_holds_and_after_it_a_new_claim_wins(store: &impl Store) {
    let k = key("boundary");
    store.claim(&claim_at(&k, T0)).await.unwrap();
    // window_end < now is the condition: at exactly window_end the claim still holds.
    let at_end = held(store.claim(&claim_at(&k, T0 + WINDOW)).await.unwrap());
    assert_eq!(at_end.suppressed_count, 1);
    let after = claim_at(&k, T0 + WINDOW + Duration::milliseconds(1));
    assert_eq!(store.claim(&after).await.unwrap(), ClaimOutcome::Won);
    // The new claim starts fresh: its own cycle and a zero count.
    let h = held(
        store
            .claim(&claim_at(&k, T0 + WINDOW + Duration::seconds(1)))
            .await
            .unwrap(),
    );
    assert_eq!(h.cycle_id, after.cycle_id);
    assert_eq!(h.suppressed_count, 1);
}

pub async fn started_claims_say_so(store: &impl Store) {
    let k = key("started");
    let c = claim_at(&k, T0);
    store.claim(&c).await.unwrap();
    store.mark_started(&k, &c.cycle_id, "exec-1").await.unwrap();
    assert!(held(store.claim(&claim_at(&k, T0)).await.unwrap()).started);
}

pub async fn release_removes_only_the_named_claim(store: &impl Store) {
    let k = key("release");
    let c = claim_at(&k, T0);
    store.claim(&c).await.unwrap();
    let other = CycleId::parse("someone-else").unwrap();
    assert!(!store.release(&k, &other).await.unwrap());
    assert!(held(store.claim(&claim_at(&k, T0)).await.unwrap()).suppressed_count == 1);
    assert!(store.release(&k, &c.cycle_id).await.unwrap());
    assert_eq!(
        store.claim(&claim_at(&k, T0)).await.unwrap(),
        ClaimOutcome::Won
    );
}

pub async fn the_halt_switch_round_trips(store: &impl Store) {
    assert_eq!(store.halt_state().await.unwrap(), None);
    assert!(!store.clear_halt().await.unwrap());
    let halt = HaltState {
        reason: "rollbacks spiking".into(),
        actor: "ops@example.com".into(),
        since: T0,
    };
    store.set_halt(&halt).await.unwrap();
    assert_eq!(store.halt_state().await.unwrap(), Some(halt.clone()));
    let newer = HaltState {
        reason: "still bad".into(),
        ..halt
    };
    store.set_halt(&newer).await.unwrap();
    assert_eq!(store.halt_state().await.unwrap(), Some(newer));
    assert!(store.clear_halt().await.unwrap());
    assert_eq!(store.halt_state().await.unwrap(), None);
}

pub async fn cycles_are_created_once(store: &impl Store) {
    let k = key("cycles");
    let request = CycleRequest {
        cycle_id: CycleId::for_claim(&k, T0, OsRandom.suffix()),
        mode: CycleMode::Emergency,
        tenant_id: k.tenant.clone(),
        components: k.component.iter().cloned().collect(),
        analysis_window: TimeWindow {
            start: T0 - Duration::hours(1),
            end: T0,
        },
        max_improvements: 3,
        max_concurrency: 3,
        dry_run: false,
        trigger: Trigger::Schedule { rule: None },
        dedup_key: k.as_str().to_owned(),
        requested_at: T0,
    };
    let record = CycleRecord {
        request: request.clone(),
        status: CycleStatus::Running,
        execution_ref: "exec".into(),
        started_at: T0,
    };
    assert_eq!(store.get_cycle(&request.cycle_id).await.unwrap(), None);
    assert!(store.create_cycle(&record).await.unwrap());
    let again = CycleRecord {
        execution_ref: "other".into(),
        ..record.clone()
    };
    assert!(!store.create_cycle(&again).await.unwrap());
    assert_eq!(
        store.get_cycle(&request.cycle_id).await.unwrap(),
        Some(record)
    );
}

pub async fn approvals_collect_distinct_approvers(store: &impl Store) {
    let cycle = CycleId::parse("acme-orders-20261122T050000Z-00000001").unwrap();
    let pending = PendingApproval {
        improvement_id: ImprovementId::new(&cycle, 1),
        cycle_id: cycle.clone(),
        tenant_id: Some(TenantId::parse("acme").unwrap()),
        task_token: "token-1".into(),
        change: "orders: memory 128→512 MB".into(),
        risk: "CRITICAL".into(),
        approvals_required: 2,
        approvers: vec![],
        requested_at: T0,
    };
    let id = pending.improvement_id.clone();
    assert_eq!(store.get_pending(&id).await.unwrap(), None);
    assert_eq!(
        store.add_approver(&id, "alice").await.unwrap(),
        None,
        "nothing pending yet"
    );
    store.put_pending(&pending).await.unwrap();
    assert_eq!(store.get_pending(&id).await.unwrap(), Some(pending.clone()));
    let once = store.add_approver(&id, "alice").await.unwrap().unwrap();
    assert_eq!(once.approvers, ["alice"]);
    let again = store.add_approver(&id, "alice").await.unwrap().unwrap();
    assert_eq!(again.approvers, ["alice"], "the same approver counts once");
    let twice = store.add_approver(&id, "bob").await.unwrap().unwrap();
    assert_eq!(twice.approvers.len(), 2);
    assert_eq!(twice.task_token, "token-1");
    assert!(store.remove_pending(&id).await.unwrap());
    assert!(!store.remove_pending(&id).await.unwrap());
}

pub async fn audit_events_come_back_in_time_order(store: &impl Store) {
    let cycle = CycleId::parse("acme-orders-20261122T050000Z-00000002").unwrap();
    let event = |at: OffsetDateTime, action: AuditAction| AuditEvent {
        at,
        tenant_id: Some(TenantId::parse("acme").unwrap()),
        cycle_id: cycle.clone(),
        improvement_id: Some(ImprovementId::new(&cycle, 1)),
        actor: "selfbuild:deploy".into(),
        action,
        before: Some(serde_json::json!({"memory_mb": 128})),
        after: Some(serde_json::json!({"memory_mb": 512})),
        detail: action.as_str().into(),
    };
    // Appended out of order, and two in the same millisecond.
    store
        .append(&event(T0 + Duration::seconds(5), AuditAction::Deployed))
        .await
        .unwrap();
    store
        .append(&event(T0, AuditAction::Validated))
        .await
        .unwrap();
    store
        .append(&event(
            T0 + Duration::seconds(5),
            AuditAction::DeployDeferred,
        ))
        .await
        .unwrap();
    store
        .append(&event(T0 + Duration::hours(1), AuditAction::Promoted))
        .await
        .unwrap();
    let events = store.cycle_events(&cycle).await.unwrap();
    let actions: Vec<&str> = events.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(actions.len(), 4);
    assert_eq!(actions[0], "validated");
    assert_eq!(actions[3], "promoted");
    assert_eq!(events[3].after, Some(serde_json::json!({"memory_mb": 512})));
    let other = CycleId::parse("someone-else").unwrap();
    assert!(store.cycle_events(&other).await.unwrap().is_empty());
}

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

fn only(name: &str) -> TenantScope {
    TenantScope::Only(tenant(name))
}

fn improvement(
    cycle: &str,
    tenant_id: Option<&str>,
    status: ImprovementStatus,
    at: OffsetDateTime,
) -> ImprovementRecord {
    let item = ImprovementItem {
        cycle_id: CycleId::parse(cycle).unwrap(),
        tenant_id: tenant_id.map(tenant),
        mode: CycleMode::Routine,
        dry_run: false,
        opportunity: Opportunity {
            id: "orders:timeouts".into(),
            rank: 1,
            component: ComponentId::parse("orders").unwrap(),
            tenant_id: tenant_id.map(tenant),
            kind: OpportunityKind::Timeouts,
            evidence: vec![],
            expected_gain: 0.5,
            affected_requests: 10.0,
            impact_score: 5.0,
            priority: Priority::High,
            current: None,
            top_errors: vec!["Task timed out after <n> seconds".into()],
            stack_traces: vec![],
            agents: vec![],
        },
        generated: None,
        validation: None,
        approval: None,
        deploy: None,
        monitor: None,
    };
    ImprovementRecord::of_item(&item, status, at)
}

pub async fn improvement_records_are_replaced_and_read_back(store: &impl Store) {
    let first = improvement("c-1", Some("acme"), ImprovementStatus::Validated, T0);
    assert_eq!(
        store
            .get_improvement(&improvement_id("c-1-1"))
            .await
            .unwrap(),
        None
    );
    store.put_improvement(&first).await.unwrap();
    assert_eq!(
        store
            .get_improvement(&improvement_id("c-1-1"))
            .await
            .unwrap(),
        Some(first.clone())
    );
    let deployed = ImprovementRecord {
        status: ImprovementStatus::Deployed,
        updated_at: T0 + Duration::minutes(5),
        ..first
    };
    store.put_improvement(&deployed).await.unwrap();
    assert_eq!(
        store
            .get_improvement(&improvement_id("c-1-1"))
            .await
            .unwrap(),
        Some(deployed.clone())
    );
    let page = store
        .list_improvements(&ImprovementQuery {
            scope: TenantScope::All,
            status: None,
            limit: 10,
            cursor: None,
        })
        .await
        .unwrap();
    assert_eq!(page.items, [deployed], "replaced, not added");
    assert_eq!(page.next_cursor, None);
}

/// 14 improvements `c-01-1` … `c-14-1`: acme validated ×7, acme rejected ×3, globex
/// validated ×2, system-wide validated ×2, interleaved so filters skip records mid-page.
async fn seed_improvements(store: &impl Store) {
    for i in 1..=14 {
        let (owner, status) = match i {
            3 | 8 | 13 => (Some("acme"), ImprovementStatus::Rejected),
            6 | 11 => (Some("globex"), ImprovementStatus::Validated),
            10 | 14 => (None, ImprovementStatus::Validated),
            _ => (Some("acme"), ImprovementStatus::Validated),
        };
        let record = improvement(&format!("c-{i:02}"), owner, status, T0);
        store.put_improvement(&record).await.unwrap();
    }
}

/// Every page of a listing, as the improvement numbers of each page.
async fn pages(store: &impl Store, query: ImprovementQuery) -> Vec<Vec<u32>> {
    let mut query = query;
    let mut pages = Vec::new();
    loop {
        let page = store.list_improvements(&query).await.unwrap();
        pages.push(
            page.items
                .iter()
                .map(|r| r.improvement_id.as_str()[2..4].parse().unwrap())
                .collect(),
        );
        match page.next_cursor {
            Some(next) => query.cursor = Some(next),
            None => return pages,
        }
        assert!(pages.len() < 20, "the listing does not end");
    }
}

pub async fn improvements_list_newest_first_in_pages_with_filters(store: &impl Store) {
    seed_improvements(store).await;
    let query =
        |scope: TenantScope, status: Option<ImprovementStatus>, limit: usize| ImprovementQuery {
            scope,
            status,
            limit,
            cursor: None,
        };
    let validated = Some(ImprovementStatus::Validated);
    // Everything, incl. system-wide records, in one page (the limit is clamped to 100).
    assert_eq!(
        pages(store, query(TenantScope::All, None, 1000)).await,
        [(1..=14).rev().collect::<Vec<u32>>()]
    );
    // A tenant and a status, three at a time: the filter skips records inside pages.
    assert_eq!(
        pages(store, query(only("acme"), validated, 3)).await,
        [vec![12, 9, 7], vec![5, 4, 2], vec![1]]
    );
    assert_eq!(
        pages(store, query(TenantScope::All, validated, 3)).await,
        [vec![14, 12, 11], vec![10, 9, 7], vec![6, 5, 4], vec![2, 1]]
    );
    assert_eq!(
        pages(
            store,
            query(only("acme"), Some(ImprovementStatus::Rejected), 3)
        )
        .await,
        [vec![13, 8, 3]],
        "an exactly full last page has no cursor"
    );
    assert_eq!(
        pages(store, query(only("globex"), None, 10)).await,
        [vec![11, 6]]
    );
    assert_eq!(
        pages(store, query(only("initech"), None, 10)).await,
        [Vec::<u32>::new()]
    );
    // A limit of 0 is clamped to 1.
    let first = store
        .list_improvements(&query(TenantScope::All, None, 0))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 1);
    assert_eq!(first.next_cursor.as_deref(), Some("c-14-1"));
    // A cursor no listing could have returned is refused, and names itself.
    for bad in ["", "c-14-1 OR 1=1", "c#14"] {
        let err = store
            .list_improvements(&ImprovementQuery {
                cursor: Some(bad.into()),
                ..query(TenantScope::All, None, 3)
            })
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Rejected(_)), "{bad:?}: {err:?}");
        assert!(err.to_string().contains("cursor"), "{err}");
    }
}

pub async fn improvement_counts_are_per_status_and_scope(store: &impl Store) {
    assert!(
        store
            .improvement_counts(&TenantScope::All)
            .await
            .unwrap()
            .is_empty()
    );
    seed_improvements(store).await;
    let counts =
        |pairs: &[(ImprovementStatus, u64)]| pairs.iter().copied().collect::<BTreeMap<_, _>>();
    assert_eq!(
        store.improvement_counts(&TenantScope::All).await.unwrap(),
        counts(&[
            (ImprovementStatus::Validated, 11),
            (ImprovementStatus::Rejected, 3)
        ])
    );
    assert_eq!(
        store.improvement_counts(&only("acme")).await.unwrap(),
        counts(&[
            (ImprovementStatus::Validated, 7),
            (ImprovementStatus::Rejected, 3)
        ])
    );
    assert_eq!(
        store.improvement_counts(&only("globex")).await.unwrap(),
        counts(&[(ImprovementStatus::Validated, 2)])
    );
}

fn running_cycle(name: &str, owner: Option<&str>, started_at: OffsetDateTime) -> CycleRecord {
    let k = DedupKey::new(owner.map(tenant), Some(ComponentId::parse(name).unwrap()));
    CycleRecord {
        request: CycleRequest {
            cycle_id: CycleId::parse(&format!("cycle-{name}")).unwrap(),
            mode: CycleMode::Routine,
            tenant_id: owner.map(tenant),
            components: k.component.iter().cloned().collect(),
            analysis_window: TimeWindow {
                start: started_at - Duration::hours(1),
                end: started_at,
            },
            max_improvements: 3,
            max_concurrency: 3,
            dry_run: false,
            trigger: Trigger::Schedule { rule: None },
            dedup_key: k.as_str().to_owned(),
            requested_at: started_at,
        },
        status: CycleStatus::Running,
        execution_ref: format!("exec-{name}"),
        started_at,
    }
}

fn cycle_names(cycles: &[CycleRecord]) -> Vec<&str> {
    cycles
        .iter()
        .map(|c| &c.request.cycle_id.as_str()["cycle-".len()..])
        .collect()
}

pub async fn finished_cycles_leave_the_running_list(store: &impl Store) {
    // Created out of start order; listed oldest first.
    let cycles = [
        running_cycle("acme-late", Some("acme"), T0 + Duration::minutes(3)),
        running_cycle("acme-early", Some("acme"), T0),
        running_cycle("globex", Some("globex"), T0 + Duration::minutes(1)),
        running_cycle("fleet", None, T0 + Duration::minutes(2)),
    ];
    for cycle in &cycles {
        assert!(store.create_cycle(cycle).await.unwrap());
    }
    assert_eq!(
        cycle_names(&store.running_cycles(&TenantScope::All, 10).await.unwrap()),
        ["acme-early", "globex", "fleet", "acme-late"]
    );
    assert_eq!(
        cycle_names(&store.running_cycles(&only("acme"), 10).await.unwrap()),
        ["acme-early", "acme-late"]
    );
    assert_eq!(
        cycle_names(&store.running_cycles(&TenantScope::All, 2).await.unwrap()),
        ["acme-early", "globex"]
    );
    assert!(
        store
            .running_cycles(&only("initech"), 10)
            .await
            .unwrap()
            .is_empty()
    );

    let early = &cycles[1].request.cycle_id;
    let done_at = T0 + Duration::minutes(30);
    assert!(
        store
            .finish_cycle(early, CycleStatus::Succeeded, done_at)
            .await
            .unwrap()
    );
    let finished = store.get_cycle(early).await.unwrap().unwrap();
    assert_eq!(finished.status, CycleStatus::Succeeded);
    assert_eq!(
        finished.request, cycles[1].request,
        "only the status changes"
    );
    assert!(
        store
            .finish_cycle(&cycles[2].request.cycle_id, CycleStatus::Failed, done_at)
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .get_cycle(&cycles[2].request.cycle_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        CycleStatus::Failed
    );
    assert_eq!(
        cycle_names(&store.running_cycles(&TenantScope::All, 10).await.unwrap()),
        ["fleet", "acme-late"]
    );
    assert_eq!(
        cycle_names(&store.running_cycles(&only("acme"), 10).await.unwrap()),
        ["acme-late"]
    );
    // Finishing twice (a retried summary) changes nothing more; an unknown cycle is false.
    assert!(
        store
            .finish_cycle(early, CycleStatus::Succeeded, done_at)
            .await
            .unwrap()
    );
    let unknown = CycleId::parse("no-such-cycle").unwrap();
    assert!(
        !store
            .finish_cycle(&unknown, CycleStatus::Failed, done_at)
            .await
            .unwrap()
    );
    assert_eq!(store.get_cycle(&unknown).await.unwrap(), None);
}

fn health(pairs: &[(&str, CircuitState)]) -> Vec<ProviderHealth> {
    pairs
        .iter()
        .map(|(provider, state)| ProviderHealth {
            provider: (*provider).into(),
            state: *state,
        })
        .collect()
}

pub async fn llm_usage_accumulates_per_utc_day(store: &impl Store) {
    let day = date!(2026 - 11 - 22);
    let untouched = store.llm_usage(day).await.unwrap();
    assert_eq!((untouched.cost_usd, untouched.calls), (0.0, 0));
    assert!(untouched.providers.is_empty());

    let closed = health(&[("bedrock:claude", CircuitState::Closed)]);
    let tripped = health(&[
        ("bedrock:claude", CircuitState::Open),
        ("openai:gpt", CircuitState::Closed),
    ]);
    store.record_llm_usage(T0, 0.25, &closed).await.unwrap();
    store
        .record_llm_usage(T0 + Duration::hours(1), 0.5, &tripped)
        .await
        .unwrap();
    // 01:00 at UTC+2 is still the 22nd in UTC.
    store
        .record_llm_usage(datetime!(2026-11-23 01:00:00 +2), 0.125, &tripped)
        .await
        .unwrap();
    store
        .record_llm_usage(datetime!(2026-11-23 00:30:00 UTC), 1.5, &closed)
        .await
        .unwrap();

    let today = store.llm_usage(day).await.unwrap();
    assert_eq!((today.cost_usd, today.calls), (0.875, 3));
    assert_eq!(
        today.providers, tripped,
        "the latest snapshot replaces the earlier"
    );
    let tomorrow = store.llm_usage(date!(2026 - 11 - 23)).await.unwrap();
    assert_eq!((tomorrow.cost_usd, tomorrow.calls), (1.5, 1));
    assert_eq!(tomorrow.providers, closed);
}

fn agent(owner: Option<&str>, name: &str, url: &str) -> AgentRecord {
    AgentRecord {
        name: name.into(),
        url: url.into(),
        capabilities: vec!["diagnose".into()],
        tenant_id: owner.map(tenant),
        registered_by: "key-1".into(),
        registered_at: T0,
        mcp_url: None,
        key_secret_id: None,
        components: Vec::new(),
        depends_on: Vec::new(),
        low_traffic_windows: Vec::new(),
        window_tool: None,
        notify_tool: None,
        metrics: None,
    }
}

fn component(owner: Option<&str>, name: &str, status: ComponentStatus) -> ComponentRecord {
    ComponentRecord {
        name: name.into(),
        component_type: "lambda_function".into(),
        tenant_id: owner.map(tenant),
        status,
        detail: serde_json::json!({"memory_mb": 256}),
        created_at: T0,
    }
}

pub async fn agents_and_components_are_replaced_and_scoped(store: &impl Store) {
    assert!(
        store
            .list_agents(&TenantScope::All)
            .await
            .unwrap()
            .is_empty()
    );
    for a in [
        agent(Some("globex"), "scout", "https://globex.example/scout"),
        agent(Some("acme"), "scout", "https://acme.example/old"),
        agent(Some("acme-eu"), "scout", "https://acme.eu.example/scout"),
        agent(None, "fleet-watch", "https://ops.example/watch"),
        agent(Some("acme"), "builder", "https://acme.example/builder"),
        agent(Some("acme"), "scout", "https://acme.example/scout"),
    ] {
        store.register_agent(&a).await.unwrap();
    }
    let listed = |agents: Vec<AgentRecord>| {
        agents
            .into_iter()
            .map(|a| {
                let owner = a.tenant_id.map_or("*".into(), |t| t.as_str().to_owned());
                format!("{owner}/{} {}", a.name, a.url)
            })
            .collect::<Vec<_>>()
    };
    // By tenant then name, the fleet-wide agent first; the re-registered one replaced.
    assert_eq!(
        listed(store.list_agents(&TenantScope::All).await.unwrap()),
        [
            "*/fleet-watch https://ops.example/watch",
            "acme/builder https://acme.example/builder",
            "acme/scout https://acme.example/scout",
            "acme-eu/scout https://acme.eu.example/scout",
            "globex/scout https://globex.example/scout",
        ]
    );
    // `acme` does not see `acme-eu`, nor the fleet-wide agent.
    assert_eq!(
        listed(store.list_agents(&only("acme")).await.unwrap()),
        [
            "acme/builder https://acme.example/builder",
            "acme/scout https://acme.example/scout",
        ]
    );
    assert!(
        store
            .list_agents(&only("initech"))
            .await
            .unwrap()
            .is_empty()
    );
    // A peer's fields are kept as registered.
    let peer = AgentRecord {
        mcp_url: Some("https://acme.example/mcp".into()),
        key_secret_id: Some("selfbuild/agents/builder".into()),
        components: vec!["orders-api".into()],
        depends_on: vec!["scout".into()],
        low_traffic_windows: vec![
            selfbuild_core::agents::LowTrafficWindow::parse("22:00-02:00").unwrap(),
        ],
        window_tool: Some("when_can_i_deploy".into()),
        notify_tool: None,
        metrics: Some(
            serde_json::from_value(serde_json::json!({
                "namespace": "Acme/Agents",
                "dimensions": [{"name": "Service", "value": "builder"}],
                "latency_p99": {"metric": "RespTime", "stat": "p99.9"}
            }))
            .unwrap(),
        ),
        ..agent(Some("acme"), "builder", "https://acme.example/builder")
    };
    store.register_agent(&peer).await.unwrap();
    let stored = store.list_agents(&only("acme")).await.unwrap();
    assert_eq!(stored.iter().find(|a| a.name == "builder"), Some(&peer));

    let cache = component(Some("acme"), "cache", ComponentStatus::AwaitingApproval);
    store.put_component(&cache).await.unwrap();
    store
        .put_component(&component(
            None,
            "shared-queue",
            ComponentStatus::Registered,
        ))
        .await
        .unwrap();
    store
        .put_component(&component(
            Some("globex"),
            "cache",
            ComponentStatus::Registered,
        ))
        .await
        .unwrap();
    let declined = ComponentRecord {
        status: ComponentStatus::Declined,
        detail: serde_json::json!({"reason": "over budget"}),
        ..cache
    };
    store.put_component(&declined).await.unwrap();
    let all = store.list_components(&TenantScope::All).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].tenant_id, None);
    assert_eq!(all[1], declined);
    assert_eq!(all[2].tenant_id, Some(tenant("globex")));
    assert_eq!(
        store.list_components(&only("acme")).await.unwrap(),
        [declined]
    );
}

pub async fn calls_are_counted_per_key_and_fixed_window(store: &impl Store) {
    let window = Duration::minutes(1);
    let count = |key: &'static str, start: OffsetDateTime| async move {
        store
            .count_calls(key, start, 1, start + 2 * window)
            .await
            .unwrap()
    };
    assert_eq!(count("key-1", T0).await, 1);
    assert_eq!(count("key-1", T0).await, 2);
    assert_eq!(count("key-2", T0).await, 1, "keys count apart");
    assert_eq!(count("key-1", T0).await, 3);
    assert_eq!(
        count("key-1", T0 + window).await,
        1,
        "a new window starts at 1"
    );
    assert_eq!(count("key-1", T0 + window).await, 2);
    assert_eq!(count("key-2", T0 + window).await, 1);
    // Several calls in one increment (a process's uncounted calls), and 0 only reads.
    let add = |calls: u64| store.count_calls("key-1", T0 + window, calls, T0 + 3 * window);
    assert_eq!(add(5).await.unwrap(), 7);
    assert_eq!(add(0).await.unwrap(), 7);
    assert_eq!(
        store
            .count_calls("key-3", T0, 0, T0 + 2 * window)
            .await
            .unwrap(),
        0,
        "reading a window never counted is 0"
    );
}

pub async fn tool_calls_are_logged_in_batches(store: &impl Store) {
    let now = T0 + Duration::days(4);
    let call = |n: i64| ToolCallEvent {
        at: now - Duration::seconds(n),
        key_id: format!("batch-{n}"),
        tenant_id: None,
        tool: "list_agents".into(),
        outcome: "ok".into(),
        detail: String::new(),
    };
    store.record_tool_calls(&[]).await.unwrap();
    let batch: Vec<ToolCallEvent> = (0..30).rev().map(call).collect();
    store.record_tool_calls(&batch).await.unwrap();
    let logged = store.recent_tool_calls(now, 100).await.unwrap();
    let keys: Vec<&str> = logged
        .iter()
        .filter(|e| e.key_id.starts_with("batch-"))
        .map(|e| e.key_id.as_str())
        .collect();
    assert_eq!(keys.len(), 30);
    assert_eq!(keys[0], "batch-0", "newest first");
    assert_eq!(keys[29], "batch-29");
}

pub async fn the_access_log_lists_the_newest_calls_first(store: &impl Store) {
    let now = T0 + Duration::days(3);
    assert!(store.recent_tool_calls(now, 10).await.unwrap().is_empty());
    let call = |seconds_ago: i64, tool: &str, outcome: &str| ToolCallEvent {
        at: now - Duration::seconds(seconds_ago),
        key_id: "key-1".into(),
        tenant_id: Some(tenant("acme")),
        tool: tool.into(),
        outcome: outcome.into(),
        detail: String::new(),
    };
    let oldest = call(5, "list_improvements", "ok");
    let twice = call(3, "get_system_status", "ok");
    let newest = call(1, "approve_improvement", "denied");
    // Recorded out of order, and one call twice in the same instant: both are kept.
    for event in [&twice, &newest, &oldest, &twice] {
        store.record_tool_call(event).await.unwrap();
    }
    assert_eq!(
        store.recent_tool_calls(now, 10).await.unwrap(),
        [newest.clone(), twice.clone(), twice.clone(), oldest.clone()]
    );
    assert_eq!(
        store.recent_tool_calls(now, 2).await.unwrap(),
        [newest, twice]
    );
    assert!(store.recent_tool_calls(now, 0).await.unwrap().is_empty());
    // On a clock far past the retention, the calls are gone (or at least not listed).
    let later = now + TOOL_CALL_RETENTION + Duration::days(1);
    assert!(store.recent_tool_calls(later, 10).await.unwrap().is_empty());
    // Calls from a day before `now` are still listed, whatever the wall clock says.
    let day_before = ToolCallEvent {
        at: now - Duration::days(1),
        ..oldest
    };
    store.record_tool_call(&day_before).await.unwrap();
    assert_eq!(store.recent_tool_calls(now, 10).await.unwrap().len(), 5);
}

/// 200 parallel claims of one key: exactly one winner, and 199 counted suppressions.
pub async fn miner_states_are_replaced_only_at_the_expected_version(store: &impl Store) {
    let scope = "acme#orders-api";
    assert_eq!(store.load_miner_state(scope).await.unwrap(), None);
    // The first save expects nothing stored; a second first save loses.
    assert!(store.save_miner_state(scope, "{\"v\":1}", 0).await.unwrap());
    assert!(
        !store
            .save_miner_state(scope, "{\"v\":\"late\"}", 0)
            .await
            .unwrap()
    );
    let saved = store.load_miner_state(scope).await.unwrap().unwrap();
    assert_eq!((saved.body.as_str(), saved.version), ("{\"v\":1}", 1));
    // A save at a stale version changes nothing; at the current one it replaces.
    assert!(!store.save_miner_state(scope, "stale", 5).await.unwrap());
    assert!(store.save_miner_state(scope, "{\"v\":2}", 1).await.unwrap());
    let saved = store.load_miner_state(scope).await.unwrap().unwrap();
    assert_eq!((saved.body.as_str(), saved.version), ("{\"v\":2}", 2));
    // Scopes are independent; a state near the size the stream keeps fits.
    assert_eq!(store.load_miner_state("*#billing").await.unwrap(), None);
    let big = "x".repeat(selfbuild_core::logstream::MAX_STATE_BYTES);
    assert!(store.save_miner_state("*#billing", &big, 0).await.unwrap());
    let saved = store.load_miner_state("*#billing").await.unwrap().unwrap();
    assert_eq!(saved.body.len(), big.len());
}

fn ledger(component: &str, failed_heals: u32, disabled: bool) -> ComponentHealth {
    ComponentHealth {
        component: component.into(),
        failed_heals,
        heal_pending: !disabled,
        disabled: disabled.then(|| Disabled {
            reason: "3 failed heals".into(),
            since: T0,
        }),
    }
}

/// Heal ledgers are one per component, listed by name; re-enabling clears one and says
/// whether it was disabled.
pub async fn heal_ledgers_are_replaced_and_cleared(store: &impl Store) {
    assert!(store.component_health().await.unwrap().is_empty());
    store
        .put_component_health(&ledger("orders", 1, false))
        .await
        .unwrap();
    store
        .put_component_health(&ledger("*", 0, false))
        .await
        .unwrap();
    store
        .put_component_health(&ledger("billing", 2, false))
        .await
        .unwrap();
    store
        .put_component_health(&ledger("orders", 3, true))
        .await
        .unwrap();
    let listed = store.component_health().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|l| l.component.as_str()).collect();
    assert_eq!(names, ["*", "billing", "orders"]);
    assert_eq!(listed[2], ledger("orders", 3, true));
    // Disabled: cleared, and it says so; again, or never kept: cleared and not disabled.
    assert!(store.enable_component("orders").await.unwrap());
    assert!(!store.enable_component("orders").await.unwrap());
    assert!(!store.enable_component("billing").await.unwrap());
    assert!(!store.enable_component("never-seen").await.unwrap());
    let names: Vec<String> = store
        .component_health()
        .await
        .unwrap()
        .into_iter()
        .map(|l| l.component)
        .collect();
    assert_eq!(names, ["*"]);
}

fn health_event(at: OffsetDateTime, component: Option<&str>, kind: HealthEventKind) -> HealthEvent {
    HealthEvent {
        at,
        component: component.map(str::to_owned),
        kind,
        actor: "selfbuild:health".into(),
        heal: component.map(|c| HealAction::Redrive {
            execution_ref: format!("arn:{c}"),
            cycle_id: "c1".into(),
            component: c.into(),
        }),
        succeeded: Some(true),
        detail: format!("{kind:?} at {at}"),
    }
}

/// Health events come back newest first, those of one millisecond in append order
/// reversed, of one component or all, at most `limit`.
pub async fn health_events_list_newest_first_per_component(store: &impl Store) {
    assert!(store.health_events(None, 10).await.unwrap().is_empty());
    let events = [
        health_event(T0, Some("orders"), HealthEventKind::HealAttempted),
        health_event(T0, None, HealthEventKind::HealAttempted),
        health_event(T0, Some("billing"), HealthEventKind::HealAttempted),
        health_event(
            T0 + Duration::seconds(300),
            Some("orders"),
            HealthEventKind::Disabled,
        ),
        health_event(
            T0 + Duration::seconds(300),
            Some("orders"),
            HealthEventKind::HealAttempted,
        ),
        health_event(
            T0 + Duration::seconds(600),
            Some("orders"),
            HealthEventKind::Enabled,
        ),
    ];
    for event in &events {
        store.append_health_event(event).await.unwrap();
    }
    let all = store.health_events(None, 10).await.unwrap();
    let expected: Vec<HealthEvent> = events.iter().rev().cloned().collect();
    assert_eq!(all, expected);
    let orders = store.health_events(Some("orders"), 10).await.unwrap();
    assert_eq!(
        orders,
        vec![
            events[5].clone(),
            events[4].clone(),
            events[3].clone(),
            events[0].clone()
        ]
    );
    assert_eq!(
        store.health_events(Some("orders"), 2).await.unwrap(),
        vec![events[5].clone(), events[4].clone()]
    );
    assert_eq!(
        store.health_events(Some("billing"), 10).await.unwrap(),
        vec![events[2].clone()]
    );
    assert!(
        store
            .health_events(Some("nobody"), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.health_events(None, 0).await.unwrap().is_empty());
}

/// The last health report is the one saved last.
pub async fn the_last_health_report_is_replaced(store: &impl Store) {
    assert_eq!(store.last_health_report().await.unwrap(), None);
    let first = HealthReport {
        at: T0,
        healthy: true,
        checks: Vec::new(),
        heal_plan: Vec::new(),
        components: Vec::new(),
        disabled: Vec::new(),
        outcomes: Vec::new(),
    };
    store.save_health_report(&first).await.unwrap();
    assert_eq!(
        store.last_health_report().await.unwrap(),
        Some(first.clone())
    );
    let second = HealthReport {
        at: T0 + Duration::seconds(300),
        healthy: false,
        heal_plan: vec![HealAction::ResendDlq { messages: 2 }],
        disabled: vec![ledger("orders", 3, true)],
        ..first
    };
    store.save_health_report(&second).await.unwrap();
    assert_eq!(store.last_health_report().await.unwrap(), Some(second));
}

pub async fn concurrent_claims_have_exactly_one_winner<S: Store + 'static>(stores: Vec<Arc<S>>) {
    let k = key("contended");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let store = Arc::clone(&stores[i % stores.len()]);
        let c = claim_at(&k, T0 + Duration::milliseconds(i as i64));
        tasks.push(tokio::spawn(async move { store.claim(&c).await }));
    }
    let mut winners = 0;
    let mut counts = Vec::new();
    for task in tasks {
        match task.await.unwrap().unwrap() {
            ClaimOutcome::Won => winners += 1,
            ClaimOutcome::Held(h) => counts.push(h.suppressed_count),
        }
    }
    assert_eq!(winners, 1, "exactly one claim must win");
    counts.sort_unstable();
    assert_eq!(
        counts,
        (1..=199).collect::<Vec<u64>>(),
        "each suppression counted once"
    );
}

macro_rules! contract_suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            use selfbuild_local::store::SqliteStore;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let dir = tempfile::tempdir().unwrap();
                    let store = SqliteStore::open(dir.path()).unwrap();
                    super::$test(&store).await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_claims_have_exactly_one_winner() {
                let dir = tempfile::tempdir().unwrap();
                // Four connections to one file: SQLite's locking decides, not one mutex.
                let stores = (0..4)
                    .map(|_| Arc::new(SqliteStore::open(dir.path()).unwrap()))
                    .collect();
                super::concurrent_claims_have_exactly_one_winner(stores).await;
            }
        }

        mod dynamodb {
            use super::*;
            use selfbuild_aws::dynamo::DynamoStore;
            use selfbuild_tests::moto::MotoServer;

            async fn store(moto: &MotoServer, name: &str) -> DynamoStore {
                let store = DynamoStore::new(&moto.sdk_config().await, format!("contract-{name}"));
                store.create_table().await.unwrap();
                store
            }

            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let moto = MotoServer::shared();
                    let store = store(&moto, stringify!($test)).await;
                    super::$test(&store).await;
                }
            )*

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_claims_have_exactly_one_winner() {
                let moto = MotoServer::shared();
                let store = Arc::new(store(&moto, "concurrent").await);
                super::concurrent_claims_have_exactly_one_winner(vec![store]).await;
            }
        }
    };
}

contract_suite!(
    first_claim_wins_and_later_ones_are_counted,
    a_claim_repeated_by_its_winner_is_won_again_uncounted,
    keys_are_independent,
    the_window_end_still_holds_and_after_it_a_new_claim_wins,
    started_claims_say_so,
    release_removes_only_the_named_claim,
    the_halt_switch_round_trips,
    cycles_are_created_once,
    approvals_collect_distinct_approvers,
    audit_events_come_back_in_time_order,
    improvement_records_are_replaced_and_read_back,
    improvements_list_newest_first_in_pages_with_filters,
    improvement_counts_are_per_status_and_scope,
    finished_cycles_leave_the_running_list,
    llm_usage_accumulates_per_utc_day,
    agents_and_components_are_replaced_and_scoped,
    calls_are_counted_per_key_and_fixed_window,
    tool_calls_are_logged_in_batches,
    the_access_log_lists_the_newest_calls_first,
    miner_states_are_replaced_only_at_the_expected_version,
    heal_ledgers_are_replaced_and_cleared,
    health_events_list_newest_first_per_component,
    the_last_health_report_is_replaced,
);

/// A missing table is a configuration error, not something to retry.
#[tokio::test]
async fn dynamodb_refusals_are_not_retryable() {
    use selfbuild_core::error::{StableError, StoreError};
    use selfbuild_core::ports::DedupStore;
    let moto = selfbuild_tests::moto::MotoServer::shared();
    let store = selfbuild_aws::dynamo::DynamoStore::new(&moto.sdk_config().await, "no-such-table");
    let err = store.claim(&claim_at(&key("x"), T0)).await.unwrap_err();
    assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
    assert_eq!(err.error_type(), "DependencyFailed");
    assert!(err.to_string().contains("no-such-table"), "{err}");
}
