//! The EventBridge Notifier on moto.

use selfbuild_aws::eventbridge::EventBridgeNotifier;
use selfbuild_core::ports::Notifier;
use selfbuild_tests::moto::MotoServer;

#[tokio::test]
async fn notifications_are_put_on_the_bus_and_a_missing_bus_is_an_error() {
    let moto = MotoServer::shared();
    let sdk = moto.sdk_config().await;
    let detail = serde_json::json!({"cycle_id": "c1", "action": "deployed"});
    EventBridgeNotifier::new(&sdk, "default")
        .notify("Improvement Deployed", &detail)
        .await
        .unwrap();
    let err = EventBridgeNotifier::new(&sdk, "no-such-bus")
        .notify("Improvement Deployed", &detail)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no-such-bus"), "{err}");
}
