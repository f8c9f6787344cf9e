"""Bucket notifications under faults: a change and its delivery job are one
transaction.  Every metadata I/O call of a PUT and of a DELETE to a bucket
with a notification rule fails (EIO or ENOSPC in turn) or crashes the server
right before it (faultlib.py's loop).  After each run and a clean restart,
once the job queue is idle: every key whose object exists had its
ObjectCreated delivered, no key whose PUT did not take effect had one, and
every removal that took effect had its ObjectRemoved delivered; fsck is
clean (after_run)."""
import urllib.parse

import pytest

from cairn_harness import unique_bucket
from faultlib import FaultStore, Ledger, loop_over_calls, response_is_clean
from test_faults import getter, request
from webhook import Receiver


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def store(tmp_path):
    s = FaultStore(tmp_path, drives=0).start()
    yield s
    if s.srv.proc and s.srv.proc.poll() is None:
        s.srv.kill()


def configure(store, receiver):
    b = unique_bucket()
    assert store.srv.request("PUT", f"/{b}").status == 200
    store.srv.admin("notify", "target", "add", "hook", receiver.url, "--max-attempts", "100")
    cfg = ("<NotificationConfiguration><QueueConfiguration><Id>all</Id><Queue>arn:cairn:sqs::hook:webhook</Queue>"
           "<Event>s3:ObjectCreated:*</Event><Event>s3:ObjectRemoved:*</Event></QueueConfiguration>"
           "</NotificationConfiguration>")
    r = store.srv.request("PUT", f"/{b}", query={"notification": ""}, body=cfg.encode())
    assert r.status == 200, r
    return b


def delivered(receiver, event):
    return {urllib.parse.unquote_plus(r["s3"]["object"]["key"]) for _, r in receiver.events()
            if r["eventName"].startswith(event)}


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_put_and_its_notification_are_one_transaction(store, receiver, action):
    b = configure(store, receiver)
    ledger = Ledger()
    keys = []

    def op(n, _ctx):
        key, body = f"k{n}", f"v{n}".encode()
        keys.append(key)
        r = request(store, "PUT", f"/{b}/{key}", body=body)
        assert response_is_clean(r), r
        if r is not None and r.status == 200:
            ledger.acknowledged(key, body)
        else:
            ledger.uncertain(key, body)

    def verify():
        ledger.check(getter(store, b))
        store.jobs_idle()
        exists = {k for k in keys if ledger.may[k] != {None}}
        assert delivered(receiver, "ObjectCreated") == exists, (
            f"created and notified differ: {sorted(delivered(receiver, 'ObjectCreated') ^ exists)}")

    runs = loop_over_calls(store, "meta.*", action, op, verify)
    assert runs >= 3, f"a PUT's commit makes several metadata I/O calls; only {runs} reached"


@pytest.mark.deadline(900)
@pytest.mark.parametrize("action", ["fail", "abort"])
def test_delete_and_its_notification_are_one_transaction(store, receiver, action):
    b = configure(store, receiver)
    ledger = Ledger()
    keys = []

    def setup(n):
        key = f"d{n}"
        assert store.srv.request("PUT", f"/{b}/{key}", body=b"x").status == 200
        ledger.acknowledged(key, b"x")
        keys.append(key)
        return key

    def op(n, key):
        r = request(store, "DELETE", f"/{b}/{key}")
        assert response_is_clean(r), r
        if r is not None and r.status == 204:
            ledger.acknowledged(key, None)
        else:
            ledger.uncertain(key, None)

    def verify():
        ledger.check(getter(store, b))
        store.jobs_idle()
        gone = {k for k in keys if ledger.may[k] == {None}}
        assert delivered(receiver, "ObjectRemoved") == gone, (
            f"removed and notified differ: {sorted(delivered(receiver, 'ObjectRemoved') ^ gone)}")

    runs = loop_over_calls(store, "meta.*", action, op, verify, setup=setup)
    assert runs >= 3, f"a DELETE's commit makes several metadata I/O calls; only {runs} reached"
