"""Forwards order events to the partner's webhook."""
import json
import logging
import os
import time
import urllib.error
import urllib.request

logger = logging.getLogger(__name__)

WEBHOOK_URL = "https://hooks.partner.example.com/v1/orders"
TIMEOUT_SECONDS = 5
MAX_ATTEMPTS = 3


def _post(payload):
    request = urllib.request.Request(
        WEBHOOK_URL,
        data=json.dumps(payload).encode("utf-8"),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as resp:
        return resp.status


def _post_with_retry(payload):
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return _post(payload)
        except urllib.error.URLError as exc:
            if attempt == MAX_ATTEMPTS:
                raise
            delay = 0.2 * 2 ** attempt
            logger.warning("webhook attempt %d failed (%s); retrying in %.1f s", attempt, exc, delay)
            time.sleep(delay)
    return None


def handler(event, context):
    sent = 0
    for record in event.get("Records", []):
        order = json.loads(record["body"])
        status = _post_with_retry({"order_id": order["order_id"], "total": order["total"]})
        logger.info("forwarded order %s: HTTP %s", order["order_id"], status)
        sent += 1
    return {"sent": sent}
