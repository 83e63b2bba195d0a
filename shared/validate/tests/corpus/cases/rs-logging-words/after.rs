use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::AttributeValue;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::{Value, json};

pub async fn list_orders(client: &Client, table: &str, tenant_id: &str) -> Result<Vec<Value>, Error> {
    let out = client
        .query()
        .table_name(table)
        .key_condition_expression("tenant_id = :t")
        .expression_attribute_values(":t", AttributeValue::S(tenant_id.to_owned()))
        .send()
        .await?;
    Ok(out.items().iter().map(|item| json!(format!("{item:?}"))).collect())
}

async fn handler(client: &Client, table: &str, event: LambdaEvent<Value>) -> Result<Value, Error> {
    let tenant_id = event.payload["tenant_id"].as_str().unwrap_or_default();
    tracing::info!(tenant = %tenant_id, "password policy and token scopes unchanged");
    let orders = list_orders(client, table, tenant_id).await?;
    Ok(json!({ "orders": orders }))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt().json().init();
    let config = aws_config::load_from_env().await;
    let client = Client::new(&config);
    let table = std::env::var("TABLE_NAME")?;
    run(service_fn(|event| handler(&client, &table, event))).await
}
