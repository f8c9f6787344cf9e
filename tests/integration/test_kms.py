"""The built-in key manager's admin commands (issue 13, docs/kms.md):
`cairn admin kms key create|list|rotate|disable|enable` and `cairn admin
kms rotate-master`, which re-seals every KMS key version and every access
key's secret under a new master key in one transaction.  A running server
runs the kms_rewrap job a rotation enqueues."""

import json
import re

import pytest

from conftest import metadata_env, unique_bucket, wait_until
from test_cli import admin, data  # noqa: F401 (data is a fixture)


def made_user(data_dir, env=None):
    cp = admin(data_dir, "user", "create", "alice", env=env)
    assert cp.returncode == 0, cp.stderr
    lines = dict(l.split(": ", 1) for l in cp.stdout.strip().splitlines())
    return lines["access_key_id"], lines["secret_access_key"]


def test_keys_are_created_listed_rotated_disabled_and_enabled(data):
    env = metadata_env()
    cp = admin(data, "kms", "key", "create", "--id", "app-1", "--description", "the app's key", env=env)
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "app-1\n", "")
    cp = admin(data, "kms", "key", "create", env=env)
    assert cp.returncode == 0, cp.stderr
    made = cp.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", made), made

    cp = admin(data, "kms", "key", "create", "--id", "app-1", env=env)
    assert (cp.returncode, cp.stdout, cp.stderr) == (1, "", "cairn: KMS key 'app-1' already exists\n")
    cp = admin(data, "kms", "key", "create", "--id", "alias/app", env=env)
    assert cp.returncode == 2
    assert "invalid KMS key id 'alias/app'" in cp.stderr
    cp = admin(data, "kms", "key", "create", "--description", "d" * 257, env=env)
    assert cp.returncode == 2
    assert "longer than 256 bytes" in cp.stderr

    cp = admin(data, "kms", "key", "list", env=env)
    assert cp.returncode == 0, cp.stderr
    lines = sorted(cp.stdout.splitlines(), key=lambda l: not l.startswith("app-1"))
    assert len(lines) == 2
    assert re.fullmatch(r"app-1 enabled v1 \d{4}-\d\d-\d\dT\S+ the app's key", lines[0]), lines[0]
    assert re.fullmatch(rf"{made} enabled v1 \S+", lines[1]), lines[1]

    cp = admin(data, "kms", "key", "rotate", "app-1", env=env)
    assert cp.returncode == 0, cp.stderr
    m = re.fullmatch(r"KMS key app-1 rotated to version 2; re-wrap job (\d+) enqueued\n", cp.stdout)
    assert m, cp.stdout
    cp = admin(data, "jobs", "list", "--kind", "kms_rewrap", env=env)
    assert cp.stdout.startswith(f"{m.group(1)} kms_rewrap available "), cp.stdout
    cp = admin(data, "jobs", "show", m.group(1), env=env)
    assert 'args={"key_id":"app-1"}' in cp.stdout

    cp = admin(data, "kms", "key", "disable", "app-1", env=env)
    assert (cp.returncode, cp.stdout) == (0, "KMS key app-1 disabled (every gateway within 1000 ms)\n")
    docs = {d["id"]: d for d in json.loads(admin(data, "kms", "key", "list", "--json", env=env).stdout)}
    assert docs["app-1"] == {"id": "app-1", "state": "disabled", "version": 2, "created": docs["app-1"]["created"],
                       "description": "the app's key"}
    assert admin(data, "kms", "key", "enable", "app-1", env=env).stdout == "KMS key app-1 enabled (every gateway within 1000 ms)\n"
    docs = {d["id"]: d for d in json.loads(admin(data, "kms", "key", "list", "--json", env=env).stdout)}
    assert docs["app-1"]["state"] == "enabled"

    for verb in ("rotate", "disable", "enable"):
        cp = admin(data, "kms", "key", verb, "nope", env=env)
        assert (cp.returncode, cp.stdout, cp.stderr) == (1, "", "cairn: no KMS key 'nope'\n"), verb
    for args in (("kms",), ("kms", "key"), ("kms", "key", "rotate"), ("kms", "key", "list", "--xml"),
                 ("kms", "rotate-master", "--bogus")):
        cp = admin(data, *args, env=env)
        assert cp.returncode == 2, args
        assert "kms key create [--id ID] [--description TEXT]" in cp.stderr


def test_rotate_master_reseals_keys_and_secrets_and_replaces_the_key_file(make_server, tmp_path):
    srv = make_server()
    env = {k: v for k, v in srv.extra_env.items() if k.startswith("CAIRN_METADATA")}
    ak, sk = made_user(srv.data_dir, env)
    b = unique_bucket()
    srv.client(ak, sk).create_bucket(Bucket=b)
    assert admin(srv.data_dir, "kms", "key", "create", "--id", "k1", env=env).returncode == 0
    assert admin(srv.data_dir, "kms", "key", "rotate", "k1", env=env).returncode == 0
    cp = admin(srv.data_dir, "notify", "target", "add", "hook", "http://127.0.0.1:9/x", "--secret", "s3cr3t", env=env)
    assert cp.returncode == 0, cp.stderr
    key_file = srv.data_dir / "master.key"
    old = key_file.read_text().strip()

    new_file = tmp_path / "new.key"
    new_file.write_text(old + "\n")
    cp = admin(srv.data_dir, "kms", "rotate-master", "--new-key-file", new_file, env=env)
    assert (cp.returncode, cp.stderr) == (1, "cairn: the new master key is the current one\n")
    new_file.write_text("not a key")
    cp = admin(srv.data_dir, "kms", "rotate-master", "--new-key-file", new_file, env=env)
    assert (cp.returncode, cp.stderr) == (1, f"cairn: cannot read the new master key from {new_file}: it does not hold 64 hex digits\n")
    assert key_file.read_text().strip() == old, "nothing changed"

    new = "5a" * 32
    new_file.write_text(new + "\n")
    cp = admin(srv.data_dir, "kms", "rotate-master", "--new-key-file", new_file, env=env)
    assert cp.returncode == 0, cp.stderr
    # Two versions of k1, alice's access key (the root's lives in the configuration) and the target's secret.
    assert cp.stdout.splitlines()[0] == f"master key rotated: 4 sealed values re-sealed; the new key is in {key_file}"
    assert key_file.read_text().strip() == new
    assert not (srv.data_dir / "master.key.new").exists()

    # The old key opens nothing now; the new one everything.
    cp = admin(srv.data_dir, "key", "list", env={**env, "CAIRN_MASTER_KEY": old})
    assert cp.returncode == 1
    assert "the master key cannot open the secrets" in cp.stderr
    assert admin(srv.data_dir, "key", "list", env=env).returncode == 0
    cp = admin(srv.data_dir, "kms", "key", "rotate", "k1", env=env)
    assert cp.returncode == 0, cp.stderr
    assert "rotated to version 3" in cp.stdout

    # Restarted with the new key, the server signs alice's requests and runs the re-wrap jobs.
    srv.stop()
    srv.start()
    assert srv.client(ak, sk).head_bucket(Bucket=b)["ResponseMetadata"]["HTTPStatusCode"] == 200

    def rewraps_done():
        out = admin(srv.data_dir, "jobs", "list", "--kind", "kms_rewrap", env=env).stdout.splitlines()
        return out and all(" completed " in line for line in out)

    wait_until(rewraps_done, 30, what="the kms_rewrap jobs completed")


def test_rotate_master_with_an_inline_key_prints_the_new_one_and_keeps_a_copy(data):
    env = {**metadata_env(), "CAIRN_MASTER_KEY": "c3" * 32}
    ak, _ = made_user(data, env)
    assert admin(data, "kms", "key", "create", "--id", "k1", env=env).returncode == 0
    cp = admin(data, "kms", "rotate-master", env=env)
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    assert lines[0] == "master key rotated: 2 sealed values re-sealed"
    m = re.fullmatch(r"new master key: ([0-9a-f]{64})", lines[1])
    assert m, lines[1]
    staged = data / "master.key.new"
    assert "restart every gateway" in lines[2] and str(staged) in lines[2]
    assert staged.read_text() == m.group(1) + "\n"
    assert (staged.stat().st_mode & 0o777) == 0o600
    cp = admin(data, "key", "list", env=env)
    assert cp.returncode == 1, "the old key no longer opens the secrets"
    new_env = {**env, "CAIRN_MASTER_KEY": m.group(1)}
    cp = admin(data, "key", "list", env=new_env)
    assert cp.returncode == 0, cp.stderr
    assert ak in cp.stdout

    # The copy may be the only one of the key that opens the database: never overwritten.
    cp = admin(data, "kms", "rotate-master", env=new_env)
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr == (f"cairn: {staged} exists: an earlier rotate-master may have been interrupted "
                         "(docs/kms.md says how to recover); nothing was changed\n")
    assert staged.read_text() == m.group(1) + "\n"
    staged.unlink()
    cp = admin(data, "kms", "rotate-master", env=new_env)
    assert cp.returncode == 0, cp.stderr
