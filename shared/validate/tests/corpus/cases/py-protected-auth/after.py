"""Token helpers."""
import hmac


def same(a, b):
    return hmac.compare_digest(a, b)
