"""The PostgreSQL metadata pool as a client and an operator see it: its
settings (db_pool_*, db_*_ms) reach the pool, a pool with no free
connection answers 503 SlowDown with Retry-After instead of hanging,
/metrics carries the pool's figures, and a PostgreSQL server stopped under
load turns requests into quick 503s, /health/ready says the database is
down, and service comes back by itself once the server is started again.

The outage test runs its own PostgreSQL (scripts/pg-test.sh start, halt,
resume, stop), so stopping it touches no other test's database.  These tests
run in the PostgreSQL session only (--metadata=postgres); the SQLite session
checks that a SQLite store exports no pool figures.
"""

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import PG_BIN, REPO, pg_cluster, postgres, unique_bucket, wait_until

PG_TEST = str(REPO / "scripts" / "pg-test.sh")


def metrics(srv):
    r = srv.request("GET", "/metrics", anonymous=True)
    assert r.status == 200, r
    out = {}
    for line in r.body.decode().splitlines():
        m = re.match(r"^(cairn_db_pool_[a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def ready(srv):
    r = srv.request("GET", "/health/ready", anonymous=True, timeout=10)
    return r.status, json.loads(r.body)


def put(srv, bucket, key, body, timeout=30):
    return srv.request("PUT", f"/{bucket}/{key}", body=body, timeout=timeout)


def get(srv, bucket, key, timeout=30):
    return srv.request("GET", f"/{bucket}/{key}", timeout=timeout)


def psql_popen(db, sql):
    return subprocess.Popen([str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", pg_cluster().url(db),
                             "-c", sql], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


# ---- SQLite: nothing to report ----------------------------------------------------


@pytest.mark.sqlite_only("SQLite has no connection pool to report")
def test_a_sqlite_store_exports_no_pool_figures(server):
    assert metrics(server) == {}


# ---- settings ------------------------------------------------------------------------


@pytest.mark.postgres_only("the PostgreSQL pool's settings")
def test_pool_settings_reach_the_pool(make_server):
    # The job workers, the readiness checker and the membership thread each
    # take a connection now and then, so the pool may open more than its
    # minimum (up to the maximum); with both at 3 it holds exactly 3.
    srv = make_server(env={"CAIRN_DB_POOL_MIN": "3", "CAIRN_DB_POOL_MAX": "3"})
    wait_until(lambda: metrics(srv).get("cairn_db_pool_connections_open") == 3, 10,
               what="the pool to open db_pool_min connections")
    s3 = srv.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    for i in range(20):
        s3.put_object(Bucket=b, Key=f"k{i}", Body=b"x")
    m = metrics(srv)
    assert m["cairn_db_pool_connections_max"] == 3, m
    assert m["cairn_db_pool_connections_open"] == 3, m
    assert m["cairn_db_pool_connects_total"] == 3, m


def test_a_minimum_above_the_maximum_is_a_configuration_error(make_server):
    srv = make_server(env={"CAIRN_DB_POOL_MIN": "9", "CAIRN_DB_POOL_MAX": "4"}, start=False)
    srv.spawn()
    assert srv.proc.wait(timeout=30) == 2
    assert "db_pool_min" in srv.log_text() and "at most db_pool_max (4)" in srv.log_text(), srv.log_tail()


# ---- an exhausted pool -------------------------------------------------------------


@pytest.mark.postgres_only("the PostgreSQL pool's acquire timeout and long holds")
@pytest.mark.deadline(90)
def test_no_free_connection_is_503_slowdown_with_retry_after_and_counted(make_server):
    # One connection.  A PUT that waits on a row lock (held from psql) keeps
    # it; a GET meanwhile finds none free and, after the acquire timeout,
    # gets 503 SlowDown instead of waiting for as long as the lock lasts.
    srv = make_server(env={"CAIRN_DB_POOL_MIN": "1", "CAIRN_DB_POOL_MAX": "1",
                           "CAIRN_DB_ACQUIRE_TIMEOUT_MS": "300", "CAIRN_DB_LONG_HOLD_MS": "500",
                           "CAIRN_DB_STATEMENT_TIMEOUT_MS": "30000"})
    b = unique_bucket()
    assert srv.request("PUT", f"/{b}").status == 200
    assert put(srv, b, "locked", b"v1").status == 200
    assert put(srv, b, "other", b"o").status == 200
    db = srv.metadata_db()
    holder = psql_popen(db, "BEGIN; SELECT 1 FROM objects WHERE key = convert_to('locked', 'UTF8') FOR UPDATE; "
                            "SELECT pg_sleep(4); COMMIT;")
    try:
        def sleeping():
            return pg_cluster().sql("SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                                    "AND query LIKE '%pg_sleep(4)%' AND pid <> pg_backend_pid()",
                                    db=db).stdout.strip() == "1"
        wait_until(sleeping, 10, what="psql to hold the row lock")
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("put", put(srv, b, "locked", b"v2", timeout=60)))
        t.start()

        def put_waits_on_the_lock():
            return pg_cluster().sql("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                    "AND application_name = 'cairn'", db=db).stdout.strip() == "1"
        wait_until(put_waits_on_the_lock, 10, what="the PUT to hold the only connection, waiting on the lock")
        start = time.monotonic()
        r = get(srv, b, "other")
        took = time.monotonic() - start
        assert r.status == 503 and r.error_code == "SlowDown", r
        assert r.header("Retry-After") == "1", r.headers
        assert took < 4, f"the refusal took {took:.1f}s: it waited for the lock, not for the acquire timeout"
        t.join(60)
        assert result["put"].status == 200, result["put"]
    finally:
        holder.wait(30)
    assert get(srv, b, "locked").body == b"v2"
    m = metrics(srv)
    assert m["cairn_db_pool_acquire_timeouts_total"] >= 1, m
    assert m["cairn_db_pool_waits_total"] >= 1, m
    assert m["cairn_db_pool_wait_seconds_count"] >= 1 and m["cairn_db_pool_wait_seconds_sum"] >= 0.25, m
    assert m['cairn_db_pool_wait_seconds_bucket{le="+Inf"}'] == m["cairn_db_pool_wait_seconds_count"], m
    assert m["cairn_db_pool_long_holds_total"] >= 1, m
    rid = r.header("x-amz-request-id")
    recs = srv.log_records()
    assert any(x.get("msg") == "metadata database busy: answering 503" and x.get("request_id") == rid for x in recs), \
        srv.log_tail()
    assert any(x.get("msg") == "meta: postgres connection held long" and x.get("function") for x in recs), \
        srv.log_tail()


# ---- PostgreSQL stopped under load ------------------------------------------------------


class OwnPostgres:
    """A PostgreSQL server of this test alone, from scripts/pg-test.sh."""

    def __init__(self):
        self.dir = self._run("start").strip()
        self.url = self._run("url", self.dir).strip()

    @staticmethod
    def _run(*args):
        cp = subprocess.run(["bash", PG_TEST, *args], capture_output=True, text=True, timeout=120,
                            stdin=subprocess.DEVNULL)
        assert cp.returncode == 0, f"pg-test.sh {' '.join(args)}: {cp.stderr}"
        return cp.stdout

    def halt(self):
        self._run("halt", self.dir)

    def resume(self):
        self._run("resume", self.dir)

    def remove(self):
        if self.dir and Path(self.dir).exists():
            self._run("stop", self.dir)


class Load:
    """Writers and readers running until stopped; each request's answer
    (status, S3 error code, Retry-After, seconds) is recorded."""

    def __init__(self, srv, bucket, threads=4):
        self.srv, self.bucket = srv, bucket
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.results = []          # (monotonic end, kind, status, code, retry_after, seconds, request_id)
        self.acked = {}            # key -> body of the last PUT answered 200
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(threads)]
        for t in self.threads:
            t.start()

    def run(self, n):
        i = 0
        deadline = time.monotonic() + 120  # bounded whatever happens
        while not self.stop.is_set() and time.monotonic() < deadline:
            i += 1
            key = f"w{n}-{i % 20}"
            body = os.urandom(64) + f"{n}/{i}".encode()
            t0 = time.monotonic()
            try:
                if i % 2:
                    r = put(self.srv, self.bucket, key, body, timeout=20)
                    kind = "put"
                else:
                    r = get(self.srv, self.bucket, f"w{n}-{(i - 1) % 20}", timeout=20)
                    kind = "get"
            except OSError as e:  # a hang would end here, and is a failure below
                with self.lock:
                    self.results.append((time.monotonic(), "error", 0, str(e), None, time.monotonic() - t0, None))
                continue
            with self.lock:
                self.results.append((time.monotonic(), kind, r.status, r.error_code, r.header("Retry-After"),
                                     time.monotonic() - t0, r.header("x-amz-request-id")))
                if kind == "put" and r.status == 200:
                    self.acked[key] = body
            if r.status == 503:
                time.sleep(0.05)  # what Retry-After asks, shortened: keep the load on

    def since(self, t):
        with self.lock:
            return [x for x in self.results if x[0] >= t]

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)


@pytest.mark.postgres_only("stops and starts a real PostgreSQL server")
@pytest.mark.deadline(150)
def test_postgres_stopped_under_load_fails_fast_and_recovers_by_itself(make_server):
    pg = OwnPostgres()
    load = None
    try:
        srv = make_server(env={"CAIRN_METADATA_URL": pg.url, "CAIRN_HEALTH_MAX_AGE_MS": "0",
                               "CAIRN_DB_ACQUIRE_TIMEOUT_MS": "1000"})
        srv.wait_orphan_pass()  # the start's own jobs are done before the outage
        b = unique_bucket()
        assert srv.request("PUT", f"/{b}").status == 200
        load = Load(srv, b)
        wait_until(lambda: sum(1 for x in load.since(0) if x[2] == 200) >= 20, 20, what="load to get going")

        pg.halt()
        stopped = time.monotonic()
        # Requests fail fast: 503 with Retry-After, never a hang.
        wait_until(lambda: any(x[2] == 503 for x in load.since(stopped)), 15, what="a 503 after the stop")
        first_503 = min(x[0] for x in load.since(stopped) if x[2] == 503)
        wait_until(lambda: len([x for x in load.since(first_503) if x[2] == 503]) >= 20, 15,
                   what="20 answers during the outage")
        outage = load.since(first_503)
        refused = [x for x in outage if x[2] == 503]
        assert all(x[3] in ("ServiceUnavailable", "SlowDown") and x[4] == "1" for x in refused), refused[:5]
        assert all(x[1] != "error" for x in outage), [x for x in outage if x[1] == "error"][:3]
        slowest = max(x[5] for x in refused)
        assert slowest < 5, f"a refusal took {slowest:.1f}s: requests must fail fast while the database is down"
        # /health/ready names the database.
        status, doc = ready(srv)
        assert status == 503, doc
        assert doc["status"] == "fail" and doc["down"] == ["database"], doc
        assert doc["checks"]["database"]["status"] == "fail", doc
        assert "postgres" in doc["checks"]["database"]["detail"], doc
        assert doc["checks"]["data_dir"]["status"] == "ok" and doc["checks"]["disk"]["status"] == "ok", doc
        # A clear log line per refusal, with its request id; the outage itself logged once.
        rid = refused[0][6]
        recs = srv.log_records()
        assert any(x.get("msg", "").startswith("metadata database") and x.get("request_id") == rid
                   for x in recs), srv.log_tail()
        assert sum(1 for x in recs if x.get("msg") == "meta: cannot connect to postgres") == 1, srv.log_tail()

        pg.resume()
        resumed = time.monotonic()
        wait_until(lambda: sum(1 for x in load.since(resumed) if x[1] == "put" and x[2] == 200) >= 5, 15,
                   what="PUTs to succeed again after PostgreSQL came back")
        back = min(x[0] for x in load.since(resumed) if x[2] == 200) - resumed
        assert back < 10, f"service came back {back:.1f}s after PostgreSQL"
        wait_until(lambda: ready(srv)[0] == 200, 10, what="readiness to recover")
        status, doc = ready(srv)
        assert doc["status"] == "ok" and doc["down"] == [], doc
        load.finish()
        assert any(x.get("msg") == "meta: connected to postgres again" for x in srv.log_records()), srv.log_tail()
        # Nothing acknowledged was lost.
        for key, body in load.acked.items():
            r = get(srv, b, key)
            assert r.status == 200 and r.body == body, (key, r)
        m = metrics(srv)
        assert m["cairn_db_pool_connect_errors_total"] >= 1, m
        assert m["cairn_db_pool_connects_total"] >= 2, m
        srv.stop_and_fsck(heals=False)
    finally:
        if load:
            load.finish()
        pg.remove()


def postgres_pids(pg_dir):
    """The PostgreSQL server of pg_dir: its postmaster and every child."""
    master = int((Path(pg_dir) / "data" / "postmaster.pid").read_text().split()[0])
    pids = [master]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master:
                pids.append(int(d))
    return pids


@pytest.mark.postgres_only("stops a real PostgreSQL server's processes (SIGSTOP) and continues them")
@pytest.mark.deadline(150)
def test_postgres_that_stops_answering_costs_seconds_not_a_hang(make_server):
    # A server that keeps its connections open but answers nothing (a
    # frozen host, a network partition): the kernel still accepts what the
    # gateway sends, so only the gateway's own deadline ends the wait.
    pg = OwnPostgres()
    load = None
    frozen = []
    try:
        srv = make_server(env={"CAIRN_METADATA_URL": pg.url, "CAIRN_HEALTH_MAX_AGE_MS": "0",
                               "CAIRN_HEALTH_TIMEOUT_MS": "500", "CAIRN_DB_STATEMENT_TIMEOUT_MS": "1000",
                               "CAIRN_DB_ACQUIRE_TIMEOUT_MS": "1000"})
        srv.wait_orphan_pass()
        b = unique_bucket()
        assert srv.request("PUT", f"/{b}").status == 200
        load = Load(srv, b)
        wait_until(lambda: sum(1 for x in load.since(0) if x[2] == 200) >= 20, 20, what="load to get going")

        frozen = postgres_pids(pg.dir)
        for pid in frozen:
            os.kill(pid, 19)  # SIGSTOP
        stopped = time.monotonic()
        wait_until(lambda: len([x for x in load.since(stopped) if x[2] == 503]) >= 10, 30,
                   what="ten 503s while PostgreSQL is frozen")
        during = load.since(stopped)
        refused = [x for x in during if x[2] == 503]
        assert all(x[3] in ("ServiceUnavailable", "SlowDown") and x[4] == "1" for x in refused), refused[:5]
        assert all(x[1] != "error" for x in during), [x for x in during if x[1] == "error"][:3]
        # statement timeout 1 s + the 2 s margin, or a 5 s connect timeout
        slowest = max(x[5] for x in refused)
        assert slowest < 10, f"a refusal took {slowest:.1f}s while the database was frozen"
        status, doc = ready(srv)
        assert status == 503 and "database" in doc["down"], doc
        assert any(x.get("msg") == "meta: postgres did not answer in time; connection dropped"
                   for x in srv.log_records()), srv.log_tail()

        for pid in frozen:
            os.kill(pid, 18)  # SIGCONT
        frozen = []
        resumed = time.monotonic()
        wait_until(lambda: sum(1 for x in load.since(resumed) if x[1] == "put" and x[2] == 200) >= 5, 20,
                   what="PUTs to succeed again once PostgreSQL answers")
        wait_until(lambda: ready(srv)[0] == 200, 15, what="readiness to recover")
        load.finish()
        for key, body in load.acked.items():
            r = get(srv, b, key)
            assert r.status == 200 and r.body == body, (key, r)
        srv.stop_and_fsck(heals=False)
    finally:
        for pid in frozen:
            os.kill(pid, 18)
        if load:
            load.finish()
        pg.remove()


# ---- a commit whose answer is lost ----------------------------------------------------------


@pytest.mark.postgres_only("holds a COMMIT in PostgreSQL's synchronous replication wait, then ends its session")
@pytest.mark.deadline(120)
def test_a_commit_cut_off_after_it_committed_is_answered_as_committed(make_server):
    # The connection is lost while COMMIT runs: the gateway asks PostgreSQL,
    # by the transaction's id, whether it committed (docs/metadata.md, "A
    # lost COMMIT").  Here the commit did happen (it waited for a standby
    # that does not exist when its session was ended): the PUT is answered
    # 200, and the object reads back whole, not as lost shards.
    pg = OwnPostgres()
    try:
        psql = [str(PG_BIN / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", pg.url, "-c"]

        def sql(statement):
            cp = subprocess.run(psql + [statement], capture_output=True, text=True, timeout=30)
            assert cp.returncode == 0, cp.stderr
            return cp.stdout.strip()

        srv = make_server(env={"CAIRN_METADATA_URL": pg.url, "CAIRN_DB_STATEMENT_TIMEOUT_MS": "60000"})
        srv.wait_orphan_pass()
        b = unique_bucket()
        assert srv.request("PUT", f"/{b}").status == 200
        # From now on every new session of the database waits for a
        # synchronous standby at each commit, and none will come.
        sql("ALTER DATABASE postgres SET synchronous_commit = on")
        sql("ALTER SYSTEM SET synchronous_standby_names = 'nobody'")
        sql("SELECT pg_reload_conf()")
        sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'cairn'")
        # The pool learns of its ended sessions as they fail (a 503 each):
        # reads until one succeeds, so the PUT runs on live sessions and
        # fails only where the test cuts it, in its COMMIT.
        wait_until(lambda: all(srv.request("GET", f"/{b}", query={"list-type": "2"}).status == 200
                               for _ in range(20)), 30, what="the pool to replace its ended sessions")
        body = os.urandom(200 * 1024)  # past inline_max_size: its bytes are shards on the drive
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("put", put(srv, b, "cut", body, timeout=60)))
        t.start()

        # Every COMMIT of the server now waits for the standby: the PUT's,
        # and background ones (job claims, leases) that may come first.
        # Each waiting session is ended (its transaction committed locally)
        # until the PUT has its answer.
        def put_answered():
            sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep' "
                "AND application_name = 'cairn' AND query = 'COMMIT'")
            return not t.is_alive()
        wait_until(put_answered, 40, interval=0.05, what="the PUT's COMMIT to wait for the standby and be cut")
        t.join(60)
        r = result["put"]
        assert r.status == 200, r
        sql("ALTER SYSTEM RESET synchronous_standby_names")
        sql("SELECT pg_reload_conf()")
        sql("ALTER DATABASE postgres RESET synchronous_commit")
        # Committed locally before its session ended: the version is current,
        # and its bytes are all there.
        got = get(srv, b, "cut")
        assert got.status == 200 and got.body == body, got
        assert any(x.get("msg") == "meta: the outcome of a commit whose answer was lost"
                   and x.get("outcome") == "committed" for x in srv.log_records()), srv.log_tail()
        srv.stop_and_fsck(heals=False)
    finally:
        pg.remove()
