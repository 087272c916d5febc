"""A nested cgroupsPath on the real cgroup tree: the parents create made go with delete
(runtime-spec: delete undoes create), after a run and after a failed create alike."""

from __future__ import annotations

import glob
import uuid

from rootfs import read_config, write_config


def _nested(bundle, top: str, **resources) -> None:
    config = read_config(bundle)
    config["linux"]["cgroupsPath"] = f"/{top}/inner/ctr"
    config["linux"].setdefault("resources", {}).update(resources)
    write_config(bundle, config)


def _left(top: str) -> list[str]:
    return glob.glob(f"/sys/fs/cgroup/*/{top}") + glob.glob(f"/sys/fs/cgroup/{top}")


def test_run_removes_the_parents_it_made(runtime, busybox_bundle):
    top = f"rt-nested-{uuid.uuid4().hex[:8]}"
    _nested(busybox_bundle, top)
    runtime("run", "--bundle", str(busybox_bundle), runtime.new_id())
    assert _left(top) == []


def test_a_failed_create_removes_the_parents_it_made(runtime, busybox_bundle):
    top = f"rt-nested-{uuid.uuid4().hex[:8]}"
    _nested(busybox_bundle, top, cpu={"cpus": "9999"})  # no such CPU: the kernel refuses
    result = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id(), check=False)
    assert result.returncode != 0
    assert _left(top) == []
