"""The audit journal's writes and syncs (sites audit.write, audit.fsync)
failed with EIO or ENOSPC, or the server crashing right before them, during
a PUT (see faultlib.py for the loop and the checks after each run: restart,
the ledger, fsck).

What must hold: a PUT whose event could not be made durable is not
acknowledged — it is answered 503 ServiceUnavailable with Retry-After (or
the connection dies with the server) — and the failure is counted
(`audit events lost` in the log); every acknowledged PUT's event is in the
journal after the restart; the object is either there or not, never partial.
"""
import json

import pytest

from cairn_harness import unique_bucket
from faultlib import FaultStore, Ledger, loop_over_calls, response_is_clean
from test_faults import body_for, getter, request


@pytest.fixture
def store(tmp_path):
    s = FaultStore(tmp_path).start()
    yield s
    if s.srv.proc and s.srv.proc.poll() is None:
        s.srv.kill()


def journal_ids(store):
    """Request ids of the events in the journal or already shipped from it
    into the (embedded) store: the shipper deletes shipped segments, and a
    failed write starts a new segment, so the journal alone no longer holds
    every event."""
    cp = store.srv.admin("audit", "journal-dump", "--all")
    ids = {json.loads(line)["request_id"] for line in cp.stdout.splitlines() if line.strip()}
    cp = store.srv.admin("audit", "query")
    return ids | {json.loads(line)["request_id"] for line in cp.stdout.splitlines() if line.strip()}


@pytest.mark.deadline(600)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_put_with_failing_journal(store, action):
    b = unique_bucket()
    assert store.srv.request("PUT", f"/{b}").status == 200
    ledger = Ledger()
    acked = []

    def op(n, _ctx):
        key, body = f"k{n}", body_for(f"audit{n}")
        rid = f"auditfault{action}{n}"
        r = request(store, "PUT", f"/{b}/{key}", body=body, headers={"X-Request-Id": rid})
        assert response_is_clean(r), r
        if r is not None and r.status == 200:
            ledger.acknowledged(key, body)
            acked.append(rid)
            return
        ledger.uncertain(key, body)
        if r is not None:
            assert r.status == 503 and r.error_code == "ServiceUnavailable", r
            assert r.header("Retry-After") == "1"
            assert any("audit events lost" in line for line in store.log_lines()), "a lost event is logged"

    def verify():
        ledger.check(getter(store, b))
        ids = journal_ids(store)
        missing = [a for a in acked if a not in ids]
        assert not missing, f"acknowledged PUTs without their audit event: {missing}"

    runs = loop_over_calls(store, "audit.*", action, op, verify)
    assert runs >= 2, f"a PUT's event is one write and one sync; only {runs} reached"


@pytest.mark.deadline(600)
def test_audit_api_post_with_failing_journal(store):
    """The embedded audit store's own requests are journalled like S3's: a
    POST /audit/v1/events whose event cannot be made durable is answered
    503 ServiceUnavailable, never 200 without its event; every POST
    answered 200 has its event after the restart, and its batch stored."""
    acked = []

    def op(n, _ctx):
        rid = f"auditpostfault{n}"
        batch = [{"event_id": "%032x" % (0xa0d17 * 1000 + n), "time": "2026-11-30T17:41:02.000001Z",
                  "request_id": f"batch{n}", "correlation_id": f"batch{n}", "principal": "AK", "user": "u",
                  "source_address": "127.0.0.1", "action": "s3:PutObject", "bucket": "b", "key": "k",
                  "version_id": "", "outcome": "success", "status": 200, "error_code": "", "bytes_in": 1,
                  "bytes_out": 0, "duration_us": 1}]
        r = request(store, "POST", "/audit/v1/events", body=json.dumps(batch).encode(),
                    headers={"X-Request-Id": rid, "Content-Type": "application/json"})
        # The audit API answers JSON errors (not S3's XML): checked below.
        if r is not None and r.status == 200:
            acked.append((rid, f"batch{n}"))
            return
        if r is not None:
            assert r.status == 503 and b"ServiceUnavailable" in r.body, r
            assert r.header("Retry-After") == "1"
            assert any("audit events lost" in line for line in store.log_lines()), "a lost event is logged"

    def verify():
        ids = journal_ids(store)
        missing = [rid for rid, _ in acked if rid not in ids]
        assert not missing, f"acknowledged audit POSTs without their own audit event: {missing}"
        cp = store.srv.admin("audit", "query")
        stored = {json.loads(line)["request_id"] for line in cp.stdout.splitlines() if line.strip()}
        lost = [b for _, b in acked if b not in stored]
        assert not lost, f"acknowledged batches not in the store: {lost}"

    runs = loop_over_calls(store, "audit.*", "fail", op, verify)
    assert runs >= 2, f"a POST's event is one write and one sync; only {runs} reached"
