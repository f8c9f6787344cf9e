"""Fixtures of the fault suite (`make test-faults`): the integration suite's
harness (tests/integration/conftest.py, loaded here under the name
cairn_harness) plus what fault runs need.  CAIRN_BIN must be a binary of the
fault-injection build (build-faults/, meson -Dfaults=true)."""
import importlib.util
import pathlib
import resource
import sys

INTEGRATION = pathlib.Path(__file__).resolve().parents[1] / "integration"
sys.path.insert(0, str(INTEGRATION))
_spec = importlib.util.spec_from_file_location("cairn_harness", INTEGRATION / "conftest.py")
harness = importlib.util.module_from_spec(_spec)
sys.modules["cairn_harness"] = harness
_spec.loader.exec_module(harness)

# Fixtures and hooks, the autouse ones included.
from cairn_harness import (_deadline, _session_server_guard, make_audit_server, make_server,  # noqa: F401,E402
                           pytest_configure, pytest_runtest_makereport, root_creds, server)

# Crash points abort the server: no core files.
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
