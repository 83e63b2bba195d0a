"""Forwards order events to the partner's webhook."""
import json
import logging
import os
import urllib.request

import requests

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
        status = requests.post(WEBHOOK_URL, json={"order_id": order["order_id"]}, timeout=5).status_code
        logger.info("forwarded order %s: HTTP %s", order["order_id"], status)
        sent += 1
    return {"sent": sent}
