"""JSON-line logging that Cloud Logging understands.

Each record is one line with ``severity``, ``message`` and, while a request is
being handled, ``logging.googleapis.com/trace`` built from the request's
``traceparent`` or ``X-Cloud-Trace-Context`` header, so Cloud Logging groups a
request's lines under its trace. Structured fields go in ``extra={"fields": ...}``.

Callers must never put a raw caller phone number in a log line: pass
``shared.phones.mask(...)`` or the hash instead.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import json
import logging
import re
import sys

_trace: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar(
    "calltrack_trace", default=None
)

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$")
_CLOUD_TRACE = re.compile(r"^([0-9a-fA-F]{32})(?:/(\d+))?")
_configured = False


def trace_from_headers(headers) -> tuple[str, str] | None:
    """Return (trace id, span id) from W3C or Google trace headers, if present."""
    parent = (headers.get("traceparent") or "").strip().lower()
    match = _TRACEPARENT.match(parent)
    if match:
        return match.group(1), match.group(2)

    cloud = (headers.get("X-Cloud-Trace-Context") or "").strip()
    match = _CLOUD_TRACE.match(cloud)
    if match:
        return match.group(1).lower(), format(int(match.group(2) or 0), "016x")
    return None


def set_trace(trace: tuple[str, str] | None) -> contextvars.Token:
    return _trace.set(trace)


def reset_trace(token: contextvars.Token) -> None:
    _trace.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, project: str | None = None) -> None:
        super().__init__()
        self.project = project

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(),
            "logger": record.name,
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)

        trace = _trace.get()
        if trace:
            trace_id, span_id = trace
            prefix = f"projects/{self.project}/traces/" if self.project else ""
            entry["logging.googleapis.com/trace"] = prefix + trace_id
            entry["logging.googleapis.com/spanId"] = span_id

        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure(level: str = "INFO", project: str | None = None) -> None:
    """Send the root logger's records to stdout as JSON lines (once per process)."""
    global _configured
    if _configured:
        return

    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter(project))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The client libraries are chatty at INFO about retries we already report.
    for noisy in ("urllib3", "google", "grpc", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _configured = True
