"""The `cairn` command line off its happy path: usage and version, `cairn
migrate` (status, up, down, bad targets; test_migrate.py has checksums,
drift, verify and dry runs), and the error paths of `cairn
admin` and `cairn config`: flags without values, invalid flags, environment
and files, too many arguments, data directories and master keys that cannot
be used, unknown users, keys, nodes and jobs.  Also the listing formats an
operator reads (`user list`, `key list`, `bucket list`, `jobs show`).

Most tests need no server: they point the CLI at a fresh data directory
under tmp_path.  Exit codes follow src/cmd/cmd.h: 0 done, 2 bad usage or
configuration, 1 a runtime failure.
"""

import re
import sqlite3
import subprocess
from datetime import datetime

import pytest

from conftest import CAIRN_BIN, REPO, CairnServer, free_port, server_env, unique_bucket, unique_name

CMD_MAX_ARGS = 64  # src/cmd/cmd.h: arguments after the subcommand's name

MAIN_USAGE = "usage: cairn <command> [options]\n"
ADMIN_USAGE = ("usage: cairn admin [--data DIR] user create NAME [--audit] | user list | "
               "user audit NAME --grant|--revoke\n")
MIGRATE_USAGE = "usage: cairn migrate [--data DIR] [--dry-run] status | up [VERSION] | down VERSION | verify\n"
CONFIG_USAGE = "usage: cairn config check FILE\n       cairn config describe\n"
MASTER_KEY_ERROR = "must be exactly 64 hex digits (32 bytes), or empty"


def cairn(*args, env=None, timeout=30):
    """Runs `cairn args...` with no CAIRN_* variables but env; returns the
    CompletedProcess (text stdout/stderr).  A sanitizer report fails the test."""
    cp = subprocess.run([CAIRN_BIN, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                        env=server_env(env), stdin=subprocess.DEVNULL)
    for mark in CairnServer.SANITIZER_MARKS:
        assert mark not in cp.stderr, cp.stderr
    return cp


@pytest.fixture
def data(tmp_path):
    """A data directory that does not exist yet (the CLI creates it)."""
    return tmp_path / "data"


def admin(data, *args, env=None):
    return cairn("admin", "--data", data, *args, env=env)


def migrate(data, *args, env=None):
    return cairn("migrate", "--data", data, *args, env=env)


# ---- cairn, help, version, unknown commands -----------------------------------------------


def test_no_arguments_prints_usage_on_stderr():
    cp = cairn()
    assert cp.returncode == 2
    assert cp.stdout == ""
    assert cp.stderr.startswith(MAIN_USAGE)
    for command in ("server", "gateway", "node", "admin", "migrate", "config", "version"):
        assert f"\n  {command} " in cp.stderr or f"\n  {command}\n" in cp.stderr, command


@pytest.mark.parametrize("arg", ["help", "--help", "-h"])
def test_help_prints_usage_on_stdout(arg):
    cp = cairn(arg)
    assert cp.returncode == 0
    assert cp.stderr == ""
    assert cp.stdout == cairn().stderr


@pytest.mark.parametrize("arg", ["version", "--version"])
def test_version_is_the_project_version(arg):
    project = re.search(r"version\s*:\s*'([^']+)'", (REPO / "meson.build").read_text()).group(1)
    cp = cairn(arg)
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, f"cairn {project}\n", "")


@pytest.mark.parametrize("arg", ["frobnicate", "Admin", "--data"])
def test_unknown_command_exits_2_with_usage(arg):
    cp = cairn(arg, "user", "list")
    assert cp.returncode == 2
    assert cp.stdout == ""
    assert cp.stderr.startswith(f"cairn: unknown command '{arg}'\n\n{MAIN_USAGE}")


# ---- cairn migrate ---------------------------------------------------------------------------


def schema_status(data, env=None):
    """(current, latest, {version: applied}) from `cairn migrate status`."""
    cp = migrate(data, "status", env=env)
    assert cp.returncode == 0, cp.stderr
    lines = cp.stdout.splitlines()
    m = re.fullmatch(r"schema version (\d+) of (\d+)", lines[0])
    assert m, cp.stdout
    cur, latest = int(m.group(1)), int(m.group(2))
    applied = {}
    for line in lines[1:]:
        m = re.fullmatch(r"  \[([x ])\] (\d+) (\S.*)", line)
        assert m, f"bad status line {line!r}"
        applied[int(m.group(2))] = m.group(1) == "x"
    assert sorted(applied) == list(range(1, latest + 1)), cp.stdout
    return cur, latest, applied


def assert_schema_at(data, version, env=None):
    cur, latest, applied = schema_status(data, env)
    assert cur == version
    assert applied == {v: v <= version for v in range(1, latest + 1)}
    return latest


def test_migrate_status_of_a_new_data_dir(data):
    latest = assert_schema_at(data, 0)
    assert latest >= 3
    assert (data / "meta.db").exists()
    # status is the default verb
    assert migrate(data).stdout == migrate(data, "status").stdout


def test_migrate_up_and_down_move_the_schema(data):
    latest = schema_status(data)[1]
    steps = [("up", 2, 2), ("up", None, latest), ("down", latest - 1, latest - 1), ("down", 1, 1),
             ("up", 1, 1), ("down", 0, 0)]
    for verb, target, expect in steps:
        cp = migrate(data, verb, *([] if target is None else [target]))
        assert (cp.returncode, cp.stdout, cp.stderr) == (0, f"schema version {expect}\n", ""), (verb, target)
        assert_schema_at(data, expect)


def test_server_runs_on_a_schema_taken_down_and_up_again(make_server):
    srv = make_server()
    s3 = srv.client()
    b = unique_bucket()
    s3.create_bucket(Bucket=b)
    s3.put_object(Bucket=b, Key="k", Body=b"kept")
    assert srv.stop() == 0
    env = srv.meta_env()  # its PostgreSQL clone, on that backend
    latest = schema_status(srv.data_dir, env)[1]
    assert_schema_at(srv.data_dir, latest, env)

    assert migrate(srv.data_dir, "down", latest - 2, env=env).returncode == 0
    assert_schema_at(srv.data_dir, latest - 2, env)
    assert migrate(srv.data_dir, "up", env=env).stdout == f"schema version {latest}\n"
    assert_schema_at(srv.data_dir, latest, env)

    srv.start()
    s3 = srv.client()
    assert s3.get_object(Bucket=b, Key="k")["Body"].read() == b"kept"
    s3.put_object(Bucket=b, Key="k2", Body=b"new")
    uid = s3.create_multipart_upload(Bucket=b, Key="mp")["UploadId"]
    s3.abort_multipart_upload(Bucket=b, Key="mp", UploadId=uid)
    assert sorted(o["Key"] for o in s3.list_objects_v2(Bucket=b)["Contents"]) == ["k", "k2"]


@pytest.mark.parametrize("args", [["down"], ["down", "4"], ["down", "-1"], ["up", "2"], ["up", "LATEST+1"]],
                         ids=["down-without-version", "down-above-current", "down-negative", "up-below-current",
                              "up-beyond-latest"])
def test_migrate_refuses_a_bad_target(data, args):
    assert migrate(data, "up", 3).returncode == 0
    latest = schema_status(data)[1]
    args = [str(latest + 1) if a == "LATEST+1" else a for a in args]
    cp = migrate(data, *args)
    assert cp.returncode == 2
    assert cp.stdout == ""
    assert cp.stderr == f"cairn: bad target version for {args[0]} (current 3, latest {latest})\n"
    assert_schema_at(data, 3)


@pytest.mark.parametrize("version", ["oops", "", "5x", "1.5"])
def test_migrate_refuses_a_version_that_is_not_a_number(data, version):
    """Read with atoi, 'oops' was version 0: `migrate down oops` dropped
    every table."""
    assert admin(data, "user", "create", "alice").returncode == 0
    latest = schema_status(data)[1]
    cp = migrate(data, "down", version)
    assert cp.returncode == 2, cp.stdout
    assert cp.stderr == f"cairn: '{version}' is not a schema version (a whole number)\n"
    assert_schema_at(data, latest)
    assert admin(data, "user", "list").stdout == "1 alice\n"


def test_migrate_fails_while_another_process_holds_the_write_lock(data):
    latest = schema_status(data)[1]
    assert migrate(data, "up").returncode == 0
    db = sqlite3.connect(data / "meta.db", isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        cp = migrate(data, "down", 1)  # gives up after its 5 s busy timeout
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr.endswith("cairn: migration failed: a migration cannot begin: database is locked\n"), cp.stderr
    assert_schema_at(data, latest)


def test_migrate_unknown_verb_prints_usage(data):
    cp = migrate(data, "sideways")
    assert (cp.returncode, cp.stdout, cp.stderr) == (2, "", MIGRATE_USAGE)
    assert_schema_at(data, 0)


def test_migrate_data_dir_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    target = tmp_path / "file" / "data"
    cp = migrate(target, "status")
    assert cp.returncode == 1
    assert cp.stdout == ""
    assert cp.stderr == f"cairn: cannot create data directory {target}: Not a directory\n"


def test_migrate_database_that_cannot_be_opened(data):
    (data / "meta.db").mkdir(parents=True)
    cp = migrate(data, "status")
    assert cp.returncode == 1
    assert cp.stdout == ""
    assert f"cairn: cannot open the metadata database: {data}/meta.db: " in cp.stderr


# ---- flags, environment and configuration files (admin and migrate) -------------------------------


@pytest.mark.parametrize("command", ["admin", "migrate"])
def test_too_many_arguments(data, command):
    verb = ["user", "list"] if command == "admin" else ["status"]
    base = ["--data", data, *verb]
    padding = ["x"] * (CMD_MAX_ARGS - 1 - len(base))
    ok = cairn(command, *base, *padding)
    assert ok.returncode == 0, ok.stderr
    cp = cairn(command, *base, *padding, "x")
    assert (cp.returncode, cp.stdout, cp.stderr) == (2, "", "cairn: too many arguments\n")


@pytest.mark.parametrize("command", ["admin", "migrate"])
@pytest.mark.parametrize("flag", ["--data", "--config", "--listen", "--domain", "--log-level", "--region",
                                  "--drives", "--nodes"])
def test_flag_without_its_value(data, command, flag):
    cp = cairn(command, "--data", data, "user", "list", flag)
    assert (cp.returncode, cp.stdout, cp.stderr) == (2, "", f"cairn: {flag} needs a value\n")
    assert not data.exists()


@pytest.mark.parametrize("command", ["admin", "migrate"])
@pytest.mark.parametrize("args,message", [
    (["--log-level", "loud"], "cairn: flags: log_level: must be debug, info, warn or error\n"),
    (["--log-level=loud"], "cairn: flags: log_level: must be debug, info, warn or error\n"),
    (["--listen", "nope"], "cairn: flags: listen: expected HOST:PORT, e.g. 127.0.0.1:9000\n"),
    (["--data="], "cairn: flags: data_dir: must not be empty\n"),
])
def test_invalid_flag_values(data, command, args, message):
    cp = cairn(command, "--data", data, *args, "status")
    assert (cp.returncode, cp.stdout, cp.stderr) == (2, "", message)
    assert not data.exists()


@pytest.mark.parametrize("env,message", [
    ({"CAIRN_MASTER_KEY": "abc"}, f"cairn: environment: CAIRN_MASTER_KEY: {MASTER_KEY_ERROR}\n"),
    ({"CAIRN_MASTER_KEY": "z" * 64}, f"cairn: environment: CAIRN_MASTER_KEY: {MASTER_KEY_ERROR}\n"),
    ({"CAIRN_MASTER_KEY": "a" * 66}, f"cairn: environment: CAIRN_MASTER_KEY: {MASTER_KEY_ERROR}\n"),
    ({"CAIRN_LOG_LEVEL": "loud"}, "cairn: environment: CAIRN_LOG_LEVEL: must be debug, info, warn or error\n"),
    ({"CAIRN_ROOT_USER": "someone"}, "cairn: configuration: root_password: must be set when root_user is set\n"),
])
def test_invalid_environment(data, env, message):
    cp = admin(data, "user", "list", env=env)
    assert (cp.returncode, cp.stdout, cp.stderr) == (2, "", message)
    assert not data.exists()


def test_master_key_from_the_environment(data):
    env = {"CAIRN_MASTER_KEY": "0123456789abcdef" * 4}
    cp = admin(data, "user", "create", "alice", env=env)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith("user: alice\naccess_key_id: ")
    assert not (data / "master.key").exists(), "a configured master_key is not written to the data dir"


@pytest.mark.parametrize("how", ["missing", "--config=FILE", "CAIRN_CONFIG"])
def test_config_file_that_cannot_be_read(data, tmp_path, how):
    missing = tmp_path / "nope.yaml"
    if how == "missing":
        cp = admin(data, "--config", missing, "user", "list")
    elif how == "--config=FILE":
        cp = admin(data, f"--config={missing}", "user", "list")
    else:
        cp = admin(data, "user", "list", env={"CAIRN_CONFIG": str(missing)})
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr == f"cairn: {missing}: <file>: cannot open: No such file or directory\n"


def test_config_file_with_more_errors_than_are_kept(data, tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("".join(f"bogus_{i}: 1\n" for i in range(40)))
    cp = admin(data, "--config", cfg, "user", "list")
    assert cp.returncode == 2
    lines = cp.stderr.splitlines()
    assert lines[0].startswith(f"cairn: {cfg}: bogus_0: line 1: unknown key")
    assert len(lines) == 33, cp.stderr
    assert lines[-1] == f"cairn: {cfg}: ... and 8 more"


# ---- data directory, master key, metadata database ----------------------------------------------


@pytest.mark.parametrize("where,reason", [("file/data", "Not a directory"),
                                          ("no/such/parent", "No such file or directory")])
def test_admin_data_dir_that_cannot_be_created(tmp_path, where, reason):
    (tmp_path / "file").write_text("x")
    target = tmp_path / where
    cp = admin(target, "user", "list")
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr == f"cairn: cannot create data directory {target}: {reason}\n"


def _short(p):
    p.write_text("0123\n")


def _not_hex(p):
    p.write_text("g" * 64 + "\n")


def _directory(p):
    p.mkdir()


def _symlink_loop(p):
    p.symlink_to(p)


@pytest.mark.parametrize("spoil", [_short, _not_hex, _directory, _symlink_loop],
                         ids=["short", "not-hex", "directory", "symlink-loop"])
def test_master_key_file_that_cannot_be_used(data, spoil):
    data.mkdir()
    spoil(data / "master.key")
    cp = admin(data, "user", "create", "alice")
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr == f"cairn: cannot read or create the master key in {data} (or master_key is invalid)\n"
    assert not (data / "meta.db").exists()


def test_metadata_database_that_cannot_be_opened(data):
    (data / "meta.db").mkdir(parents=True)
    cp = admin(data, "user", "list")
    assert (cp.returncode, cp.stdout) == (1, "")
    assert f"cairn: cannot open the metadata database: {data}/meta.db: " in cp.stderr


# ---- admin usage ------------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["user"], ["user", "create"], ["user", "delete", "x"], ["key"],
                                  ["key", "create"], ["key", "revoke"], ["bucket"], ["bucket", "set-public"],
                                  ["node"], ["node", "add"], ["node", "frob"], ["jobs"], ["jobs", "show"],
                                  ["jobs", "show", "abc"], ["jobs", "retry", "1x"], ["jobs", "frob", "1"],
                                  ["jobs", "enqueue"], ["frobnicate"], ["user", "audit", "x"],
                                  ["user", "audit", "x", "--maybe"], ["user", "create", "x", "--root"]],
                         ids=lambda a: "-".join(a) or "nothing")
def test_admin_usage(data, args):
    cp = admin(data, *args)
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr.startswith(ADMIN_USAGE)
    assert "cairn admin [--data DIR] jobs enqueue KIND" in cp.stderr


def test_admin_node_unknown_verb_with_an_argument_prints_usage(data):
    """The verb is checked before the node is looked up (it said "no node
    'x'", exit 1)."""
    cp = admin(data, "node", "frob", "x")
    assert cp.returncode == 2
    assert cp.stderr.startswith(ADMIN_USAGE)


# ---- users and keys -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "bad name", "a" * 129, "x/y", "ünï", "semi;colon", "tab\tname"],
                         ids=["empty", "space", "129-chars", "slash", "non-ascii", "semicolon", "tab"])
def test_user_create_refuses_an_invalid_name(data, name):
    cp = admin(data, "user", "create", name)
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr == f"cairn: invalid user name '{name}' (1-128 of A-Z a-z 0-9 - _ . @)\n"
    assert admin(data, "user", "list").stdout == ""


@pytest.mark.parametrize("name", ["a" * 128, "x", "Ops.Team_1-ci@example.com"])
def test_user_create_accepts_a_valid_name(data, name):
    cp = admin(data, "user", "create", name)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.startswith(f"user: {name}\n")
    assert admin(data, "user", "list").stdout == f"1 {name}\n"


def test_duplicate_user(data):
    first = admin(data, "user", "create", "bob")
    assert first.returncode == 0, first.stderr
    cp = admin(data, "user", "create", "bob")
    assert (cp.returncode, cp.stdout, cp.stderr) == (1, "", "cairn: user 'bob' already exists\n")
    assert admin(data, "user", "list").stdout == "1 bob\n"
    assert len(admin(data, "key", "list").stdout.splitlines()) == 1, "no key for the refused user"


@pytest.mark.parametrize("args", [["key", "create", "ghost"], ["key", "list", "ghost"]])
def test_key_commands_for_a_user_that_does_not_exist(data, args):
    assert admin(data, "user", "create", "alice").returncode == 0
    cp = admin(data, *args)
    assert (cp.returncode, cp.stdout, cp.stderr) == (1, "", "cairn: no user 'ghost'\n")


def test_key_revoke_of_an_unknown_key(data):
    cp = admin(data, "key", "revoke", "AKNOSUCHKEY000000000")
    assert (cp.returncode, cp.stdout, cp.stderr) == (1, "", "cairn: no access key 'AKNOSUCHKEY000000000'\n")


def test_user_and_key_list_formats(data):
    keys = {}
    for name in ("alice", "bob"):
        cp = admin(data, "user", "create", name)
        keys[name] = re.search(r"^access_key_id: (\S+)$", cp.stdout, re.M).group(1)
    second = admin(data, "key", "create", "bob")
    assert second.returncode == 0, second.stderr
    bob2 = re.search(r"^access_key_id: (\S+)$", second.stdout, re.M).group(1)
    assert admin(data, "key", "revoke", keys["bob"]).stdout == f"revoked {keys['bob']}\n"

    assert admin(data, "user", "list").stdout == "1 alice\n2 bob\n"
    assert sorted(admin(data, "key", "list").stdout.splitlines()) == sorted(
        [f"{keys['alice']} alice active", f"{keys['bob']} bob revoked", f"{bob2} bob active"])
    assert sorted(admin(data, "key", "list", "bob").stdout.splitlines()) == sorted(
        [f"{keys['bob']} bob revoked", f"{bob2} bob active"])


def test_user_and_bucket_lists_of_a_running_server(make_server):
    srv = make_server()
    user = srv.create_user(unique_name("owner"))
    mine, theirs = unique_bucket("root"), unique_bucket("user")
    srv.client().create_bucket(Bucket=mine)
    srv.client(*user.creds).create_bucket(Bucket=theirs)
    assert srv.admin("bucket", "set-public", theirs).stdout == f"bucket {theirs} is public-read\n"

    users = srv.admin("user", "list").stdout
    assert users == f"1 {srv.root[0]} root\n2 {user.name}\n"
    assert sorted(srv.admin("bucket", "list").stdout.splitlines()) == sorted(
        [f"{mine} owner=1", f"{theirs} owner=2 public-read"])


# ---- nodes --------------------------------------------------------------------------------------


def test_node_add_needs_the_cluster_secret(data):
    cp = admin(data, "node", "add", "http://127.0.0.1:1")
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr.startswith("cairn: set cluster_secret (CAIRN_CLUSTER_SECRET) to reach the node\n")
    assert admin(data, "node", "list").stdout == ""


@pytest.mark.parametrize("verb", ["drain", "remove"])
def test_node_drain_or_remove_of_an_unknown_node(data, verb):
    cp = admin(data, "node", verb, "nosuchnode")
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr == "cairn: no node 'nosuchnode' (give its id or url; see `cairn admin node list`)\n"


# ---- jobs ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["show", "retry", "cancel"])
def test_jobs_verbs_on_a_job_that_does_not_exist(data, verb):
    cp = admin(data, "jobs", verb, "42")
    assert (cp.returncode, cp.stdout, cp.stderr) == (1, "", "cairn: no job 42\n")


def iso_ms(text):
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").timestamp() * 1000


def test_jobs_enqueue_show_cancel_retry(data):
    cp = admin(data, "jobs", "enqueue", "noop", '{"a": 1}', "--max-attempts", "0", "--delay-ms", "60000")
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, "1\n", "")
    show = admin(data, "jobs", "show", "1").stdout.splitlines()
    m = re.fullmatch(r"1 noop available attempts=0/5 run_at=(\S+)", show[0])
    assert m, show
    m2 = re.fullmatch(r'  args=\{"a": 1\} priority=0 unique_key=- lease_owner=- created=(\S+)', show[1])
    assert m2, show
    assert abs(iso_ms(m.group(1)) - iso_ms(m2.group(1)) - 60000) < 5000, show

    assert admin(data, "jobs", "enqueue", "other", "--count", "3").stdout == "", "--count N prints no ids"
    assert len(admin(data, "jobs", "list").stdout.splitlines()) == 4
    assert [ln.split()[0] for ln in admin(data, "jobs", "list", "--kind", "other").stdout.splitlines()] == \
        ["4", "3", "2"]

    assert admin(data, "jobs", "cancel", "1").stdout == "job 1 cancelled\n"
    cp = admin(data, "jobs", "cancel", "1")
    assert (cp.returncode, cp.stderr) == (1, "cairn: job 1 cannot be cancelled in its state\n")
    assert admin(data, "jobs", "list", "--state", "cancelled").stdout.split()[:3] == ["1", "noop", "cancelled"]
    cp = admin(data, "jobs", "retry", "2")
    assert (cp.returncode, cp.stderr) == (1, "cairn: job 2 cannot be retried in its state\n")
    assert admin(data, "jobs", "retry", "1").stdout == "job 1 will run again\n"
    assert admin(data, "jobs", "list", "--state", "cancelled").stdout == ""


@pytest.mark.parametrize("value", ["-5", "5x", ""])
def test_jobs_enqueue_refuses_a_bad_delay(data, value):
    cp = admin(data, "jobs", "enqueue", "noop", "--delay-ms", value)
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr.startswith("cairn: --delay-ms wants a number of milliseconds >= 0\n")
    assert admin(data, "jobs", "list").stdout == ""


# ---- cairn config ---------------------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["check"], ["check", "a.yaml", "b.yaml"], ["describe", "extra"],
                                  ["frob"], ["--help"]],
                         ids=lambda a: "-".join(a) or "nothing")
def test_config_usage(args):
    cp = cairn("config", *args)
    assert (cp.returncode, cp.stdout, cp.stderr) == (2, "", CONFIG_USAGE)


def test_config_check_of_a_directory(tmp_path):
    cp = cairn("config", "check", tmp_path)
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr == f"{tmp_path}: <file>: not a regular file\n"


def test_config_check_of_an_empty_file(tmp_path):
    cfg = tmp_path / "empty.yaml"
    cfg.write_text("")
    cp = cairn("config", "check", cfg)
    assert (cp.returncode, cp.stdout, cp.stderr) == (0, f"{cfg}: ok\n", "")


def test_config_check_with_more_errors_than_are_kept(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("".join(f"bogus_{i}: 1\n" for i in range(40)))
    cp = cairn("config", "check", cfg)
    assert (cp.returncode, cp.stdout) == (2, "")
    lines = cp.stderr.splitlines()
    assert len(lines) == 33, cp.stderr
    assert lines[0].startswith(f"{cfg}: bogus_0: line 1: unknown key")
    assert lines[31].startswith(f"{cfg}: bogus_31: line 32: unknown key")
    assert lines[-1] == f"{cfg}: ... and 8 more errors"


@pytest.mark.parametrize("flag", ["--delay-ms", "--count", "--max-attempts", "--state", "--kind"])
def test_jobs_option_without_its_value_is_refused(data, flag):
    cp = admin(data, "jobs", "enqueue", "noop", flag)
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr.startswith(f"cairn: {flag} needs a value\n"), cp.stderr
    assert admin(data, "jobs", "list").stdout == ""


@pytest.mark.parametrize("value", ["x", "-1", "1000001"])
def test_jobs_bad_counts_are_refused(data, value):
    cp = admin(data, "jobs", "enqueue", "noop", "--count", value)
    assert cp.returncode == 2
    assert cp.stderr.startswith("cairn: --count wants a whole number from 0 (the default) to 1000000\n"), cp.stderr
    assert admin(data, "jobs", "list").stdout == ""


def test_migrate_up_or_down_refuses_to_run_beside_a_server(make_server):
    """Moving the schema under a running server pulls tables from under it:
    up and down take the data directory's lock; status does not need it."""
    srv = make_server()
    env = srv.meta_env()
    latest = schema_status(srv.data_dir, env)[1]
    for args in (["down", "1"], ["up"]):
        cp = migrate(srv.data_dir, *args, env=env)
        assert (cp.returncode, cp.stdout) == (1, ""), cp
        assert "is in use by another cairn process" in cp.stderr, cp.stderr
    assert migrate(srv.data_dir, "status", env=env).returncode == 0
    assert schema_status(srv.data_dir, env)[0] == latest
    assert srv.client().list_buckets()["Buckets"] is not None


# ---- cairn server / gateway: refusals before serving ------------------------------------------


def serve(kind, data, *args, env=None):
    """`cairn server|gateway --data DATA --listen 127.0.0.1:PORT args...`, expected to refuse."""
    return cairn(kind, "--data", data, "--listen", f"127.0.0.1:{free_port()}", *args, env=env, timeout=20)


@pytest.mark.parametrize("env,message", [
    ({"CAIRN_ROOT_USER": "abc"}, "cairn: configuration: root_password: must be set when root_user is set\n"),
    ({"CAIRN_ROOT_PASSWORD": "12345678"}, "cairn: configuration: root_user: must be set when root_password is set\n"),
    ({"CAIRN_ROOT_USER": "ab", "CAIRN_ROOT_PASSWORD": "12345678"},
     "cairn: environment: CAIRN_ROOT_USER: root user must be at least 3 characters\n"),
    ({"CAIRN_ROOT_USER": "abc", "CAIRN_ROOT_PASSWORD": "1234567"},
     "cairn: environment: CAIRN_ROOT_PASSWORD: root password must be at least 8 characters\n"),
], ids=["user-alone", "password-alone", "short-user", "short-password"])
def test_server_refuses_half_or_short_root_credentials(data, env, message):
    cp = serve("server", data, env=env)
    assert (cp.returncode, cp.stdout, cp.stderr) == (2, "", message)
    assert not data.exists(), "a refused configuration touches nothing"


def test_server_refuses_a_malformed_root_credentials_file(data):
    data.mkdir()
    (data / "root-credentials").write_text("CAIRN_ROOT_USER=abc\n")   # no password line
    cp = serve("server", data)
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr == f"cairn: {data}/root-credentials is unreadable or malformed\n"
    assert (data / "root-credentials").read_text() == "CAIRN_ROOT_USER=abc\n", "left for the operator to fix"


def test_server_refuses_unreadable_tls_files(data, tmp_path):
    empty = tmp_path / "empty.pem"
    empty.write_text("")
    cert = tmp_path / "cert.pem"
    cert.write_text("x\n")
    cp = serve("server", data, env={"CAIRN_TLS_CERT": str(tmp_path / "missing.pem"), "CAIRN_TLS_KEY": str(empty)})
    assert cp.returncode == 2
    assert cp.stderr.endswith(f"cairn: cannot read {tmp_path / 'missing.pem'} (tls_cert)\n"), cp.stderr
    cp = serve("server", data, env={"CAIRN_TLS_CERT": str(cert), "CAIRN_TLS_KEY": str(empty)})
    assert cp.returncode == 2
    assert cp.stderr.endswith(f"cairn: cannot read {empty} (tls_key)\n"), cp.stderr


GATEWAY_NEEDS = "cairn gateway: set nodes (--nodes URL,...) and cluster_secret (CAIRN_CLUSTER_SECRET)\n"


@pytest.mark.parametrize("args,env", [((), None),
                                      (("--nodes", "http://127.0.0.1:1"), None),
                                      ((), {"CAIRN_CLUSTER_SECRET": "0123456789abcdef0123456789abcdef"})],
                         ids=["neither", "nodes-only", "secret-only"])
def test_gateway_needs_nodes_and_a_cluster_secret(data, args, env):
    cp = serve("gateway", data, *args, env=env)
    assert (cp.returncode, cp.stdout, cp.stderr) == (2, "", GATEWAY_NEEDS)
    assert not data.exists()


def test_server_refuses_nodes_and_stray_arguments(data):
    cp = serve("server", data, "--nodes", "http://127.0.0.1:1",
               env={"CAIRN_CLUSTER_SECRET": "0123456789abcdef0123456789abcdef"})
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr == "cairn server: nodes are for `cairn gateway`; the server keeps data on --drives\n"
    cp = serve("server", data, "extra")
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr.startswith("cairn server: unknown argument 'extra'\nusage: cairn server ")
    assert not data.exists()


SECRET_ENV = {"CAIRN_CLUSTER_SECRET": "0123456789abcdef0123456789abcdef"}


@pytest.fixture
def taken_port():
    """A port something else is listening on."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def test_server_and_node_refuse_a_port_in_use(data, tmp_path, taken_port):
    cp = cairn("server", "--data", data, "--listen", f"127.0.0.1:{taken_port}", timeout=20)
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr.endswith(f"cairn: cannot listen on 127.0.0.1:{taken_port}: Address already in use\n"), cp.stderr
    # The port is taken before anything else starts: no database, no drives.
    assert not (data / "meta.db").exists() and not (data / "drives").exists()
    cp = cairn("node", "--drives", tmp_path / "n0", "--listen", f"127.0.0.1:{taken_port}", env=SECRET_ENV, timeout=20)
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr.endswith(f"cairn node: cannot listen on 127.0.0.1:{taken_port}: Address already in use\n"), cp.stderr


def test_node_refusals(tmp_path):
    cp = cairn("node", "--drives", tmp_path / "n0", "--listen", f"127.0.0.1:{free_port()}")
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr == "cairn node: set cluster_secret (CAIRN_CLUSTER_SECRET), the secret gateways sign with\n"
    (tmp_path / "file").write_text("x")
    cp = cairn("node", "--drives", tmp_path / "file", "--listen", f"127.0.0.1:{free_port()}", env=SECRET_ENV)
    assert (cp.returncode, cp.stdout) == (1, "")
    assert cp.stderr.endswith("cairn node: cannot open the drives: I/O error\n"), cp.stderr
    cp = cairn("node", "--drives", tmp_path / "n1", "--listen", f"127.0.0.1:{free_port()}",
               env={**SECRET_ENV, "CAIRN_TLS_CERT": str(tmp_path / "no.pem"), "CAIRN_TLS_KEY": str(tmp_path / "no.pem")})
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr.endswith(f"cairn: cannot read {tmp_path / 'no.pem'} (tls_cert)\n"), cp.stderr
    cp = cairn("node", "--drives", tmp_path / "n1", "--listen", f"127.0.0.1:{free_port()}", "extra", env=SECRET_ENV)
    assert (cp.returncode, cp.stdout) == (2, "")
    assert cp.stderr.startswith("cairn node: unknown argument 'extra'\n"), cp.stderr
