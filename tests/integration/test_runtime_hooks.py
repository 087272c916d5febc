"""OCI hooks under composer-runtime: order, namespace, state on stdin, failures, timeouts."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rootfs import read_config, write_config

STAGES = ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"]


def _recording_hook(stage: str, shell: str, log_dir: str) -> dict:
    """Saves its stdin, its place in the order, its env and the mount namespace it ran in."""
    script = (
        f"cat > {log_dir}/{stage}.json; echo {stage} >> {log_dir}/order;"
        f' echo "$HOOK_VAR" > {log_dir}/{stage}.env;'
        f" readlink /proc/self/ns/mnt > {log_dir}/{stage}.mnt"
    )
    return {"path": shell, "args": ["sh", "-c", script], "env": ["HOOK_VAR=" + stage]}


def _create(runtime, bundle: Path, container_id: str, tmp_path: Path):
    with open(tmp_path / "create.out", "w") as out:
        return runtime("create", "--bundle", str(bundle), container_id, stdout=out, stderr=out)


def test_every_hook_runs_in_order_with_the_state_on_stdin(runtime, busybox_bundle, tmp_path):
    logs = tmp_path / "hooks"
    logs.mkdir()
    config = read_config(busybox_bundle)
    config["process"]["args"] = ["sleep", "60"]
    config["mounts"].append(
        {"destination": "/hooks", "type": "bind", "source": str(logs), "options": ["rbind"]}
    )
    config["annotations"] = {"org.example.purpose": "hook test"}
    hooks = {}
    for stage in STAGES:
        # startContainer runs inside the container: its path and files are the container's.
        inside = stage == "startContainer"
        hooks[stage] = [_recording_hook(stage, "/bin/sh", "/hooks" if inside else str(logs))]
    config["hooks"] = hooks
    write_config(busybox_bundle, config)
    container_id = runtime.new_id()

    _create(runtime, busybox_bundle, container_id, tmp_path)
    pid = json.loads(runtime("state", container_id).stdout)["pid"]
    assert (logs / "order").read_text().split() == STAGES[:3]
    runtime("start", container_id)
    assert (logs / "order").read_text().split() == STAGES[:5]
    container_mnt = os.readlink(f"/proc/{pid}/ns/mnt")
    runtime("delete", "--force", container_id)
    assert (logs / "order").read_text().split() == STAGES
    expected_status = {
        "prestart": "created",
        "createRuntime": "created",
        "createContainer": "created",
        "startContainer": "created",
        "poststart": "running",
        "poststop": "stopped",
    }
    for stage in STAGES:
        state = json.loads((logs / f"{stage}.json").read_text())
        assert state["id"] == container_id
        assert state["bundle"] == str(busybox_bundle)
        assert state["status"] == expected_status[stage]
        assert state["annotations"] == {"org.example.purpose": "hook test"}
        assert state["ociVersion"]
        if stage != "poststop":
            assert state["pid"] == pid
        assert (logs / f"{stage}.env").read_text().strip() == stage
        in_container = stage in ("createContainer", "startContainer")
        host_mnt = os.readlink("/proc/self/ns/mnt")
        ran_in = (logs / f"{stage}.mnt").read_text().strip()
        assert ran_in == (container_mnt if in_container else host_mnt), stage


def test_poststart_and_poststop_failures_only_warn(runtime, busybox_bundle, tmp_path):
    config = read_config(busybox_bundle)
    config["process"]["args"] = ["sleep", "60"]
    config["hooks"] = {"poststart": [{"path": "/bin/false"}], "poststop": [{"path": "/bin/false"}]}
    write_config(busybox_bundle, config)
    container_id = runtime.new_id()
    _create(runtime, busybox_bundle, container_id, tmp_path)
    started = runtime("start", container_id)
    assert "warning" in started.stderr and "/bin/false" in started.stderr
    assert json.loads(runtime("state", container_id).stdout)["status"] == "running"
    deleted = runtime("delete", "--force", container_id)
    assert "warning" in deleted.stderr
    assert not (runtime.root / container_id).exists()


def test_hook_timeout_fails_create(runtime, busybox_bundle):
    config = read_config(busybox_bundle)
    config["hooks"] = {
        "createRuntime": [{"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}]
    }
    write_config(busybox_bundle, config)
    container_id = runtime.new_id()
    result = runtime("create", "--bundle", str(busybox_bundle), container_id, check=False)
    assert result.returncode != 0 and "timed out" in result.stderr
    assert not (runtime.root / container_id).exists()


def test_failing_start_container_hook_fails_start(runtime, busybox_bundle, tmp_path):
    config = read_config(busybox_bundle)
    config["process"]["args"] = ["sleep", "60"]
    config["hooks"] = {"startContainer": [{"path": "/bin/false"}]}
    write_config(busybox_bundle, config)
    container_id = runtime.new_id()
    _create(runtime, busybox_bundle, container_id, tmp_path)
    result = runtime("start", container_id, check=False)
    assert result.returncode != 0 and "/bin/false" in result.stderr
    assert json.loads(runtime("state", container_id).stdout)["status"] == "stopped"
