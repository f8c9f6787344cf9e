"""Bucket notifications, durable (docs/notifications.md).

A real webhook receiver (Receiver: an HTTP server in this process, on a
loopback port, that can be down, answer errors, or be slow) and real
servers.  The tests check what the issue asks: the API
(PutBucketNotificationConfiguration / Get, targets by ARN, filters and
wildcards), delivery at least once with an HMAC signature, retries with
backoff until a dead letter that `cairn admin jobs` retries, a receiver
down for a while then up (every event delivered, duplicates counted and
bounded), kill -9 mid-delivery (nothing lost) and restarts (delivery
resumes), and that a change and its delivery job are one transaction.
"""

import hashlib
import hmac
import json
import signal
import time
import urllib.parse

import pytest
from botocore.exceptions import ClientError

from conftest import assert_fsck_clean, md5_hex, unique_bucket, wait_until
from webhook import Receiver


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def add_target(srv, name, url, *extra):
    cp = srv.admin("notify", "target", "add", name, url, *extra)
    assert f"arn=arn:cairn:sqs::{name}:webhook" in cp.stdout, cp.stdout


def configure(client, bucket, rules):
    """rules: [(target, [events], prefix, suffix)]"""
    cfg = {"QueueConfigurations": []}
    for i, (target, events, prefix, suffix) in enumerate(rules):
        q = {"Id": f"rule-{i}", "QueueArn": f"arn:cairn:sqs::{target}:webhook", "Events": events}
        fr = [{"Name": n, "Value": v} for n, v in (("prefix", prefix), ("suffix", suffix)) if v]
        if fr:
            q["Filter"] = {"Key": {"FilterRules": fr}}
        cfg["QueueConfigurations"].append(q)
    client.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=cfg)


def fast_retries(extra=None):
    return {"CAIRN_JOB_BACKOFF_BASE_MS": "50", "CAIRN_JOB_BACKOFF_MAX_MS": "400", "CAIRN_JOB_POLL_MS": "50",
            **(extra or {})}


# ---- the API -------------------------------------------------------------------------------------


def test_configuration_round_trips_and_refuses_what_it_cannot_deliver(make_server, receiver):
    srv = make_server()
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    assert c.get_bucket_notification_configuration(Bucket=b).get("QueueConfigurations", []) == []
    add_target(srv, "hook1", receiver.url)
    configure(c, b, [("hook1", ["s3:ObjectCreated:*"], "images/", ".jpg"), ("hook1", ["s3:ObjectRemoved:Delete"], "", "")])
    got = c.get_bucket_notification_configuration(Bucket=b)["QueueConfigurations"]
    assert [(q["Id"], q["QueueArn"], q["Events"]) for q in got] == [
        ("rule-0", "arn:cairn:sqs::hook1:webhook", ["s3:ObjectCreated:*"]),
        ("rule-1", "arn:cairn:sqs::hook1:webhook", ["s3:ObjectRemoved:Delete"])]
    assert got[0]["Filter"]["Key"]["FilterRules"] == [{"Name": "Prefix", "Value": "images/"},
                                                     {"Name": "Suffix", "Value": ".jpg"}] or \
        got[0]["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "images/"},
                                                  {"Name": "suffix", "Value": ".jpg"}]
    # refusals: an unknown target, a bad ARN, an unknown event, a topic
    for rules in ([("nosuch", ["s3:ObjectCreated:*"], "", "")],):
        with pytest.raises(ClientError) as e:
            configure(c, b, rules)
        assert e.value.response["Error"]["Code"] == "InvalidArgument"
    for cfg in ({"QueueConfigurations": [{"QueueArn": "arn:aws:sqs:us-east-1:1:q", "Events": ["s3:ObjectCreated:*"]}]},
                {"QueueConfigurations": [{"QueueArn": "arn:cairn:sqs::hook1:webhook", "Events": ["s3:Nope"]}]},
                {"TopicConfigurations": [{"TopicArn": "arn:aws:sns:us-east-1:1:t", "Events": ["s3:ObjectCreated:*"]}]}):
        with pytest.raises(ClientError) as e:
            c.put_bucket_notification_configuration(Bucket=b, NotificationConfiguration=cfg)
        assert e.value.response["Error"]["Code"] == "InvalidArgument", cfg
    r = srv.request("PUT", f"/{b}", query={"notification": ""}, body=b"<NotificationConfiguration><Queue")
    assert r.status == 400 and b"MalformedXML" in r.body
    # the configuration was not touched by the refusals
    assert len(c.get_bucket_notification_configuration(Bucket=b)["QueueConfigurations"]) == 2
    # another user may neither read nor set it
    u = srv.create_user()
    uc = srv.client(*u.creds)
    for call in (lambda: uc.get_bucket_notification_configuration(Bucket=b),
                 lambda: uc.put_bucket_notification_configuration(Bucket=b, NotificationConfiguration={})):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "AccessDenied"
    # an empty configuration removes it
    c.put_bucket_notification_configuration(Bucket=b, NotificationConfiguration={})
    assert c.get_bucket_notification_configuration(Bucket=b).get("QueueConfigurations", []) == []


def test_targets_are_managed_with_cairn_admin(make_server):
    srv = make_server()
    add_target(srv, "one", "http://127.0.0.1:9/x", "--secret", "s3cr3t", "--max-attempts", "3")
    cp = srv.admin("notify", "target", "list")
    assert "target=one arn=arn:cairn:sqs::one:webhook url=http://127.0.0.1:9/x signed=yes max_attempts=3" in cp.stdout
    assert "s3cr3t" not in cp.stdout
    assert srv.admin("notify", "target", "add", "one", "http://x/", check=False).returncode == 1
    assert srv.admin("notify", "target", "add", "bad name", "http://x/", check=False).returncode == 2
    assert srv.admin("notify", "target", "add", "two", "ftp://x/", check=False).returncode == 2
    assert srv.admin("notify", "target", "remove", "one").returncode == 0
    assert srv.admin("notify", "target", "remove", "one", check=False).returncode == 1


# ---- delivery ------------------------------------------------------------------------------------


def test_filters_and_wildcards_choose_what_is_delivered_signed(make_server, receiver):
    srv = make_server(env=fast_retries())
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    add_target(srv, "signed", receiver.url, "--secret", "hook-secret")
    configure(c, b, [("signed", ["s3:ObjectCreated:Put"], "images/", ".jpg"),
                     ("signed", ["s3:ObjectRemoved:*"], "logs/", "")])
    c.put_object(Bucket=b, Key="images/a.jpg", Body=b"jpeg")     # yes
    c.put_object(Bucket=b, Key="images/a.png", Body=b"png")      # no: suffix
    c.put_object(Bucket=b, Key="other/b.jpg", Body=b"x")         # no: prefix
    c.copy_object(Bucket=b, Key="images/c.jpg", CopySource={"Bucket": b, "Key": "images/a.jpg"})  # no: Copy
    c.put_object(Bucket=b, Key="logs/1", Body=b"l")              # no: created
    c.delete_object(Bucket=b, Key="logs/1")                      # yes
    c.delete_object(Bucket=b, Key="logs/never-was")              # no: nothing removed
    c.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "images/a.png"}]})  # no: prefix of the removal rule
    c.put_object(Bucket=b, Key="images/last.jpg", Body=b"end")   # yes: the marker
    wait_until(lambda: "images/last.jpg" in receiver.keys(), 30, what="the marker delivered")
    assert sorted(receiver.keys()) == ["images/a.jpg", "images/last.jpg", "logs/1"]
    with receiver.lock:
        for headers, body in receiver.requests:
            want = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
            assert headers["X-Cairn-Signature"] == f"sha256={want}"
            assert headers["Content-Type"] == "application/json"
    ev = {urllib.parse.unquote_plus(r["s3"]["object"]["key"]): r for _, r in receiver.events()}
    assert ev["images/a.jpg"]["eventName"] == "ObjectCreated:Put"
    assert ev["images/a.jpg"]["s3"]["object"]["eTag"] == md5_hex(b"jpeg")
    assert ev["images/a.jpg"]["s3"]["configurationId"] == "rule-0"
    assert ev["logs/1"]["eventName"] == "ObjectRemoved:Delete"


def test_a_receiver_down_then_up_gets_every_event(make_server, receiver):
    srv = make_server(env=fast_retries())
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    add_target(srv, "flaky", receiver.url, "--max-attempts", "1000")
    configure(c, b, [("flaky", ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], "", "")])
    receiver.stop()
    n = 60
    for i in range(n):
        c.put_object(Bucket=b, Key=f"k{i:03d}", Body=b"v")
    wait_until(lambda: srv.metrics().get("cairn_notify_failed_total", 0) >= 5, 30, what="deliveries failing")
    receiver.start()
    wait_until(lambda: len(set(receiver.keys())) == n, 60, what="every event delivered")
    ids = [d for d, _ in receiver.events()]
    dup = len(ids) - len(set(ids))
    print(f"{len(ids)} deliveries of {n} events, {dup} duplicates")
    assert dup <= n // 10, f"duplicates are bounded: {dup}"
    assert sorted(set(receiver.keys())) == [f"k{i:03d}" for i in range(n)]


def test_dead_letters_after_max_attempts_and_admin_retry_delivers(make_server, receiver):
    srv = make_server(env=fast_retries())
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    add_target(srv, "strict", receiver.url, "--max-attempts", "3")
    configure(c, b, [("strict", ["s3:ObjectCreated:*"], "", "")])
    receiver.status = 500
    c.put_object(Bucket=b, Key="doomed", Body=b"x")

    def discarded():
        out = srv.admin("jobs", "list", "--state", "discarded", "--kind", "notify").stdout
        return [ln for ln in out.splitlines() if ln.strip()]
    wait_until(lambda: len(discarded()) == 1, 30, what="the event is a dead letter")
    line = discarded()[0]
    assert "HTTP 500" in line, line
    job_id = line.split()[0]
    receiver.status = 200
    srv.admin("jobs", "retry", job_id)
    wait_until(lambda: receiver.keys() == ["doomed"], 30, what="the retried dead letter delivered")


def test_kill_9_mid_delivery_loses_nothing_and_a_restart_resumes(make_server, receiver):
    srv = make_server(env=fast_retries({"CAIRN_JOB_LEASE_MS": "1000"}))
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    add_target(srv, "slow", receiver.url, "--max-attempts", "1000")
    configure(c, b, [("slow", ["s3:ObjectCreated:*"], "", "")])
    receiver.delay = 0.3            # deliveries in flight when the kill comes
    acked = []
    for i in range(30):
        c.put_object(Bucket=b, Key=f"e{i:02d}", Body=b"x")
        acked.append(f"e{i:02d}")   # the ledger: acknowledged writes
    wait_until(lambda: len(receiver.keys()) >= 2, 30, what="deliveries under way")
    srv.proc.send_signal(signal.SIGKILL)
    srv.proc.wait()
    receiver.delay = 0
    srv.start()
    wait_until(lambda: set(receiver.keys()) >= set(acked), 60, what="every acknowledged write's event delivered")
    assert sorted(set(receiver.keys())) == acked
    srv.stop()
    assert_fsck_clean(srv.data_dir, env=srv.cli_env())


def test_a_bucket_deleted_and_made_again_has_no_configuration(make_server, receiver):
    srv = make_server(env=fast_retries())
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    add_target(srv, "t", receiver.url)
    configure(c, b, [("t", ["s3:ObjectCreated:*"], "", "")])
    c.delete_bucket(Bucket=b)
    c.create_bucket(Bucket=b)
    assert c.get_bucket_notification_configuration(Bucket=b).get("QueueConfigurations", []) == []
    c.put_object(Bucket=b, Key="quiet", Body=b"x")
    b2 = unique_bucket()
    c.create_bucket(Bucket=b2)
    configure(c, b2, [("t", ["s3:ObjectCreated:*"], "", "")])
    c.put_object(Bucket=b2, Key="marker", Body=b"x")
    wait_until(lambda: "marker" in receiver.keys(), 30, what="the marker")
    assert receiver.keys() == ["marker"]


def test_an_ordered_target_gets_the_events_of_a_key_in_commit_order(make_server, receiver):
    srv = make_server(env=fast_retries({"CAIRN_JOB_WORKERS": "4"}))
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    add_target(srv, "inorder", receiver.url, "--ordered", "--max-attempts", "100")
    assert "ordered=yes" in srv.admin("notify", "target", "list").stdout
    configure(c, b, [("inorder", ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], "", "")])
    first = md5_hex(b"v1")
    refused = []

    def reject(headers, body):
        # the first event of the key fails its first five deliveries
        rec = json.loads(body)["Records"][0]
        if rec["s3"]["object"].get("eTag") == first and len(refused) < 5:
            refused.append(1)
            return 500
        return None
    receiver.reject = reject
    c.put_object(Bucket=b, Key="k", Body=b"v1")
    c.put_object(Bucket=b, Key="k", Body=b"v2")
    c.delete_object(Bucket=b, Key="k")
    c.put_object(Bucket=b, Key="other", Body=b"x")   # another key is not held up
    wait_until(lambda: len(receiver.events()) == 4, 60, what="all four events delivered")
    got = [(r["eventName"], r["s3"]["object"]["key"], r["s3"]["object"].get("eTag")) for _, r in receiver.events()]
    of_k = [g for g in got if g[1] == "k"]
    assert of_k == [("ObjectCreated:Put", "k", first), ("ObjectCreated:Put", "k", md5_hex(b"v2")),
                    ("ObjectRemoved:Delete", "k", None)], got
    assert len(refused) == 5
    assert got.index(("ObjectCreated:Put", "other", md5_hex(b"x"))) < got.index(of_k[0]), \
        "another key's event went ahead of the held one"


def test_versioned_buckets_send_version_ids_and_delete_marker_events(make_server, receiver):
    srv = make_server(env=fast_retries())
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    add_target(srv, "v", receiver.url)
    configure(c, b, [("v", ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"], "", "")])
    vid = c.put_object(Bucket=b, Key="k", Body=b"one")["VersionId"]
    marker = c.delete_object(Bucket=b, Key="k")["VersionId"]
    c.delete_object(Bucket=b, Key="k", VersionId=vid)

    def names():
        return [(r["eventName"], r["s3"]["object"].get("versionId")) for _, r in receiver.events()]
    wait_until(lambda: len(names()) >= 3, 30, what=f"three events, not {names()}")
    # The marker's event names it as the response's x-amz-version-id does,
    # though its job was rendered before the commit that made the marker.
    assert marker and marker != vid
    assert sorted(names()) == sorted([("ObjectCreated:Put", vid), ("ObjectRemoved:DeleteMarkerCreated", marker),
                                      ("ObjectRemoved:Delete", vid)])
    assert listed_versions(c, b) == ([], [("k", marker)]), "the marker is stored under the id its event names"


def listed_versions(c, b):
    r = c.list_object_versions(Bucket=b)
    return ([(v["Key"], v["VersionId"]) for v in r.get("Versions", [])],
            [(m["Key"], m["VersionId"]) for m in r.get("DeleteMarkers", [])])


def test_delete_objects_names_each_marker_it_makes(make_server, receiver):
    srv = make_server(env=fast_retries())
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    add_target(srv, "dm", receiver.url)
    configure(c, b, [("dm", ["s3:ObjectRemoved:*"], "", "")])
    vids = {k: c.put_object(Bucket=b, Key=k, Body=b"x")["VersionId"] for k in ("a", "b", "c")}
    r = c.delete_objects(Bucket=b, Delete={"Objects": [{"Key": "a"}, {"Key": "b"},
                                                       {"Key": "c", "VersionId": vids["c"]}]})
    answered = {d["Key"]: d.get("DeleteMarkerVersionId") for d in r["Deleted"]}
    assert answered["a"] and answered["b"] and answered["a"] != answered["b"] and answered["c"] is None

    def got():
        return sorted((urllib.parse.unquote_plus(r["s3"]["object"]["key"]), r["eventName"],
                       r["s3"]["object"].get("versionId")) for _, r in receiver.events())
    wait_until(lambda: len(got()) >= 3, 30, what=f"three events, not {got()}")
    assert got() == [("a", "ObjectRemoved:DeleteMarkerCreated", answered["a"]),
                     ("b", "ObjectRemoved:DeleteMarkerCreated", answered["b"]),
                     ("c", "ObjectRemoved:Delete", vids["c"])]
    assert sorted(listed_versions(c, b)[1]) == [("a", answered["a"]), ("b", answered["b"])]


def test_a_suspended_buckets_marker_is_the_null_version(make_server, receiver):
    srv = make_server(env=fast_retries())
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Suspended"})
    add_target(srv, "dm", receiver.url)
    configure(c, b, [("dm", ["s3:ObjectRemoved:DeleteMarkerCreated"], "", "")])
    c.put_object(Bucket=b, Key="k", Body=b"x")
    assert c.delete_object(Bucket=b, Key="k")["VersionId"] == "null"
    wait_until(lambda: len(receiver.events()) >= 1, 30, what="the marker's event")
    assert [r["s3"]["object"].get("versionId") for _, r in receiver.events()] == ["null"]


# ---- lifecycle's removals (docs/lifecycle.md) --------------------------------------------------

LIFECYCLE_FAST = {"CAIRN_LIFECYCLE_DAY_SECONDS": "1", "CAIRN_LIFECYCLE_OBJECTS_PER_SECOND": "0"}


def lifecycle_run(srv, bucket, deadline=60):
    """Runs lifecycle on bucket now and waits for the run to complete."""
    def done():
        return [r for r in srv.log_records() if r.get("msg") == "lifecycle run done" and r.get("bucket") == bucket]
    before = len(done())
    srv.admin("lifecycle", "run", "--bucket", bucket)
    wait_until(lambda: len(done()) > before, deadline, interval=0.05, what=f"a lifecycle run of {bucket}")
    return done()[-1]


def expire_all(c, b):
    c.put_bucket_lifecycle_configuration(Bucket=b, LifecycleConfiguration={"Rules": [
        {"ID": "e", "Filter": {}, "Status": "Enabled", "Expiration": {"Days": 1}}]})
    time.sleep(2.2)     # with lifecycle_day_seconds 1 every version is due by then: the run's precondition


def test_lifecycle_expiration_notifies_each_removed_object(make_server, receiver):
    srv = make_server(env=fast_retries(LIFECYCLE_FAST))
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    add_target(srv, "lc", receiver.url)
    add_target(srv, "created", receiver.url + "/created")
    configure(c, b, [("lc", ["s3:LifecycleExpiration:*"], "", ""), ("created", ["s3:ObjectCreated:*"], "", ""),
                     ("lc", ["s3:ObjectRemoved:*"], "", "")])
    keys = ["a", "dir/b", "c d+e"]
    for k in keys:
        c.put_object(Bucket=b, Key=k, Body=b"x")
    wait_until(lambda: len(receiver.events()) >= 3, 30, what="the creations delivered")
    created = len(receiver.events())
    expire_all(c, b)
    rec = lifecycle_run(srv, b)
    assert int(rec["expired"]) == 3
    wait_until(lambda: len(receiver.events()) >= created + 3, 30, what="three expirations delivered")
    srv.wait_jobs_idle("notify")    # the jobs were queued by the run's commits: all are done now
    assert len(srv.jobs("--kind", "notify")) == created + 3, "one job per object, none for the other rules"
    got = [r for _, r in receiver.events()][created:]
    assert sorted(urllib.parse.unquote_plus(r["s3"]["object"]["key"]) for r in got) == sorted(keys)
    for r in got:
        assert r["eventName"] == "LifecycleExpiration:Delete"
        assert r["eventSource"] == "aws:s3" and r["s3"]["bucket"]["name"] == b
        assert r["userIdentity"]["principalId"] == "cairn:lifecycle"
        assert r["s3"]["configurationId"] == "rule-0"
        assert "versionId" not in r["s3"]["object"], "an unversioned bucket's events name no version"
    with receiver.lock:
        assert all(h["X-Cairn-Target"] == "lc" for h, _ in receiver.requests[created:])


def test_lifecycle_delete_markers_are_notified_with_their_version_id(make_server, receiver):
    srv = make_server(env=fast_retries(LIFECYCLE_FAST))
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    c.put_bucket_versioning(Bucket=b, VersioningConfiguration={"Status": "Enabled"})
    add_target(srv, "lc", receiver.url)
    configure(c, b, [("lc", ["s3:LifecycleExpiration:DeleteMarkerCreated"], "", "")])
    v1 = {k: c.put_object(Bucket=b, Key=k, Body=b"x")["VersionId"] for k in ("k1", "k2")}
    expire_all(c, b)
    rec = lifecycle_run(srv, b)
    assert int(rec["markers_made"]) == 2
    vs, ms = listed_versions(c, b)
    assert sorted(vs) == sorted(v1.items())
    markers = dict(ms)
    assert len(markers) == 2 and not set(markers.values()) & set(v1.values())
    wait_until(lambda: len(receiver.events()) >= 2, 30, what="two markers delivered")
    got = {urllib.parse.unquote_plus(r["s3"]["object"]["key"]): r for _, r in receiver.events()}
    assert len(receiver.events()) == 2
    for k in ("k1", "k2"):
        assert got[k]["eventName"] == "LifecycleExpiration:DeleteMarkerCreated"
        assert got[k]["s3"]["object"]["versionId"] == markers[k], "the marker's id, as ListObjectVersions shows it"
        assert got[k]["userIdentity"]["principalId"] == "cairn:lifecycle"


def test_lifecycle_removals_do_not_reach_a_rule_for_creations(make_server, receiver):
    srv = make_server(env=fast_retries(LIFECYCLE_FAST))
    c = srv.client()
    b = unique_bucket()
    c.create_bucket(Bucket=b)
    add_target(srv, "created", receiver.url)
    configure(c, b, [("created", ["s3:ObjectCreated:*"], "", "")])
    c.put_object(Bucket=b, Key="k", Body=b"x")
    expire_all(c, b)
    assert int(lifecycle_run(srv, b)["expired"]) == 1
    assert c.list_objects_v2(Bucket=b).get("KeyCount", 0) == 0
    srv.wait_jobs_idle("notify")
    assert len(srv.jobs("--kind", "notify")) == 1, "the creation's job alone"
    assert [(r["eventName"], r["s3"]["object"]["key"]) for _, r in receiver.events()] == [("ObjectCreated:Put", "k")]
