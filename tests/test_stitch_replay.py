"""Failures: retried by Pub/Sub, dead-lettered after five attempts, replayed by
the operator's ``replay`` command (ops/replay.py)."""

from __future__ import annotations

import argparse
import json
import warnings

from devstack.stack import MAX_DELIVERY_ATTEMPTS, PROJECT
from ops import replay
from tests.conftest import wait_for
from tests.fakes import calls

BILLBOARD = ("+74955550900", {"utm_source": "billboard", "utm_medium": "offline"})


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m ops")
    replay.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def failures(stack, call_id: str, code: str) -> int:
    return stack.log_text("stitch").count(f"Stitching call {call_id} failed ({code})")


def row(stack, call_id: str) -> list[dict]:
    return stack.query(
        "select reason, confidence, source from `{dataset}.calls` "
        f"where call_id = '{call_id}'"
    )


def test_the_replay_command_takes_a_topic_and_a_limit():
    args = parse(["replay", "--topic", "call-events", "--max", "5"])

    assert (args.command, args.topic, args.max, args.func) == (
        "replay",
        "call-events",
        5,
        replay.run,
    )
    assert parse(["replay", "--topic", "calls-stitched"]).max == 1000


def test_a_call_for_a_site_not_yet_configured_is_dead_lettered_then_replayed(
    stack, make_site, capsys
):
    call = calls.completed(BILLBOARD[0], site_id="late")
    calls.publish(call)

    wait_for(
        lambda: (
            failures(stack, call["call_id"], "unknown_site") == MAX_DELIVERY_ATTEMPTS
        )
    )
    assert row(stack, call["call_id"]) == []
    # The operator configures the site, then replays the dead letters.
    make_site(site_id="late", static_numbers=[BILLBOARD])

    def replayed() -> bool:
        args = parse(["replay", "--topic", "call-events"])
        assert args.func(args) == 0
        return f"call {call['call_id']} -> call-events" in capsys.readouterr().out

    wait_for(replayed)

    assert wait_for(lambda: row(stack, call["call_id"])) == [
        {"reason": "static_number", "confidence": 1.0, "source": "billboard"}
    ]
    assert failures(stack, call["call_id"], "unknown_site") == MAX_DELIVERY_ATTEMPTS
    replay.replay("call-events", 10)
    assert capsys.readouterr().out.endswith(
        "0 message(s) replayed from call-events-dead-letter to call-events, 0 failed.\n"
    )


def test_a_malformed_call_is_dead_lettered_after_five_attempts(stack):
    from google.cloud import pubsub_v1

    call = calls.completed(BILLBOARD[0])
    del call["started_at"]
    calls.publish(call)

    wait_for(lambda: failures(stack, call["call_id"], "call") == MAX_DELIVERY_ATTEMPTS)
    subscriber = pubsub_v1.SubscriberClient()
    path = subscriber.subscription_path(PROJECT, "call-events-dead-letter")

    def dead_letter():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            resp = subscriber.pull(
                request={
                    "subscription": path,
                    "max_messages": 10,
                    "return_immediately": True,
                },
                timeout=10,
            )
        for item in resp.received_messages:
            subscriber.acknowledge(
                request={"subscription": path, "ack_ids": [item.ack_id]}
            )
            if json.loads(item.message.data).get("call_id") == call["call_id"]:
                return item.message

    message = wait_for(dead_letter)
    assert message.attributes["type"] == "call.completed"
    assert message.attributes["CloudPubSubDeadLetterSourceDeliveryCount"] == "5"
    assert row(stack, call["call_id"]) == []
