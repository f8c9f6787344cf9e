"""`cairn migrate` beyond moving the schema (test_cli.py has status, up,
down and their bad targets): the checksum every applied migration carries,
drift (an applied migration whose text changed) stopping `cairn server`,
`cairn gateway`, `cairn admin` and every migration with a message that names
it, `verify`, `--dry-run` on every verb, databases from before checksums,
a failing migration rolling back whole, and several processes migrating one
database at once.

Drift is made the way an edited migration would look to the database: the
recorded checksum altered in a real database.  Most tests run on SQLite;
the test_postgres_* ones run on the server CAIRN_TEST_POSTGRES_URL names,
or on one this module starts from Debian's binaries (scripts/pg-test.sh).
"""

import os
import re
import sqlite3
import subprocess
import urllib.parse
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import REPO, free_port
from test_cli import MIGRATE_USAGE, admin, cairn, data, migrate, schema_status  # noqa: F401 (data is a fixture)

ZEROS = "0" * 64
STEP4 = "migration 4 (multipart uploads and parts)"


def sql(data, statement, *params):
    """Runs one statement on DATA/meta.db; returns its rows."""
    db = sqlite3.connect(data / "meta.db", isolation_level=None)
    try:
        return db.execute(statement, params).fetchall()
    finally:
        db.close()


def recorded(data):
    return dict(sql(data, "SELECT version, checksum FROM schema_migrations"))


def verify_lines(cp):
    """{version: (state, name)} from `cairn migrate verify`'s stdout."""
    out = {}
    for line in cp.stdout.splitlines()[1:]:
        m = re.fullmatch(r"  (ok|changed|unrecorded|unknown) (\d+) (.+)", line)
        if m:
            out[int(m.group(2))] = (m.group(1), m.group(3))
    return out


# ---- checksums and verify ------------------------------------------------------------------------


def test_every_applied_migration_is_recorded_with_a_checksum_and_verifies(data):
    latest = schema_status(data)[1]
    assert migrate(data, "up").returncode == 0
    sums = recorded(data)
    assert sorted(sums) == list(range(1, latest + 1))
    assert all(re.fullmatch(r"[0-9a-f]{64}", s) for s in sums.values()), sums
    assert len(set(sums.values())) == latest, "each migration's own text"
    cp = migrate(data, "verify")
    assert (cp.returncode, cp.stderr) == (0, ""), cp.stderr
    lines = cp.stdout.splitlines()
    assert lines[0] == f"schema version {latest} of {latest}"
    assert lines[-1] == f"{latest} applied migrations match this binary"
    assert {v: s for v, (s, _) in verify_lines(cp).items()} == {v: "ok" for v in range(1, latest + 1)}
    # Down to 2: only what is applied is checked.
    assert migrate(data, "down", 2).returncode == 0
    cp = migrate(data, "verify")
    assert cp.returncode == 0
    assert sorted(verify_lines(cp)) == [1, 2]
    assert cp.stdout.splitlines()[-1] == "2 applied migrations match this binary"


def test_verify_of_an_empty_database(data):
    cp = migrate(data, "verify")
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "schema version 0 of %d\n0 applied migrations match this binary\n"
                                                     % schema_status(data)[1], "")


# ---- drift ---------------------------------------------------------------------------------------


@pytest.mark.sqlite_only("reads and edits the server's SQLite file; the PostgreSQL cases below start their own server")
def test_a_changed_migration_stops_every_start_and_every_migration(make_server):
    srv = make_server()
    s3 = srv.client()
    s3.create_bucket(Bucket="kept")
    assert srv.stop() == 0
    d = srv.data_dir
    latest = schema_status(d)[1]
    good = recorded(d)[4]
    sql(d, "UPDATE schema_migrations SET checksum = ? WHERE version = 4", ZEROS)
    why = (f"{STEP4} has changed since it was applied: the database recorded checksum {ZEROS[:12]}, "
           f"this binary's is {good[:12]} (cairn migrate verify lists every changed migration)")

    # verify names it, and fails.
    cp = migrate(d, "verify")
    assert cp.returncode == 1
    assert cp.stderr == f"cairn: {STEP4} has changed since it was applied\n"
    assert verify_lines(cp)[4] == ("changed", f"multipart uploads and parts (recorded {ZEROS[:12]}, "
                                              f"this binary {good[:12]})")
    assert all(s == "ok" for v, (s, _) in verify_lines(cp).items() if v != 4)
    # status still answers, and marks it.
    cp = migrate(d, "status")
    assert cp.returncode == 0
    assert "  [x] 4 multipart uploads and parts (changed since it was applied: see cairn migrate verify)\n" in cp.stdout

    # The server does not start; admin does not run; neither does a migration.
    srv.spawn()
    assert srv.proc.wait(timeout=30) == 1
    assert f"cairn: cannot open the metadata database: {d}/meta.db: {why}" in srv.log_text()
    cp = cairn("gateway", "--data", d, "--listen", f"127.0.0.1:{free_port()}", "--nodes", "http://127.0.0.1:1",
               env={"CAIRN_CLUSTER_SECRET": "0123456789abcdef0123456789abcdef"})
    assert cp.returncode == 1
    assert f"cairn: cannot open the metadata database: {d}/meta.db: {why}\n" in cp.stderr, cp.stderr
    cp = admin(d, "bucket", "list")
    assert (cp.returncode, cp.stdout) == (1, "")
    assert f"cairn: cannot open the metadata database: {d}/meta.db: {why}\n" in cp.stderr
    for args in (["up"], ["down", "1"]):
        cp = migrate(d, *args)
        assert (cp.returncode, cp.stdout) == (1, ""), args
        assert cp.stderr.endswith(f"cairn: migration failed: {why}\n"), cp.stderr
        cp = migrate(d, "--dry-run", *args)
        assert (cp.returncode, cp.stdout) == (1, ""), args
        assert cp.stderr == f"cairn: {STEP4} has changed since it was applied: {args[0]} would refuse to run\n"
    assert schema_status(d)[0] == latest, "nothing moved"
    assert recorded(d)[4] == ZEROS, "the evidence is left for the operator"

    # Put back, everything works again, the data kept.
    sql(d, "UPDATE schema_migrations SET checksum = ? WHERE version = 4", good)
    assert migrate(d, "verify").returncode == 0
    srv.start()
    assert [b["Name"] for b in srv.client().list_buckets()["Buckets"]] == ["kept"]


def test_a_database_from_before_checksums_upgrades_in_place(data):
    """What a cairn before checksums left: schema_migrations without the
    column.  status and verify read it; the next start records them."""
    assert admin(data, "user", "create", "alice").returncode == 0
    latest = schema_status(data)[1]
    db = sqlite3.connect(data / "meta.db", isolation_level=None)
    db.executescript("""
        BEGIN;
        CREATE TABLE old(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_ms INTEGER NOT NULL);
        INSERT INTO old SELECT version, name, applied_ms FROM schema_migrations;
        DROP TABLE schema_migrations;
        ALTER TABLE old RENAME TO schema_migrations;
        COMMIT;""")
    db.close()
    cp = migrate(data, "status")
    assert cp.returncode == 0
    assert cp.stdout.count(" (no checksum recorded yet)\n") == latest
    cp = migrate(data, "verify")
    assert (cp.returncode, cp.stderr) == (0, "")
    assert {s for s, _ in verify_lines(cp).values()} == {"unrecorded"}
    assert cp.stdout.splitlines()[-1] == f"{latest} applied migrations match this binary"

    assert admin(data, "user", "list").stdout == "1 alice\n"  # a start: migrates (nothing to do) and records
    sums = recorded(data)
    assert sorted(sums) == list(range(1, latest + 1)) and all(len(s) == 64 for s in sums.values())
    cp = migrate(data, "verify")
    assert cp.returncode == 0 and {s for s, _ in verify_lines(cp).values()} == {"ok"}


def test_an_unknown_newer_migration_fails_verify(data):
    assert migrate(data, "up").returncode == 0
    latest = schema_status(data)[1]
    sql(data, "INSERT INTO schema_migrations(version, name, applied_ms) VALUES (?, 'from the future', 1)", latest + 1)
    cp = migrate(data, "verify")
    assert cp.returncode == 1
    assert verify_lines(cp)[latest + 1] == ("unknown", "from the future (not a migration of this binary)")
    assert cp.stderr == (f"cairn: migration {latest + 1} (from the future) is not one this binary knows: "
                         "a newer cairn applied it\n")
    assert f"  [x] {latest + 1} from the future (unknown to this binary)\n" in migrate(data, "status").stdout
    cp = admin(data, "user", "list")
    assert cp.returncode == 1
    assert (f"the schema is at version {latest + 1}, newer than this binary's {latest}: refusing\n") in cp.stderr


# ---- dry runs -------------------------------------------------------------------------------------


def test_dry_run_up_and_down_print_the_sql_and_change_nothing(data):
    assert migrate(data, "up", 3).returncode == 0
    latest = schema_status(data)[1]
    before = (data / "meta.db").read_bytes()
    cp = migrate(data, "up", "--dry-run")
    assert (cp.returncode, cp.stderr) == (0, "")
    out = cp.stdout
    assert out.startswith("-- dry run: nothing is changed\n"
                          f"-- sqlite: schema version 3 -> {latest}, {latest - 3} steps, each in its own transaction")
    assert out.count("BEGIN EXCLUSIVE;\n") == latest - 3 and out.count("COMMIT;\n") == latest - 3
    assert "\n-- up 4: multipart uploads and parts (checksum " in out
    assert "\nCREATE TABLE uploads(upload_id TEXT PRIMARY KEY, " in out
    assert re.search(r"\nINSERT INTO schema_migrations\(version, name, applied_ms, checksum\) VALUES "
                     r"\(4, 'multipart uploads and parts', \d+, '[0-9a-f]{64}'\);\n", out)
    assert "-- up 3:" not in out
    cp = migrate(data, "--dry-run", "down", "1")
    assert cp.returncode == 0
    assert "\n-- down 3: storage node registry (checksum " in cp.stdout
    assert "\nDROP TABLE nodes;\nDELETE FROM schema_migrations WHERE version = 3;\nCOMMIT;\n" in cp.stdout
    assert "-- down 1:" not in cp.stdout and "-- down 2:" in cp.stdout
    assert migrate(data, "--dry-run", "up", 3).stdout.endswith("schema version 3 already; nothing to run\n")
    cp = migrate(data, "--dry-run", "down", 4)
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr == f"cairn: bad target version for down (current 3, latest {latest})\n"
    assert (data / "meta.db").read_bytes() == before
    assert schema_status(data)[0] == 3


@pytest.mark.sqlite_only("reads and edits the server's SQLite file; the PostgreSQL cases below start their own server")
def test_dry_runs_create_nothing_and_need_no_lock(tmp_path, make_server):
    fresh = tmp_path / "never"
    cp = migrate(fresh, "--dry-run", "up")
    assert cp.returncode == 0
    assert f"-- {fresh}/meta.db does not exist yet: the migration would create it\n" in cp.stdout
    assert "-- up 1: initial schema" in cp.stdout
    for verb in ("status", "verify"):
        cp = migrate(fresh, "--dry-run", verb)
        assert (cp.returncode, cp.stderr) == (0, "")
        assert cp.stdout.startswith("-- dry run: the database is not opened\n"
                                    f"-- {verb} reads: SELECT version, name, applied_ms, checksum FROM "
                                    "schema_migrations ORDER BY version\n")
        assert re.search(r"\n--   4 [0-9a-f]{64} multipart uploads and parts\n", cp.stdout)
    assert not fresh.exists()
    # Beside a running server (which holds the data directory's lock).
    srv = make_server()
    cp = migrate(srv.data_dir, "--dry-run", "down", 0)
    assert cp.returncode == 0, cp.stderr
    assert "DROP TABLE users;" in cp.stdout
    assert srv.client().list_buckets()["Buckets"] is not None


# ---- failure, concurrency ---------------------------------------------------------------------------


def test_a_failing_migration_rolls_back_whole_and_says_why(data):
    assert migrate(data, "up", 3).returncode == 0
    sql(data, "CREATE TABLE object_parts(x INTEGER)")  # step 4's last statement will fail
    cp = migrate(data, "up")
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr.endswith(f"cairn: migration failed: {STEP4} failed up: table object_parts already exists\n")
    assert schema_status(data)[0] == 3
    assert sql(data, "SELECT name FROM sqlite_schema WHERE name IN ('uploads', 'upload_parts')") == [], \
        "the tables step 4 made before failing went with it"
    sql(data, "DROP TABLE object_parts")
    assert migrate(data, "up").returncode == 0


def test_several_processes_starting_at_once_run_each_migration_once(data, tmp_path):
    latest = schema_status(tmp_path / "probe")[1]
    n = 8
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(lambda i: admin(data, "user", "list"), range(n)))
    for cp in results:
        assert (cp.returncode, cp.stderr) == (0, ""), cp.stderr
    rows = sql(data, "SELECT version, count(*) FROM schema_migrations GROUP BY version")
    assert rows == [(v, 1) for v in range(1, latest + 1)]
    assert migrate(data, "verify").returncode == 0


# ---- PostgreSQL ------------------------------------------------------------------------------------

PSQL = next((f"/usr/lib/postgresql/{v}/bin/psql" for v in ("17", "16", "15")
             if os.path.exists(f"/usr/lib/postgresql/{v}/bin/psql")), "psql")


def psql(url, statement):
    cp = subprocess.run([PSQL, url, "-qAtX", "-v", "ON_ERROR_STOP=1", "-c", statement], capture_output=True,
                        text=True, timeout=60)
    assert cp.returncode == 0, cp.stderr
    return cp.stdout


@pytest.fixture(scope="module")
def pg_server():
    """The PostgreSQL server CAIRN_TEST_POSTGRES_URL names, or one started
    here from Debian's binaries (scripts/pg-test.sh) for this module and
    stopped after it.  No server is a failure, never a skip."""
    base = os.environ.get("CAIRN_TEST_POSTGRES_URL")
    if base:
        yield base
        return
    script = str(REPO / "scripts" / "pg-test.sh")
    cp = subprocess.run([script, "start"], capture_output=True, text=True, timeout=120)
    assert cp.returncode == 0, f"cannot start a PostgreSQL server for the tests: {cp.stderr}"
    pgdir = cp.stdout.strip()
    try:
        yield subprocess.run([script, "url", pgdir], capture_output=True, text=True, check=True).stdout.strip()
    finally:
        subprocess.run([script, "stop", pgdir], capture_output=True, timeout=120)


@pytest.fixture
def pg_url(pg_server):
    """A new, empty database on the test server, dropped afterwards."""
    name = "mig_" + uuid.uuid4().hex[:12]
    psql(pg_server, f"CREATE DATABASE {name}")
    parts = urllib.parse.urlsplit(pg_server)
    yield urllib.parse.urlunsplit(parts._replace(path="/" + name))
    psql(pg_server, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def pg_migrate(data, url, *args):
    return cairn("migrate", "--data", data, "--metadata-url", url, *args)


def test_postgres_drift_verify_and_dry_run(data, pg_url):
    cp = pg_migrate(data, pg_url, "up", 5)
    assert (cp.returncode, cp.stdout) == (0, "schema version 5\n"), cp.stderr
    cp = pg_migrate(data, pg_url, "verify")
    assert cp.returncode == 0 and cp.stdout.endswith("5 applied migrations match this binary\n")

    cp = pg_migrate(data, pg_url, "--dry-run", "up", 6)
    assert cp.returncode == 0
    assert cp.stdout.startswith("-- dry run: nothing is changed\n-- postgres: schema version 5 -> 6, 1 step")
    assert ("\nBEGIN;\nSET LOCAL statement_timeout = 0;\nSELECT pg_advisory_xact_lock(7161120822695651687);\n"
            in cp.stdout)
    assert "\nCREATE INDEX upload_parts_version ON upload_parts(version_id);\n" in cp.stdout
    assert psql(pg_url, "SELECT max(version) FROM schema_migrations") == "5\n", "the dry run ran nothing"

    good = psql(pg_url, "SELECT checksum FROM schema_migrations WHERE version = 4").strip()
    psql(pg_url, f"UPDATE schema_migrations SET checksum = '{ZEROS}' WHERE version = 4")
    cp = pg_migrate(data, pg_url, "verify")
    assert cp.returncode == 1
    assert cp.stderr == f"cairn: {STEP4} has changed since it was applied\n"
    why = f"{STEP4} has changed since it was applied: the database recorded checksum {ZEROS[:12]}"
    cp = cairn("admin", "--data", data, "--metadata-url", pg_url, "user", "list")
    assert cp.returncode == 1
    assert f"cairn: cannot open the metadata database: postgres: {why}" in cp.stderr, cp.stderr
    cp = pg_migrate(data, pg_url, "up")
    assert cp.returncode == 1 and f"cairn: migration failed: {why}" in cp.stderr
    assert psql(pg_url, "SELECT max(version) FROM schema_migrations") == "5\n"

    psql(pg_url, f"UPDATE schema_migrations SET checksum = '{good}' WHERE version = 4")
    assert pg_migrate(data, pg_url, "up").stdout == f"schema version {schema_status(data.parent / 'probe')[1]}\n"


def test_postgres_failing_migration_rolls_back_whole(data, pg_url):
    assert pg_migrate(data, pg_url, "up", 3).returncode == 0
    psql(pg_url, "CREATE TABLE object_parts(x integer)")
    cp = pg_migrate(data, pg_url, "up")
    assert cp.returncode == 1
    assert cp.stderr.endswith(f'cairn: migration failed: {STEP4} failed up: relation "object_parts" already exists\n')
    assert psql(pg_url, "SELECT max(version) FROM schema_migrations") == "3\n"
    assert psql(pg_url, "SELECT to_regclass('uploads') IS NULL") == "t\n"


def test_postgres_several_processes_starting_at_once_run_each_migration_once(data, pg_url):
    n = 8
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(
            lambda i: cairn("admin", "--data", data, "--metadata-url", pg_url, "user", "list"), range(n)))
    for cp in results:
        assert (cp.returncode, cp.stderr) == (0, ""), cp.stderr
    latest = schema_status(data.parent / "probe")[1]
    assert psql(pg_url, "SELECT count(*), count(DISTINCT version), count(*) FILTER (WHERE length(checksum) = 64)"
                        " FROM schema_migrations") == f"{latest}|{latest}|{latest}\n"
