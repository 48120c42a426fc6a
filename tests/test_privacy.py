"""Privacy on the real path: no raw caller number is stored or logged, and an
operator can erase a caller.

A paid visit takes a number, the provider reports the call, ``stitch`` writes
the row and ``crm_lead`` makes a Bitrix24 lead (the fake). Then everything the
product holds is scanned for the caller's number in any of its digit forms:
every Firestore document (sub-collections too), every BigQuery table, and the
log of every function of the session's stack (so the lines of every test run
before this one are scanned too, for this caller).

The last test of the suite checks every store once more for any mobile caller
number at all, whichever test sent it: BigQuery and the logs then, Firestore
as ``tests.privacy_scan`` read it after each test.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from contextlib import redirect_stdout

import pytest

from ops.__main__ import main as ops_main
from shared import phones, warehouse
from tests import figures, privacy_scan
from tests import test_end_to_end as e2e
from tests.conftest import numbers, wait_for
from tests.fakes import crm as fake_crm
from tests import test_infra

tf = test_infra.tf  # the parsed Terraform files, a module-scoped fixture

# One caller per test: BigQuery keeps the rows of earlier tests.
CALLER = "+79165550147"
ERASED = "+79165550148"
# The digit forms a number takes in payloads and logs: E.164, with the
# national 8 prefix, and the national number alone.
FORMS = ("79165550147", "89165550147", "9165550147")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _bigquery_texts(stack) -> list[tuple[str, str]]:
    out = []
    for table in warehouse.table_names():
        for row in stack.query(f"select * from `{{dataset}}.{table}`"):
            out.append((table, json.dumps(row, default=str)))
    return out


def _found(texts: list[tuple[str, str]]) -> list[str]:
    """Where any form of the caller's number appears, ignoring separators."""
    hits = []
    for where, text in texts:
        compact = _digits(text)
        if any(form in text or form in compact for form in FORMS):
            hits.append(where)
    return hits


def _a_stitched_call_with_a_lead(stack, make_site, caller: str) -> str:
    make_site(
        dynamic_numbers=numbers(2, start=7600),
        extra={"crm": fake_crm.site_crm("crm-bitrix")},
    )
    visit = e2e._visit(stack, consent=True)
    call_id = e2e._call(stack, visit["number"], caller)
    wait_for(lambda: e2e._row(stack, call_id))
    wait_for(lambda: stack.query(
        f"select lead_id from `{{dataset}}.leads` where call_id = '{call_id}'"
    ))
    return call_id


def test_the_raw_caller_number_is_in_no_document_row_or_log(stack, make_site):
    call_id = _a_stitched_call_with_a_lead(stack, make_site, CALLER)

    docs = privacy_scan.firestore_texts(stack.firestore())
    rows = _bigquery_texts(stack)
    logs = [(name, stack.log_text(name)) for name in sorted(stack.urls)]

    # The scan reaches what the call left behind, so an empty result means
    # something: the call record, its ledger and its rows were all read.
    assert any(call_id in text for _, text in docs)
    assert any(call_id in text for _, text in rows)
    assert sum(len(text) for _, text in logs) > 0
    assert _found(docs) == []
    assert _found(rows) == []
    assert _found(logs) == []
    # The one place the number goes is the CRM.
    assert any(CALLER in json.dumps(lead) for lead in fake_crm.SERVER.bitrix_leads
               .values())


def _erase(*args: str) -> tuple[int, dict]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = ops_main(["erase-caller", *args])
    return code, json.loads(out.getvalue())


def test_erasing_a_caller_removes_their_rows_and_documents(stack, make_site):
    call_id = _a_stitched_call_with_a_lead(stack, make_site, ERASED)
    hashed = phones.phone_hash(ERASED)

    code, report = _erase("--phone", "8 (916) 555-01-48")

    assert code == 0
    assert report["caller_hash"] == hashed and report["calls"] == 1
    assert report["sites"] == ["demo"]
    assert report["bigquery_rows"]["calls"] >= 1
    assert report["bigquery_rows"]["leads"] == 1
    assert report["firestore_docs"]["stitched_calls"] == 1
    assert report["firestore_docs"]["calls"] == 1
    assert report["firestore_docs"]["raw"] >= 2  # the start and end events
    assert report["firestore_docs"]["callers"] == 1
    assert report["firestore_docs"]["crm_leads"] == 1
    assert report["firestore_docs"]["crm_callers"] == 1
    assert report["firestore_docs"]["crm_links"] == 1
    assert ERASED not in json.dumps(report)
    for table in ("calls", "leads"):
        assert stack.query(
            f"select call_id from `{{dataset}}.{table}` where call_id = '{call_id}'"
            f" or caller_hash = '{hashed}'"
        ) == []
    texts = privacy_scan.firestore_texts(stack.firestore())
    assert [path for path, text in texts if call_id in text or hashed in text
            or call_id in path or hashed in path] == []

    again, second = _erase("--hash", hashed)
    assert again == 0
    assert second["calls"] == 0 and second["firestore_docs"] == {}
    assert set(second["bigquery_rows"].values()) == {0}


def test_erasure_refuses_what_is_not_a_number_or_a_hash(stack, capsys):
    assert ops_main(["erase-caller", "--phone", "not a phone"]) == 2
    assert ops_main(["erase-caller", "--hash", "abc"]) == 2
    err = capsys.readouterr().err
    assert "Expected a phone number" in err or "Expected a possible" in err
    assert "Expected a SHA-256 hex digest, found 'abc'." in err


def test_every_dated_collection_has_a_ttl_policy_and_holds_keep_35_days(
    stack, make_site, tf
):
    _a_stitched_call_with_a_lead(stack, make_site, "+79165550149")
    now = dt.datetime.now(dt.UTC)

    dated, ages = set(), {}
    client = stack.firestore()

    def walk(collection):
        for ref in collection.list_documents():
            snap = ref.get()
            expires = (snap.to_dict() or {}).get("expires_at") if snap.exists else None
            if expires is not None:
                dated.add(collection.id)
                ages.setdefault(collection.id, set()).add(
                    round((expires - now) / dt.timedelta(days=1)))
            for sub in ref.collections():
                walk(sub)

    for collection in client.collections():
        walk(collection)

    policies = set(tf.locals["ttl_collections"])
    assert dated - policies == set(), "add them to ttl_collections (infra)"
    assert ages["sessions"] == ages["holds"] == {35}
    assert {"sessions", "holds", "calls", "stitched_calls", "callers"} <= dated


def test_personal_tables_expire_after_25_months_in_the_schema_terraform_reads():
    personal = {"sessions", "calls", "leads", "deals", "conversion_exports",
                "call_reviews"}

    for table in personal:
        spec = warehouse.spec(table)
        assert spec["partitioning"]["expiration_days"] == 760, table


def test_the_scan_finds_a_number_in_any_form_and_no_hash_or_tracking_number():
    texts = [("a", '{"caller": "+79161234567"}'), ("b", "from 89161234567 on"),
             ("c", '{"h": "79161234567ab"}'), ("d", '{"h": "ab79161234567"}'),
             ("e", '{"number": "+74951234567"}'), ("f", "ts 1791612345670")]

    assert privacy_scan.found(texts) == ["a: +7916...", "b: 89161..."]


@pytest.mark.suite_end
def test_no_caller_number_is_in_anything_the_whole_suite_wrote(stack):
    rows = _bigquery_texts(stack)
    logs = [(f"{name}.log:{i}", line) for name in sorted(stack.urls)
            for i, line in enumerate(stack.log_text(name).splitlines(), 1)]

    hits = privacy_scan.hits + privacy_scan.found(rows + logs)

    # The suite's own calls are in the stores, so the scan read something.
    assert privacy_scan.documents_read > 0 and len(rows) > 0 and len(logs) > 0
    figures.report({"privacy_scan": {
        "firestore_documents": privacy_scan.documents_read,
        "bigquery_rows": len(rows), "log_lines": len(logs), "hits": len(hits)}})
    assert hits == []
