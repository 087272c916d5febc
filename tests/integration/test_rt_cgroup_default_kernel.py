"""No cgroupsPath on the real cgroup tree: the container's cgroup is /<id> at the root of
every hierarchy while it lives, and nothing of it is left after; a cgroup of that name that
is someone else's is refused and left as it was."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import uuid
from pathlib import Path


def _dirs(name: str) -> list[str]:
    return sorted(glob.glob(f"/sys/fs/cgroup/*/{name}"))


def _hierarchies() -> list[str]:
    return sorted(
        path
        for path in glob.glob("/sys/fs/cgroup/*")
        if os.path.exists(os.path.join(path, "cgroup.procs")) and not os.path.islink(path)
    )


def test_the_cgroup_is_the_id_at_each_root_and_goes_with_delete(runtime, busybox_bundle):
    container_id = runtime.new_id()
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}  # the init keeps them
    runtime("create", "--bundle", str(busybox_bundle), container_id, **quiet)
    try:
        pid = json.loads(runtime("state", container_id).stdout)["pid"]
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
        assert lines and all(line.endswith(f":/{container_id}") for line in lines)
        assert _dirs(container_id) == sorted(f"{h}/{container_id}" for h in _hierarchies())
    finally:
        runtime("delete", "--force", container_id)
    assert _dirs(container_id) == []


def test_a_cgroup_of_that_name_that_is_not_ours_is_refused(runtime, busybox_bundle):
    name = f"rt-theirs-{uuid.uuid4().hex[:8]}"
    theirs = "/sys/fs/cgroup/pids/" + name
    os.mkdir(theirs)
    try:
        result = runtime("run", "--bundle", str(busybox_bundle), name, check=False)
        assert result.returncode == 1
        assert "exists already" in result.stderr
        assert _dirs(name) == [theirs]  # ours undone, theirs kept
        assert not os.path.exists(os.path.join(str(runtime.root), name))
    finally:
        os.rmdir(theirs)
