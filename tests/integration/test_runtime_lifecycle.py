"""composer-runtime on the real kernel: lifecycle, isolation, mounts, exec, terminal, leaks."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
from rootfs import read_config, write_config


def _set_args(bundle: Path, *args: str, **changes) -> dict:
    config = read_config(bundle)
    config["process"]["args"] = list(args)
    config.update(changes)
    write_config(bundle, config)
    return config


def _create(runtime, bundle: Path, container_id: str, tmp_path: Path, *extra: str):
    # The container keeps create's stdout: a file, not a pipe we would wait on for EOF.
    with open(tmp_path / f"{container_id}.out", "w") as out:
        return runtime(
            "create", "--bundle", str(bundle), *extra, container_id, stdout=out, stderr=out
        )


def _status(runtime, container_id: str) -> str:
    return json.loads(runtime("state", container_id).stdout)["status"]


def _wait_status(runtime, container_id: str, wanted: str) -> str:
    status = ""
    for _ in range(500):
        result = runtime("state", container_id, check=False)
        status = json.loads(result.stdout)["status"] if result.returncode == 0 else "missing"
        if status == wanted:
            break
        time.sleep(0.01)
    return status


def _host_mounts() -> str:
    return Path("/proc/self/mountinfo").read_text()


def _cgroup_dirs(container_id: str) -> list[str]:
    base = Path("/sys/fs/cgroup")
    return [str(d) for d in base.glob(f"*/{container_id}") if d.exists()]


def test_run_is_pid_1_and_sees_no_host_process(runtime, busybox_bundle):
    _set_args(busybox_bundle, "sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'")
    result = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id())
    pid, count = result.stdout.split()
    assert pid == "1"
    assert int(count) <= 3  # sh, and ls/grep of the pipeline


def test_hostname_env_cwd_and_user(runtime, busybox_bundle):
    config = _set_args(
        busybox_bundle, "sh", "-c", "hostname; echo $GREETING; pwd; id -u; id -g; id -G"
    )
    config["hostname"] = "box-under-test"
    config["process"]["env"].append("GREETING=hello there")
    config["process"]["cwd"] = "/home/user"
    config["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [65534]}
    write_config(busybox_bundle, config)
    lines = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id()).stdout.splitlines()
    assert lines[:5] == ["box-under-test", "hello there", "/home/user", "1000", "1000"]
    assert set(lines[5].split()) == {"1000", "65534"}


def test_mounts_as_configured(runtime, busybox_bundle, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "note").write_text("from the host")
    config = _set_args(busybox_bundle, "sh", "-c", "cat /data/note; echo; cat /proc/self/mountinfo")
    config["mounts"] += [
        {"destination": "/data", "type": "bind", "source": str(shared), "options": ["rbind", "ro"]},
        {
            "destination": "/scratch/deep",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "nodev", "size=2m", "mode=1770"],
        },
    ]
    write_config(busybox_bundle, config)
    out = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id()).stdout
    lines = out.splitlines()
    assert lines[0] == "from the host"
    by_point = {line.split()[4]: line for line in lines[1:]}
    assert " ro," in by_point["/data"] or by_point["/data"].split()[5].startswith("ro")
    assert by_point["/"].split()[5].startswith("ro")  # root.readonly
    deep = by_point["/scratch/deep"]
    assert "size=2048k" in deep and "mode=1770" in deep and "nosuid" in deep
    assert by_point["/proc"].split(" - ")[1].startswith("proc")
    assert "ptmxmode=666" in by_point["/dev/pts"]
    order = [line.split()[4] for line in lines[1:]]
    assert order.index("/dev") < order.index("/dev/pts") < order.index("/data")


def test_dev_has_standard_nodes_and_symlinks(runtime, busybox_bundle):
    _set_args(busybox_bundle, "sh", "-c", "ls -l /dev; echo x > /dev/null && echo null-ok")
    out = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id()).stdout
    for node in ("null", "zero", "full", "random", "urandom", "tty"):
        line = next(line for line in out.splitlines() if line.endswith(" " + node))
        assert line.startswith("crw-rw-rw-"), line
    for link, target in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("ptmx", "pts/ptmx"),
    ]:
        assert f"{link} -> {target}" in out
    assert "null-ok" in out


def test_readonly_rootfs_refuses_writes(runtime, busybox_bundle):
    _set_args(busybox_bundle, "touch", "/newfile")
    result = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id(), check=False)
    assert result.returncode == 1
    assert "Read-only file system" in result.stderr + result.stdout
    assert not (busybox_bundle / "rootfs" / "newfile").exists()


def test_masked_and_readonly_paths(runtime, busybox_bundle):
    config = _set_args(
        busybox_bundle,
        "sh",
        "-c",
        "wc -c < /proc/timer_list; ls /home | wc -l; echo 1 > /proc/sys/kernel/domainname; echo $?",
    )
    config["linux"]["maskedPaths"] = ["/proc/timer_list", "/home", "/does/not/exist"]
    config["linux"]["readonlyPaths"] = ["/proc/sys"]
    write_config(busybox_bundle, config)
    result = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id())
    assert result.stdout.split() == ["0", "0", "1"]


def test_no_new_privs_and_exit_code(runtime, busybox_bundle):
    config = _set_args(busybox_bundle, "sh", "-c", "grep NoNewPrivs /proc/self/status; exit 42")
    config["process"]["noNewPrivileges"] = True
    write_config(busybox_bundle, config)
    result = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id(), check=False)
    assert result.returncode == 42
    assert result.stdout.split() == ["NoNewPrivs:", "1"]


def test_killed_container_exits_128_plus_signal(runtime, busybox_bundle, tmp_path):
    _set_args(busybox_bundle, "sleep", "60")
    container_id = cid = runtime.new_id()
    with open(tmp_path / "run.out", "w") as out:
        proc = subprocess.Popen(
            [*runtime.argv0, "--root", str(runtime.root), "run", "-b", str(busybox_bundle), cid],
            stdout=out,
            stderr=out,
        )
    try:
        assert _wait_status(runtime, container_id, "running") == "running"
        runtime("kill", container_id, "KILL")
        assert proc.wait(timeout=30) == 128 + 9
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_lifecycle_create_start_kill_delete(runtime, busybox_bundle, tmp_path):
    _set_args(busybox_bundle, "sleep", "60")
    container_id = runtime.new_id()
    pid_file = tmp_path / "pid"
    _create(runtime, busybox_bundle, container_id, tmp_path, "--pid-file", str(pid_file))
    state = json.loads(runtime("state", container_id).stdout)
    assert state["status"] == "created"
    assert state["id"] == container_id and state["bundle"] == str(busybox_bundle)
    assert state["pid"] == int(pid_file.read_text())
    assert _cgroup_dirs(container_id)

    refused = runtime("delete", container_id, check=False)
    assert refused.returncode != 0
    assert _status(runtime, container_id) == "created"
    assert runtime("start", "no-such-container", check=False).returncode != 0

    runtime("start", container_id)
    assert _status(runtime, container_id) == "running"
    assert runtime("start", container_id, check=False).returncode != 0
    assert json.loads(runtime("ps", "--format", "json", container_id).stdout) == [state["pid"]]
    assert container_id in runtime("list").stdout

    runtime("kill", container_id, "SIGTERM")  # PID 1 without a handler ignores TERM
    assert _status(runtime, container_id) == "running"
    runtime("kill", container_id, "9")
    assert _wait_status(runtime, container_id, "stopped") == "stopped"
    assert runtime("kill", container_id, "KILL", check=False).returncode != 0

    runtime("delete", container_id)
    assert runtime("state", container_id, check=False).returncode != 0
    assert not _cgroup_dirs(container_id)
    assert not (runtime.root / container_id).exists()
    assert str(busybox_bundle) not in _host_mounts()


def test_force_delete_of_running_container_leaves_nothing(runtime, busybox_bundle, tmp_path):
    _set_args(busybox_bundle, "sh", "-c", "sleep 60 & sleep 60; exit 0")
    container_id = runtime.new_id()
    _create(runtime, busybox_bundle, container_id, tmp_path)
    runtime("start", container_id)
    assert _wait_status(runtime, container_id, "running") == "running"
    for _ in range(200):
        pids = json.loads(runtime("ps", "--format", "json", container_id).stdout)
        if len(pids) == 3:
            break
        time.sleep(0.01)
    assert len(pids) == 3
    runtime("kill", "--all", container_id, "STOP")
    states: list[str] = []
    for _ in range(500):  # the stop lands when each process next runs
        states = [Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] for pid in pids]
        if states == ["T"] * 3:
            break
        time.sleep(0.01)
    assert states == ["T"] * 3
    runtime("delete", "--force", container_id)
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split(") ")[1].startswith(("Z", "X"))
    assert not _cgroup_dirs(container_id)
    assert str(busybox_bundle) not in _host_mounts()
    assert not (runtime.root / container_id).exists()


def test_exec_joins_the_same_pid_namespace(runtime, busybox_bundle, tmp_path):
    _set_args(busybox_bundle, "sleep", "60")
    container_id = runtime.new_id()
    _create(runtime, busybox_bundle, container_id, tmp_path)
    runtime("start", container_id)
    result = runtime(
        "exec", "-e", "EXTRA=1", "--cwd", "/tmp", container_id,
        "sh", "-c", "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $EXTRA; pwd; hostname",
    )  # fmt: skip
    lines = result.stdout.splitlines()
    assert lines[0].strip() == "sleep 60"
    assert lines[1:] == ["1", "/tmp", read_config(busybox_bundle)["hostname"]]
    code = runtime("exec", container_id, "sh", "-c", "exit 3", check=False).returncode
    assert code == 3
    missing = runtime("exec", container_id, "no-such-program", check=False)
    assert missing.returncode != 0 and "no-such-program" in missing.stderr

    pid_file = tmp_path / "exec.pid"
    with open(tmp_path / "exec-d.out", "w") as out:
        runtime(
            "exec", "-d", "--pid-file", str(pid_file), container_id, "sleep", "30",
            stdout=out, stderr=out,
        )  # fmt: skip
    exec_pid = int(pid_file.read_text())
    assert exec_pid in json.loads(runtime("ps", "--format", "json", container_id).stdout)
    state_pid = json.loads(runtime("state", container_id).stdout)["pid"]
    assert os.readlink(f"/proc/{exec_pid}/ns/pid") == os.readlink(f"/proc/{state_pid}/ns/pid")


def test_terminal_through_console_socket(runtime, busybox_bundle, tmp_path):
    config = _set_args(
        busybox_bundle, "sh", "-c", "tty; grep -c ' /dev/console ' /proc/self/mountinfo; echo done"
    )
    config["process"]["terminal"] = True
    write_config(busybox_bundle, config)
    sock_path = str(tmp_path / "console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    container_id = runtime.new_id()
    master = -1
    try:
        _create(runtime, busybox_bundle, container_id, tmp_path, "--console-socket", sock_path)
        conn, _ = server.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
        master = fds[0]
        runtime("start", container_id)
        output = b""
        while b"done" not in output:
            try:
                chunk = os.read(master, 1024)
            except OSError:  # EIO once the slave side is gone
                break
            if not chunk:
                break
            output += chunk
    finally:
        server.close()
        if master >= 0:
            os.close(master)
    lines = output.decode().split()
    assert lines == ["/dev/pts/0", "1", "done"]


def test_unknown_capability_is_refused_without_trace(runtime, busybox_bundle):
    config = read_config(busybox_bundle)
    config["process"]["capabilities"]["bounding"].append("CAP_NO_SUCH_THING")
    write_config(busybox_bundle, config)
    container_id = runtime.new_id()
    result = runtime("create", "--bundle", str(busybox_bundle), container_id, check=False)
    assert result.returncode != 0
    assert "CAP_NO_SUCH_THING" in result.stderr
    assert not (runtime.root / container_id).exists()
    assert not _cgroup_dirs(container_id)


@pytest.mark.parametrize("stage", ["prestart", "createRuntime"])
def test_failing_create_hook_fails_create_and_cleans_up(runtime, busybox_bundle, stage):
    config = read_config(busybox_bundle)
    config["hooks"] = {stage: [{"path": "/bin/false"}]}
    write_config(busybox_bundle, config)
    container_id = runtime.new_id()
    result = runtime("create", "--bundle", str(busybox_bundle), container_id, check=False)
    assert result.returncode != 0 and "/bin/false" in result.stderr
    assert not (runtime.root / container_id).exists()
    assert not _cgroup_dirs(container_id)


def test_exec_with_terminal_through_console_socket(runtime, busybox_bundle, tmp_path):
    _set_args(busybox_bundle, "sleep", "60")
    container_id = runtime.new_id()
    _create(runtime, busybox_bundle, container_id, tmp_path)
    runtime("start", container_id)
    sock_path = str(tmp_path / "exec-console.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(sock_path)
    server.listen(1)
    with server, open(tmp_path / "exec.out", "w") as out:
        command = ["exec", "-t", "--console-socket", sock_path, container_id]
        command += ["sh", "-c", "tty; echo $$; exit 5"]
        proc = subprocess.Popen(
            [*runtime.argv0, "--root", str(runtime.root), *command],
            stdout=out,
            stderr=out,
        )
        conn, _ = server.accept()
        with conn:
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 1024, 1)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(fds[0], 1024)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(fds[0])
        code = proc.wait(timeout=30)
    tty, pid = output.decode().split()
    assert tty.startswith("/dev/pts/") and pid != "1"
    assert code == 5


def test_umask_is_the_callers_unless_configured(runtime, busybox_bundle):
    config = _set_args(busybox_bundle, "sh", "-c", "umask")
    out = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id(), umask=0o027)
    assert out.stdout.strip() == "0027"
    config["process"]["user"]["umask"] = 0o077
    write_config(busybox_bundle, config)
    out = runtime("run", "--bundle", str(busybox_bundle), runtime.new_id(), umask=0o027)
    assert out.stdout.strip() == "0077"


def _state_validator():
    import jsonschema

    schemas = Path(__file__).resolve().parents[2] / "schemas" / "oci-runtime-spec"
    # One document: defs.json's definitions next to the state schema, refs made local.
    schema = json.loads((schemas / "state-schema.json").read_text().replace('"defs.json#', '"#'))
    schema["definitions"] = json.loads((schemas / "defs.json").read_text())["definitions"]
    return jsonschema.Draft4Validator(schema)


def test_state_output_matches_the_spec_schema(runtime, busybox_bundle, tmp_path):
    validator = _state_validator()
    config = _set_args(busybox_bundle, "sleep", "60")
    config["annotations"] = {"com.example.key": "value"}
    write_config(busybox_bundle, config)
    container_id = runtime.new_id()
    _create(runtime, busybox_bundle, container_id, tmp_path)
    seen = []
    for step in (None, "start", "pause", "resume", "kill"):
        if step == "kill":
            runtime("kill", container_id, "KILL")
            _wait_status(runtime, container_id, "stopped")
        elif step:
            runtime(step, container_id)
        state = json.loads(runtime("state", container_id).stdout)
        errors = [e.message for e in validator.iter_errors(state)]
        assert errors == [], (step, state)
        seen.append(state["status"])
    assert seen == ["created", "running", "running", "running", "stopped"]


def test_preserve_fds_passes_the_callers_fds_on(runtime, busybox_bundle, tmp_path):
    # exec: no shell around holding pipeline fds; ls itself adds fd 4 (its directory)
    _set_args(busybox_bundle, "sh", "-c", "cat <&3; exec ls /proc/self/fd")
    read_end, write_end = os.pipe()
    os.write(write_end, b"through fd 3\n")
    os.close(write_end)
    argv = [*runtime.argv0, "--root", str(runtime.root), "run", "--preserve-fds", "1"]
    argv += ["--bundle", str(busybox_bundle), runtime.new_id()]
    try:  # the shell puts the pipe on fd 3; its own copy (fd N > 3) must not leak through
        result = subprocess.run(
            ["bash", "-c", f'exec "$@" 3<&{read_end}', "bash", *argv],  # dash: fds < 10
            pass_fds=(read_end,),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    finally:
        os.close(read_end)
    lines = result.stdout.splitlines()
    assert lines[0] == "through fd 3"
    assert sorted(lines[1:], key=int) == ["0", "1", "2", "3", "4"]  # 3 kept, no leaks


def test_run_of_a_terminal_container_proxies_the_pty(runtime, busybox_bundle):
    config = _set_args(busybox_bundle, "sh")
    config["process"]["terminal"] = True
    write_config(busybox_bundle, config)
    result = runtime(
        "run", "--bundle", str(busybox_bundle), runtime.new_id(),
        input="echo hi from $(tty)\nexit 3\n", check=False,
    )  # fmt: skip
    assert "hi from /dev/pts/0" in result.stdout
    assert result.returncode == 3


def test_a_missing_program_fails_create_and_leaves_nothing(runtime, busybox_bundle):
    _set_args(busybox_bundle, "no-such-program")
    container_id = runtime.new_id()
    result = runtime("create", "--bundle", str(busybox_bundle), container_id, check=False)
    assert result.returncode != 0 and "no-such-program" in result.stderr
    assert not (runtime.root / container_id).exists()
    assert not _cgroup_dirs(container_id)


def test_unwritable_pid_file_fails_create_without_trace(runtime, busybox_bundle, tmp_path):
    container_id = runtime.new_id()
    pid_file = str(tmp_path / "missing-dir" / "pid")
    result = runtime(
        "create", "--bundle", str(busybox_bundle), "--pid-file", pid_file, container_id,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
    )  # fmt: skip
    assert result.returncode != 0 and "missing-dir" in result.stderr
    assert not (runtime.root / container_id).exists()
    assert not _cgroup_dirs(container_id)
