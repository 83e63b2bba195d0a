//! alarm-intake under faults: a share of the claim, record and halt calls throttled, failed
//! with a 500, dropped, or taking effect with their answer lost, and one step of the first
//! delivery failing for good (all three SDK attempts). A delivery that fails `Retryable` is
//! delivered again on Lambda's asynchronous schedule (one minute, then two more); the alarm
//! ends with exactly one execution started, its claim marked started and its cycle recorded,
//! and every answer intake gave names that cycle.

use selfbuild_aws::DynamoStore;
use selfbuild_aws::cloudwatch::CloudWatchAlarms;
use selfbuild_aws::sfn::StepFunctionsOrchestrator;
use selfbuild_core::Config;
use selfbuild_core::clock::FixedClock;
use selfbuild_core::error::StableError;
use selfbuild_core::ids::CycleId;
use selfbuild_core::idsource::SeededIds;
use selfbuild_core::intake::{IntakeDeps, IntakeResponse, handle_event};
use selfbuild_core::ports::CycleStore;
use selfbuild_tests::events::load;
use selfbuild_tests::fault_proxy::{Fault, FaultProxy, Lost, Rule};
use selfbuild_tests::moto::MotoServer;
use serde_json::Value;

use super::{NOW, NoMetrics};
use crate::orchestrator::create_state_machine;

const SEEDS: u64 = 20;
/// When Lambda delivers an asynchronous event that failed again: the first delivery, one
/// minute later, two minutes after that (all within the five-minute dedup window).
const DELIVERIES: [i64; 3] = [0, 60, 180];
/// The first delivery's calls, one of which fails on all its SDK attempts, by seed.
const FIRST_DELIVERY: [&str; 5] = [
    "GetItem",
    "PutItem",
    "StartExecution",
    "TransactWriteItems",
    "UpdateItem",
];

/// What one delivery answered: the decision and cycle, or the error type.
#[derive(Debug)]
enum Answer {
    Decided { decision: String, cycle: String },
    Failed { error: String, message: String },
}

#[tokio::test]
async fn dynamodb_faults_during_the_claim_and_the_records_start_the_alarms_cycle_exactly_once() {
    let moto = MotoServer::shared();
    let direct_sdk = moto.sdk_config().await;
    let event = load("alarm-metric.json");
    let config = Config::default();
    let mut lost_claims = 0;
    let mut redelivered = 0;
    for seed in 0..SEEDS {
        let table = format!("faults-intake-{seed}");
        let direct = DynamoStore::new(&direct_sdk, table.clone());
        direct.create_table().await.unwrap();
        let arn = create_state_machine(&direct_sdk, &format!("faults-intake-{seed}")).await;
        let proxy = FaultProxy::start(&moto, seed).await;
        // Odd seeds: the step took effect and its answers were lost.
        let forced = if seed % 2 == 0 {
            Fault::ServerError
        } else {
            Fault::Lost(Lost::ServerError)
        };
        let step = FIRST_DELIVERY[usize::try_from(seed).unwrap() % FIRST_DELIVERY.len()];
        proxy.add(Rule::on(step).nth(&[1, 2, 3]).fault(forced));
        proxy.add(Rule::service("dynamodb").share(0.3).faults(&[
            Fault::Throttle,
            Fault::ThrottleAlt,
            Fault::ServerError,
            Fault::Drop,
            Fault::Lost(Lost::ServerError),
            Fault::Lost(Lost::Drop),
        ]));
        let store = DynamoStore::from_client(proxy.dynamodb().await, table.clone());
        let orchestrator = StepFunctionsOrchestrator::from_client(proxy.sfn().await, arn.clone());
        let alarms = CloudWatchAlarms::from_client(proxy.cloudwatch().await.0);
        let ids = SeededIds::new(seed, "intake");

        let mut answers = Vec::new();
        for after in DELIVERIES {
            let clock = FixedClock(NOW + time::Duration::seconds(after));
            let deps = IntakeDeps {
                claims: &store,
                halt: &store,
                health: &store,
                orchestrator: &orchestrator,
                cycles: &store,
                clock: &clock,
                ids: &ids,
                metrics: &NoMetrics,
            };
            let answer = match handle_event(deps, &alarms, &config, &event).await {
                Ok(IntakeResponse::One(o)) => Answer::Decided {
                    decision: o.decision.as_str().to_owned(),
                    cycle: o.cycle_id.map(|c| c.to_string()).unwrap_or_default(),
                },
                Ok(other) => panic!("one outcome expected: {other:?}"),
                Err(e) => Answer::Failed {
                    error: e.error_type().as_str().to_owned(),
                    message: e.to_string(),
                },
            };
            let retry = matches!(&answer, Answer::Failed { error, .. } if error == "Retryable");
            answers.push(answer);
            if !retry {
                break;
            }
        }
        let log = proxy.log();
        redelivered += answers.len() - 1;
        lost_claims += proxy
            .calls_of("PutItem")
            .iter()
            .filter(|c| matches!(c.fault, Some(Fault::Lost(_))) && c.upstream_status == Some(200))
            .count();
        drop(proxy);

        // Exactly one execution, and every decision names it.
        let executions = aws_sdk_sfn::Client::new(&direct_sdk)
            .list_executions()
            .state_machine_arn(&arn)
            .send()
            .await
            .unwrap()
            .executions;
        assert_eq!(executions.len(), 1, "seed {seed}: {answers:?}\n{log}");
        let cycle = executions[0].name.clone();
        for answer in &answers {
            match answer {
                Answer::Decided {
                    decision,
                    cycle: named,
                } => {
                    assert!(
                        decision == "started" || decision == "duplicate",
                        "seed {seed}: {answers:?}"
                    );
                    assert_eq!(named, &cycle, "seed {seed}: {answers:?}\n{log}");
                }
                Answer::Failed { error, message } => assert_eq!(
                    error, "Retryable",
                    "seed {seed}: a DynamoDB fault is retryable: {message}"
                ),
            }
        }
        assert!(
            matches!(answers.last(), Some(Answer::Decided { .. })),
            "seed {seed}: never decided: {answers:?}\n{log}"
        );
        // The cycle is recorded and its claim marked started.
        let record = direct
            .get_cycle(&CycleId::parse(&cycle).unwrap())
            .await
            .unwrap();
        assert!(
            record.is_some(),
            "seed {seed}: cycle {cycle} has no record\n{log}"
        );
        let claim = aws_sdk_dynamodb::Client::new(&direct_sdk)
            .get_item()
            .table_name(&table)
            .key(
                "pk",
                aws_sdk_dynamodb::types::AttributeValue::S("DEDUP#*#orders-api".into()),
            )
            .key(
                "sk",
                aws_sdk_dynamodb::types::AttributeValue::S("CLAIM".into()),
            )
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        assert_eq!(claim["cycle_id"].as_s().unwrap(), &cycle, "seed {seed}");
        assert_eq!(
            claim["started"].as_bool().unwrap(),
            &true,
            "seed {seed}\n{log}"
        );
    }
    // The sweep did lose the answer of a claim that took effect, and did fail deliveries.
    assert!(lost_claims > 0, "no claim answer was lost in {SEEDS} seeds");
    assert!(redelivered > 0, "no delivery failed in {SEEDS} seeds");
}

/// A repeat of the alarm while its cycle holds the key is a duplicate counted once, also when
/// the count's answer is lost and the SDK sends the update again.
#[tokio::test]
async fn a_suppression_whose_answer_was_lost_is_counted_once() {
    let moto = MotoServer::shared();
    let sdk = moto.sdk_config().await;
    let direct = DynamoStore::new(&sdk, "faults-intake-count");
    direct.create_table().await.unwrap();
    let arn = create_state_machine(&sdk, "faults-intake-count").await;
    let proxy = FaultProxy::start(&moto, 99).await;
    let store = DynamoStore::from_client(proxy.dynamodb().await, "faults-intake-count");
    let orchestrator = StepFunctionsOrchestrator::from_client(proxy.sfn().await, arn);
    let alarms = CloudWatchAlarms::from_client(proxy.cloudwatch().await.0);
    let ids = SeededIds::new(99, "count");
    let clock = FixedClock(NOW);
    let deps = IntakeDeps {
        claims: &store,
        halt: &store,
        health: &store,
        orchestrator: &orchestrator,
        cycles: &store,
        clock: &clock,
        ids: &ids,
        metrics: &NoMetrics,
    };
    let config = Config::default();
    let event = load("alarm-metric.json");
    let first = handle_event(deps, &alarms, &config, &event).await.unwrap();
    // The duplicate's count increment takes effect, its answer is lost, the SDK sends it again.
    let next = proxy.seen("UpdateItem") + 1;
    proxy.add(
        Rule::on("UpdateItem")
            .nth(&[next])
            .fault(Fault::Lost(Lost::ServerError)),
    );
    let second = handle_event(deps, &alarms, &config, &event).await.unwrap();
    let (IntakeResponse::One(first), IntakeResponse::One(second)) = (first, second) else {
        panic!("one outcome each");
    };
    assert_eq!(second.decision.as_str(), "duplicate");
    assert_eq!(second.cycle_id, first.cycle_id);
    let calls: Vec<Value> = proxy
        .calls_of("UpdateItem")
        .iter()
        .map(|c| serde_json::json!([c.n, c.upstream_status, c.status]))
        .collect();
    assert!(calls.len() >= 2, "{calls:?}");
    // One event was suppressed; the count says so.
    assert_eq!(second.suppressed_count, 1, "{}", proxy.log());
}
