"""Pub/Sub messages between the functions: JSON bodies with a ``type`` attribute."""

from __future__ import annotations

import base64
import json
import logging

from shared import clients, settings
from shared.errors import PermanentError, TransientError

logger = logging.getLogger(__name__)


def publish(topic: str, messages: list[tuple[str, dict]]) -> list[str]:
    """Publish ``(type, body)`` messages and wait until Pub/Sub has them all.

    Raises TransientError when Pub/Sub does not confirm within the configured
    timeout, so the caller can answer 5xx and have the sender retry.
    """
    if not messages:
        return []
    publisher = clients.publisher()
    path = clients.topic_path(topic)
    futures = [
        publisher.publish(
            path,
            json.dumps(body, default=str, separators=(",", ":")).encode(),
            type=kind,
        )
        for kind, body in messages
    ]
    timeout = settings.get().publish_timeout_s
    try:
        return [future.result(timeout=timeout) for future in futures]
    except Exception as exc:  # the client raises many kinds; all mean "not sent"
        msg = f"Pub/Sub did not accept messages for {topic}: {exc}"
        raise TransientError(msg) from exc


def decode(cloud_event) -> tuple[str, dict]:
    """(type, body) of a Pub/Sub CloudEvent; PermanentError when unreadable."""
    message = (cloud_event.data or {}).get("message") or {}
    kind = (message.get("attributes") or {}).get("type", "")
    try:
        body = json.loads(base64.b64decode(message.get("data") or ""))
    except ValueError as exc:
        msg = f"Expected a JSON message body, found bad data: {exc}"
        raise PermanentError(msg) from None
    if not isinstance(body, dict):
        raise PermanentError("Expected a JSON object as the message body.")
    return kind, body
