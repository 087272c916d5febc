"""Memory per running container: composer's shim next to podman's conmon and docker's
containerd-shim-runc-v2, each with the same 10 idle services up (bench/projects/ten-sleep).

Reads VmRSS and Pss (/proc/PID/smaps_rollup: shared pages divided among the processes
mapping them, so 10 shims sharing one interpreter are not counted 10 times) of every
helper, and of the helpers a project or host adds on top: our per-project DNS server,
podman's aardvark-dns, docker's dockerd and containerd. Same peers, same dockerd
handling and same env (COMPOSE_TOOLS, COMPOSER_BENCH_ROOT) as compose_bench.py.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compose_bench import (
    BASELINE,
    TEN,
    Failed,
    Tool,
    composer_root,
    composer_tool,
    docker_daemon,
    fresh_bytecode,
    import_busybox,
    interrupts_as_keyboard_interrupt,
    peer_tools,
    quiet,
    timed,
    uninterrupted,
    wait_until,
)

SETTLE = 1.0  # seconds after all run, so start-up allocations are done (as anchors-mem.py)


@dataclass
class Memory:
    pid: int
    name: str
    rss_kib: int
    pss_kib: int


def memory(pid: int) -> Memory | None:
    try:
        with open(f"/proc/{pid}/status") as fh:
            fields = dict(line.split(":", 1) for line in fh if ":" in line)
        pss = 0
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    pss = int(line.split()[1])
    except OSError:
        return None  # gone meanwhile
    rss = int(fields.get("VmRSS", "0 kB").split()[0])
    return Memory(pid, fields["Name"].strip(), rss, pss)


def parent_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as fh:
        return int(fh.read().rsplit(")", 1)[1].split()[1])


def pids_named(name: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError), open(f"/proc/{entry}/comm") as fh:
                if fh.read().strip() == name:
                    found.append(int(entry))
    return found


# ---------------------------------------------------------------- who helps whom


def composer_helpers(root: Path, project: str) -> dict[str, list[int]]:
    from composer.labels import PROJECT
    from runtime.engine import Engine
    from runtime.network.dns import server_pid

    shims = [c["shim_pid"] for c in Engine(root).list(labels={PROJECT: project})]
    dns = server_pid(project, root)
    return {
        "composer shim (per container)": shims,
        "composer DNS server (per project)": [dns] if dns else [],
    }


def podman_helpers(project: str) -> dict[str, list[int]]:
    label = f"label=io.podman.compose.project={project}"
    ids = quiet(["podman", "ps", "-q", "--filter", label]).split()
    conmons = quiet(["podman", "inspect", "-f", "{{.State.ConmonPid}}", *ids]).split()
    return {
        "conmon (per container)": [int(p) for p in conmons],
        "aardvark-dns (per host)": pids_named("aardvark-dns"),
    }


def docker_helpers(project: str) -> dict[str, list[int]]:
    label = f"label=com.docker.compose.project={project}"
    ids = quiet(["docker", "ps", "-q", "--filter", label]).split()
    inits = quiet(["docker", "inspect", "-f", "{{.State.Pid}}", *ids]).split()
    return {
        "containerd-shim-runc-v2 (per container)": [parent_of(int(p)) for p in inits],
        "dockerd + containerd (per host)": pids_named("dockerd") + pids_named("containerd"),
    }


def measure(tool: Tool, project: str, helpers, logs: Path) -> dict[str, list[Memory]] | str:
    """Helper memory with the 10 idle services up, or why it could not be measured."""
    log = logs / f"memory-{tool.name.replace(' ', '-')}.log"
    try:
        timed(tool.compose(TEN, project, "up", "-d"), tool.env, TEN.parent, log)
        if not wait_until(lambda: tool.running(project) >= 10):
            return f"10 containers never ran (log {log})"
        time.sleep(SETTLE)
        found = {}
        for helper, pids in helpers(project).items():
            found[helper] = [m for m in map(memory, pids) if m]
        return found
    except Failed as e:
        return str(e)
    finally:
        with uninterrupted():
            tool.cleanup(project, TEN)


# ---------------------------------------------------------------- report


def report(results: list[tuple[str, dict[str, list[Memory]] | str]]) -> None:
    print(f"\n  {'helper, 10 idle containers a tool':<42} {'n':>3} {'RSS MiB':>8} {'PSS MiB':>8}")
    print(f"  {'':<42} {'':>3} {'median':>8} {'median':>8} {'PSS sum':>8}  ours/this: RSS  PSS")
    ours = None
    rows = []
    for tool_name, found in results:
        if isinstance(found, str):
            rows.append((f"{tool_name}: {found}", None))
            continue
        for helper, mems in found.items():
            rows.append((helper, mems))
            if helper.startswith("composer shim") and mems:
                ours = (
                    statistics.median(m.rss_kib for m in mems),
                    statistics.median(m.pss_kib for m in mems),
                )
    for label, mems in rows:
        if mems is None:
            print(f"  {label}")
            continue
        if not mems:
            print(f"  {label:<42} {0:>3}  none found")
            continue
        rss = statistics.median(m.rss_kib for m in mems)
        pss = statistics.median(m.pss_kib for m in mems)
        pss_sum = sum(m.pss_kib for m in mems) / 1024
        ratio = ""
        if ours and "per container" in label and not label.startswith("composer") and pss:
            ratio = f"{ours[0] / rss:>15.2f}x {ours[1] / pss:>4.1f}x"
        print(
            f"  {label:<42} {len(mems):>3} {rss / 1024:>8.1f} {pss / 1024:>8.1f}"
            f" {pss_sum:>8.1f} {ratio}"
        )


def main() -> None:
    if os.geteuid() != 0:
        print("memory_bench needs root; skipped")
        return
    wanted = os.environ.get("COMPOSE_TOOLS")
    selected = wanted.split(",") if wanted else None
    project = f"mb{uuid.uuid4().hex[:6]}"
    logs = Path(tempfile.mkdtemp(prefix="memory-bench-logs-"))
    results: list[tuple[str, dict[str, list[Memory]] | str]] = []
    fresh_bytecode()  # the shim's own start-up allocations depend on it
    with contextlib.ExitStack() as stack, interrupts_as_keyboard_interrupt():
        needs_docker = selected is None or BASELINE in selected
        docker_problem = stack.enter_context(docker_daemon()) if needs_docker else "not selected"
        root = stack.enter_context(composer_root())
        import_busybox(root)
        ours = composer_tool(root)
        peers = {t.name: t for t in peer_tools(docker_problem)}
        plan = [
            (ours, lambda p: composer_helpers(root, p)),
            (peers["podman-compose"], podman_helpers),
            (peers[BASELINE], docker_helpers),
        ]
        for tool, helpers in plan:
            if selected and tool.name not in selected:
                continue
            if tool.unusable:
                results.append((tool.name, tool.unusable))
                continue
            print(f"  {tool.name}: 10 idle services up", flush=True)
            results.append((tool.name, measure(tool, project, helpers, logs)))
    report(results)
    if any(isinstance(found, str) for _, found in results):
        print(f"  command output: {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
