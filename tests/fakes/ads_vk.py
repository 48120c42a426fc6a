"""Fake VK Ads tracker (api-contracts.md, "VK Ads"): the server-side pixel hit
``GET /tracker?id=PIXEL;e=RG%3AVALUE/GOAL&rb_clickid=...``. The raw query is
checked as sent (``;`` separators, the ``:`` escaped); no deduplication, so
``hits`` keeps every one.
"""

from __future__ import annotations

import re
import threading

from tests.fakes.ads_common import Answer, FakeServer

_FIRST = re.compile(r"^id=(\d+);e=RG%3A(\d+(?:\.\d+)?)/([A-Za-z0-9_.%-]+)$")
_GIF = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01"
    b"\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)


class FakeVk(FakeServer):
    name = "vk"

    def __init__(self) -> None:
        super().__init__()
        self._state = threading.Lock()
        self.reset()
        self.route("GET", "/tracker", self._tracker)

    def reset(self) -> None:
        self.hits: list[dict] = []

    def _tracker(self, req, _m) -> Answer:
        parts = req.raw_query.split("&")
        first = _FIRST.match(parts[0]) if parts else None
        rest = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        if first is None or not rest.get("rb_clickid"):
            return Answer(400, b"bad tracker query", {"Content-Type": "text/plain"})
        with self._state:
            self.hits.append(
                {
                    "pixel": first.group(1),
                    "value": first.group(2),
                    "goal": first.group(3),
                    "rb_clickid": rest["rb_clickid"],
                }
            )
        return Answer(200, _GIF, {"Content-Type": "image/gif"})


SERVER = FakeVk().start()


def stack_env() -> dict:
    return {"CALLTRACK_VK_ENDPOINT": SERVER.url}
