"""Job kinds given arguments they cannot use: a job whose payload is not JSON,
lacks a field or has one of the wrong type fails with a message that names
what is wrong (and, with one attempt allowed, is discarded) instead of
running on guesses; kinds whose arguments are optional run with their
defaults.  One server, every job enqueued up front, then polled."""
import json

from conftest import wait_until
from test_jobs import TEST_ENV, admin, job_line

LAYOUT = "1+0:65536:0123456789abcdef"

HEAL_NEEDS = "heal args need version_id, layout and size"


def enqueue(srv, kind, args):
    return admin(srv, "jobs", "enqueue", kind, args, "--max-attempts", "1").stdout.strip()


def final_line(srv, job_id):
    """The job's line once it has completed or been discarded."""
    wait_until(lambda: any(s in job_line(srv, job_id) for s in (" completed ", " discarded ")), 30,
               what=f"job {job_id} to finish")
    return job_line(srv, job_id)


def test_bad_payloads_fail_with_what_is_wrong_and_optional_ones_default(make_server, tmp_path):
    srv = make_server(env=TEST_ENV)
    missing_dir = str(tmp_path / "no-such-dir" / "record.txt")
    failing = {
        # heal: every field is needed, and the layout must parse.
        enqueue(srv, "heal", "not json"): HEAL_NEEDS,
        enqueue(srv, "heal", json.dumps({"layout": LAYOUT, "size": 1})): HEAL_NEEDS,
        enqueue(srv, "heal", json.dumps({"version_id": "v1", "size": 1})): HEAL_NEEDS,
        enqueue(srv, "heal", json.dumps({"version_id": "v1", "layout": LAYOUT, "size": "1"})): HEAL_NEEDS,
        enqueue(srv, "heal", json.dumps({"version_id": "v1", "layout": LAYOUT})): HEAL_NEEDS,
        enqueue(srv, "heal", json.dumps({"version_id": "v1", "layout": "3+1:0:", "size": 1})): HEAL_NEEDS,
        enqueue(srv, "heal", json.dumps({"version_id": 7, "layout": LAYOUT, "size": 1})): HEAL_NEEDS,
        # the test kinds: a file to write, that can be written.
        enqueue(srv, "test.record", "not json"): 'args need "file"',
        enqueue(srv, "test.record", json.dumps({"file": 5})): 'args need "file"',
        enqueue(srv, "test.record", json.dumps({"file": missing_dir})): f"cannot write {missing_dir}",
        enqueue(srv, "test.fail", "not json"): "test.fail always fails (attempt 1)",
    }
    succeeding = [
        # A version that no longer exists needs no heal.
        enqueue(srv, "heal", json.dumps({"version_id": "no-such-version", "layout": LAYOUT, "size": 10})),
        # collect_orphans: grace and start are optional; unusable ones are ignored.
        enqueue(srv, "collect_orphans", "not json"),
        enqueue(srv, "collect_orphans", json.dumps({"grace_s": "soon", "started_ms": "then"})),
        enqueue(srv, "prune_jobs", "not json"),
    ]
    for job_id, message in failing.items():
        line = final_line(srv, job_id)
        assert " discarded " in line and "attempts=1/1" in line, line
        assert message in line, line
    for job_id in succeeding:
        line = final_line(srv, job_id)
        assert " completed " in line, line
    assert not (tmp_path / "no-such-dir").exists()


def test_a_rerun_of_recorded_work_does_not_redo_it(make_server, tmp_path):
    srv = make_server(env=TEST_ENV)
    record = tmp_path / "record.txt"
    job_id = admin(srv, "jobs", "enqueue", "test.record", json.dumps({"file": str(record)}),
                   "--delay-ms", "3600000").stdout.strip()
    # What a crash after the work but before its completion leaves behind.
    record.write_text(f"start {job_id}\nunrelated line\ndone {job_id}\n")
    admin(srv, "jobs", "cancel", job_id)
    admin(srv, "jobs", "retry", job_id)
    assert " completed " in final_line(srv, job_id)
    assert record.read_text() == f"start {job_id}\nunrelated line\ndone {job_id}\n"
