//! Secrets Manager JSON secrets on moto, with the per-container cache.

use std::time::Duration;

use selfbuild_aws::secrets::{SecretError, SecretsManagerSecrets, field};
use selfbuild_core::ports::{KeySource, KeySourceError};
use selfbuild_tests::moto::MotoServer;

#[tokio::test]
async fn json_secrets_are_read_cached_and_checked() {
    let moto = MotoServer::shared();
    let sdk = moto.sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    client
        .create_secret()
        .name("selfbuild/llm-fallback")
        .secret_string(r#"{"base_url":"http://127.0.0.1:9/v1","api_key":"k1","model":"gpt-4.1"}"#)
        .send()
        .await
        .unwrap();
    client
        .create_secret()
        .name("selfbuild/not-json")
        .secret_string("plain text")
        .send()
        .await
        .unwrap();

    let secrets = SecretsManagerSecrets::new(&sdk, Duration::from_secs(300));
    let value = secrets.json("selfbuild/llm-fallback").await.unwrap();
    assert_eq!(
        field("selfbuild/llm-fallback", &value, "api_key").unwrap(),
        "k1"
    );
    let err = field("selfbuild/llm-fallback", &value, "missing").unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");

    // Cached for the refresh interval: a rotation is seen only after it.
    client
        .put_secret_value()
        .secret_id("selfbuild/llm-fallback")
        .secret_string(r#"{"base_url":"http://127.0.0.1:9/v1","api_key":"k2","model":"gpt-4.1"}"#)
        .send()
        .await
        .unwrap();
    let cached = secrets.json("selfbuild/llm-fallback").await.unwrap();
    assert_eq!(cached["api_key"], "k1");
    let fresh = SecretsManagerSecrets::new(&sdk, Duration::ZERO)
        .json("selfbuild/llm-fallback")
        .await
        .unwrap();
    assert_eq!(fresh["api_key"], "k2");

    let err = secrets.json("selfbuild/not-json").await.unwrap_err();
    assert!(
        matches!(err, SecretError::Invalid { .. }) && err.to_string().contains("not JSON"),
        "{err}"
    );
    let err = secrets.json("selfbuild/no-such-secret").await.unwrap_err();
    assert!(
        err.to_string().contains("selfbuild/no-such-secret"),
        "{err}"
    );
}

#[tokio::test]
async fn mcp_api_keys_are_read_hashed_from_a_secret_and_refreshed() {
    use selfbuild_aws::secrets::SecretsManagerKeys;
    use selfbuild_core::apikeys::key_digest_hex;

    let moto = MotoServer::shared();
    let sdk = moto.sdk_config().await;
    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    let list = |id: &str, key: &str| {
        serde_json::json!({"keys": [{"id": id, "sha256": key_digest_hex(key), "tenant": "acme", "scopes": ["read"]}],
                           "generated": "placeholder from the template"})
        .to_string()
    };
    client
        .create_secret()
        .name("selfbuild/api-keys")
        .secret_string(list("agent-1", "key-one"))
        .send()
        .await
        .unwrap();
    client
        .create_secret()
        .name("selfbuild/api-keys-plain")
        .secret_string(r#"[{"id": "a", "key": "plain-text", "tenant": "*", "scopes": ["admin"]}]"#)
        .send()
        .await
        .unwrap();

    let keys = SecretsManagerKeys::new(&sdk, "selfbuild/api-keys", Duration::from_secs(300));
    let set = keys.keys().await.unwrap();
    let key = set
        .authenticate("key-one")
        .expect("the stored digest matches");
    assert_eq!(key.id, "agent-1");
    assert!(set.authenticate("key-two").is_none());

    // Rotation: a container sees the new list after its refresh interval.
    client
        .put_secret_value()
        .secret_id("selfbuild/api-keys")
        .secret_string(list("agent-2", "key-two"))
        .send()
        .await
        .unwrap();
    assert!(
        keys.keys().await.unwrap().authenticate("key-two").is_none(),
        "cached"
    );
    let fresh = SecretsManagerKeys::new(&sdk, "selfbuild/api-keys", Duration::ZERO);
    assert!(
        fresh
            .keys()
            .await
            .unwrap()
            .authenticate("key-two")
            .is_some()
    );

    let err = SecretsManagerKeys::new(&sdk, "selfbuild/api-keys-plain", Duration::ZERO)
        .keys()
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeySourceError::Invalid(_))
            && err.to_string().contains("selfbuild/api-keys-plain"),
        "{err}"
    );
    let err = SecretsManagerKeys::new(&sdk, "selfbuild/no-keys", Duration::ZERO)
        .keys()
        .await
        .unwrap_err();
    assert!(err.to_string().contains("selfbuild/no-keys"), "{err}");
}
