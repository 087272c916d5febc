"""The Python Engine API for containers: bundle on disk, one shim each, no daemon.

Every container lives in COMPOSER_ROOT/containers/<id>/:

    state.json   what the engine and the shim know (status, pids, exit, labels, runtime)
    bundle/      config.json (from runtime.oci.spec.build_config) for the OCI runtime
    log.jsonl    output, one JSON record per line (runtime.logs)
    shim.sock    the shim's control socket, shim.pid its pid

The OCI runtime (`composer-runtime`, `crun` or `runc`, all with runc's command line) keeps
its own state under COMPOSER_ROOT/runtimes/<name>; ours is called in this process for
kill and delete (its command would cost a Python start). A container remembers the
runtime it was created with, so an Engine with another default still manages it. If a
shim dies, the container is still found from state.json and the runtime's state, and
`remove` ends it.

subprocess and shutil load on first use: inspect, list and logs need neither (~5 ms).
"""

from __future__ import annotations

import contextlib
import os
import signal as signals
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from runtime import shim
from runtime.logs import display, read_records
from runtime.state import (
    Lock,
    atomic_write_json,
    container_dir,
    containers_dir,
    make_durable,
    pid_alive,
    read_json,
    runtimes_dir,
    state_root,
    update_json,
)

DEFAULT_RUNTIME = "composer-runtime"


class ContainerError(Exception):
    """A container operation that cannot be done (unknown id, wrong state, runtime error)."""


class NoSuchContainer(ContainerError):
    pass


def runtime_command(name: str) -> list[str]:
    """argv prefix for an OCI runtime given by name or path."""
    import shutil

    if name == DEFAULT_RUNTIME:
        script = os.path.join(os.path.dirname(sys.executable), DEFAULT_RUNTIME)
        if os.access(script, os.X_OK):
            return [script]
        found = shutil.which(name)
        return [found] if found else [sys.executable, "-m", "runtime.cli"]
    found = shutil.which(name)
    if not found:
        raise ContainerError(f"OCI runtime {name!r} not found")
    return [found]


def signal_number(sig: int | str | None, default: int = signals.SIGTERM) -> int:
    """A signal as a number, from 15, "15", "TERM" or "SIGTERM"."""
    if sig is None or sig == "":
        return default
    if isinstance(sig, int):
        return sig
    text = str(sig).strip().upper()
    if text.isdigit():
        return int(text)
    try:
        return int(signals.Signals[text if text.startswith("SIG") else "SIG" + text])
    except KeyError:
        raise ValueError(f"unknown signal {sig!r}") from None


def frozen(info: dict) -> bool:
    """Whether a container's cgroup is frozen (paused), from its inspect/list record."""
    from runtime.oci.cgroups import CgroupError, open_cgroup

    try:
        return open_cgroup(info.get("cgroups_path"), info["id"]).is_frozen()
    except (CgroupError, OSError):
        return False


def new_container_id() -> str:
    return os.urandom(32).hex()


class Engine:
    """Containers under one state root, run by one OCI runtime by default.

    create -> start -> (exec, logs, kill, stop, wait) -> remove; inspect and list read
    the state on disk, corrected by which processes are alive. Containers are named by
    id, unique id prefix or name. Every method is safe to call from a fresh process.
    """

    def __init__(self, root: str | os.PathLike | None = None, runtime: str = DEFAULT_RUNTIME):
        self.root = state_root(root)
        self.runtime = runtime
        self.start_timeout = 60.0  # seconds for the runtime's create and start
        self.containers = containers_dir(self.root)

    # ------------------------------------------------------------ lookup

    def _dir(self, container_id: str) -> Path:
        return container_dir(container_id, self.root)

    def resolve(self, ref: str) -> str:
        """The id for a full id, a unique id prefix or a name."""
        if not ref or "/" in ref or ref in (".", ".."):
            raise NoSuchContainer(f"no such container: {ref!r}")
        if (self._dir(ref) / "state.json").exists():
            return ref
        ids = self._ids()
        by_name = [i for i in ids if read_json(self._dir(i) / "state.json", {}).get("name") == ref]
        if by_name:
            return by_name[0]
        by_prefix = [i for i in ids if i.startswith(ref)]
        if len(by_prefix) == 1:
            return by_prefix[0]
        if len(by_prefix) > 1:
            raise ContainerError(
                f"{ref!r} matches {len(by_prefix)} containers; give more of the id"
            )
        raise NoSuchContainer(f"no such container: {ref}")

    def _ids(self) -> list[str]:
        try:
            return sorted(
                e.name
                for e in os.scandir(self.containers)
                if (Path(e.path) / "state.json").exists()
            )
        except FileNotFoundError:
            return []

    def _state(self, container_id: str) -> dict:
        try:
            return read_json(self._dir(container_id) / "state.json")
        except FileNotFoundError:
            raise NoSuchContainer(f"no such container: {container_id}") from None

    def _lock(self, container_id: str, purpose: str, timeout: float | None = 60) -> Lock:
        return Lock(self._dir(container_id) / "lock", purpose, timeout=timeout)

    def _runtime_argv(self, state: dict, *args: str) -> list[str]:
        return [*runtime_command(state["runtime"]), "--root", state["runtime_root"], *args]

    def _run_runtime(self, state: dict, *args: str, timeout: float = 60):
        import subprocess

        return subprocess.run(
            self._runtime_argv(state, *args),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def _runtime_kill(self, state: dict, container_id: str, sig: int | str) -> RuntimeResult:
        """`<runtime> kill <id> <sig>`; ours in this process (its command is a Python start)."""
        if state["runtime"] != DEFAULT_RUNTIME:
            return RuntimeResult.of(self._run_runtime(state, "kill", container_id, str(sig)))
        from runtime.oci import container as oci

        root = oci.runtime_root(state["runtime_root"])
        return _as_command(lambda: oci.kill(root, container_id, oci.parse_signal(sig)))

    def _runtime_delete(self, state: dict, container_id: str, force: bool = True) -> RuntimeResult:
        """`<runtime> delete [--force] <id>`; ours in this process (40-120 ms less a
        container) unless the bundle has poststop hooks: their output is the command's."""
        if state["runtime"] != DEFAULT_RUNTIME or _has_poststop_hooks(state["bundle"]):
            flags = ["--force"] if force else []
            return RuntimeResult.of(self._run_runtime(state, "delete", *flags, container_id))
        from runtime.oci import container as oci

        root = oci.runtime_root(state["runtime_root"])
        warnings: list[str] = []

        def delete() -> None:
            oci.delete(root, container_id, force=force, warn=warnings.append)

        result = _as_command(delete)
        notes = "".join(f"{DEFAULT_RUNTIME}: warning: {w}\n" for w in warnings)
        return RuntimeResult(result.returncode, notes + result.stderr)

    # ------------------------------------------------------------ create / start

    def create(
        self,
        spec,
        name: str | None = None,
        labels: dict | None = None,
        stop_signal: int | str | None = None,
        restart: str | None = None,
        healthcheck=None,
        container_id: str | None = None,
        *,
        restart_delay: float | None = None,
        restart_window: float | None = None,
        restart_max_attempts: int | None = None,
        stdin_open: bool = False,
        stdin_once: bool = False,
    ) -> str:
        """Write the container's bundle and state; return its id. Nothing runs yet.

        `spec` is a runtime.oci.spec.ContainerSpec, or a ready OCI config dict.
        stop_signal: what `stop` sends first (default SIGTERM), e.g. Compose's stop_signal.
        restart: "no" (default), "always", "on-failure[:N]" or "unless-stopped"; the shim
        applies it. restart_delay: seconds between restarts instead of docker's backoff;
        restart_window: a restarted run that lasts this long no longer counts towards
        restart_max_attempts (a retry limit for any policy); as deploy.restart_policy.
        stdin_open: the container's stdin is a pipe (or its terminal) fed through attach();
        stdin_once: it ends when the first attached client's input does (`composer run`).
        healthcheck: a dict or composer.model.Healthcheck (test, interval, timeout,
        retries, start_period, start_interval in seconds; see runtime.health).
        container_id: chosen by the caller when it prepared the container's directory
        first (an image's overlay root filesystem in <dir>/rootfs, released by remove).
        """
        if isinstance(spec, dict):
            config = spec
        else:
            from runtime.oci.spec import build_config

            config = build_config(spec)
        from runtime.health import normalize

        shim.parse_restart_policy(restart)  # refused here, not later in a detached shim
        for label, value in (("delay", restart_delay), ("window", restart_window)):
            if value is not None and value < 0:
                raise ValueError(f"restart {label} must not be negative: {value}")
        if restart_max_attempts is not None and restart_max_attempts < 0:
            raise ValueError(f"restart max attempts must not be negative: {restart_max_attempts}")
        health_settings = normalize(healthcheck)
        container_id = container_id or new_container_id()
        self.containers.mkdir(parents=True, exist_ok=True)
        directory = self._dir(container_id)
        state_path = directory / "state.json"
        if state_path.exists():
            raise ContainerError(f"container {container_id[:12]} exists already")
        # The bundle is this id's alone: written before the lock, which only guards names.
        bundle = directory / "bundle"
        bundle.mkdir(parents=True, exist_ok=True)
        config = dict(config)
        linux = dict(config.get("linux") or {})
        # A known cgroup path, the same for every runtime: OOM counts and cleanup use it.
        linux.setdefault("cgroupsPath", _default_cgroups_path(container_id))
        config["linux"] = linux
        atomic_write_json(bundle / "config.json", config)
        process = config.get("process") or {}
        with Lock(self.containers / ".lock", "create a container", timeout=60):
            if name is not None:
                self._check_name_free(name)
            if state_path.exists():
                raise ContainerError(f"container {container_id[:12]} exists already")
            # Visible to the next name check at once; made durable after the lock.
            atomic_write_json(
                state_path,
                {
                    "id": container_id,
                    "name": name,
                    "labels": dict(labels or {}),
                    "status": "created",
                    "created_at": _now(),
                    "runtime": self.runtime,
                    "runtime_root": str(runtimes_dir(self.root) / Path(self.runtime).name),
                    "bundle": str(bundle),
                    "terminal": bool(process.get("terminal")),
                    "args": list(process.get("args") or []),
                    "cgroups_path": linux["cgroupsPath"],
                    "stop_signal": signal_number(stop_signal),
                    "restart_policy": restart or "no",
                    "restart_delay": restart_delay,
                    "restart_window": restart_window,
                    "restart_max_attempts": restart_max_attempts,
                    "stdin_open": stdin_open,
                    "stdin_once": stdin_once and stdin_open,
                    "healthcheck": health_settings,
                },
                durable=False,
            )
        make_durable(state_path)
        return container_id

    def _check_name_free(self, name: str) -> None:
        for other in self._ids():
            if read_json(self._dir(other) / "state.json", {}).get("name") == name:
                raise ContainerError(f"the name {name!r} is already used by container {other[:12]}")

    def start(self, ref: str, *, on_attach: bool = False, hold: bool = False) -> dict:
        """Start the container under a new shim; return once it runs (pid, shim_pid...).

        on_attach: the caller attaches next; the command starts when it does (within
        shim.ATTACH_WAIT), so none of its output comes before anyone reads it.
        hold: everything but the start is done now (shim, namespaces, mounts, the init
        waiting before the command's exec); the container stays "created" until start()
        is called again, which only releases it (a few ms). If this process ends first,
        or calls discard(), the container is as it was before.
        """
        container_id = self.resolve(ref)
        directory = self._dir(container_id)
        with self._lock(container_id, "start the container"):
            state = self._state(container_id)
            live = self._live_status(state)
            status = live["status"]
            if status in _ACTIVE:
                raise ContainerError(f"container {container_id[:12]} is already {status}")
            if state.get("held") and live["shim_alive"]:
                return live if hold else self._release(container_id)  # held already
            if state["status"] != "created" or state.get("held"):
                # A restart: the previous run's shim and runtime state must be gone first
                # (a finishing shim would unlink the new shim's socket).
                self._wait_shim_exit(state)
                self._runtime_delete(state, container_id)
                update_json(directory / "state.json", _cleared_run_fields(), "restart")
            os.makedirs(state["runtime_root"], exist_ok=True)
            try:
                return shim.launch(
                    {
                        "id": container_id,
                        "dir": str(directory),
                        "runtime": runtime_command(state["runtime"]),
                        "runtime_root": state["runtime_root"],
                        "bundle": state["bundle"],
                        "terminal": state.get("terminal", False),
                        "stop_signal": state.get("stop_signal"),
                        "cgroups_path": state.get("cgroups_path"),
                        "restart": state.get("restart_policy"),
                        "restart_delay": state.get("restart_delay"),
                        "restart_window": state.get("restart_window"),
                        "restart_max_attempts": state.get("restart_max_attempts"),
                        "stdin_open": state.get("stdin_open", False),
                        "stdin_once": state.get("stdin_once", False),
                        "start_on_attach": on_attach,
                        "hold_for": os.getpid() if hold else None,
                        "healthcheck": state.get("healthcheck"),
                    },
                    timeout=self.start_timeout,
                )
            except RuntimeError as e:
                raise ContainerError(str(e)) from None
            except TimeoutError as e:
                self._abandon_start(container_id, state)
                raise ContainerError(f"start: {e}; the shim was stopped") from None

    def _release(self, container_id: str) -> dict:
        try:
            reply = shim.request(self._dir(container_id), {"cmd": "release"})
        except shim.ShimUnreachable as e:
            raise ContainerError(f"start: the shim holding it is gone ({e})") from None
        if not reply.get("ok"):
            raise ContainerError(f"start: {reply.get('error')}")
        return reply

    def discard(self, ref: str) -> None:
        """Undo a held start (see start): the container is created again, no shim left.
        Nothing happens to a container that is not held."""
        container_id = self.resolve(ref)
        state = self._live_status(self._state(container_id))
        if state.get("held") and state["shim_alive"]:
            self._discard(container_id, state)

    def _discard(self, container_id: str, state: dict) -> None:
        with contextlib.suppress(shim.ShimUnreachable):
            shim.request(self._dir(container_id), {"cmd": "discard"})
        self._wait_shim_exit(state)

    def _abandon_start(self, container_id: str, state: dict) -> None:
        # A shim stuck in the runtime's create: end it (it is ours by its recorded pid)
        # and whatever the runtime made so far.
        try:
            pid = int((self._dir(container_id) / shim.PID_NAME).read_text())
            group = os.getpgid(pid)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            group = None
        if group is not None and _is_shim(pid):
            # launch() gave the shim a session of its own: the group is the shim and the
            # runtime (and hooks) it is waiting for.
            os.killpg(group, signals.SIGKILL)
        self._runtime_delete(state, container_id)

    # ------------------------------------------------------------ inspect / list

    def _live_status(self, state: dict) -> dict:
        """state.json corrected by what is alive: a killed shim cannot record anything."""
        live = dict(state)
        shim_alive = pid_alive(state.get("shim_pid"), state.get("shim_start_time"))
        live["shim_alive"] = shim_alive
        if state.get("status") in _ACTIVE and not shim_alive:
            if pid_alive(state.get("pid"), state.get("pid_start_time")):
                live["status"] = "running"  # orphaned: nobody logs or reaps it
            else:
                live["status"] = "exited"  # its end went unrecorded
                live.setdefault("exit_code", None)
        return live

    def inspect(self, ref: str) -> dict:
        container_id = self.resolve(ref)
        info = self._live_status(self._state(container_id))
        directory = self._dir(container_id)
        info["dir"] = str(directory)
        info["log_path"] = str(directory / "log.jsonl")
        info.setdefault("restart_count", 0)
        info.setdefault("health", None)  # {"status", "failing_streak", "log"} with a check
        return info

    def list(self, labels: dict | None = None) -> list[dict]:
        """All containers, oldest first; `labels` keeps those with every key (and value,
        unless the value is None)."""
        found = []
        for container_id in self._ids():
            try:
                info = self.inspect(container_id)
            except NoSuchContainer:
                continue  # removed meanwhile
            have = info.get("labels") or {}
            if labels and any(
                k not in have or (v is not None and have[k] != v) for k, v in labels.items()
            ):
                continue
            found.append(info)
        found.sort(key=lambda i: i.get("created_at", ""))
        return found

    # ------------------------------------------------------------ signals

    # ------------------------------------------------------------ pause / resume

    def is_paused(self, ref: str) -> bool:
        """True when the container's processes are frozen (its cgroup's freezer)."""
        container_id = self.resolve(ref)
        state = self._live_status(self._state(container_id))
        return state["status"] in _ACTIVE and frozen(state)

    def pause(self, ref: str) -> None:
        self._pause_or_resume(ref, "pause")

    def resume(self, ref: str) -> None:
        self._pause_or_resume(ref, "resume")

    def _pause_or_resume(self, ref: str, action: str) -> None:
        container_id = self.resolve(ref)
        state = self._live_status(self._state(container_id))
        if state["status"] not in _ACTIVE:
            raise ContainerError(f"container {container_id[:12]} is not running")
        result = self._run_runtime(state, action, container_id)
        if result.returncode != 0:
            raise ContainerError(f"{action} {container_id[:12]}: {result.stderr.strip()}")

    def _thaw(self, container_id: str, live: dict) -> None:
        # A frozen process cannot act on a signal, not even SIGKILL on cgroup v1: a stop,
        # kill or remove of a paused container thaws it first instead of hanging. `live`:
        # the caller's _live_status of a running container, not read again.
        if frozen(live):
            self.resume(container_id)

    def kill(self, ref: str, signal: int | str = signals.SIGKILL) -> None:
        container_id = self.resolve(ref)
        sig = signal_number(signal, signals.SIGKILL)
        state = self._live_status(self._state(container_id))
        if state["status"] not in _ACTIVE:
            raise ContainerError(f"container {container_id[:12]} is not running")
        self._thaw(container_id, state)
        try:
            # Restarting: the shim cancels the coming restart.
            reply = shim.request(self._dir(container_id), {"cmd": "kill", "signal": sig})
        except shim.ShimUnreachable:
            result = self._runtime_kill(state, container_id, sig)
            if result.returncode != 0:
                raise ContainerError(f"kill: {result.stderr.strip()}") from None
            return
        if not reply.get("ok"):
            raise ContainerError(f"kill: {reply.get('error')}")

    def stop(self, ref: str, timeout: float = 10, signal: int | str | None = None) -> dict:
        """Send the stop signal, SIGKILL after `timeout` s; return how it ended.

        The reply has exit_code, signal, killed and stop_reason (why SIGKILL was used,
        e.g. a PID 1 that does not catch the stop signal is killed at once).
        """
        container_id = self.resolve(ref)
        state = self._live_status(self._state(container_id))
        if state["status"] not in _ACTIVE:
            return {k: state.get(k) for k in ("status", "exit_code", "signal", "stop_reason")}
        self._thaw(container_id, state)
        sig = None if signal is None else signal_number(signal)
        try:
            reply = shim.request(
                self._dir(container_id),
                {"cmd": "stop", "signal": sig, "timeout": timeout},
                timeout=timeout + 60,
            )
        except shim.ShimUnreachable:
            return self._stop_orphan(container_id, state, sig, timeout)
        if not reply.get("ok"):
            raise ContainerError(f"stop: {reply.get('error')}")
        return reply

    def _stop_orphan(self, container_id: str, state: dict, sig: int | None, timeout: float):
        # No shim: signal through the runtime, by the shim's rules, and record the end.
        sig = sig or state.get("stop_signal") or signals.SIGTERM
        pid, started = state.get("pid"), state.get("pid_start_time")
        reason = shim.futile_signal_reason(pid, sig) if pid_alive(pid, started) else None
        if not reason:
            self._runtime_kill(state, container_id, sig)
            if not _wait_gone(pid, started, timeout):
                reason = shim.grace_expired_reason(sig, timeout)
        if reason:
            self._runtime_kill(state, container_id, "KILL")
        self._runtime_delete(state, container_id)
        result = {
            "status": "exited",
            "exit_code": None,  # only the dead shim could have reaped it
            "signal": None,
            "killed": reason is not None,
            "stop_reason": reason,
            "finished_at": _now(),
            "note": "the shim was gone: stopped through the runtime, exit code unknown",
        }
        update_json(self._dir(container_id) / "state.json", result, "stop an orphan")
        return result

    # ------------------------------------------------------------ wait / remove

    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        """Block until the container has exited for good (no restart coming); its exit code
        (None if nobody saw it)."""
        container_id = self.resolve(ref)
        directory = self._dir(container_id)
        state = self._live_status(self._state(container_id))
        if state["shim_alive"]:
            try:
                reply = shim.request(directory, {"cmd": "wait"}, timeout=timeout)
                return reply.get("exit_code")
            except shim.ShimUnreachable:
                pass  # it died meanwhile: fall through to polling
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            state = self._live_status(self._state(container_id))
            if state["status"] not in _ACTIVE:
                return state.get("exit_code")
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"container {container_id[:12]} still running")
            time.sleep(0.05)

    def remove(self, ref: str, force: bool = False) -> None:
        """Delete the container: its processes, the runtime's state, cgroups and its dir."""
        container_id = self.resolve(ref)
        directory = self._dir(container_id)
        with self._lock(container_id, "remove the container"):
            state = self._live_status(self._state(container_id))
            if state["status"] in _ACTIVE:
                if not force:
                    raise ContainerError(
                        f"container {container_id[:12]} is {state['status']}: "
                        "stop it or remove with force"
                    )
                self._thaw(container_id, state)
                self._kill_for_removal(container_id, state)
            elif state.get("held") and state["shim_alive"]:
                self._discard(container_id, state)
            self._wait_shim_exit(state)
            result = self._runtime_delete(state, container_id)
            leftover = Path(state["runtime_root"]) / container_id
            if leftover.exists():
                raise ContainerError(
                    f"{state['runtime']} delete left {leftover}: {result.stderr.strip()}"
                )
            self._destroy_cgroup(container_id, state)
            if (directory / "rootfs").is_dir():
                from runtime.images.rootfs import release_rootfs

                release_rootfs(directory, self.root)
            from runtime.mounts import unmount_under

            unmount_under(directory)  # whatever else a caller mounted there (a netns file)
            self._removing(container_id)
            import shutil

            shutil.rmtree(directory)

    def _removing(self, container_id: str) -> None:
        """Called by remove when nothing of the container runs or is mounted any more and
        its directory (state, logs) is about to go: a subclass's last look at it."""

    def _destroy_cgroup(self, container_id: str, state: dict) -> None:
        # The runtime removes it on delete; this covers a runtime that lost track. Only
        # our own default path: a path the user chose may be shared with others.
        if state.get("cgroups_path") != _default_cgroups_path(container_id):
            return
        from runtime.oci.cgroups import open_cgroup

        cgroup = open_cgroup(state["cgroups_path"], container_id)
        if cgroup.remove_if_empty():  # the usual case: gone already, no trees to walk
            return
        cgroup.kill_all()
        cgroup.destroy()

    def _kill_for_removal(self, container_id: str, state: dict) -> None:
        try:
            shim.request(self._dir(container_id), {"cmd": "kill", "signal": signals.SIGKILL})
        except shim.ShimUnreachable:
            self._runtime_kill(state, container_id, "KILL")

    def _wait_shim_exit(self, state: dict, timeout: float = 30) -> None:
        if not _wait_gone(state.get("shim_pid"), state.get("shim_start_time"), timeout):
            raise ContainerError(f"the shim (pid {state['shim_pid']}) did not finish")

    def wait_healthy(self, ref: str, timeout: float = 60, poll: float = 0.02) -> dict:
        """Block until the container's healthcheck reports healthy; its health record.

        ContainerError if it has no healthcheck or ends for good first; TimeoutError if
        `timeout` seconds pass. An unhealthy container is waited for: it may recover.
        """
        container_id = self.resolve(ref)
        deadline = time.monotonic() + timeout
        while True:
            info = self.inspect(container_id)
            if not info.get("healthcheck"):
                raise ContainerError(f"container {container_id[:12]} has no healthcheck")
            health = info.get("health") or {}
            if health.get("status") == "healthy" and info["status"] == "running":
                return health
            if info["status"] not in _ACTIVE and info["status"] != "created":
                raise ContainerError(
                    f"container {container_id[:12]} {info['status']} before it was healthy"
                )
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"container {container_id[:12]} not healthy after {timeout:g}s "
                    f"(health: {health.get('status', 'none')})"
                )
            time.sleep(poll)

    # ------------------------------------------------------------ exec / logs

    def exec(
        self,
        ref: str,
        args: list[str],
        tty: bool = False,
        env: dict | list | None = None,
        user: str | int | None = None,
        cwd: str | None = None,
        detach: bool = False,
        *,
        stdin=None,
        stdout=None,
        stderr=None,
    ) -> int:
        """Run `args` in the running container via `<runtime> exec`; its exit code.

        user: "uid[:gid]" numbers or a name from the container's /etc/passwd.
        stdin/stdout/stderr: as for subprocess (default: inherited; detached: /dev/null).
        """
        import subprocess

        container_id = self.resolve(ref)
        state = self._live_status(self._state(container_id))
        if state["status"] != "running":
            raise ContainerError(f"container {container_id[:12]} is not running")
        flags: list[str] = []
        if tty:
            flags.append("--tty")
        if detach:
            flags.append("--detach")
        if cwd:
            flags += ["--cwd", cwd]
        if user is not None:
            flags += ["--user", self._numeric_user(state, str(user))]
        for item in self._exec_env(state, env):
            flags += ["--env", item]
        if detach:
            if tty:
                raise ContainerError("a detached exec cannot have a terminal: nobody would read it")
            stdin = stdout = stderr = subprocess.DEVNULL
        if tty:
            return self._exec_terminal(state, container_id, flags, args, stdin, stdout, stderr)
        result = subprocess.run(
            self._runtime_argv(state, "exec", *flags, container_id, *args),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
        )
        return result.returncode

    def _exec_terminal(self, state, container_id, flags, args, stdin, stdout, stderr) -> int:
        """exec with a pty that we relay: works whether or not our caller has a terminal.

        runc and crun make their own pty only when their stdin is a terminal, and ours
        always wants --console-socket, so we take the master from the socket ourselves.
        """
        import select
        import socket
        import subprocess

        if Path(state["runtime"]).name == "runc":
            # runc takes a console socket only with --detach (and then keeps no exit
            # code); it relays a pty itself when its own stdio is a terminal, so give it one.
            return self._exec_on_pty(state, container_id, flags, args, stdin, stdout)
        dir_fd = os.open(self._dir(container_id), os.O_PATH | os.O_CLOEXEC)
        # sun_path is short; the runtime reaches the container dir through our fd.
        path = f"/proc/{os.getpid()}/fd/{dir_fd}/exec-{os.urandom(6).hex()}.sock"
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        master = -1
        try:
            listener.bind(path)
            listener.listen(1)
            argv = self._runtime_argv(
                state, "exec", "--console-socket", path, *flags, container_id, *args
            )
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr)
            while not select.select([listener], [], [], 0.05)[0]:
                if proc.poll() is not None:
                    return proc.returncode  # it failed before making a terminal
            master = shim.receive_terminal(listener)
            _relay_terminal(master, _fd_of(stdin, 0), _fd_of(stdout, 1))
            return proc.wait()
        finally:
            if master >= 0:
                os.close(master)
            listener.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            os.close(dir_fd)

    def _exec_on_pty(self, state, container_id, flags, args, stdin, stdout) -> int:
        import subprocess

        master, slave = os.openpty()
        try:
            proc = subprocess.Popen(
                self._runtime_argv(state, "exec", *flags, container_id, *args),
                stdin=slave,
                stdout=slave,
                stderr=slave,
                start_new_session=True,
                preexec_fn=_make_controlling_terminal,  # runc opens /dev/tty
            )
            os.close(slave)
            slave = -1
            _relay_terminal(master, _fd_of(stdin, 0), _fd_of(stdout, 1))
            return proc.wait()
        finally:
            os.close(master)
            if slave >= 0:
                os.close(slave)

    def _exec_env(self, state: dict, extra: dict | list | None) -> list[str]:
        # The container's env plus `extra`: runtimes differ on whether --env replaces it.
        if not extra:
            return []
        config = read_json(Path(state["bundle"]) / "config.json")
        merged = dict(e.partition("=")[::2] for e in config.get("process", {}).get("env", []))
        pairs = extra.items() if isinstance(extra, dict) else (e.partition("=")[::2] for e in extra)
        merged.update(pairs)
        return [f"{k}={v}" for k, v in merged.items()]

    def _numeric_user(self, state: dict, user: str) -> str:
        name, _, group = user.partition(":")
        rootfs = self._rootfs(state)
        uid = name if name.isdigit() else _lookup(rootfs / "etc/passwd", name, "user")
        if group:
            gid = group if group.isdigit() else _lookup(rootfs / "etc/group", group, "group")
        elif name.isdigit():
            gid = "0"  # as runc does for a bare uid
        else:
            gid = _passwd_gid(rootfs / "etc/passwd", name)
        return f"{uid}:{gid}"

    def _rootfs(self, state: dict) -> Path:
        config = read_json(Path(state["bundle"]) / "config.json")
        return Path(state["bundle"]) / config["root"]["path"]

    def attach(
        self,
        ref: str,
        stdin: int | None = 0,
        stdout: int = 1,
        stderr: int = 2,
        detach_keys: bytes | None = None,
    ) -> bool:
        """Relay the container's output to `stdout`/`stderr` and, if its stdin is open,
        `stdin` (an fd; None: none) to it, until its run ends (False) or `detach_keys`
        come in our input (True: it runs on without us). A container started on_attach
        starts now. With a terminal on both sides, ours is raw meanwhile and the
        container's follows its size (SIGWINCH). ContainerError if nothing runs."""
        container_id = self.resolve(ref)
        directory = self._dir(container_id)
        state = self._live_status(self._state(container_id))
        if not state["shim_alive"]:
            raise ContainerError(f"container {container_id[:12]} is not running")
        try:
            sock = shim.connect_attach(directory)
        except shim.ShimUnreachable as e:
            raise ContainerError(f"cannot attach to {container_id[:12]}: {e}") from None
        if not state.get("stdin_open"):
            stdin = None
        ours = stdin if state.get("terminal") and stdin is not None and os.isatty(stdin) else None

        def resize(rows: int, cols: int) -> None:
            shim.request(directory, {"cmd": "resize", "rows": rows, "cols": cols}, timeout=5)

        try:
            with _raw_terminal(ours), _size_followed(ours, resize):
                return _relay_attached(sock, stdin, stdout, stderr, detach_keys)
        finally:
            sock.close()

    def logs(
        self,
        ref: str,
        follow: bool = False,
        since=None,
        until=None,
        tail: int | None = None,
        timestamps: bool = False,
    ) -> Iterator[dict]:
        """The container's log records {"time", "stream", "log", "text"}, oldest first.

        `text` is what `docker logs` would print (with the time first if `timestamps`).
        follow: keep going until the container's shim has written its last record.
        """
        container_id = self.resolve(ref)
        directory = self._dir(container_id)

        def still_writing() -> bool:
            state = read_json(directory / "state.json", {})
            return pid_alive(state.get("shim_pid"), state.get("shim_start_time"))

        for record in read_records(
            directory / "log.jsonl",
            follow=follow,
            since=since,
            until=until,
            tail=tail,
            still_writing=still_writing,
        ):
            record["text"] = display(record, timestamps)
            yield record


def _make_controlling_terminal() -> None:
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def _is_shim(pid: int) -> bool:
    # A shim from a new interpreter or forked by the spawner: both command lines hold it.
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return shim.ENTRY.encode() in f.read()
    except OSError:
        return False


def _fd_of(stream, default: int) -> int | None:
    """A file descriptor for a subprocess-style stdio argument; None for DEVNULL."""
    import subprocess

    if stream is None:
        return default
    if stream == subprocess.DEVNULL:
        return None
    return stream if isinstance(stream, int) else stream.fileno()


def _relay_terminal(master: int, in_fd: int | None, out_fd: int | None) -> None:
    """Copy in_fd -> pty and pty -> out_fd until the process on the pty has gone; our
    terminal (if in_fd is one) is raw meanwhile, and the pty follows its size."""
    import select

    ours = in_fd if in_fd is not None and os.isatty(in_fd) else None
    with (
        _raw_terminal(ours),
        _size_followed(ours, lambda rows, cols: shim.set_terminal_size(master, rows, cols)),
    ):
        watched = [master] + ([in_fd] if in_fd is not None else [])
        while True:
            for fd in select.select(watched, [], [])[0]:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the last holder of the pty's other side exited
                    data = b""
                if fd == master:
                    if not data:
                        return
                    if out_fd is not None:
                        _write_all(out_fd, data)
                elif data:
                    _write_all(master, data)
                else:  # our input ended: end-of-file for the terminal too
                    watched.remove(in_fd)
                    _write_all(master, b"\x04")


def _relay_attached(
    sock, stdin: int | None, stdout: int, stderr: int, detach_keys: bytes | None
) -> bool:
    """Copy stdin -> sock (its end: shutdown) and the frames from sock -> stdout/stderr,
    until the shim closes the connection (False) or detach_keys are typed (True)."""
    import select
    import socket

    frames = shim.FrameReader()
    keys = DetachKeys(detach_keys)
    watched = [sock.fileno()] + ([stdin] if stdin is not None else [])
    while True:
        for fd in select.select(watched, [], [])[0]:
            if fd == stdin:
                try:
                    read = os.read(stdin, 65536)
                except OSError:
                    read = b""
                data, detached = keys.scan(read)
                if detached:
                    with contextlib.suppress(OSError):
                        sock.sendall(data)
                    return True
                if data:
                    try:
                        sock.sendall(data)
                    except OSError:  # the shim closed it: the run is over, output follows
                        read = b""
                if not read:
                    watched.remove(stdin)
                    with contextlib.suppress(OSError):
                        sock.shutdown(socket.SHUT_WR)
                continue
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                return False
            for stream, data in frames.feed(chunk):
                _write_all(stderr if stream == "stderr" else stdout, data)


class DetachKeys:
    """Finds a detach sequence in input read piece by piece: what may be its start is
    held back until the next piece says whether it was (then nothing of it is sent)."""

    def __init__(self, keys: bytes | None) -> None:
        self.keys = keys or b""
        self.held = b""

    def scan(self, data: bytes) -> tuple[bytes, bool]:
        """(what to send on, whether the sequence came); b"" (end of input) releases
        what was held."""
        if not self.keys:
            return data, False
        if not data:
            held, self.held = self.held, b""
            return held, False
        text = self.held + data
        found = text.find(self.keys)
        if found >= 0:
            self.held = b""
            return text[:found], True
        for size in range(min(len(self.keys) - 1, len(text)), 0, -1):
            if self.keys.startswith(text[-size:]):
                self.held = text[-size:]
                return text[:-size], False
        self.held = b""
        return text, False


@contextlib.contextmanager
def _raw_terminal(fd: int | None):
    """Our terminal raw while attached: keys (^C too) go to the container's terminal."""
    if fd is None:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSANOW)  # not TCSAFLUSH: keep what was typed ahead
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _size_followed(terminal: int | None, apply):
    """Give the container's terminal the size of ours (`terminal`, if one) now and after
    every SIGWINCH: apply(rows, cols)."""
    if terminal is None or not os.isatty(terminal):
        yield
        return

    def resize(*_) -> None:
        columns, lines = os.get_terminal_size(terminal)
        with contextlib.suppress(shim.ShimUnreachable, OSError, ValueError):
            apply(lines, columns)

    try:
        previous = signals.signal(signals.SIGWINCH, resize)
    except ValueError:  # not the main thread: the size is given once, not followed
        previous = None
    try:
        resize()
        yield
    finally:
        if previous is not None:
            signals.signal(signals.SIGWINCH, previous)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class RuntimeResult:
    """How a runtime command ended, whether it ran as a command or in this process."""

    __slots__ = ("returncode", "stderr")

    def __init__(self, returncode: int, stderr: str) -> None:
        self.returncode = returncode
        self.stderr = stderr

    @classmethod
    def of(cls, completed) -> RuntimeResult:
        return cls(completed.returncode, completed.stderr)


def _as_command(call) -> RuntimeResult:
    """call() ended as `composer-runtime` would end it (runtime.cli's main): 0, or 1 and
    its error line (the last line of the traceback for what the command does not expect)."""
    from runtime.oci import container as oci

    try:
        call()
    except Exception as err:
        expected = isinstance(err, (oci.ContainerError, OSError, ValueError))
        if expected or type(err).__name__.endswith("Error"):
            return RuntimeResult(1, f"{DEFAULT_RUNTIME}: {err}\n")
        return RuntimeResult(1, f"{DEFAULT_RUNTIME}: {type(err).__name__}: {err}\n")
    return RuntimeResult(0, "")


def _has_poststop_hooks(bundle: str) -> bool:
    try:
        config = read_json(Path(bundle) / "config.json", {})
    except (OSError, ValueError):
        return True  # unreadable: the command decides, as before
    return bool((config.get("hooks") or {}).get("poststop"))


def _wait_gone(pid: int | None, start_time: int | None, timeout: float) -> bool:
    """Whether the process is gone within `timeout` s: told by a pidfd, not by polling."""
    import select

    if not pid:
        return True
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    except OSError:  # no pidfd here (a kernel before 5.3): look every 10 ms
        deadline = time.monotonic() + timeout
        while pid_alive(pid, start_time):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True
    try:
        # Checked after the fd is open: it refers to this very process, not a later one.
        if not pid_alive(pid, start_time):
            return True
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(timeout, 0) * 1000))
    finally:
        os.close(fd)


def _default_cgroups_path(container_id: str) -> str:
    # Every runtime is given this path: composer's containers under one parent of their own
    # (a bundle without a path gets /<id> from our runtime and crun).
    return f"/composer/{container_id}"


# A shim is behind these: running, or waiting to restart.
_ACTIVE = ("running", "restarting")


def _cleared_run_fields() -> dict:
    fields = ("pid", "pid_start_time", "exit_code", "signal", "finished_at", "oom_killed")
    fields += ("health",)  # a start by hand begins a fresh count, as docker's
    extra = ("killed", "stop_reason", "stop_signal_sent", "stop_timeout", "start_error", "note")
    cleared = {k: None for k in fields + extra}
    return {**cleared, "status": "created", "restart_count": 0, "held": False}


def _lookup(path: Path, name: str, kind: str) -> str:
    for line in _lines(path):
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name:
            return fields[2]
    raise ContainerError(f"no {kind} {name!r} in the container's {path.name}")


def _passwd_gid(path: Path, name: str) -> str:
    for line in _lines(path):
        fields = line.split(":")
        if len(fields) >= 4 and fields[0] == name:
            return fields[3]
    raise ContainerError(f"no user {name!r} in the container's passwd")


def _lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def _now() -> str:
    from runtime.logs import format_time

    return format_time(time.time_ns())
