"""PostgreSQL metadata with the answer to each statement of a request lost in
turn (the fault build's `pg.answer` site: PostgreSQL ran the statement, then
the connection went, as when a network drops between the two) or lost
before it was sent (`pg.send`), or the gateway crashing at either point.  Six local drives; the loop
and the checks after each run are faultlib.py's: a clean answer, the ledger
of acknowledged writes, no temp file, and `cairn admin fsck` clean.

A lost COMMIT is the case that matters: the transaction committed, and the
gateway must not answer as if it had not.  It learns the outcome from
PostgreSQL by the transaction's id (docs/metadata.md, "A lost COMMIT"), so
such a run answers the success the write was: not a 500 a client retries
into a 412 (If-None-Match), a 404 (NoSuchUpload) or a second delete marker.
"""
import base64
import hashlib
import json
import xml.etree.ElementTree as ET

import pytest

import cairn_harness
from cairn_harness import wait_until
from faultlib import FaultStore, Ledger, loop_over_calls, response_is_clean
from test_faults import body_for, complete_body, delete_case, getter, heal_case, request, setup_bucket

SITES = "pg.*"      # pg.send, pg.answer
WINDOW = "s3.request"   # the calls one S3 request's thread makes, not the background's


@pytest.fixture(scope="module")
def pg():
    cluster = cairn_harness.pg_cluster()
    yield cluster
    cluster.close()
    cairn_harness._pg = None


@pytest.fixture
def store(tmp_path, pg):
    name = pg.clone()
    s = FaultStore(tmp_path, env={"CAIRN_METADATA_URL": pg.url(name)}).start()
    yield s
    if s.srv.proc and s.srv.proc.poll() is None:
        s.srv.kill()
    assert pg.drop(name), f"the metadata clone {name} is still in use"


def lost_at(store, mark):
    """This run's injected loss: ("answer" or "send", the statement's op),
    or None."""
    for line in store.log_lines()[mark:]:
        if "fault injected)" in line and "connection lost before" in line:
            doc = json.loads(line)
            return ("answer" if "its answer" in doc["msg"] else "send"), doc.get("op")
    return None


def lost_commit(store, mark, seen):
    """Which way this run (its log from mark) lost a COMMIT, "answer" or
    "send", or None; added to seen.  The gateway must have learnt the
    outcome from PostgreSQL: committed for a lost answer, aborted for a
    COMMIT never sent."""
    lost = lost_at(store, mark)
    if not lost or lost[1] != "commit":
        return None
    seen.add(lost[0])
    outcome = [l for l in store.log_lines()[mark:] if "the outcome of a commit" in l]
    want = "committed" if lost[0] == "answer" else "aborted"
    assert outcome and f'"outcome":"{want}"' in outcome[0], outcome
    return lost[0]


def check_answer(store, action, r, ok_status):
    """A clean answer; with the server alive, a COMMIT whose answer was lost
    is answered as the success it was, and one never sent as the failure it
    was, each after PostgreSQL told the gateway so."""
    assert response_is_clean(r), r
    way = lost_commit(store, store.mark, store.lost_commits) if action == "fail" else None
    if way == "answer":
        assert r is not None and r.status == ok_status, f"the COMMIT committed but the answer was {r}"
    elif way == "send":
        assert r is not None and r.status >= 500, f"the COMMIT was never sent but the answer was {r}"


def run_loop(store, action, op, ledger, bucket, setup=None):
    """The loop (store.mark: where this run's log begins, for check_answer);
    with action=fail, it must have lost a COMMIT both ways."""
    store.lost_commits = set()

    def marked_op(n, ctx):
        store.mark = len(store.log_lines())
        op(n, ctx)
    runs = loop_over_calls(store, SITES, action, marked_op, lambda: ledger.check(getter(store, bucket)),
                           window=WINDOW, window_scope="thread", setup=setup)
    if action == "fail":
        assert store.lost_commits == {"answer", "send"}, store.lost_commits
    return runs


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_overwrite(store, action):
    b = setup_bucket(store)
    ledger = Ledger()
    old = body_for("v0")
    assert store.srv.request("PUT", f"/{b}/k", body=old).status == 200
    ledger.acknowledged("k", old)

    def op(n, _ctx):
        body = body_for(f"v{n}")
        r = request(store, "PUT", f"/{b}/k", body=body)
        check_answer(store, action, r, 200)
        ledger.record("k", body, r, 200)

    runs = run_loop(store, action, op, ledger, b)
    assert runs >= 3, f"an overwrite makes several statements (the commit among them); only {runs} reached"


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_conditional_put(store, action):
    """If-None-Match: * on a new key: a lost COMMIT must not turn into a 412
    for the write that made the key (the client's retry would get one)."""
    b = setup_bucket(store)
    ledger = Ledger()

    def op(n, _ctx):
        key, body = f"c{n}", body_for(f"c{n}")
        r = request(store, "PUT", f"/{b}/{key}", body=body, headers={"If-None-Match": "*"})
        check_answer(store, action, r, 200)
        ledger.record(key, body, r, 200)

    assert run_loop(store, action, op, ledger, b) >= 3


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_delete(store, action):
    b = setup_bucket(store)
    ledger = Ledger()

    def check(r):
        check_answer(store, action, r, 204)
    setup, op = delete_case(store, b, ledger, check)
    assert run_loop(store, action, op, ledger, b, setup=setup) >= 2


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_complete_multipart(store, action):
    b = setup_bucket(store)
    ledger = Ledger()

    def setup(n):
        key = f"mp{n}"
        p1, p2 = body_for(f"p1-{n}") * 18, body_for(f"p2-{n}")   # 5.4 MB, 300 kB
        c = store.srv.client()
        uid = c.create_multipart_upload(Bucket=b, Key=key)["UploadId"]
        for num, part in ((1, p1), (2, p2)):
            c.upload_part(Bucket=b, Key=key, UploadId=uid, PartNumber=num, Body=part)
        return key, uid, p1, p2

    def op(n, ctx):
        key, uid, p1, p2 = ctx
        r = request(store, "POST", f"/{b}/{key}", query={"uploadId": uid}, body=complete_body([(1, p1), (2, p2)]))
        check_answer(store, action, r, 200)
        ledger.record(key, p1 + p2, r, 200)

    assert run_loop(store, action, op, ledger, b, setup=setup) >= 3


def delete_objects_body(keys):
    return ("<Delete>" + "".join(f"<Object><Key>{k}</Key></Object>" for k in keys) + "</Delete>").encode()


def delete_objects_result(body):
    """(keys reported deleted, keys reported as errors) of a DeleteObjects answer."""
    root = ET.fromstring(body)
    ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""
    deleted = {e.findtext(f"{ns}Key") for e in root.findall(f"{ns}Deleted")}
    errors = {e.findtext(f"{ns}Key") for e in root.findall(f"{ns}Error")}
    return deleted, errors


def delete_objects_case(store, b, ledger, check):
    """setup(n) and op(n, keys) of a DeleteObjects loop (test_faults.py has
    one too): three keys, inline and shard-backed; check(r) judges the
    answer first.  A key the answer lists as Deleted must be gone; one
    listed as an Error, or in a failed answer, may be either."""
    def setup(n):
        keys = [f"d{n}-{i}" for i in range(3)]
        for i, k in enumerate(keys):
            body = body_for(k) if i % 2 else body_for(k)[:1000]
            assert store.srv.request("PUT", f"/{b}/{k}", body=body).status == 200
            ledger.acknowledged(k, body)
        return keys

    def op(n, keys):
        body = delete_objects_body(keys)
        md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
        r = request(store, "POST", f"/{b}", query={"delete": ""}, body=body, headers={"Content-MD5": md5})
        check(r)
        deleted, errors = delete_objects_result(r.body) if r is not None and r.status == 200 else (set(), set(keys))
        assert deleted | errors == set(keys), r.body
        for k in keys:
            if k in deleted:
                ledger.acknowledged(k, None)
            else:
                ledger.uncertain(k, None)
    return setup, op


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_delete_objects(store, action):
    """DeleteObjects of three keys in one transaction (a savepoint each),
    whichever statement was lost."""
    b = setup_bucket(store)
    ledger = Ledger()

    def check(r):
        check_answer(store, action, r, 200)
    setup, op = delete_objects_case(store, b, ledger, check)
    assert run_loop(store, action, op, ledger, b, setup=setup) >= 3


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_heal_job(store, action):
    """Background work: a heal job (queued by a degraded read) with each
    statement of its run and of the recording of its end lost in turn
    (window=job.heal, the worker's own calls), or the gateway crashing
    there.  The job is retried until the shard is back (fsck clean), and a
    lost COMMIT of its end is learnt from PostgreSQL like a request's."""
    b = setup_bucket(store)
    ledger = Ledger()
    setup, op = heal_case(store, b, ledger)
    lost_commits = set()

    def marked_op(n, key):
        mark = len(store.log_lines())
        op(n, key)
        if action == "fail":
            lost_commit(store, mark, lost_commits)
    runs = loop_over_calls(store, SITES, action, marked_op, lambda: ledger.check(getter(store, b)),
                           window="job.heal", window_scope="thread", setup=setup)
    if action == "fail":
        assert lost_commits == {"answer", "send"}, lost_commits
    assert runs >= 4, runs


def test_job_listener_open_fails(pg, tmp_path):
    """The job listener's opening (its own connection, then LISTEN) with
    each of its statements lost in turn, at start: the failure is logged,
    the listener retries by itself, and a job runs meanwhile (the workers
    poll).  Each run on a fresh clone and fresh drives; ends when a run's
    opening makes fewer statements."""
    reached = 0
    for n in range(1, 20):
        name = pg.clone()
        (tmp_path / f"run{n}").mkdir()
        spec = f"sites={SITES};nth={n};window=jobs.listen;window_scope=thread"
        s = FaultStore(tmp_path / f"run{n}", env={"CAIRN_METADATA_URL": pg.url(name), "CAIRN_TEST_FAULT": spec})
        try:
            s.start()
            log = s.log_lines()
            injected = [i for i, l in enumerate(log) if "fault injected" in l]
            if not injected:
                break
            reached += 1
            assert any("job listener cannot connect yet" in l for l in log[injected[0]:]), "the failed start was not logged"
            wait_until(lambda: any("job listener listening" in l for l in s.log_lines()[injected[0]:]), 15,
                       what="the job listener to open after its failed start")
            # A job still runs: a heal, queued by a degraded read.
            b = setup_bucket(s)
            ledger = Ledger()
            setup, op = heal_case(s, b, ledger)
            op(n, setup(n))
            ledger.check(getter(s, b))
            assert s.srv.stop() == 0
            s.fsck()
        finally:
            if s.srv.proc and s.srv.proc.poll() is None:
                s.srv.kill()
            assert pg.drop(name), f"the metadata clone {name} is still in use"
    assert reached >= 2, f"only {reached} statements of the listener's opening were reached"
