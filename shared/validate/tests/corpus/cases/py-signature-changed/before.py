"""Orders API: returns a tenant's orders from DynamoDB."""
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
