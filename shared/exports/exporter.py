"""One export tick: poll open uploads, select what is due, gate, claim, send,
record. Idempotent: a tick that runs twice, or two ticks at once, send each
conversion to each platform at most once (see "The crash window" in
docs/exports.md for the one case that needs the platform's deduplication).

The ledger is two things:

- Firestore ``conversion_exports/{platform}:{conversion_id}``: the state of
  each conversion per platform. A conversion is *claimed* (state ``pending``)
  in a batch whose every write carries a precondition (the document must not
  exist, or must be unchanged since read), so two ticks never both claim it.
- BigQuery ``conversion_exports``: an append-only audit row per transition
  (insert id per key, state, attempt and batch), for reports and for the due
  query, which skips what is already final without a Firestore read.

``export_uploads/{platform}:{request_id}`` keeps each asynchronous upload
(Data Manager request, Metrica upload) until its status is final.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

from shared.errors import BadRequest, CallTrackError, ConfigError
from shared.exports import due
from shared.exports import payloads as pl
from shared.exports.model import (
    ACCEPTED,
    EXPIRED,
    FINAL,
    PENDING,
    REJECTED,
    RETRY_AFTER,
    SENT,
    Conversion,
    ExportConfig,
    parse_config,
)
from shared.exports.senders import Planned, Result, Sender, Upload, failure_reason

logger = logging.getLogger(__name__)

EXPORT_LEDGER = "conversion_exports"
EXPORT_UPLOADS = "export_uploads"
TABLE = "conversion_exports"
# A claim older than this whose send left no answer is "in doubt".
CLAIM_LEASE = dt.timedelta(minutes=10)
# Retry after a transient failure: 5 min, doubling, at most 6 h; give up
# (rejected) after this many attempts.
RETRY_BASE = dt.timedelta(minutes=5)
RETRY_CAP = dt.timedelta(hours=6)
MAX_ATTEMPTS = 8
# Uploads whose status stays open this long are closed (left "sent").
UPLOAD_POLL_FOR = dt.timedelta(days=3)
FIRESTORE_BATCH = 400
GET_ALL_CHUNK = 300


def ledger_key(platform: str, conversion_id: str) -> str:
    return f"{platform}:{conversion_id}"


def _ledger_conv(doc: dict) -> Conversion:
    """The conversion of a ledger document, with what its audit rows need."""
    return Conversion(
        doc["conversion_id"],
        doc["site_id"],
        doc["kind"],
        doc["occurred_at"],
        doc.get("value"),
    )


def _tally(refused: dict[str, int], reason: str) -> None:
    refused[reason[:120]] = refused.get(reason[:120], 0) + 1


@dataclass
class Summary:
    due: int = 0
    skipped_done: int = 0
    claimed: int = 0
    states: dict = field(default_factory=dict)
    polled: int = 0
    conflicts: int = 0

    def count(self, state: str, n: int = 1) -> None:
        self.states[state] = self.states.get(state, 0) + n

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class _Item:
    conv: Conversion
    doc: dict | None = None
    update_time: object = None
    in_doubt: bool = False


class Exporter:
    """Exports due conversions; ``tick`` is the whole job of one message."""

    def __init__(
        self,
        firestore,
        site_configs: Callable[[str], ExportConfig | None],
        senders: dict[str, Sender],
        secrets: dict,
        query: due.Query,
        insert: Callable[[str, list[dict]], None],
        dataset: str,
        now: Callable[[], dt.datetime] | None = None,
        legacy: Sender | None = None,
    ) -> None:
        self.fs = firestore
        self.site_configs = site_configs
        self.senders = senders
        self.legacy = legacy
        self.secrets = secrets
        self.query = query
        self.insert = insert
        self.dataset = dataset
        self.now = now or (lambda: dt.datetime.now(dt.UTC))

    # -- selection -------------------------------------------------------------

    def sender(self, platform: str, conf: ExportConfig) -> Sender:
        if platform == "google" and conf.google.api == "legacy" and self.legacy:
            return self.legacy
        return self.senders[platform]

    def due(self, now: dt.datetime, sites: set[str] | None = None):
        """[(config, platform, [conversions])] of every configured site."""
        by_site: dict[str, list[Conversion]] = {}
        for conv in due.load(self.query, self.dataset, now, sites):
            by_site.setdefault(conv.site_id, []).append(conv)
        out = []
        for site_id, convs in sorted(by_site.items()):
            try:
                conf = self.site_configs(site_id)
            except CallTrackError as exc:
                logger.error(
                    "Site %s has a bad export configuration: %s",
                    site_id,
                    exc.message,
                    extra={"fields": {"event": "export_config", "site_id": site_id}},
                )
                continue
            if conf is None:
                continue
            expanded = [f for c in convs for f in due.funnel(c, conf)]
            for platform in conf.platforms():
                mine = [c for c in expanded if conf.takes(platform, c.kind)]
                if mine:
                    out.append((conf, platform, mine))
        return out

    def plan(
        self, sites: set[str] | None = None, validate_only: bool = False
    ) -> list[tuple[ExportConfig, Planned]]:
        """The requests a tick would send now, for the dry run; writes nothing.

        Reads the ledger like a tick, so what was sent already is left out.
        """
        now = self.now()
        done = due.done(self.query, self.dataset, now)
        out = []
        for conf, platform, convs in self.due(now, sites):
            items = self._open(platform, convs, done, Summary())
            ready = [
                it.conv
                for it in self._read(platform, items)
                if it.doc is None or it.doc.get("state") == RETRY_AFTER
            ]
            ready = [c for c in ready if pl.gate(c, platform, conf, now) is None]
            if ready:
                out += [
                    (conf, p)
                    for p in self.sender(platform, conf).plan(
                        conf, ready, now, "dry-run", validate_only
                    )
                ]
        return out

    def resend(self, site_id: str, platform: str, conversion_id: str) -> None:
        """Make a rejected or expired conversion due again (operator)."""
        ref = self.fs.collection(EXPORT_LEDGER).document(
            ledger_key(platform, conversion_id)
        )
        snap = ref.get()
        doc = snap.to_dict() if snap.exists else None
        if doc is None or doc.get("site_id") != site_id:
            raise BadRequest(f"Expected a ledger entry {ref.id} of site {site_id}.")
        if doc.get("state") not in (REJECTED, EXPIRED):
            raise BadRequest(
                f"Only rejected or expired conversions are re-sent; "
                f"{ref.id} is {doc.get('state')}."
            )
        now = self.now()
        ref.update(
            {
                "state": RETRY_AFTER,
                "retry_at": now,
                "attempts": 0,
                "reason": "resend by operator",
                "updated_at": now,
            },
            option=self.fs.write_option(last_update_time=snap.update_time),
        )
        conf = self.site_configs(site_id)
        # The operator's id, as given, though the key makes them the same.
        conv = _ledger_conv({**doc, "conversion_id": conversion_id})
        # A later non-final row, so the due query no longer skips it.
        self._audit(
            platform,
            conf,
            conv,
            RETRY_AFTER,
            "resend by operator",
            0,
            None,
            f"resend-{uuid.uuid4().hex[:8]}",
            now,
        )

    # -- the tick --------------------------------------------------------------

    def tick(self, sites: set[str] | None = None) -> dict:
        """One export run (of every site, or of ``sites``); returns counts."""
        now = self.now()
        summary = Summary()
        self.poll_uploads(now, summary, sites)
        done = due.done(self.query, self.dataset, now)
        for conf, platform, convs in self.due(now, sites):
            try:
                self.export(conf, platform, convs, done, now, summary)
            except ConfigError as exc:
                logger.error(
                    "Export of site %s to %s is not configured: %s",
                    conf.site_id,
                    platform,
                    exc.message,
                    extra={
                        "fields": {
                            "event": "export_rejected",
                            "site_id": conf.site_id,
                            "platform": platform,
                            "reason": "config",
                        }
                    },
                )
        logger.info(
            "Export tick done",
            extra={"fields": {"event": "export_tick", **summary.to_dict()}},
        )
        return summary.to_dict()

    def _open(self, platform, convs, done, summary) -> list[_Item]:
        """Conversions the BigQuery ledger does not already show as final."""
        out = []
        for conv in convs:
            summary.due += 1
            key = (platform, conv.conversion_id)
            if key in done and (conv.kind != "deal" or done[key] == conv.value):
                summary.skipped_done += 1
                continue
            out.append(_Item(conv))
        return out

    def _read(self, platform: str, items: list[_Item]) -> list[_Item]:
        col = self.fs.collection(EXPORT_LEDGER)
        for part in pl.chunks(items, GET_ALL_CHUNK):
            refs = {ledger_key(platform, it.conv.conversion_id): it for it in part}
            for snap in self.fs.get_all([col.document(k) for k in refs]):
                if snap.exists:
                    item = refs[snap.id]
                    item.doc = snap.to_dict()
                    item.update_time = snap.update_time
        return items

    def export(
        self,
        conf: ExportConfig,
        platform: str,
        convs: list[Conversion],
        done: dict,
        now: dt.datetime,
        summary: Summary,
    ) -> None:
        items = self._read(platform, self._open(platform, convs, done, summary))
        batch_id = uuid.uuid4().hex[:16]
        claims: list[_Item] = []
        finals: list[tuple[_Item, Result]] = []
        for item in items:
            doc = item.doc
            state = doc.get("state") if doc else None
            if doc is None or (state == RETRY_AFTER and doc["retry_at"] <= now):
                outcome = pl.gate(item.conv, platform, conf, now)
                if outcome:
                    finals.append(
                        (
                            item,
                            Result(
                                item.conv.conversion_id, outcome.state, outcome.reason
                            ),
                        )
                    )
                else:
                    claims.append(item)
            elif state == PENDING and doc["claimed_at"] <= now - CLAIM_LEASE:
                item.in_doubt = True
                claims.append(item)
            elif state in FINAL and item.conv.kind == "deal":
                adjustment = self._adjust(conf, platform, item, now)
                if adjustment:
                    claims.append(adjustment)

        self._write_finals(platform, conf, finals, now, summary)
        claimed = self._claim(platform, conf, claims, batch_id, now, summary)
        if not claimed:
            return

        sender = self.sender(platform, conf)
        secrets = self.secrets.get(conf.site_id) or {}
        results: list[Result] = []
        doubtful = [it for it in claimed if it.in_doubt]
        for prev in {it.doc.get("batch_id") for it in doubtful}:
            group = [it for it in doubtful if it.doc.get("batch_id") == prev]
            results += sender.in_doubt(
                conf,
                secrets,
                [it.conv for it in group],
                group[0].doc["claimed_at"],
                prev,
                now,
            )
        settled = {r.conversion_id for r in results}
        to_send = [it.conv for it in claimed if it.conv.conversion_id not in settled]
        uploads: list[Upload] = []
        if to_send:
            try:
                sent, uploads = sender.send(conf, secrets, to_send, now, batch_id)
            except CallTrackError as exc:
                # Before any request (credentials, a token): nothing was sent.
                reason = failure_reason(exc)
                sent = [Result(c.conversion_id, RETRY_AFTER, reason) for c in to_send]
            results += sent
        self._write_uploads(platform, conf, uploads, now)
        by_id = {it.conv.conversion_id: it for it in claimed}
        self._write_results(
            platform,
            conf,
            [(by_id[r.conversion_id], r) for r in results],
            batch_id,
            now,
            summary,
        )

    def _adjust(self, conf, platform, item: _Item, now) -> _Item | None:
        """A deal whose revenue changed after it was sent: an adjustment.

        Platforms take no restatement of a sent conversion here, so the
        documented equivalent is a ``deal_adjustment`` conversion of the
        increase, to the action / goal / event the site maps it to. A decrease,
        or a site without that mapping, is noted in the ledger, not sent.
        """
        doc, conv = item.doc, item.conv
        if doc.get("state") not in (SENT, ACCEPTED) or conv.value is None:
            return None
        sent_value = float(doc.get("value") or 0)
        delta = round(conv.value - sent_value, 2)
        if delta == 0:
            return None
        n = int(doc.get("adjustments") or 0) + 1
        key = ledger_key(platform, conv.conversion_id)
        ref = self.fs.collection(EXPORT_LEDGER).document(key)
        note = {"value": conv.value, "adjustments": n, "updated_at": now}
        if delta < 0 or not conf.takes(platform, "deal_adjustment"):
            note["reason"] = f"value_change_not_sent: {sent_value} -> {conv.value}"
            ref.update(
                note, option=self.fs.write_option(last_update_time=item.update_time)
            )
            self._audit(
                platform,
                conf,
                conv,
                doc["state"],
                note["reason"],
                int(doc.get("attempts") or 0),
                None,
                f"adj{n}",
                now,
            )
            return None
        adj = replace(
            conv,
            kind="deal_adjustment",
            value=delta,
            adjusts=key,
            conversion_id=f"{conv.conversion_id}:adj{n}",
        )
        return (
            _Item(adj, None, None, False)
            if not self._noted(ref, item, note, platform, conf, conv, n, now)
            else None
        )

    def _noted(self, ref, item, note, platform, conf, conv, n, now) -> bool:
        """Record the new total on the deal before its adjustment is claimed,
        so a crash in between loses the adjustment rather than doubling it."""
        try:
            ref.update(
                note, option=self.fs.write_option(last_update_time=item.update_time)
            )
        except Exception as exc:  # a concurrent tick changed it; it adjusts
            logger.info(
                "Deal %s changed concurrently: %s",
                conv.conversion_id,
                type(exc).__name__,
            )
            return True
        self._audit(
            platform,
            conf,
            conv,
            item.doc["state"],
            f"adjusted #{n}",
            int(item.doc.get("attempts") or 0),
            None,
            f"adj{n}",
            now,
        )
        return False

    # -- ledger writes ---------------------------------------------------------

    def _claim(self, platform, conf, items, batch_id, now, summary) -> list[_Item]:
        col = self.fs.collection(EXPORT_LEDGER)
        claimed = []
        for part in pl.chunks(items, FIRESTORE_BATCH):
            batch = self.fs.batch()
            for it in part:
                ref = col.document(ledger_key(platform, it.conv.conversion_id))
                data = {
                    "state": PENDING,
                    "claimed_at": now,
                    "batch_id": batch_id,
                    "updated_at": now,
                }
                if it.doc is not None:
                    data["prev_batch_id"] = it.doc.get("batch_id")
                self._stage(
                    batch, ref, it,
                    {**self._base(platform, it.conv), **data, "attempts": 0}, data,
                )
            try:
                batch.commit()
            except Exception as exc:  # another tick claimed one of them first
                summary.conflicts += len(part)
                logger.info(
                    "Claim of %d conversions for %s lost to another tick "
                    "(%s); they are left to it",
                    len(part),
                    platform,
                    type(exc).__name__,
                )
                continue
            claimed += part
        summary.claimed += len(claimed)
        self.insert(
            TABLE,
            [
                self._row(
                    platform,
                    conf,
                    it.conv,
                    PENDING,
                    "",
                    int((it.doc or {}).get("attempts") or 0),
                    None,
                    batch_id,
                    now,
                )
                for it in claimed
            ],
        )
        return claimed

    def _stage(self, batch, ref, it: _Item, created: dict, updated: dict) -> None:
        """Create the ledger document, or update it only if it is as read: a
        tick that changed it meanwhile makes the whole batch fail."""
        if it.doc is None:
            batch.create(ref, created)
        else:
            unchanged = self.fs.write_option(last_update_time=it.update_time)
            batch.update(ref, updated, option=unchanged)

    @staticmethod
    def _base(platform: str, conv: Conversion) -> dict:
        return {
            "site_id": conv.site_id,
            "platform": platform,
            "conversion_id": conv.conversion_id,
            "kind": conv.kind,
            "occurred_at": conv.occurred_at,
            "value": conv.value,
            "adjusts": conv.adjusts,
        }

    def _write_finals(self, platform, conf, finals, now, summary) -> None:
        """States reached without sending (no consent, expired, no id)."""
        col = self.fs.collection(EXPORT_LEDGER)
        for part in pl.chunks(finals, FIRESTORE_BATCH):
            batch = self.fs.batch()
            for it, res in part:
                ref = col.document(ledger_key(platform, it.conv.conversion_id))
                data = {
                    **self._base(platform, it.conv),
                    "state": res.state,
                    "reason": res.reason,
                    "updated_at": now,
                    "attempts": int((it.doc or {}).get("attempts") or 0),
                }
                self._stage(batch, ref, it, data, data)
            try:
                batch.commit()
            except Exception as exc:
                summary.conflicts += len(part)
                logger.info(
                    "Ledger write lost to another tick (%s)", type(exc).__name__
                )
                continue
            for _it, res in part:
                summary.count(res.state)
            self.insert(
                TABLE,
                [
                    self._row(
                        platform,
                        conf,
                        it.conv,
                        res.state,
                        res.reason,
                        0,
                        None,
                        "gate",
                        now,
                    )
                    for it, res in part
                ],
            )

    def _write_results(self, platform, conf, pairs, batch_id, now, summary) -> None:
        col = self.fs.collection(EXPORT_LEDGER)
        rows = []
        refused: dict[str, int] = {}
        for part in pl.chunks(pairs, FIRESTORE_BATCH):
            batch = self.fs.batch()
            for it, res in part:
                attempts = int((it.doc or {}).get("attempts") or 0) + 1
                state, reason, retry_at = res.state, res.reason, None
                if state == RETRY_AFTER:
                    retry_at = res.retry_at or now + min(
                        RETRY_BASE * 2 ** (attempts - 1), RETRY_CAP
                    )
                    if attempts >= MAX_ATTEMPTS and res.retry_at is None:
                        state, reason = REJECTED, f"gave_up: {reason}"
                data = {
                    "state": state,
                    "reason": reason,
                    "attempts": attempts,
                    "updated_at": now,
                    "request_id": res.request_id,
                    "retry_at": retry_at,
                }
                if state in (SENT, ACCEPTED):
                    data["value"] = it.conv.value
                    data["sent_at"] = now
                batch.set(
                    col.document(ledger_key(platform, it.conv.conversion_id)),
                    data,
                    merge=True,
                )
                rows.append(
                    self._row(
                        platform,
                        conf,
                        it.conv,
                        state,
                        reason,
                        attempts,
                        res.request_id,
                        batch_id,
                        now,
                    )
                )
                summary.count(state)
                if state == REJECTED or reason.startswith(("auth:", "config:")):
                    _tally(refused, reason)
            batch.commit()
        self.insert(TABLE, rows)
        self._log_refused(conf.site_id, platform, refused)

    @staticmethod
    def _log_refused(site_id: str, platform: str, refused: dict) -> None:
        for reason, count in refused.items():
            logger.warning(
                "%s refused %d conversions of site %s: %s",
                platform,
                count,
                site_id,
                reason,
                extra={
                    "fields": {
                        "event": "export_rejected",
                        "site_id": site_id,
                        "platform": platform,
                        "count": count,
                        "reason": reason,
                    }
                },
            )

    def _write_uploads(self, platform, conf, uploads: list[Upload], now) -> None:
        col = self.fs.collection(EXPORT_UPLOADS)
        for up in uploads:
            col.document(f"{platform}:{up.request_id}").set(
                {
                    "site_id": conf.site_id,
                    "platform": platform,
                    "kind": up.kind,
                    "request_id": up.request_id,
                    "refs": up.refs,
                    "open": True,
                    "created_at": now,
                    "polled_at": None,
                }
            )

    def _row(
        self, platform, conf, conv, state, reason, attempt, request_id, batch_id, now
    ) -> dict:
        key = ledger_key(platform, conv.conversion_id)
        return {
            "row_id": f"{key}:{state}:{attempt}:{batch_id}:{request_id or ''}",
            "export_key": key,
            "site_id": conv.site_id,
            "platform": platform,
            "conversion_id": conv.conversion_id,
            "kind": conv.kind,
            "state": state,
            "reason": reason or None,
            "attempt": attempt,
            "value": conv.value if conv.value is not None else pl.value_of(conv, conf),
            "currency": pl.currency_of(conv, conf),
            "call_id": conv.call_id,
            "occurred_at": conv.occurred_at.isoformat(),
            "request_id": request_id,
            "batch_id": batch_id,
            "recorded_at": now.isoformat(),
        }

    def _audit(
        self, platform, conf, conv, state, reason, attempt, request_id, batch_id, now
    ) -> None:
        self.insert(
            TABLE,
            [
                self._row(
                    platform,
                    conf,
                    conv,
                    state,
                    reason,
                    attempt,
                    request_id,
                    batch_id,
                    now,
                )
            ],
        )

    # -- asynchronous uploads --------------------------------------------------

    def poll_uploads(
        self, now: dt.datetime, summary: Summary, sites: set[str] | None = None
    ) -> None:
        # Here, not at module level: the firestore package costs ~300 ms of
        # the function's cold start, and only this query needs it.
        from google.cloud.firestore_v1.base_query import FieldFilter

        col = self.fs.collection(EXPORT_UPLOADS)
        for snap in (
            col.where(filter=FieldFilter("open", "==", True)).limit(500).stream()
        ):
            up = snap.to_dict()
            if sites is not None and up["site_id"] not in sites:
                continue
            try:
                conf = self.site_configs(up["site_id"])
                if conf is None or conf.google is None and up["platform"] == "google":
                    continue
                sender = self.sender(up["platform"], conf)
                results = sender.poll(
                    conf, self.secrets.get(up["site_id"]) or {}, up, now
                )
            except CallTrackError as exc:
                logger.warning("Status of upload %s not read: %s", snap.id, exc.message)
                continue
            summary.polled += 1
            if results is None:
                stale = now - up["created_at"] > UPLOAD_POLL_FOR
                snap.reference.update({"polled_at": now, "open": not stale})
                continue
            self._settle(up, conf, results, now, summary)
            snap.reference.update({"polled_at": now, "open": False})

    def _settle(self, up: dict, conf, results: list[Result], now, summary) -> None:
        """Final statuses of a sent upload, for conversions still ``sent``."""
        platform = up["platform"]
        col = self.fs.collection(EXPORT_LEDGER)
        refused: dict[str, int] = {}
        rows = []
        for part in pl.chunks(results, GET_ALL_CHUNK):
            refs = [col.document(ledger_key(platform, r.conversion_id)) for r in part]
            snaps = {s.id: s for s in self.fs.get_all(refs)}
            batch = self.fs.batch()
            for res, ref in zip(part, refs, strict=True):
                snap = snaps.get(ref.id)
                doc = snap.to_dict() if snap and snap.exists else None
                if (
                    not doc
                    or doc.get("state") != SENT
                    or doc.get("request_id") != up["request_id"]
                ):
                    continue
                batch.update(
                    ref, {"state": res.state, "reason": res.reason, "updated_at": now}
                )
                rows.append(
                    self._row(
                        platform,
                        conf,
                        _ledger_conv(doc),
                        res.state,
                        res.reason,
                        int(doc.get("attempts") or 0),
                        up["request_id"],
                        "poll",
                        now,
                    )
                )
                summary.count(res.state)
                if res.state == REJECTED:
                    _tally(refused, res.reason)
            batch.commit()
        self.insert(TABLE, rows)
        self._log_refused(conf.site_id, platform, refused)


def configs_from_sites(sites) -> Callable[[str], ExportConfig | None]:
    """Export configuration by site id, read through a ``SiteCache``."""

    def get(site_id: str) -> ExportConfig | None:
        try:
            site = sites.get(site_id)
        except CallTrackError:
            return None
        return parse_config(site_id, site.extra, site.currency, site.timezone)

    return get
