"""Operator command ``replay``: bring dead letters back to their topic.

A message that failed every delivery attempt waits on the pull subscription
``<topic>-dead-letter``. ``replay --topic call-events`` pulls those messages,
publishes each again to the topic with its own data and attributes, and acks
it only once Pub/Sub has the copy, so a crash in between leaves it to replay
again. Replaying is safe to repeat: the functions behind the topics are
idempotent (the stitch ledger and BigQuery insert ids, the GA4 ledger).

Exit code 0 when every pulled message went back (also when there were none),
1 when a publish failed.
"""

from __future__ import annotations

import argparse
import json
import sys

from shared import clients, settings

# Pub/Sub adds these to a dead letter; the original message never had them.
DEAD_LETTER_PREFIX = "CloudPubSubDeadLetterSource"
# Messages pulled per request; Pub/Sub caps a pull at 1,000.
PULL_BATCH = 100
# An empty pull waits this long for messages before the replay stops.
PULL_TIMEOUT_S = 10.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    replay = subparsers.add_parser(
        "replay",
        help="republish dead-lettered messages to their topic",
        description=(
            "Pull the messages waiting on TOPIC-dead-letter and publish each again "
            "to TOPIC with the same data and attributes, then ack it. Prints one "
            "line per message (its id, type and call id; never its body)."
        ),
    )
    replay.add_argument("--topic", required=True, help="the topic, e.g. call-events")
    replay.add_argument(
        "--max", type=int, default=1000, metavar="N",
        help="replay at most N messages (default: 1000)",
    )
    replay.set_defaults(func=run)


def _subscriber():
    from google.cloud import pubsub_v1

    return pubsub_v1.SubscriberClient()


def _pull(subscriber, subscription: str, count: int) -> list:
    from google.api_core import exceptions

    try:
        resp = subscriber.pull(
            request={"subscription": subscription, "max_messages": count},
            timeout=PULL_TIMEOUT_S,
        )
    except exceptions.DeadlineExceeded:
        return []
    return list(resp.received_messages)


def _call_id(data: bytes) -> str:
    """The call id in a message body, for the operator's line; "-" if none."""
    try:
        body = json.loads(data)
    except ValueError:
        return "-"
    value = body.get("call_id") if isinstance(body, dict) else None
    return value if isinstance(value, str) else "-"


def replay(topic: str, limit: int, out=None) -> tuple[int, int]:
    """Replay up to ``limit`` dead letters of ``topic``; (replayed, failed)."""
    out = out or sys.stdout
    conf = settings.get()
    subscriber = _subscriber()
    publisher = clients.publisher()
    subscription = subscriber.subscription_path(conf.project, f"{topic}-dead-letter")
    topic_path = clients.topic_path(topic)

    replayed = failed = 0
    while replayed + failed < limit:
        received = _pull(subscriber, subscription,
                         min(PULL_BATCH, limit - replayed - failed))
        if not received:
            break
        acks = []
        for item in received:
            message = item.message
            attributes = {k: v for k, v in message.attributes.items()
                          if not k.startswith(DEAD_LETTER_PREFIX)}
            kind = attributes.get("type", "-")
            try:
                publisher.publish(topic_path, message.data, **attributes).result(
                    timeout=conf.publish_timeout_s)
            except Exception as exc:  # any failure means "not sent": keep it
                failed += 1
                print(f"failed   {message.message_id} {kind} "
                      f"call {_call_id(message.data)}: {type(exc).__name__}",
                      file=out)
                continue
            acks.append(item.ack_id)
            replayed += 1
            print(f"replayed {message.message_id} {kind} "
                  f"call {_call_id(message.data)} -> {topic}", file=out)
        if acks:
            subscriber.acknowledge(request={"subscription": subscription,
                                            "ack_ids": acks})
    print(f"{replayed} message(s) replayed from {topic}-dead-letter to {topic}, "
          f"{failed} failed.", file=out)
    return replayed, failed


def run(args: argparse.Namespace) -> int:
    replayed, failed = replay(args.topic, args.max)
    return 1 if failed else 0
