//! The step payloads under `events/steps/` (captured from the e2e run, used with
//! `cargo lambda invoke --data-file`, see docs/local-lambda.md) are what each function takes;
//! `rollback-requested.json` is the order the AWS health pass hands the rollback function.

use selfbuild_core::cycle::CycleRequest;
use selfbuild_core::improvement::ImprovementItem;
use selfbuild_core::steps::{
    DeployRequest, MonitorRequest, RollbackRequest, ValidateRequest, parse_payload, summarize,
};
use selfbuild_tests::events::load;

#[test]
fn every_step_payload_parses_as_its_functions_request() {
    let analyze: CycleRequest = parse_payload(&load("steps/analyze.json")).unwrap();
    let generate: ImprovementItem = parse_payload(&load("steps/generate.json")).unwrap();
    assert_eq!(generate.cycle_id, analyze.cycle_id);
    assert!(matches!(
        parse_payload(&load("steps/validate.json")).unwrap(),
        ValidateRequest::Validate { .. }
    ));
    assert!(matches!(
        parse_payload(&load("steps/validate-request-approval.json")).unwrap(),
        ValidateRequest::RequestApproval { .. }
    ));
    assert!(matches!(
        parse_payload(&load("steps/validate-expire-approval.json")).unwrap(),
        ValidateRequest::ExpireApproval { .. }
    ));
    for (file, promote) in [
        ("steps/deploy.json", false),
        ("steps/deploy-promote.json", true),
    ] {
        match parse_payload(&load(file)).unwrap() {
            DeployRequest::Deploy { item } => assert!(!promote && item.validation.is_some()),
            DeployRequest::Promote { item } => assert!(promote && item.deploy.is_some()),
        }
    }
    match parse_payload(&load("steps/monitor.json")).unwrap() {
        MonitorRequest::Monitor { item } => assert!(item.deploy.is_some()),
        MonitorRequest::Summarize { .. } => panic!("monitor.json is a monitor request"),
    }
    match parse_payload(&load("steps/monitor-summarize.json")).unwrap() {
        MonitorRequest::Summarize { cycle } => {
            let summary = summarize(&cycle, time::macros::datetime!(2026-11-22 06:10 UTC)).unwrap();
            assert_eq!(summary.improvements.len(), 1);
        }
        MonitorRequest::Monitor { .. } => panic!("monitor-summarize.json is a summary request"),
    }
    match parse_payload(&load("steps/rollback.json")).unwrap() {
        RollbackRequest::Rollback { item } => {
            assert!(item.deploy.is_some_and(|d| d.deployment.is_some()));
        }
        other => panic!("rollback.json is a rollback request: {other:?}"),
    }
    match parse_payload(&load("steps/rollback-undo-deploy.json")).unwrap() {
        RollbackRequest::UndoDeploy { item, failure } => {
            assert!(item.deploy.is_none());
            assert_eq!(failure.unwrap()["Error"], "Retryable");
        }
        other => panic!("rollback-undo-deploy.json undoes a deploy: {other:?}"),
    }
    // Not a state of the state machine: the order the AWS health pass hands the function.
    match parse_payload(&load("steps/rollback-requested.json")).unwrap() {
        RollbackRequest::RequestedRollback(order) => {
            assert_eq!(order.actor, "selfbuild:health");
            let rollback: RollbackRequest = parse_payload(&load("steps/rollback.json")).unwrap();
            let RollbackRequest::Rollback { item } = rollback else {
                unreachable!("checked above")
            };
            assert_eq!(order.improvement_id, item.improvement_id());
        }
        other => panic!("rollback-requested.json is a requested rollback: {other:?}"),
    }
}
