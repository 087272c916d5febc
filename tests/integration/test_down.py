"""`composer down` on the real kernel: orphans kept keep their network; with
--remove-orphans, or once nothing of the project is left, the network goes too."""

from __future__ import annotations

TWO = """
services:
  keep:
    image: busybox:latest
    command: ["sleep", "600"]
  gone:
    image: busybox:latest
    command: ["sleep", "600"]
"""


def _networks(project) -> list[str]:
    return sorted(p.stem for p in (project.root / "networks").glob("*.json"))


def test_orphans_kept_keep_the_network_and_remove_orphans_takes_all(project):
    project.write(TWO)
    project.run("up", "-d")
    project.write(TWO.split("  gone:")[0])  # `gone` is no longer in the file
    result = project.run("down", "-t", "0")
    assert "orphan containers of services gone left in place" in result.stderr
    rows = project.ps()
    assert [(r["Service"], r["State"]) for r in rows] == [("gone", "running")]
    assert _networks(project) == [f"{project.name}_default"]  # the orphan still uses it
    result = project.run("down", "-t", "0", "--remove-orphans")
    assert f"Network {project.name}_default" in result.stderr
    assert project.ps() == [] and _networks(project) == []
