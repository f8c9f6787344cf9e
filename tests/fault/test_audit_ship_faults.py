"""The audit shipper against the audit-server's test mode (fault build:
CAIRN_BIN=build-faults/cairn): a real `cairn server` ships to a real
`cairn audit-server` whose POSTs answer 503, 400 or hang on demand
(docs/fault-injection.md).  What must hold: a 503 is retried with backoff
(delays within the growing ceilings, not all zero) until it lands, once; a
400 gets exactly one attempt, then the batch is split; a hung POST hits the
timeout and the retry lands, once; a store that keeps answering 503 ends
with the batch held in the DLQ, replayed once the store takes events."""

import json
import uuid
from datetime import datetime

import pytest

from cairn_harness import unique_bucket, wait_until

import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location(
    "audit_store_faults", pathlib.Path(__file__).resolve().parent / "test_audit_store_faults.py")
_store = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_store)
rearm = _store.rearm

PATH = "/audit/v1/events"


@pytest.fixture
def audit(make_audit_server):
    return lambda fault="": make_audit_server(fault=fault)


def gateway(make_server, store, **env):
    e = {"CAIRN_AUDIT_URL": f"http://127.0.0.1:{store.port}", "CAIRN_AUDIT_ACCESS_KEY": store.root[0],
         "CAIRN_AUDIT_SECRET_KEY": store.root[1], "CAIRN_AUDIT_FLUSH_INTERVAL": "300"}
    e.update(env)
    return make_server(env=e)


def hit(srv, corr, n):
    for _ in range(n):
        r = srv.request("GET", f"/{unique_bucket('nb')}", anonymous=True, headers={"X-Correlation-Id": corr})
        assert r.status == 404


def stored(store, corr):
    r = store.request("GET", PATH, query={"correlation_id": corr, "limit": "1000"})
    assert r.status == 200, r.body
    return json.loads(r.body)["events"]


def posts(store):
    """The store's POSTs as it logged them: (time s, status, bytes_in)."""
    out = []
    for line in store.log_text().splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if d.get("msg") == "request" and d.get("api") == "AuditPostEvents":
            t = datetime.strptime(d["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
            out.append((t, int(d["status"]), int(d["bytes_in"])))
    return out


def test_503_is_retried_with_backoff_then_lands_once(make_server, audit):
    store = audit("status=audit.store.post:503:4")
    srv = gateway(make_server, store)
    corr = uuid.uuid4().hex
    hit(srv, corr, 3)
    wait_until(lambda: len(stored(store, corr)) == 3, 30, what="the events after the 503s")
    p = posts(store)
    assert [s for _, s, _ in p] == [503, 503, 503, 503, 200], p
    gaps = [b[0] - a[0] for a, b in zip(p, p[1:])]
    # Full jitter: each delay is uniform below its ceiling (100 ms doubling);
    # all four near zero would be a backoff that does not back off.
    for i, g in enumerate(gaps):
        assert g <= 0.1 * 2 ** i + 0.5, (i, gaps)
    assert sum(gaps) >= 0.05, gaps
    m = srv.metrics()
    assert m['cairn_audit_retries_total{cause="5xx"}'] == 4
    assert m['cairn_audit_dlq_events_total{kind="held"}'] == 0
    assert len(stored(store, corr)) == 3


def test_400_gets_exactly_one_attempt_then_the_batch_is_split(make_server, audit):
    store = audit("status=audit.store.post:400:1")
    srv = gateway(make_server, store, CAIRN_AUDIT_FLUSH_INTERVAL="1500")
    corr = uuid.uuid4().hex
    hit(srv, corr, 10)
    wait_until(lambda: len(stored(store, corr)) == 10, 30, what="the split batch's events")
    p = posts(store)
    assert [s for _, s, _ in p].count(400) == 1, p
    refused = [b for _, s, b in p if s == 400][0]
    assert all(b < refused for _, s, b in p if s == 200), "the refused batch itself was never sent again"
    m = srv.metrics()
    assert m["cairn_audit_batch_splits_total"] >= 1
    assert sum(v for k, v in m.items() if k.startswith("cairn_audit_retries_total")) == 0
    # The halves were good: nothing rejected, nothing held.
    assert srv.admin("audit", "dlq", "--rejected").stdout.strip() == ""


def test_a_hung_store_times_out_and_the_retry_lands_once(make_server, audit):
    store = audit("pause=audit.store.post:4000:1")
    srv = gateway(make_server, store, CAIRN_AUDIT_TIMEOUT_MS="1000")
    corr = uuid.uuid4().hex
    hit(srv, corr, 3)
    wait_until(lambda: srv.metrics()['cairn_audit_retries_total{cause="timeout"}'] >= 1, 30, what="a timeout")
    wait_until(lambda: len(stored(store, corr)) == 3, 30, what="the retried batch")
    # The hung POST completes after its pause: stored once all the same.
    wait_until(lambda: len(posts(store)) >= 2, 30, what="the paused POST's end")
    assert len(stored(store, corr)) == 3


def test_a_store_that_keeps_answering_503_holds_the_batch_until_it_recovers(make_server, audit):
    store = audit("status=audit.store.post:503")
    srv = gateway(make_server, store, CAIRN_AUDIT_MAX_RETRIES="2")
    corr = uuid.uuid4().hex
    hit(srv, corr, 5)
    wait_until(lambda: srv.metrics()['cairn_audit_dlq_events_total{kind="held"}'] == 5, 30, what="5 held")
    held = [json.loads(line) for line in srv.admin("audit", "dlq").stdout.splitlines()]
    assert len(held) == 5 and all("HTTP 503" in h["reason"] for h in held)
    assert srv.metrics()["cairn_audit_journal_depth"] == 0
    rearm(store, "")
    wait_until(lambda: len(stored(store, corr)) == 5, 30, what="the replay")
    wait_until(lambda: srv.metrics()['cairn_audit_dlq_depth{kind="held"}'] == 0, 30, what="the DLQ drained")
    assert len(stored(store, corr)) == 5
