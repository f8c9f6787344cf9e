"""metadata_url (CAIRN_METADATA_URL, --metadata-url): where `cairn server`,
`cairn admin` and `cairn migrate` keep their metadata.  Empty is SQLite at
DATA/meta.db; sqlite:///ABS/PATH puts the database elsewhere; a URL that
names nothing usable stops the command with a message that says why, before
anything is written.  postgres:// URLs open the PostgreSQL backend; one whose
server is not there stops the command with libpq's reason (never the
password).
"""

import sqlite3
import urllib.parse

import pytest

from conftest import unique_bucket
from test_cli import admin, cairn, data  # noqa: F401 (data is a fixture)


# Every test here names its own database (SQLite files, unreachable URLs):
# the same run on either backend.
pytestmark = pytest.mark.sqlite_only("about metadata_url's SQLite forms and refusals; runs once, on the SQLite run")


def sqlite_url(path):
    return "sqlite://" + urllib.parse.quote(str(path))


def test_a_server_keeps_its_metadata_where_the_url_says(make_server, tmp_path):
    elsewhere = tmp_path / "meta dir"
    elsewhere.mkdir()
    db = elsewhere / "cairn meta.db"
    srv = make_server(args=["--metadata-url", sqlite_url(db)])
    s3 = srv.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"kept elsewhere")
    assert not (srv.data_dir / "meta.db").exists(), "the default database was made too"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        assert c.execute("SELECT count(*) FROM objects WHERE bucket = ? AND key = 'k'", (b,)).fetchone() == (1,)
    srv.restart()
    assert srv.client().get_object(Bucket=b, Key="k")["Body"].read() == b"kept elsewhere"


def test_admin_and_migrate_take_the_url_from_the_environment_or_a_flag(data, tmp_path):
    db = tmp_path / "m.db"
    env = {"CAIRN_METADATA_URL": sqlite_url(db)}
    cp = admin(data, "user", "create", "alice", env=env)
    assert cp.returncode == 0, cp.stderr
    assert db.exists() and not (data / "meta.db").exists()
    listed = admin(data, "user", "list", env=env)
    assert "alice" in listed.stdout
    cp = cairn("admin", "--data", data, "--metadata-url", sqlite_url(db), "user", "list")
    assert cp.returncode == 0 and "alice" in cp.stdout
    # Without the URL the default database is another one: alice is not there.
    cp = admin(data, "user", "list")
    assert cp.returncode == 0 and "alice" not in cp.stdout
    cp = cairn("migrate", "--data", data, "--metadata-url", sqlite_url(db), "status")
    assert cp.returncode == 0
    assert cp.stdout.startswith("schema version ")


def test_urls_that_name_nothing_usable_are_refused_with_the_reason(data, tmp_path):
    cp = admin(data, "--metadata-url", "mysql://db/x", "user", "list")
    assert cp.returncode == 2
    assert "metadata_url: must start with sqlite:// or postgres:// (or be empty)" in cp.stderr
    cases = [
        ("sqlite://relative/m.db", "sqlite URLs name an absolute path and no host: sqlite:///ABS/PATH"),
        ("sqlite:///tmp/x.db?mode=ro", "sqlite URLs take no query or fragment"),
        ("sqlite:///tmp/x%2", "bad %-escape in the sqlite path"),
        ("postgres://u:p@127.0.0.1:1/cairn",
         'postgres: connection to server at "127.0.0.1", port 1 failed: Connection refused'),
        (sqlite_url(tmp_path / "no" / "such" / "dir" / "m.db"), f"{tmp_path}/no/such/dir/m.db: I/O error"),
    ]
    for url, why in cases:
        cp = admin(data, "user", "list", env={"CAIRN_METADATA_URL": url})
        assert (cp.returncode, cp.stdout) == (1, ""), url
        assert f"cairn: cannot open the metadata database: {why}\n" in cp.stderr, (url, cp.stderr)
        cp = cairn("migrate", "--data", data, "--metadata-url", url, "status")
        assert cp.returncode == 1 and f"cairn: cannot open the metadata database: {why}\n" in cp.stderr, url
    assert not (tmp_path / "no").exists()


def test_a_server_whose_url_cannot_be_opened_does_not_start(make_server, tmp_path):
    srv = make_server(args=["--metadata-url", sqlite_url(tmp_path / "absent" / "m.db")], start=False)
    srv.spawn()
    assert srv.proc.wait(timeout=30) == 1
    # Its lock comes first, beside the database: the directory is missing.
    assert f"cairn: cannot lock {tmp_path}/absent/m.db.lock: No such file or directory" in srv.log_tail()


def test_two_servers_cannot_share_one_sqlite_database(make_server, tmp_path):
    db = tmp_path / "shared.db"
    first = make_server(args=["--metadata-url", sqlite_url(db)])
    second = make_server(args=["--metadata-url", sqlite_url(db)], start=False)
    second.spawn()
    assert second.proc.wait(timeout=30) == 1
    assert (f"cairn: metadata database {db} is in use by another cairn process (pid {first.proc.pid}); "
            "stop it first") in second.log_tail()
    # The first one serves on, and once it stops the database is free.
    first.client().list_buckets()
    first.stop()
    second.start()
    second.client().list_buckets()
