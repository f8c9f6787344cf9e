"""docs/configuration.md carries the option table that `cairn config
describe` prints from src/core/config.c, row for row: an option added,
renamed or given a new default without regenerating the page fails here."""

import subprocess

from conftest import CAIRN_BIN, REPO, server_env


def test_configuration_doc_matches_config_describe():
    cp = subprocess.run([CAIRN_BIN, "config", "describe"], capture_output=True, text=True, timeout=30,
                        env=server_env(), stdin=subprocess.DEVNULL)
    assert cp.returncode == 0, cp.stderr
    table = [line for line in cp.stdout.splitlines() if line.startswith("|")]
    assert len(table) > 2, cp.stdout
    doc = (REPO / "docs" / "configuration.md").read_text()
    documented = [line for line in doc.splitlines() if line.startswith("| `") or line.startswith("| Key ")
                  or line.startswith("| --- ")]
    missing = [line for line in table if line not in documented]
    stale = [line for line in documented if line not in table]
    assert not missing and not stale, (
        "docs/configuration.md is out of date; regenerate its table with `cairn config describe`\n"
        f"missing: {missing}\nstale: {stale}")
