"""Orchestration side by side: composer next to docker compose v2, podman-compose and
docker-compose v1, in one run, as medians and ratios against docker compose v2.

Three cycles a round, tools interleaved within each round so machine drift spreads
over all of them:

  10 idle services (bench/projects/ten-sleep, one file for every tool):
    up -d, until the engine lists 10 running containers, then `down -t 0`;
    the same again with a plain `down` (PID 1 `sleep` ignores SIGTERM).
  flask-redis: up -d until the first HTTP 200 on the published port, then `down`
    (the web's PID 1, python3, ignores SIGTERM too).

Peers run the anchors' flask-redis file (image localhost/flaskredis, app bind-mounted);
composer runs its own sample (samples/flask-redis, images built beforehand, untimed).
Both are Flask + Redis from Debian bookworm packages; ours also has healthchecks and
waits for redis to be healthy before starting web.

Peers come from ../shared/anchors/setup-anchors.sh; a missing peer is reported as
such. dockerd, when not already running, is started and stopped by the anchors' own
shell functions. Env: CYCLES (rounds, default 5), COMPOSE_TOOLS (comma-separated
subset), BENCH_WEB_PORT (first port tried, default 15080), COMPOSER_BENCH_ROOT (a
state root kept between runs, so image builds are cached; default a temporary one).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPOSER = str(ROOT / ".venv" / "bin" / "composer")
TEN = ROOT / "bench" / "projects" / "ten-sleep" / "compose.yaml"
OUR_FLASK_REDIS = ROOT / "samples" / "flask-redis" / "compose.yaml"
ANCHORS = Path(os.environ.get("ANCHORS_HOME", ROOT.parent / "shared" / "anchors"))
ANCHORS_LIB = ANCHORS / "anchors-lib.sh"
PEER_FLASK_REDIS = ANCHORS / "flask-redis" / "compose.yaml"
ANCHORS_STATE = Path(os.environ.get("ANCHORS_STATE", "/var/lib/composer-anchors"))
PODMAN_COMPOSE = "/opt/composer-anchors/venv/bin/podman-compose"
DOCKER_PLUGIN = "/usr/local/lib/docker/cli-plugins/docker-compose"
DOCKER_COMPOSE_V1 = "/usr/bin/docker-compose"
DOCKERD_PID_FILE = Path("/run/composer-anchors/dockerd.pid")  # RUNDIR of anchors-lib.sh
PEER_IMAGES = ("localhost/busybox:latest", "localhost/flaskredis:latest")
BASELINE = "docker compose v2"

POLL = 0.02  # seconds between readiness probes, as the anchors' cycle script
READY_TIMEOUT = 60.0
COMMAND_TIMEOUT = 180.0


class Failed(Exception):
    """A command of a cycle failed; the text says which and why."""


# ---------------------------------------------------------------- small helpers


def quiet(argv: list[str], env: dict | None = None, timeout: float = 60) -> str:
    """stdout of argv, '' when it fails: for probes and cleanup, never for timing."""
    try:
        proc = subprocess.run(
            argv,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            start_new_session=True,  # a Ctrl-C during cleanup must not cut a `down` short
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout if proc.returncode == 0 else ""


def timed(argv: list[str], env: dict, cwd: Path, log: Path) -> float:
    """Wall time of one command, its output appended to log; Failed when it fails.

    The command runs in a session of its own, so a Ctrl-C reaches only the bench, which
    lets it finish before cleaning up: a compose tool killed midway can strand what it
    was creating. The wait blocks in waitpid (a timeout there would poll every 50 ms);
    a timer enforces the time limit instead.
    """
    with open(log, "ab") as out:
        out.write(f"$ {' '.join(argv)}\n".encode())
        out.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
        limit = threading.Timer(COMMAND_TIMEOUT, proc.kill)
        limit.start()
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            with uninterrupted():
                proc.wait()
            raise
        finally:
            limit.cancel()
        elapsed = time.perf_counter() - start
    if elapsed >= COMMAND_TIMEOUT:
        raise Failed(f"{argv[-1]} took over {COMMAND_TIMEOUT:.0f} s (log {log})")
    if code != 0:
        raise Failed(f"{' '.join(argv[-2:])} exit {code} (log {log})")
    return elapsed


def wait_until(ready: Callable[[], bool], timeout: float = READY_TIMEOUT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(POLL)
    return False


def http_ok(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def local_ports(listening_only: bool) -> set[int]:
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError), open(table) as fh:
            for line in fh.readlines()[1:]:
                fields = line.split()
                if not listening_only or fields[3] == "0A":  # TCP_LISTEN
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def port_free(port: int) -> bool:
    """Nothing listens on it and nothing answers on 127.0.0.1 (a stale DNAT would)."""
    if port in local_ports(listening_only=True):
        return False
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return True
    return False


def pick_ports(first: int, count: int) -> list[int]:
    """One port a tool, so one tool's leftover sockets never meet the next tool's bind,
    and none with any socket at all: composer's free-port check is a bind without
    SO_REUSEADDR, which a TIME_WAIT socket (say, a proxy's) on the port fails."""
    used = local_ports(listening_only=False)
    free = [p for p in range(first, first + 100) if p not in used and port_free(p)]
    if len(free) < count:
        raise SystemExit(f"fewer than {count} free ports in {first}..{first + 99} on 127.0.0.1")
    return free[:count]


def mounts_under(path: Path) -> list[str]:
    with open("/proc/self/mountinfo") as fh:
        return [line.split()[4] for line in fh if line.split()[4].startswith(str(path))]


# ---------------------------------------------------------------- dockerd


def docker_answers() -> bool:
    return bool(quiet(["docker", "version", "--format", "{{.Server.Version}}"], timeout=10))


@contextlib.contextmanager
def docker_daemon() -> Iterator[str | None]:
    """Yields None when dockerd is usable, else why not. Starts it with the anchors'
    start_dockerd and stops only a daemon started here, with their stop_dockerd."""
    if not shutil.which("docker"):
        yield "docker not installed"
        return
    if docker_answers():
        yield None  # someone else's daemon: not ours to stop
        return
    if not ANCHORS_LIB.exists():
        yield f"dockerd not running and {ANCHORS_LIB} missing"
        return
    lib = ["bash", "-c", '. "$1"; "$2"', "anchors", str(ANCHORS_LIB)]
    asked = time.time()
    started = subprocess.run([*lib, "start_dockerd"], check=False).returncode == 0
    # Ours only if this start wrote the pid file (not a daemon that came up meanwhile).
    pid_file = DOCKERD_PID_FILE
    ours = started and pid_file.exists() and pid_file.stat().st_mtime >= asked - 1
    try:
        yield None if started else "dockerd did not start (see the anchors' dockerd.log)"
    finally:
        if ours:  # the lib stops only what its own shell started; that shell is gone
            stop = '. "$1"; DOCKERD_STARTED=1; stop_dockerd'
            subprocess.run(["bash", "-c", stop, "anchors", str(ANCHORS_LIB)], check=False)


def docker_images_missing() -> str | None:
    have = quiet(["docker", "image", "inspect", "--format", "ok", *PEER_IMAGES])
    return None if have.count("ok") == len(PEER_IMAGES) else "images missing (setup-anchors.sh)"


# ---------------------------------------------------------------- the tools


@dataclass
class Tool:
    name: str
    argv: list[str]  # the words before -f
    env: dict
    flask_redis: Path
    running: Callable[[str], int]  # project -> its running containers
    cleanup: Callable[[str, Path], None]  # project, compose file
    unusable: str | None = None
    port: int = 0  # published on 127.0.0.1 by the flask-redis cycle
    flask_redis_problem: str | None = None  # e.g. our images did not build

    def use_port(self, port: int) -> None:
        self.port = port
        self.env = {**self.env, "WEB_PORT": str(port)}

    def compose(self, file: Path, project: str, *args: str) -> list[str]:
        return [*self.argv, "-f", str(file), "-p", project, *args]


def _count_lines(text: str) -> int:
    return len([line for line in text.splitlines() if line.strip()])


def docker_running(project: str) -> int:
    label = f"label=com.docker.compose.project={project}"
    return _count_lines(
        quiet(["docker", "ps", "-q", "--filter", label, "--filter", "status=running"])
    )


def podman_running(project: str) -> int:
    label = f"label=io.podman.compose.project={project}"
    return _count_lines(
        quiet(["podman", "ps", "-q", "--filter", label, "--filter", "status=running"])
    )


def docker_cleanup(tool: Tool, project: str, file: Path) -> None:
    quiet(tool.compose(file, project, "down", "-t", "0", "--remove-orphans"), env=tool.env)
    label = f"label=com.docker.compose.project={project}"
    ids = quiet(["docker", "ps", "-aq", "--filter", label]).split()
    if ids:
        quiet(["docker", "rm", "-f", *ids])
    if quiet(["docker", "network", "ls", "-q", "--filter", f"name=^{project}_default$"]):
        quiet(["docker", "network", "rm", f"{project}_default"])


def podman_cleanup(tool: Tool, project: str, file: Path) -> None:
    quiet(tool.compose(file, project, "down", "-t", "0"), env=tool.env)
    label = f"label=io.podman.compose.project={project}"
    ids = quiet(["podman", "ps", "-aq", "--filter", label]).split()
    if ids:
        quiet(["podman", "rm", "-f", "-t", "0", *ids])
    quiet(["podman", "pod", "rm", "-f", f"pod_{project}"])
    quiet(["podman", "network", "rm", "-f", f"{project}_default"])


def composer_tool(root: Path) -> Tool:
    from composer.labels import PROJECT
    from runtime.engine import Engine

    env = {**os.environ, "COMPOSER_ROOT": str(root)}
    engine = Engine(root)

    def running(project: str) -> int:
        # The engine's own view (state on disk checked against live pids), read in
        # this process: what `composer ps` shows, without a second CLI start-up.
        return sum(c["status"] == "running" for c in engine.list(labels={PROJECT: project}))

    tool = Tool("composer", [COMPOSER], env, OUR_FLASK_REDIS, running, lambda p, f: None)
    tool.cleanup = lambda project, file: quiet(
        tool.compose(file, project, "down", "-v", "-t", "0"), env=tool.env
    )
    return tool


def peer_tools(docker_problem: str | None) -> list[Tool]:
    env = dict(os.environ)
    env.pop("COMPOSER_ROOT", None)
    tools = []
    for name, argv, present in (
        (BASELINE, ["docker", "compose"], os.access(DOCKER_PLUGIN, os.X_OK)),
        ("podman-compose", [PODMAN_COMPOSE], os.access(PODMAN_COMPOSE, os.X_OK)),
        ("docker-compose v1", [DOCKER_COMPOSE_V1], os.access(DOCKER_COMPOSE_V1, os.X_OK)),
    ):
        podman = name == "podman-compose"
        tool = Tool(
            name,
            argv,
            env,
            PEER_FLASK_REDIS,
            podman_running if podman else docker_running,
            lambda p, f: None,
        )
        tool.cleanup = lambda project, file, t=tool, pm=podman: (
            podman_cleanup(t, project, file) if pm else docker_cleanup(t, project, file)
        )
        if not present:
            tool.unusable = "not installed (setup-anchors.sh)"
        elif not PEER_FLASK_REDIS.exists():
            tool.unusable = f"{PEER_FLASK_REDIS} missing"
        elif podman:
            missing = any(
                subprocess.run(["podman", "image", "exists", i], check=False).returncode
                for i in PEER_IMAGES
            )
            tool.unusable = "images missing (setup-anchors.sh)" if missing else None
        else:
            tool.unusable = docker_problem or docker_images_missing()
        tools.append(tool)
    return tools


# ---------------------------------------------------------------- composer's side


def import_busybox(root: Path) -> None:
    """localhost/busybox in our store, from the very rootfs tar the peers' image came
    from when the anchors left it, else from the test suite's busybox-static rootfs."""
    sys.path.insert(0, str(ROOT / "tests"))
    from images import BUSYBOX_CONFIG, busybox_tar

    from runtime.images.store import ImageStore

    tar = ANCHORS_STATE / "busybox.tar"
    if not tar.exists():
        import io

        tar = io.BytesIO(busybox_tar())
    ImageStore(root).import_rootfs_tar(tar, PEER_IMAGES[0], config=dict(BUSYBOX_CONFIG))


def build_sample(root: Path, project: str, log: Path) -> str | None:
    """Build our flask-redis images (untimed); returns why they could not be built."""
    print("building composer's flask-redis images (untimed; 1-2 min the first time)", flush=True)
    env = {**os.environ, "COMPOSER_ROOT": str(root)}
    argv = [COMPOSER, "-f", str(OUR_FLASK_REDIS), "-p", project, "build"]
    try:
        timed(argv, env, OUR_FLASK_REDIS.parent, log)
    except Failed as e:
        return f"build failed: {e}"
    return None


@contextlib.contextmanager
def composer_root() -> Iterator[Path]:
    kept = os.environ.get("COMPOSER_BENCH_ROOT")
    if kept:
        Path(kept).mkdir(parents=True, exist_ok=True)
        yield Path(kept)
        return
    root = Path(tempfile.mkdtemp(prefix="composer-bench-"))
    try:
        yield root
    finally:
        left = mounts_under(root)
        if left:
            print(f"WARNING: {len(left)} mounts left under {root}; not removing it: {left[:3]}")
        else:
            shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------- cycles


@dataclass
class Samples:
    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)
    notes: dict[tuple[str, str], str] = field(default_factory=dict)

    def add(self, metric: str, tool: str, value: float) -> None:
        self.values.setdefault((metric, tool), []).append(value)

    def fail(self, metric: str, tool: str, note: str) -> None:
        self.notes.setdefault((metric, tool), note)

    def median(self, metric: str, tool: str) -> float | None:
        v = self.values.get((metric, tool))
        return statistics.median(v) if v else None


UP_CMD = "10 idle: up -d (command)"
UP_READY = "10 idle: up -d until 10 running"
DOWN_T0 = "10 idle: down -t 0"
DOWN_DEFAULT = "10 idle: down (PID 1 ignores TERM)"
FR_UP = "flask-redis: up -d until HTTP 200"
FR_DOWN = "flask-redis: down (web ignores TERM)"

# metric -> (target text, check on (ours, v2))
TARGETS: dict[str, tuple[str, Callable[[float, float | None], bool | None]]] = {
    UP_READY: ("<= 0.25x v2", lambda ours, v2: ours <= 0.25 * v2 if v2 else None),
    DOWN_T0: ("<= 0.5x v2", lambda ours, v2: ours <= 0.5 * v2 if v2 else None),
    FR_UP: ("<= 0.5x v2", lambda ours, v2: ours <= 0.5 * v2 if v2 else None),
    FR_DOWN: ("< 1.5 s", lambda ours, v2: ours < 1.5),
}


def ten_cycle(tool: Tool, project: str, down: list[str], log: Path) -> dict[str, float]:
    cwd = TEN.parent
    start = time.perf_counter()
    try:
        up = timed(tool.compose(TEN, project, "up", "-d"), tool.env, cwd, log)
        if not wait_until(lambda: tool.running(project) >= 10):
            raise Failed(f"10 containers never ran (log {log})")
        ready = time.perf_counter() - start
    except Failed:
        tool.cleanup(project, TEN)
        raise
    gone = timed(tool.compose(TEN, project, "down", *down), tool.env, cwd, log)
    return {"up": up, "ready": ready, "down": gone}


def flask_redis_cycle(tool: Tool, project: str, down: list[str], log: Path) -> dict[str, float]:
    file, port = tool.flask_redis, tool.port
    if not wait_until(lambda: port_free(port), timeout=10):
        raise Failed(f"port {port} still taken before up")
    start = time.perf_counter()
    try:
        timed(tool.compose(file, project, "up", "-d"), tool.env, file.parent, log)
        if not wait_until(lambda: http_ok(port)):
            raise Failed(f"no HTTP 200 on 127.0.0.1:{port} (log {log})")
        ready = time.perf_counter() - start
    except Failed:
        tool.cleanup(project, file)
        raise
    gone = timed(tool.compose(file, project, "down", *down), tool.env, file.parent, log)
    return {"ready": ready, "down": gone}


def measure(tools: list[Tool], cycles: int, names: dict, logs: Path) -> Samples:
    samples = Samples()

    def attempt(tool: Tool, metrics: list[str], body: Callable[[], dict]) -> dict | None:
        if any((m, tool.name) in samples.notes for m in metrics):
            return None  # failed before: do not keep paying for it
        try:
            return body()
        except Failed as e:
            for m in metrics:
                samples.fail(m, tool.name, str(e))
            return None

    for tool in tools:
        if tool.flask_redis_problem:
            samples.fail(FR_UP, tool.name, tool.flask_redis_problem)
            samples.fail(FR_DOWN, tool.name, tool.flask_redis_problem)
    for tool in tools:  # warm-up: caches, first-time network and volume creation
        print(f"  warm-up {tool.name}", flush=True)
        log = logs / f"{tool.name.replace(' ', '-')}.log"
        attempt(tool, [UP_READY], lambda t=tool, g=log: ten_cycle(t, names["ten"], ["-t", "0"], g))
        attempt(
            tool,
            [FR_UP],
            lambda t=tool, g=log: flask_redis_cycle(t, names["fr"], ["-t", "0"], g),
        )
    for round_index in range(cycles):
        print(f"  round {round_index + 1}/{cycles}", flush=True)
        for tool in tools:
            log = logs / f"{tool.name.replace(' ', '-')}.log"
            for down, metric in ((["-t", "0"], DOWN_T0), ([], DOWN_DEFAULT)):
                got = attempt(
                    tool,
                    [UP_READY, metric],
                    lambda t=tool, d=down, g=log: ten_cycle(t, names["ten"], d, g),
                )
                if got:
                    samples.add(UP_CMD, tool.name, got["up"])
                    samples.add(UP_READY, tool.name, got["ready"])
                    samples.add(metric, tool.name, got["down"])
            got = attempt(
                tool,
                [FR_UP, FR_DOWN],
                lambda t=tool, g=log: flask_redis_cycle(t, names["fr"], [], g),
            )
            if got:
                samples.add(FR_UP, tool.name, got["ready"])
                samples.add(FR_DOWN, tool.name, got["down"])
    return samples


# ---------------------------------------------------------------- report


def report(samples: Samples, tools: list[Tool]) -> None:
    names = [t.name for t in tools]
    short = {
        "composer": "composer",
        BASELINE: "compose v2",
        "podman-compose": "podman-c",
        "docker-compose v1": "compose v1",
    }
    head = f"  {'seconds, median':<37}" + "".join(f"{short[n]:>11}" for n in names)
    print(f"\n{head} {'ours/v2':>8}  target")
    metrics = (UP_CMD, UP_READY, DOWN_T0, DOWN_DEFAULT, FR_UP, FR_DOWN)
    for metric in metrics:
        cells = []
        for n in names:
            m = samples.median(metric, n)
            cells.append(f"{m:>11.3f}" if m is not None else f"{'-':>11}")
        ours, v2 = samples.median(metric, "composer"), samples.median(metric, BASELINE)
        ratio = f"{ours / v2:>7.2f}x" if ours and v2 else f"{'':>8}"
        target = ""
        if metric in TARGETS and ours is not None:
            text, check = TARGETS[metric]
            met = check(ours, v2)
            target = f"{text} {'met' if met else 'MISSED' if met is not None else '(no v2)'}"
        print(f"  {metric:<37}" + "".join(cells) + f" {ratio}  {target}")
    counts = {
        n: max((len(samples.values.get((m, n), [])) for m in metrics), default=0) for n in names
    }
    print(
        "  samples per cell (up rows get two a round): "
        + ", ".join(f"{n} {c}" for n, c in counts.items())
    )
    for tool in tools:
        if tool.unusable:
            print(f"  {tool.name}: {tool.unusable}")
    for (metric, name), note in sorted(samples.notes.items()):
        print(f"  {name}, {metric}: {note}")
    print(
        "  flask-redis: peers run the anchors' file (localhost/flaskredis, app bind-mounted),"
        "\n  composer its own sample (images built beforehand, untimed; web waits for redis"
        "\n  to be healthy); same app and servers: Flask + Redis from Debian bookworm."
    )


# ---------------------------------------------------------------- main


def fresh_bytecode() -> None:
    """As an install leaves it (the Makefile compiles at install): with
    PYTHONDONTWRITEBYTECODE set, every start would recompile each module edited since."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "composer"), str(ROOT / "runtime")],
        stdout=subprocess.DEVNULL,
        check=False,
    )


@contextlib.contextmanager
def interrupts_as_keyboard_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the cleanup below runs for both."""

    def raise_interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, raise_interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def uninterrupted() -> Iterator[None]:
    """Cleanup must finish: a second Ctrl-C must not leave containers behind."""
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main() -> None:
    if os.geteuid() != 0:
        print("compose_bench needs root; skipped")
        return
    cycles = int(os.environ.get("CYCLES", "5"))
    wanted = os.environ.get("COMPOSE_TOOLS")
    tag = uuid.uuid4().hex[:6]
    names = {"ten": f"cb{tag}ten", "fr": f"cb{tag}fr"}
    logs = Path(tempfile.mkdtemp(prefix="compose-bench-logs-"))
    fresh_bytecode()
    with contextlib.ExitStack() as stack, interrupts_as_keyboard_interrupt():
        selected = wanted.split(",") if wanted else None
        needs_docker = selected is None or {BASELINE, "docker-compose v1"} & set(selected)
        docker_problem = stack.enter_context(docker_daemon()) if needs_docker else "not selected"
        root = stack.enter_context(composer_root())
        ours = composer_tool(root)
        tools = [ours, *peer_tools(docker_problem)]
        if selected:
            tools = [t for t in tools if t.name in selected]
        first_port = int(os.environ.get("BENCH_WEB_PORT", "15080"))
        for tool, port in zip(tools, pick_ports(first_port, len(tools)), strict=True):
            tool.use_port(port)
        ports = ", ".join(f"{t.name} {t.port}" for t in tools)
        print(f"projects {names['ten']}, {names['fr']}; ports on 127.0.0.1: {ports}")

        def cleanup_all() -> None:
            with uninterrupted():
                for tool in tools:
                    if tool.unusable:
                        continue
                    tool.cleanup(names["ten"], TEN)
                    tool.cleanup(names["fr"], tool.flask_redis)

        stack.callback(cleanup_all)
        # The ten idle services need no build: a failed one costs only the sample's rows.
        import_busybox(root)
        ours.flask_redis_problem = build_sample(root, names["fr"], logs / "composer-build.log")
        samples = measure([t for t in tools if not t.unusable], cycles, names, logs)
        report(samples, tools)
    if samples.notes:
        print(f"  command output of the failures: {logs}")
    else:
        shutil.rmtree(logs, ignore_errors=True)


if __name__ == "__main__":
    main()
