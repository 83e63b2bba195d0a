//! The proxy's faults as the AWS SDK for Rust reads them: each error parses to the modeled
//! error (or code) the real service gives, throttles and 500s are retried by the SDK's
//! standard retry (3 attempts, seen in the proxy's log), a client error is not, and a call
//! whose answer was lost has taken effect.

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::AttributeValue;
use selfbuild_tests::fault_proxy::{Fault, FaultProxy, Lost, Rule};
use selfbuild_tests::moto::MotoServer;

fn attempts(proxy: &FaultProxy, operation: &str) -> Vec<Option<Fault>> {
    proxy.calls_of(operation).iter().map(|c| c.fault).collect()
}

#[tokio::test]
async fn lambda_throttles_and_service_errors_read_as_modeled_and_are_retried() {
    let moto = MotoServer::shared();
    let proxy = FaultProxy::start(&moto, 1).await;
    let lambda = proxy.lambda().await;

    proxy.add(Rule::on("GetAlias").fault(Fault::Throttle));
    let err = lambda
        .get_alias()
        .function_name("nobody")
        .name("live")
        .send()
        .await
        .unwrap_err();
    let service = err.as_service_error().unwrap();
    assert!(service.is_too_many_requests_exception(), "{service:?}");
    assert_eq!(service.code(), Some("TooManyRequestsException"));
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 429);
    assert_eq!(
        attempts(&proxy, "GetAlias"),
        vec![Some(Fault::Throttle); 3],
        "{}",
        proxy.log()
    );

    proxy.clear();
    proxy.add(Rule::on("ListVersionsByFunction").fault(Fault::ServerError));
    let err = lambda
        .list_versions_by_function()
        .function_name("nobody")
        .send()
        .await
        .unwrap_err();
    assert!(err.as_service_error().unwrap().is_service_exception());
    assert_eq!(attempts(&proxy, "ListVersionsByFunction").len(), 3);

    // Moto's own 404 is a client error: one attempt.
    proxy.clear();
    let err = lambda
        .get_function_configuration()
        .function_name("nobody")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_resource_not_found_exception()
    );
    let calls = proxy.calls_of("GetFunctionConfiguration");
    assert_eq!(calls.len(), 1, "{}", proxy.log());
    assert_eq!(calls[0].upstream_status, Some(404));

    // A throttle then an answer: the SDK's second attempt succeeds.
    proxy.add(Rule::on("ListFunctions").nth(&[1]).fault(Fault::Throttle));
    lambda.list_functions().send().await.unwrap();
    assert_eq!(
        attempts(&proxy, "ListFunctions"),
        [Some(Fault::Throttle), None]
    );
}

#[tokio::test]
async fn dynamodb_throttles_and_500s_read_as_modeled_and_lost_answers_took_effect() {
    let moto = MotoServer::shared();
    let proxy = FaultProxy::start(&moto, 2).await;
    let direct = aws_sdk_dynamodb::Client::new(&moto.sdk_config().await);
    selfbuild_aws::DynamoStore::from_client(direct.clone(), "faults-sdk")
        .create_table()
        .await
        .unwrap();
    let ddb = proxy.dynamodb().await;
    let get = || {
        ddb.get_item()
            .table_name("faults-sdk")
            .key("pk", AttributeValue::S("a".into()))
            .key("sk", AttributeValue::S("b".into()))
            .send()
    };

    for (fault, check) in [
        (Fault::Throttle, "ProvisionedThroughputExceededException"),
        (Fault::ThrottleAlt, "ThrottlingException"),
        (Fault::ServerError, "InternalServerError"),
    ] {
        proxy.clear();
        proxy.take_calls();
        proxy.add(Rule::on("GetItem").fault(fault));
        let err = get().await.unwrap_err();
        let service = err.as_service_error().unwrap();
        assert_eq!(service.code(), Some(check), "{service:?}");
        match fault {
            Fault::Throttle => assert!(service.is_provisioned_throughput_exceeded_exception()),
            Fault::ThrottleAlt => assert!(service.is_throttling_exception()),
            _ => assert!(service.is_internal_server_error()),
        }
        assert_eq!(attempts(&proxy, "GetItem"), vec![Some(fault); 3]);
    }

    // A dropped connection is retried too; then the call goes through.
    proxy.clear();
    proxy.take_calls();
    proxy.add(
        Rule::on("GetItem")
            .nth(&[proxy.seen("GetItem") + 1])
            .fault(Fault::Drop),
    );
    get().await.unwrap();
    assert_eq!(
        attempts(&proxy, "GetItem"),
        [Some(Fault::Drop), None],
        "{}",
        proxy.log()
    );

    // The first PutItem reaches moto but its answer is lost: the retry's condition fails on
    // the item the lost attempt wrote.
    proxy.clear();
    proxy.take_calls();
    proxy.add(
        Rule::on("PutItem")
            .nth(&[1])
            .fault(Fault::Lost(Lost::ServerError)),
    );
    let err = ddb
        .put_item()
        .table_name("faults-sdk")
        .item("pk", AttributeValue::S("x".into()))
        .item("sk", AttributeValue::S("y".into()))
        .condition_expression("attribute_not_exists(pk)")
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_conditional_check_failed_exception()
    );
    let calls = proxy.calls_of("PutItem");
    assert_eq!(
        calls
            .iter()
            .map(|c| (c.upstream_status, c.status))
            .collect::<Vec<_>>(),
        [(Some(200), Some(500)), (Some(400), Some(400))],
        "{}",
        proxy.log()
    );
}

#[tokio::test]
async fn query_and_json_services_throttle_in_their_own_shapes() {
    let moto = MotoServer::shared();
    let proxy = FaultProxy::start(&moto, 3).await;
    let (cloudwatch, _) = proxy.cloudwatch().await;
    proxy.add(Rule::on("DescribeAlarms").fault(Fault::Throttle));
    let err = cloudwatch.describe_alarms().send().await.unwrap_err();
    assert_eq!(err.as_service_error().unwrap().code(), Some("Throttling"));
    assert_eq!(
        attempts(&proxy, "DescribeAlarms").len(),
        3,
        "{}",
        proxy.log()
    );

    let sfn = proxy.sfn().await;
    proxy.add(Rule::on("ListStateMachines").fault(Fault::ServerError));
    let err = sfn.list_state_machines().send().await.unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().code(),
        Some("InternalFailure")
    );
    assert_eq!(attempts(&proxy, "ListStateMachines").len(), 3);
    proxy.clear();
    proxy.add(Rule::on("ListStateMachines").fault(Fault::Throttle));
    let err = sfn.list_state_machines().send().await.unwrap_err();
    assert_eq!(
        err.as_service_error().unwrap().code(),
        Some("ThrottlingException")
    );
    assert_eq!(attempts(&proxy, "ListStateMachines").len(), 6);
    // A delay only delays.
    proxy.clear();
    proxy.add(
        Rule::on("ListStateMachines").fault(Fault::Delay(std::time::Duration::from_millis(50))),
    );
    sfn.list_state_machines().send().await.unwrap();
    assert_eq!(
        proxy.calls_of("ListStateMachines").last().unwrap().status,
        Some(200)
    );
}
