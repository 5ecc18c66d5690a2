"""Where delivery messages go: one routing key and one work queue per route.

The broker carries only references (``{"delivery_id": ..., "package_id": ...}``, or for
a new package's local recipients together ``{"package_id": ..., "deliveries": [...]}``);
workers read the package bytes from the blob store.
"""

from __future__ import annotations

from typing import Final

ROUTES: Final = ("local", "upstream", "push")


def routing_key(route: str) -> str:
    return f"delivery.{route}"


def queue_name(prefix: str, route: str) -> str:
    return f"{prefix}.{route}"


def bindings(prefix: str) -> dict[str, str]:
    """queue name -> binding pattern (topic exchange rules)."""
    return {queue_name(prefix, r): routing_key(r) for r in ROUTES}


def topic_matches(pattern: str, key: str) -> bool:
    """AMQP topic matching: ``*`` is one word, ``#`` zero or more words."""
    p, k = pattern.split("."), key.split(".")

    def match(i: int, j: int) -> bool:
        if i == len(p):
            return j == len(k)
        if p[i] == "#":
            return any(match(i + 1, jj) for jj in range(j, len(k) + 1))
        return j < len(k) and (p[i] == "*" or p[i] == k[j]) and match(i + 1, j + 1)

    return match(0, 0)
