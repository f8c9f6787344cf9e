"""One master key for a cluster (issue 9): every process that shares a
metadata database must open the access-key secrets sealed in it.  The key
comes from master_key (CAIRN_MASTER_KEY), master_key_file
(CAIRN_MASTER_KEY_FILE), or DATA/master.key, made on the first start.  A
process whose key cannot open the stored secrets refuses to start, naming
the problem, before it serves or seals anything."""

import os

import pytest

from conftest import unique_bucket
from test_cli import admin, cairn, data  # noqa: F401 (data is a fixture)

# The check itself is the same on both backends; these tests use the data
# directory's key file and SQLite databases shared between data directories.
pytestmark = pytest.mark.sqlite_only("the data directory's master.key and SQLite files shared by data directories")

OTHER_KEY = "ab" * 32


def made_user(data_dir, env=None):
    cp = admin(data_dir, "user", "create", "alice", env=env)
    assert cp.returncode == 0, cp.stderr
    lines = dict(l.split(": ", 1) for l in cp.stdout.strip().splitlines())
    return lines["access_key_id"], lines["secret_access_key"]


def test_a_key_that_cannot_open_the_stored_secrets_stops_the_start(make_server, tmp_path):
    srv = make_server()
    ak, sk = made_user(srv.data_dir)
    s3 = srv.client(ak, sk)
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    srv.stop()
    key = (srv.data_dir / "master.key").read_text().strip()

    # Another key (a gateway configured for another cluster): no start.
    wrong = make_server(workdir=srv.workdir, env={"CAIRN_MASTER_KEY": OTHER_KEY}, start=False)
    wrong.spawn()
    assert wrong.proc.wait(timeout=30) == 1
    assert (f"cairn: the master key cannot open the secrets stored in the metadata database (access key {ak}): "
            "every process of a cluster must use the key they were sealed with (master_key or master_key_file)"
            in wrong.log_tail())
    # The same key, given as a value or in a file elsewhere: serves as before.
    keyfile = tmp_path / "cluster.key"
    keyfile.write_text(key + "\n")
    for env in ({"CAIRN_MASTER_KEY": key}, {"CAIRN_MASTER_KEY_FILE": str(keyfile)}):
        right = make_server(workdir=srv.workdir, env=env)
        assert right.client(ak, sk).head_bucket(Bucket=b)["ResponseMetadata"]["HTTPStatusCode"] == 200
        right.stop()


def test_admin_refuses_a_key_that_cannot_open_the_stored_secrets(data):
    ak, _ = made_user(data)
    cp = admin(data, "key", "list", env={"CAIRN_MASTER_KEY": OTHER_KEY})
    assert (cp.returncode, cp.stdout) == (1, "")
    assert f"the master key cannot open the secrets stored in the metadata database (access key {ak})" in cp.stderr
    # Nothing was sealed with the wrong key meanwhile: the right one still opens everything.
    cp = admin(data, "user", "create", "bob", env={"CAIRN_MASTER_KEY": OTHER_KEY})
    assert cp.returncode == 1
    assert admin(data, "key", "list").returncode == 0


def test_master_key_file_must_exist_and_hold_a_key(data, tmp_path):
    missing = tmp_path / "none.key"
    cp = admin(data, "user", "list", env={"CAIRN_MASTER_KEY_FILE": str(missing)})
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr == f"cairn: cannot read the master key from {missing} (master_key_file): no such file\n"
    assert not missing.exists(), "an explicit key file is never made up"
    for text in ("not hex", "ab" * 31, "ab" * 32 + "cd"):
        bad = tmp_path / "bad.key"
        bad.write_text(text)
        cp = admin(data, "user", "list", env={"CAIRN_MASTER_KEY_FILE": str(bad)})
        assert cp.returncode == 1
        assert cp.stderr == f"cairn: cannot read the master key from {bad} (master_key_file): it does not hold 64 hex digits\n"
    good = tmp_path / "good.key"
    good.write_text("cd" * 32 + "\n")
    os.chmod(good, 0o600)
    assert admin(data, "user", "list", env={"CAIRN_MASTER_KEY_FILE": str(good)}).returncode == 0
    assert not (data / "master.key").exists(), "the data directory's key is not made when a file is named"
    cp = admin(data, "user", "list", env={"CAIRN_MASTER_KEY_FILE": str(good), "CAIRN_MASTER_KEY": "cd" * 32})
    assert cp.returncode == 2
    assert "master_key_file: set master_key or master_key_file, not both" in cp.stderr


def test_one_key_serves_two_data_directories_on_one_database(make_server, tmp_path):
    """Two processes (one after the other: SQLite is one server's) sharing a
    database and a key file each open what the other sealed."""
    keyfile = tmp_path / "cluster.key"
    keyfile.write_text("ef" * 32 + "\n")
    db = tmp_path / "shared.db"
    env = {"CAIRN_MASTER_KEY_FILE": str(keyfile)}
    args = ["--metadata-url", f"sqlite://{db}"]
    first = make_server(env=env, args=args)
    ak, sk = made_user(first.data_dir, env={**env, "CAIRN_METADATA_URL": f"sqlite://{db}"})
    b = unique_bucket()
    first.client(ak, sk).create_bucket(Bucket=b)
    first.stop()
    second = make_server(env=env, args=args)
    assert second.client(ak, sk).head_bucket(Bucket=b)["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert not (second.data_dir / "master.key").exists()
