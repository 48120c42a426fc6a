"""A stand-in for the call webhook: the canonical ``call-events`` messages.

Tests publish these to ``call-events`` as the webhook function would after a
provider reported a call, and read what the stitch function made of them
from BigQuery and from a pull subscription on ``calls-stitched``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
import warnings

from devstack.stack import PROJECT
from shared import events, settings
from shared.phones import mask, phone_hash

CALLER = "+79161234567"


def new_call_id() -> str:
    # BigQuery is not reset between tests: every call id is new.
    return f"call-{uuid.uuid4().hex[:16]}"


def completed(tracking_number: str | None, started_at: dt.datetime | None = None,
              caller: str | None = CALLER, site_id: str = "demo",
              **overrides) -> dict:
    """A ``call.completed`` body of an answered 42 s call."""
    call_id = overrides.pop("call_id", None) or new_call_id()
    started = started_at or dt.datetime.now(dt.UTC)
    return {
        "call_id": call_id,
        "site_id": site_id,
        "provider": "generic",
        "provider_call_id": f"p-{call_id}",
        "tracking_number": tracking_number,
        "caller": caller,
        "caller_hash": phone_hash(caller) if caller else None,
        "caller_mask": mask(caller) if caller else None,
        "started_at": started.isoformat(),
        "answered": True,
        "ring_s": 4,
        "talk_s": 42,
        "status": "answered",
        "recording_ref": None,
        "raw_ref": f"raw/{call_id}",
        "completed_at": (started + dt.timedelta(seconds=46)).isoformat(),
        **overrides,
    }


def recording(body: dict, ref: str) -> dict:
    """The ``call.recording`` body of a recording that came after the call."""
    keys = ("call_id", "site_id", "provider", "provider_call_id")
    return {**{k: body[k] for k in keys}, "recording_ref": ref}


def publish(body: dict, kind: str = "call.completed") -> None:
    events.publish(settings.get().topic_call_events, [(kind, body)])


class Subscription:
    """A pull subscription on a topic, created for a test module."""

    def __init__(self, topic: str) -> None:
        from google.cloud import pubsub_v1

        self.client = pubsub_v1.SubscriberClient()
        self.path = self.client.subscription_path(
            PROJECT, f"test-{topic}-{uuid.uuid4().hex[:8]}")
        self.client.create_subscription(request={
            "name": self.path, "topic": f"projects/{PROJECT}/topics/{topic}"})
        self.seen: list[tuple[str, dict]] = []

    def drain(self) -> list[tuple[str, dict]]:
        """Pull and ack whatever is waiting; returns everything seen so far."""
        with warnings.catch_warnings():
            # Deprecated, yet the only way to not wait when nothing is there.
            warnings.simplefilter("ignore", DeprecationWarning)
            resp = self.client.pull(request={"subscription": self.path,
                                             "max_messages": 100,
                                             "return_immediately": True},
                                    timeout=10)
        if resp.received_messages:
            self.client.acknowledge(request={
                "subscription": self.path,
                "ack_ids": [m.ack_id for m in resp.received_messages]})
        for item in resp.received_messages:
            self.seen.append((item.message.attributes.get("type", ""),
                              json.loads(item.message.data)))
        return self.seen

    def of_call(self, call_id: str) -> list[tuple[str, dict]]:
        return [(kind, body) for kind, body in self.drain()
                if body.get("call_id") == call_id]

    def delete(self) -> None:
        self.client.delete_subscription(request={"subscription": self.path})
