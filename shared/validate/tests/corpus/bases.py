"""Base files the corpus cases patch: realistic Lambda handlers in each language."""

PY_ORDERS = '''"""Orders API: returns a tenant's orders from DynamoDB."""
import json
import logging
import os
import time

import boto3
from boto3.dynamodb.conditions import Key

logger = logging.getLogger()
logger.setLevel(logging.INFO)

TABLE_NAME = os.environ["TABLE_NAME"]
_dynamodb = boto3.resource("dynamodb")
_table = _dynamodb.Table(TABLE_NAME)


def _response(status, body):
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(body, default=str),
    }


def list_orders(tenant_id, limit=50):
    result = _table.query(
        KeyConditionExpression=Key("tenant_id").eq(tenant_id),
        Limit=limit,
    )
    return result.get("Items", [])


def handler(event, context):
    started = time.monotonic()
    tenant_id = event["requestContext"]["authorizer"]["tenant_id"]
    params = event.get("queryStringParameters") or {}
    limit = int(params.get("limit", "50"))
    orders = list_orders(tenant_id, limit)
    elapsed_ms = (time.monotonic() - started) * 1000
    logger.info("listed %d orders in %.1f ms", len(orders), elapsed_ms)
    return _response(200, {"orders": orders})
'''

PY_REPORTS = '''"""Nightly report: reads CSV uploads from S3 and loads them into Postgres."""
import csv
import io
import json
import logging
import os

import boto3
import psycopg2

logger = logging.getLogger(__name__)
s3 = boto3.client("s3")
secrets = boto3.client("secretsmanager")


def _connect():
    secret = secrets.get_secret_value(SecretId=os.environ["DB_SECRET_ARN"])
    creds = json.loads(secret["SecretString"])
    return psycopg2.connect(
        host=creds["host"],
        user=creds["username"],
        password=creds["password"],
        dbname="reports",
    )


def load_rows(conn, rows):
    with conn.cursor() as cur:
        for row in rows:
            cur.execute(
                "INSERT INTO sales (region, sku, amount) VALUES (%s, %s, %s)",
                (row["region"], row["sku"], row["amount"]),
            )
    conn.commit()


def lambda_handler(event, context):
    record = event["Records"][0]["s3"]
    bucket = record["bucket"]["name"]
    key = record["object"]["key"]
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    rows = list(csv.DictReader(io.StringIO(body)))
    conn = _connect()
    try:
        load_rows(conn, rows)
    finally:
        conn.close()
    logger.info("loaded %d rows from s3://%s/%s", len(rows), bucket, key)
    return {"loaded": len(rows)}
'''

PY_WEBHOOK = '''"""Forwards order events to the partner's webhook."""
import json
import logging
import os
import urllib.request

logger = logging.getLogger(__name__)

WEBHOOK_URL = "https://hooks.partner.example.com/v1/orders"
TIMEOUT_SECONDS = 5


def _post(payload):
    request = urllib.request.Request(
        WEBHOOK_URL,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as resp:
        return resp.status


def handler(event, context):
    sent = 0
    for record in event.get("Records", []):
        order = json.loads(record["body"])
        status = _post({"order_id": order["order_id"], "total": order["total"]})
        logger.info("forwarded order %s: HTTP %s", order["order_id"], status)
        sent += 1
    return {"sent": sent}
'''

JS_ORDERS = """'use strict';
const { DynamoDBClient } = require('@aws-sdk/client-dynamodb');
const { DynamoDBDocumentClient, QueryCommand } = require('@aws-sdk/lib-dynamodb');

const client = DynamoDBDocumentClient.from(new DynamoDBClient({}));
const TABLE = process.env.TABLE_NAME;

function response(statusCode, body) {
  return {
    statusCode,
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  };
}

async function listOrders(tenantId, limit) {
  const out = await client.send(new QueryCommand({
    TableName: TABLE,
    KeyConditionExpression: 'tenant_id = :t',
    ExpressionAttributeValues: { ':t': tenantId },
    Limit: limit,
  }));
  return out.Items || [];
}

exports.handler = async (event, context) => {
  const tenantId = event.requestContext.authorizer.tenantId;
  const limit = Number((event.queryStringParameters || {}).limit || 50);
  const orders = await listOrders(tenantId, limit);
  console.log(JSON.stringify({ msg: 'listed orders', count: orders.length }));
  return response(200, { orders });
};

module.exports.listOrders = listOrders;
"""

JS_THUMBS = """'use strict';
const { S3Client, GetObjectCommand, PutObjectCommand } = require('@aws-sdk/client-s3');
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const s3 = new S3Client({});
const WORK_DIR = '/tmp/thumbs';

async function download(bucket, key, target) {
  const out = await s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
  const bytes = await out.Body.transformToByteArray();
  fs.writeFileSync(target, bytes);
}

function resize(source, target) {
  const result = spawnSync('/opt/bin/convert', [source, '-resize', '256x256', target]);
  if (result.status !== 0) {
    throw new Error(`convert failed: ${result.stderr}`);
  }
}

exports.handler = async (event) => {
  fs.mkdirSync(WORK_DIR, { recursive: true });
  const record = event.Records[0].s3;
  const key = decodeURIComponent(record.object.key.replace(/\\+/g, ' '));
  const source = path.join(WORK_DIR, path.basename(key));
  const target = `${source}.thumb.jpg`;
  await download(record.bucket.name, key, source);
  resize(source, target);
  await s3.send(new PutObjectCommand({
    Bucket: process.env.THUMB_BUCKET,
    Key: `thumbs/${key}`,
    Body: fs.readFileSync(target),
  }));
  return { key };
};
"""

TS_API = """import type { APIGatewayProxyEventV2, APIGatewayProxyResultV2 } from 'aws-lambda';
import { S3Client, GetObjectCommand } from '@aws-sdk/client-s3';

const s3 = new S3Client({});
const BUCKET = process.env.CONFIG_BUCKET ?? 'configs';
const PARTNER_URL = 'https://api.partner.example.com/v2/quotes';

interface Quote {
  sku: string;
  price: number;
}

async function loadConfig(tenantId: string): Promise<Record<string, unknown>> {
  const out = await s3.send(new GetObjectCommand({ Bucket: BUCKET, Key: `${tenantId}/config.json` }));
  const text = await out.Body!.transformToString();
  return JSON.parse(text);
}

export async function fetchQuotes(skus: string[]): Promise<Quote[]> {
  const res = await fetch(PARTNER_URL, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ skus }),
  });
  if (!res.ok) {
    throw new Error(`partner answered ${res.status}`);
  }
  return (await res.json()) as Quote[];
}

export const handler = async (event: APIGatewayProxyEventV2): Promise<APIGatewayProxyResultV2> => {
  const tenantId = event.requestContext.authorizer?.lambda?.tenantId as string;
  const config = await loadConfig(tenantId);
  const skus = (event.queryStringParameters?.skus ?? '').split(',').filter(Boolean);
  const quotes = await fetchQuotes(skus);
  return { statusCode: 200, body: JSON.stringify({ quotes, currency: config.currency }) };
};
"""

TS_REPORTS = """import { Pool } from 'pg';
import type { ScheduledEvent } from 'aws-lambda';

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 2 });

export interface DailyTotal {
  region: string;
  total: number;
}

export async function dailyTotals(day: string): Promise<DailyTotal[]> {
  const result = await pool.query(
    'SELECT region, SUM(amount) AS total FROM sales WHERE day = $1 GROUP BY region',
    [day],
  );
  return result.rows as DailyTotal[];
}

export async function handler(event: ScheduledEvent): Promise<{ regions: number }> {
  const day = event.time.slice(0, 10);
  const totals = await dailyTotals(day);
  console.log(JSON.stringify({ msg: 'daily totals', day, regions: totals.length }));
  return { regions: totals.length };
}
"""

RS_MAIN = """use aws_sdk_dynamodb::Client;
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
"""

RS_DB = """//! Sales queries for the reports function.

use sqlx::PgPool;
use sqlx::Row;

/// One region's total for a day.
pub struct DailyTotal {
    pub region: String,
    pub total: i64,
}

/// Totals per region for `day` (YYYY-MM-DD).
pub async fn daily_totals(pool: &PgPool, day: &str) -> Result<Vec<DailyTotal>, sqlx::Error> {
    let rows = sqlx::query("SELECT region, SUM(amount) AS total FROM sales WHERE day = $1 GROUP BY region")
        .bind(day)
        .fetch_all(pool)
        .await?;
    Ok(rows
        .iter()
        .map(|r| DailyTotal { region: r.get("region"), total: r.get("total") })
        .collect())
}

/// Stores one uploaded report file under the work directory.
pub fn store_upload(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)
}
"""
