"""The audit-server's test mode (docs/fault-injection.md, docs/audit.md): in
the fault build, the points audit.store.post and audit.store.get answer a
status or sleep on demand, armed at start (CAIRN_TEST_FAULT) or re-armed
from CAIRN_TEST_FAULT_FILE on SIGUSR1, so that the audit client's retries
are tested against the real store.  These tests check that the test mode
does what the client's tests will rely on.  CAIRN_BIN must be the fault
build (build-faults/cairn)."""

import json
import secrets
import signal

import pytest

from cairn_harness import wait_until

PATH = "/audit/v1/events"


@pytest.fixture
def audit(make_audit_server):
    return lambda fault="": make_audit_server(fault=fault)


def rearm(srv, spec):
    """Writes the spec and sends SIGUSR1; waits until the server logged it."""
    before = srv.current_log().count("fault injection armed")
    srv.fault_file.write_text(spec)
    srv.proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: srv.current_log().count("fault injection armed") > before, 10, what="the re-arm")


def batch(corr, n=3):
    return {"events": [{"event_id": secrets.token_hex(16), "time": "2026-11-30T17:41:02.%06dZ" % i,
                        "request_id": f"r{i}", "correlation_id": corr, "principal": "AK", "action": "s3:PutObject",
                        "outcome": "success", "status": 200} for i in range(n)]}


def post(srv, doc, timeout=60):
    return srv.request("POST", PATH, body=json.dumps(doc).encode(), timeout=timeout)


def stored(srv, corr):
    r = srv.request("GET", PATH, query={"correlation_id": corr, "limit": "1000"})
    assert r.status == 200, r.body
    return json.loads(r.body)["events"]


def test_503_for_the_first_posts_then_success_stores_once(audit):
    srv = audit("status=audit.store.post:503:2")
    doc = batch("s503")
    for _ in range(2):
        r = post(srv, doc)
        assert r.status == 503, r.body
        assert r.header("Retry-After") == "1"
        assert json.loads(r.body)["error"] == "InjectedFault"
    assert stored(srv, "s503") == [], "an answered 503 stored nothing"
    r = post(srv, doc)
    assert r.status == 200 and json.loads(r.body) == {"accepted": 3, "duplicates": 0}
    assert len(stored(srv, "s503")) == 3


def test_400_names_an_event_and_stores_nothing(audit):
    srv = audit("status=audit.store.post:400:1")
    r = post(srv, batch("s400"))
    assert r.status == 400
    doc = json.loads(r.body)
    assert doc["error"] == "invalid event" and doc["index"] == 0 and doc["field"] == "event_id"
    assert stored(srv, "s400") == []


def test_a_hung_post_times_out_the_client_and_its_retry_lands_once(audit):
    srv = audit()
    rearm(srv, "pause=audit.store.post:3000:1")
    doc = batch("hang")
    with pytest.raises((TimeoutError, OSError)):
        post(srv, doc, timeout=0.5)
    r = post(srv, doc)  # the retry: the pause was only for the first
    assert r.status == 200, r.body
    # The hung request finishes too, later; the batch is stored once either way.
    wait_until(lambda: srv.current_log().count('"api":"AuditPostEvents","status":"200"') >= 2, 15,
               what="the paused request to finish")
    assert len(stored(srv, "hang")) == 3


def test_get_can_fail_and_rearming_clears_it(audit):
    srv = audit("status=audit.store.get:503")
    r = srv.request("GET", PATH)
    assert r.status == 503
    assert post(srv, batch("g")).status == 200, "POST is another point"
    rearm(srv, "")
    assert len(stored(srv, "g")) == 3
