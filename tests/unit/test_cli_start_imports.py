"""What `composer` commands import as they start: never dataclasses (which loads inspect,
dis, ast...: ~8-17 ms) nor its per-class exec; runtime's and composer's types are records."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# Imported by the dataclasses module and by nothing else a command needs.
HEAVY = {"dataclasses", "inspect"}

# What `composer up -d` loads (its -X importtime list), building included.
UP_PATH = (
    "composer.cli.main",
    "composer.cli.app",
    "composer.ops.up",
    "composer.containers",
    "runtime.engine",
    "runtime.shim_spawner",
    "runtime.network.manager",
    "runtime.network.dns",
    "runtime.images.obtain",
    "runtime.images.bootstrap",
    "runtime.images.registry",
    "runtime.images.build.builder",
    "runtime.oci.spec",
    "runtime.oci.seccomp",
)

REPO = Path(__file__).resolve().parents[2]


def imported_modules(importtime_report: str) -> set[str]:
    """Module names from `python -X importtime` lines ("import time: self | total | name")."""
    names = set()
    for line in importtime_report.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return names


def test_ps_imports_neither_dataclasses_nor_inspect(tmp_path):
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    env = {**os.environ, "COMPOSER_ROOT": str(tmp_path / "root"), "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-X", "importtime", "-m", "composer.cli.main"]
    ran = subprocess.run(
        [*command, "-p", f"imports{os.getpid()}", "ps"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert ran.returncode == 0, ran.stderr[-2000:]
    modules = imported_modules(ran.stderr)
    assert {"composer.model", "runtime.engine"} <= modules  # the report is the real one
    assert HEAVY & modules == set()


def test_up_path_imports_neither_dataclasses_nor_inspect():
    code = (
        f"import sys\nfor name in {UP_PATH!r}: __import__(name)\n"
        f"print(sorted(set({sorted(HEAVY)!r}) & set(sys.modules)))"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]"
