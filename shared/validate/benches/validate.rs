//! Time to validate a 1,000-line patch in each language: the diff parsed and applied, the
//! old file parsed and the new one from its tree, every rule run (wall p50, p95, p99). One thread, in process; the patch adds 1,000
//! lines of handler-like code to a file of about 100.
//!
//! `cargo bench -p selfbuild-validate --bench validate` prints a Markdown table
//! (`scripts/bench-validate` writes it to bench/results/validate.md).

use std::time::{Duration, Instant};

use selfbuild_validate::{FileInput, Language, PatchContext, Settings, validate_file};

const WARMUP: usize = 5;
/// Timed runs per language (`VALIDATE_BENCH_RUNS` overrides, e.g. for a profiler).
fn runs() -> usize {
    std::env::var("VALIDATE_BENCH_RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(60)
}

/// 20 lines of Python: a paginated, tenant-keyed query with logging and a bound SQL query.
fn python(i: usize) -> String {
    format!(
        r#"def orders_page_{i}(tenant_id, cursor, limit=50):
    """Orders of one tenant, page {i}, with their totals."""
    started = time.monotonic()
    result = _table.query(
        KeyConditionExpression=Key("tenant_id").eq(tenant_id),
        Limit=limit,
    )
    items = result.get("Items", [])
    if not items:
        logger.info("no orders for %s on page %d", tenant_id, {i})
        return []
    for item in items:
        item["total"] = round(float(item.get("total", 0)), 2)
    cursor.execute("SELECT sku FROM skus WHERE tenant_id = %s AND page = %s", (tenant_id, {i}))
    skus = {{row[0] for row in cursor.fetchall()}}
    items = [item for item in items if item.get("sku") in skus]
    elapsed_ms = (time.monotonic() - started) * 1000
    logger.info("page %d took %.1f ms", {i}, elapsed_ms)
    return items

"#
    )
}

/// 20 lines of JavaScript: a DynamoDB query with retries and logging.
fn javascript(i: usize) -> String {
    format!(
        r#"async function ordersPage{i}(tenantId, limit) {{
  const started = Date.now();
  let out;
  for (let attempt = 1; attempt <= 3; attempt += 1) {{
    try {{
      out = await client.send(new QueryCommand({{
        TableName: TABLE,
        KeyConditionExpression: 'tenant_id = :t',
        ExpressionAttributeValues: {{ ':t': tenantId }},
        Limit: limit,
      }}));
      break;
    }} catch (err) {{
      if (attempt === 3) throw err;
      await new Promise((resolve) => setTimeout(resolve, 50 * attempt));
    }}
  }}
  console.log(JSON.stringify({{ msg: 'page', page: {i}, ms: Date.now() - started }}));
  return (out.Items || []).map((item) => ({{ ...item, page: {i} }}));
}}
"#
    )
}

/// 20 lines of TypeScript: a typed partner call with a timeout, and a bound SQL query.
fn typescript(i: usize) -> String {
    format!(
        r#"export async function quotes{i}(skus: string[], day: string): Promise<Quote[]> {{
  const res = await fetch(PARTNER_URL, {{
    method: 'POST',
    signal: AbortSignal.timeout(3000),
    headers: {{ 'Content-Type': 'application/json' }},
    body: JSON.stringify({{ skus, page: {i} }}),
  }});
  if (!res.ok) {{
    throw new Error(`partner answered ${{res.status}} on page {i}`);
  }}
  const quotes = (await res.json()) as Quote[];
  const known = await pool.query(
    'SELECT sku FROM skus WHERE day = $1 AND page = $2',
    [day, {i}],
  );
  const allowed = new Set(known.rows.map((r: {{ sku: string }}) => r.sku));
  const kept = quotes.filter((q) => allowed.has(q.sku));
  console.log(JSON.stringify({{ msg: 'quotes', page: {i}, kept: kept.length }}));
  return kept;
}}
"#
    )
}

/// 20 lines of Rust: a tenant-keyed query with a bound SQL query and tracing.
fn rust(i: usize) -> String {
    format!(
        r#"pub async fn orders_page_{i}(client: &Client, pool: &PgPool, table: &str, tenant_id: &str) -> Result<Vec<Value>, Error> {{
    let started = std::time::Instant::now();
    let out = client
        .query()
        .table_name(table)
        .key_condition_expression("tenant_id = :t")
        .expression_attribute_values(":t", AttributeValue::S(tenant_id.to_owned()))
        .send()
        .await?;
    let rows = sqlx::query("SELECT sku FROM skus WHERE tenant_id = $1 AND page = $2")
        .bind(tenant_id)
        .bind({i}_i32)
        .fetch_all(pool)
        .await?;
    let skus: Vec<String> = rows.iter().map(|r| r.get("sku")).collect();
    let items: Vec<Value> = out.items().iter().map(|item| json!(format!("{{item:?}}"))).collect();
    tracing::info!(page = {i}, skus = skus.len(), ms = started.elapsed().as_millis() as u64, "orders page");
    Ok(items)
}}

"#
    )
}

/// Writes the `i`th 20-line function of a language.
type Generator = fn(usize) -> String;

fn header(language: Language) -> &'static str {
    match language {
        Language::Python => {
            "import logging\nimport time\n\nimport boto3\nfrom boto3.dynamodb.conditions import Key\n\nlogger = logging.getLogger()\n_table = boto3.resource(\"dynamodb\").Table(\"orders\")\n\n\n"
        }
        Language::JavaScript => {
            "'use strict';\nconst { DynamoDBClient } = require('@aws-sdk/client-dynamodb');\nconst { DynamoDBDocumentClient, QueryCommand } = require('@aws-sdk/lib-dynamodb');\n\nconst client = DynamoDBDocumentClient.from(new DynamoDBClient({}));\nconst TABLE = process.env.TABLE_NAME;\n\n"
        }
        Language::TypeScript => {
            "import { Pool } from 'pg';\n\nconst pool = new Pool({ max: 2 });\nconst PARTNER_URL = 'https://api.partner.example.com/v2/quotes';\n\ninterface Quote {\n  sku: string;\n  price: number;\n}\n\n"
        }
        _ => {
            "use aws_sdk_dynamodb::Client;\nuse aws_sdk_dynamodb::types::AttributeValue;\nuse lambda_runtime::Error;\nuse serde_json::{Value, json};\nuse sqlx::{PgPool, Row};\n\n"
        }
    }
}

/// Nanoseconds this thread has run on a CPU (Linux `schedstat`); waiting for a core under
/// load is not counted, unlike wall-clock time.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() {
    let settings = Settings::from_lookup(|name| {
        (name == "EGRESS_ALLOWED_HOSTS").then(|| "*.partner.example.com".to_owned())
    })
    .expect("settings");
    println!(
        "| language | file lines before → after | lines added | wall p50 ms | wall p95 ms | wall p99 ms | CPU mean ms | of which tree-sitter parses the new file, wall p50 ms | findings |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let cases: [(Language, &str, Generator); 4] = [
        (Language::Python, "src/orders.py", python),
        (Language::JavaScript, "src/orders.js", javascript),
        (Language::TypeScript, "src/quotes.ts", typescript),
        (Language::Rust, "src/orders.rs", rust),
    ];
    for (language, path, function) in cases {
        let mut before = header(language).to_owned();
        for i in 0..5 {
            before.push_str(&function(i));
        }
        let mut after = before.clone();
        for i in 5..55 {
            after.push_str(&function(i));
        }
        let patch = diffy::create_patch(&before, &after).to_string();
        let diff = patch
            .replacen("--- original", &format!("--- a/{path}"), 1)
            .replacen("+++ modified", &format!("+++ b/{path}"), 1);
        let added = diff
            .lines()
            .filter(|l| l.starts_with('+') && !l.starts_with("+++"))
            .count();
        let input = FileInput {
            path,
            language: Some(language),
            base: Some(&before),
            diff: &diff,
        };
        let context = PatchContext::default();
        let mut times = Vec::with_capacity(runs());
        let mut findings = 0;
        let mut cpu_start = None;
        for run in 0..WARMUP + runs() {
            if run == WARMUP {
                cpu_start = cpu_ns();
            }
            let start = Instant::now();
            let report = validate_file(&input, &context, &settings).expect("validates");
            let took = start.elapsed();
            findings = report.findings.len();
            if run >= WARMUP {
                times.push(took);
            }
        }
        let cpu_ms = cpu_start
            .zip(cpu_ns())
            .map(|(a, b)| format!("{:.2}", (b - a) as f64 / runs() as f64 / 1e6))
            .unwrap_or_else(|| "n/a".to_owned());
        times.sort();
        let grammar = match language {
            Language::Python => tree_sitter_python::LANGUAGE.into(),
            Language::JavaScript => tree_sitter_javascript::LANGUAGE.into(),
            Language::TypeScript => tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(),
            _ => tree_sitter_rust::LANGUAGE.into(),
        };
        let mut parser = tree_sitter::Parser::new();
        parser.set_language(&grammar).expect("grammar");
        let mut parses: Vec<Duration> = (0..runs())
            .map(|_| {
                let start = Instant::now();
                let tree = parser.parse(&after, None);
                let took = start.elapsed();
                drop(tree);
                took
            })
            .collect();
        parses.sort();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {} | {} → {} | {added} | {:.2} | {:.2} | {:.2} | {cpu_ms} | {:.2} | {findings} |",
            language.as_str(),
            before.lines().count(),
            after.lines().count(),
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.95)),
            ms(percentile(&times, 0.99)),
            ms(percentile(&parses, 0.5)),
        );
    }
}
