"""Fake Yandex Metrica offline conversions (api-contracts.md, "Yandex Metrica").

``upload_calls`` and ``upload`` take a multipart field ``file`` holding a
UTF-8 CSV with a header; the columns are checked (one id column of UserId,
ClientId, Yclid; DateTime as unix seconds in the past; 0/1 flags; +digits
phones). ``client_id_type`` is refused (legacy). Uploads go UPLOADED ->
PROCESSED on the second status read; rows whose visit is over 21 days old
are not linked, and an upload of only such rows ends LINKAGE_FAILURE.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import re
import threading
from email.parser import BytesParser
from email.policy import HTTP

from tests.fakes.ads_common import CURRENCY, Answer, FakeServer, Request

TOKEN = "fake-yandex-oauth-token"
ID_COLUMNS = ("UserId", "ClientId", "Yclid")
CALL_OPTIONAL = {
    "StaticCall",
    "Price",
    "Currency",
    "PhoneNumber",
    "TalkDuration",
    "HoldDuration",
    "CallMissed",
    "Tag",
    "FirstTimeCaller",
    "URL",
    "CallTrackerURL",
}
BASIC_OPTIONAL = {"Price", "Currency"}
WINDOW = dt.timedelta(days=21)
_BASE = r"/management/v1/counter/(\d+)/offline_conversions"


def _multipart_file(req: Request) -> bytes | None:
    ctype = req.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        return None
    msg = BytesParser(policy=HTTP).parsebytes(
        f"Content-Type: {ctype}\r\n\r\n".encode() + req.body
    )
    for part in msg.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_payload(decode=True)
    return None


def _error(status: int, message: str) -> Answer:
    return Answer(
        status,
        {
            "errors": [{"error_type": "invalid_parameter", "message": message}],
            "code": status,
            "message": message,
        },
    )


class FakeYandex(FakeServer):
    name = "yandex"

    def __init__(self) -> None:
        super().__init__()
        self._state = threading.Lock()
        self._ids = itertools.count(1000)
        self.reset()
        self.route("POST", _BASE + "/upload_calls", self._upload_calls)
        self.route("POST", _BASE + "/upload", self._upload_basic)
        self.route("GET", _BASE + r"/calls_uploading/(\d+)", self._call_status)
        self.route("GET", _BASE + "/calls_uploadings", self._list_calls)
        self.route("GET", _BASE + "/uploadings", self._list_basic)

    def reset(self) -> None:
        self.uploads: dict[int, dict] = {}
        self.rows: list[dict] = []  # every row taken, repeats included

    def _check_csv(self, raw: bytes, optional: set, required: tuple) -> tuple:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, "file: must be UTF-8"
        reader = csv.DictReader(io.StringIO(text))
        header = reader.fieldnames or []
        ids = [c for c in header if c in ID_COLUMNS]
        if len(ids) != 1:
            return None, "header: exactly one of UserId, ClientId, Yclid"
        unknown = set(header) - set(ids) - set(required) - optional
        if unknown or not set(required) <= set(header):
            return None, f"header: unknown {sorted(unknown)} or missing {required}"
        rows = list(reader)
        if not rows:
            return None, "file: no rows"
        now = dt.datetime.now(dt.UTC).timestamp()
        for n, row in enumerate(rows, 2):
            if not row[ids[0]]:
                return None, f"line {n}: empty {ids[0]}"
            if ids[0] == "ClientId" and not row["ClientId"].isdigit():
                return None, f"line {n}: ClientId must be digits"
            if (
                not re.match(r"^\d{10}$", row.get("DateTime") or "")
                or int(row["DateTime"]) > now
            ):
                return None, f"line {n}: DateTime must be unix seconds in the past"
            if row.get("Price") and not re.match(r"^\d+(\.\d+)?$", row["Price"]):
                return None, f"line {n}: Price must be a number"
            if row.get("Currency") and not CURRENCY.match(row["Currency"]):
                return None, f"line {n}: Currency must be ISO 4217"
            for flag in ("StaticCall", "CallMissed", "FirstTimeCaller"):
                if row.get(flag) not in (None, "", "0", "1"):
                    return None, f"line {n}: {flag} must be 0 or 1"
            for num in ("TalkDuration", "HoldDuration"):
                if row.get(num) not in (None, "") and not row[num].isdigit():
                    return None, f"line {n}: {num} must be whole seconds"
            if row.get("PhoneNumber") and not re.match(
                r"^\+\d{7,15}$", row["PhoneNumber"]
            ):
                return None, f"line {n}: PhoneNumber as +digits without spaces"
        return (ids[0], rows), None

    def _upload(self, req: Request, m, kind: str) -> Answer:
        if req.headers.get("authorization") != f"OAuth {TOKEN}":
            return Answer(
                403,
                {
                    "errors": [
                        {"error_type": "access_denied", "message": "Access denied"}
                    ],
                    "code": 403,
                    "message": "Access denied",
                },
            )
        query = req.query
        allowed = (
            {"comment", "new_goal_name"} if kind == "CALLS" else {"comment", "type"}
        )
        if set(query) - allowed:
            return _error(400, f"unknown parameters {sorted(set(query) - allowed)}")
        if kind == "BASIC" and query.get("type") not in ("BASIC", "CALLS", "CHATS"):
            return _error(400, "type must be BASIC, CALLS or CHATS")
        raw = _multipart_file(req)
        if raw is None:
            return _error(400, "multipart field 'file' required")
        if kind == "CALLS":
            parsed, problem = self._check_csv(raw, CALL_OPTIONAL, ("DateTime",))
        else:
            parsed, problem = self._check_csv(
                raw, BASIC_OPTIONAL, ("Target", "DateTime")
            )
        if problem:
            return _error(400, problem)
        id_column, rows = parsed
        now = dt.datetime.now(dt.UTC).timestamp()
        linked = sum(now - int(r["DateTime"]) <= WINDOW.total_seconds() for r in rows)
        with self._state:
            upload_id = next(self._ids)
            uploading = {
                "id": upload_id,
                "create_time": dt.datetime.now(dt.UTC).isoformat(),
                "source_quantity": len(rows),
                "line_quantity": len(rows),
                "comment": query.get("comment"),
                "type": kind,
                "client_id_type": id_column.upper(),
                "status": "UPLOADED",
            }
            self.uploads[upload_id] = {
                "uploading": uploading,
                "reads": 0,
                "counter": m.group(1),
                "linked": linked,
                "kind": kind,
            }
            self.rows += [{**r, "_kind": kind, "_id_column": id_column} for r in rows]
        return Answer(200, {"uploading": uploading})

    def _upload_calls(self, req, m):
        return self._upload(req, m, "CALLS")

    def _upload_basic(self, req, m):
        return self._upload(req, m, "BASIC")

    def _advance(self, upload: dict) -> dict:
        upload["reads"] += 1
        if upload["reads"] >= 2:
            upload["uploading"]["status"] = (
                "PROCESSED" if upload["linked"] else "LINKAGE_FAILURE"
            )
        return upload["uploading"]

    def _call_status(self, req, m):
        if req.headers.get("authorization") != f"OAuth {TOKEN}":
            return Answer(403, {"message": "Access denied"})
        with self._state:
            upload = self.uploads.get(int(m.group(2)))
            if upload is None or upload["kind"] != "CALLS":
                return _error(404, "uploading not found")
            return Answer(200, {"uploading": dict(self._advance(upload))})

    def _list(self, req, m, kind):
        if req.headers.get("authorization") != f"OAuth {TOKEN}":
            return Answer(403, {"message": "Access denied"})
        with self._state:
            found = [
                dict(self._advance(u))
                for u in self.uploads.values()
                if u["kind"] == kind and u["counter"] == m.group(1)
            ]
        return Answer(200, {"uploadings": found})

    def _list_calls(self, req, m):
        return self._list(req, m, "CALLS")

    def _list_basic(self, req, m):
        return self._list(req, m, "BASIC")


SERVER = FakeYandex().start()
SECRETS = {"yandex_oauth_token": TOKEN}


def stack_env() -> dict:
    return {"CALLTRACK_METRIKA_ENDPOINT": SERVER.url}
