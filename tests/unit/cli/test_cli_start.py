"""What every `dockyard` command pays before it runs: the command tree loads without the settings
model (pydantic) or the database layer; each command imports what it uses when it runs."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("pydantic", "sqlalchemy", "dockyard.config.settings", "dockyard.db")


def test_the_command_tree_loads_without_pydantic_or_the_database_layer() -> None:
    script = "import sys, dockyard.cli.main; print('\\n'.join(sorted(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    modules = set(loaded.stdout.split())
    assert "typer" in modules  # it ran
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY)) == []
