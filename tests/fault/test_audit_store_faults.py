"""The audit-server's test mode (docs/fault-injection.md, docs/audit.md): in
the fault build, the points audit.store.post and audit.store.get answer a
status or sleep on demand, armed at start (CAIRN_TEST_FAULT) or re-armed
from CAIRN_TEST_FAULT_FILE on SIGUSR1, so that the audit client's retries
are tested against the real store.  These tests check that the test mode
does what the client's tests will rely on.  CAIRN_BIN must be the fault
build (build-faults/cairn)."""

import http.client
import json
import secrets
import signal
import subprocess
import time

import pytest

import sigv4
from cairn_harness import (CAIRN_BIN, CairnServer, free_port, random_access_key, random_secret,
                           wait_until)

PATH = "/audit/v1/events"


class AuditServer(CairnServer):
    def spawn(self, port=None):
        self.port = port or free_port()
        self.starts += 1
        self.spawned_ms = int(time.time() * 1000)
        err = self.workdir / f"{self.name}-{self.starts}.stderr.log"
        out = self.workdir / f"{self.name}-{self.starts}.stdout.log"
        self.stderr_paths.append(err)
        self.stdout_paths.append(out)
        cmd = [CAIRN_BIN, "audit-server", "--listen", f"127.0.0.1:{self.port}", "--data", str(self.data_dir)]
        with open(err, "wb") as ferr, open(out, "wb") as fout:
            self.proc = subprocess.Popen(cmd, stdout=fout, stderr=ferr, stdin=subprocess.DEVNULL,
                                         env=self.env(), cwd=self.workdir)
        return self.proc


@pytest.fixture
def audit(tmp_path):
    made = []

    def factory(fault=""):
        fault_file = tmp_path / f"fault{len(made)}.spec"
        fault_file.write_text(fault)
        srv = AuditServer(tmp_path / f"a{len(made)}", root=(random_access_key(), random_secret()),
                          env={"CAIRN_TEST_FAULT": fault, "CAIRN_TEST_FAULT_FILE": str(fault_file),
                               "CAIRN_AUDIT_RETENTION_DAYS": "0"},
                          name=f"audit{len(made)}")
        srv.fault_file = fault_file
        made.append(srv)
        srv.start()
        return srv

    yield factory
    for srv in made:
        if srv.alive():
            assert srv.stop(timeout=30) == 0, srv.log_tail()


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
