"""The `volume` command group on a private COMPOSER_ROOT, with real containers using the
volumes (busybox services in the test session's network namespace)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.compose_helpers import COMPOSER


def composer(root: Path, *args: str, check: bool = True, input: str | None = None):
    result = subprocess.run(
        [*COMPOSER, *args],
        env={**os.environ, "COMPOSER_ROOT": str(root)},
        input=input,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"composer {' '.join(args)} failed:\n{result.stderr}")
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    return result


def test_create_ls_inspect_rm(tmp_path):
    root = tmp_path / "root"
    assert composer(root, "volume", "create", "v1", "--label", "team=a").stdout.strip() == "v1"
    composer(root, "volume", "create", "v2")
    assert composer(root, "volume", "ls", "-q").stdout.split() == ["v1", "v2"]
    table = composer(root, "volume", "ls").stdout.splitlines()
    assert table[0].split() == ["DRIVER", "VOLUME", "NAME", "PROJECT"]
    assert table[1].split() == ["local", "v1"]
    rows = json.loads(composer(root, "volume", "ls", "--format", "json").stdout)
    assert [(r["Name"], r["Driver"], r["Labels"]) for r in rows] == [
        ("v1", "local", {"team": "a"}),
        ("v2", "local", {}),
    ]

    [info] = json.loads(composer(root, "volume", "inspect", "v1").stdout)
    assert info["Name"] == "v1" and info["Driver"] == "local" and info["Scope"] == "local"
    assert info["Labels"] == {"team": "a"} and info["CreatedAt"]
    assert info["Mountpoint"] == str(root / "volumes" / "v1" / "_data")
    assert os.path.isdir(info["Mountpoint"])
    partly = composer(root, "volume", "inspect", "v2", "nope", check=False)
    assert partly.returncode == 1 and "no such volume: nope" in partly.stderr
    assert [i["Name"] for i in json.loads(partly.stdout)] == ["v2"]

    assert composer(root, "volume", "rm", "v1").stdout.strip() == "v1"
    assert not os.path.exists(info["Mountpoint"])
    missing = composer(root, "volume", "rm", "v1", check=False)
    assert missing.returncode == 1 and "no such volume: v1" in missing.stderr
    assert composer(root, "volume", "rm", "-f", "v1").returncode == 0
    bad = composer(root, "volume", "create", "../escape", check=False)
    assert bad.returncode == 1 and "invalid volume name" in bad.stderr
    composer(root, "volume", "prune", "-a", "-f")
    assert composer(root, "volume", "ls", "-q").stdout == ""


USES_VOLUMES = """
services:
  app:
    image: busybox:latest
    command: ["sh", "-c", "echo kept > /data/file; sleep 600"]
    volumes: ["data:/data", "/scratch"]
volumes:
  data: {}
"""


def _wait_for(path: Path, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_volumes_in_use_are_refused_and_pruning_spares_them(project):
    project.write(USES_VOLUMES)
    project.run("up", "-d")
    rows = json.loads(project.run("volume", "ls", "--format", "json").stdout)
    assert {r["Project"] for r in rows} == {project.name}
    [named] = [r for r in rows if "io.composer.anonymous" not in r["Labels"]]
    [anonymous] = [r for r in rows if "io.composer.anonymous" in r["Labels"]]
    assert named["Name"].startswith(project.name) and named["Name"].endswith("data")

    container = f"{project.name}-app-1"
    for name in (named["Name"], anonymous["Name"]):
        refused = project.run("volume", "rm", name, check=False)
        assert refused.returncode == 1
        assert f"in use by {container}" in refused.stderr and "-f" in refused.stderr
    pruned = project.run("volume", "prune", "-a", "-f").stdout
    assert "Deleted Volumes" not in pruned
    assert len(json.loads(project.run("volume", "ls", "--format", "json").stdout)) == 2

    _wait_for(Path(named["Mountpoint"], "file"))
    project.run("down", "-t", "0")  # keeps volumes
    declined = composer(project.root, "volume", "prune", input="n\n")
    assert "Deleted Volumes" not in declined.stdout
    # Without -a only the anonymous volume goes; the named one keeps its data.
    pruned = project.run("volume", "prune", "-f").stdout
    assert pruned.splitlines()[:2] == ["Deleted Volumes:", anonymous["Name"]]
    assert "Total reclaimed space" in pruned
    assert project.run("volume", "ls", "-q").stdout.split() == [named["Name"]]
    assert Path(named["Mountpoint"], "file").read_text() == "kept\n"
    pruned_all = project.run("volume", "prune", "-a", "-f").stdout
    assert named["Name"] in pruned_all and "Total reclaimed space: 5B" in pruned_all
    assert project.run("volume", "ls", "-q").stdout == ""


def test_forced_rm_removes_a_volume_in_use(project):
    project.write(USES_VOLUMES)
    project.run("up", "-d")
    rows = json.loads(project.run("volume", "ls", "--format", "json").stdout)
    [named] = [r for r in rows if "io.composer.anonymous" not in r["Labels"]]
    assert project.run("volume", "rm", "-f", named["Name"]).stdout.strip() == named["Name"]
    assert named["Name"] not in project.run("volume", "ls", "-q").stdout.split()
