"""Network throughput side by side: iperf3 (TCP, SECONDS a run, ROUNDS rounds, medians)
over our bridge and published ports, next to loopback (the ceiling) and Docker's bridge
and docker-proxy.

Ours runs in a private network namespace standing in for the host (tests/netns.py's
NetnsSandbox), with a NetworkManager network and two stand-in containers (fresh netns
each, attached by veth): loopback inside container a; container b -> a over the bridge;
the "host" -> 127.0.0.1:published (DNAT); container b -> gateway:published. Docker's
rows (docker0 bridge, docker-proxy on 127.0.0.1) run only when dockerd is up or can be
started by the anchors' lib (stopped again if this run started it); its containers use
the host's iperf3, bind-mounted, in localhost/busybox. Env: SECONDS_PER_RUN (3), ROUNDS (3).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent.parent
SECONDS_PER_RUN = int(os.environ.get("SECONDS_PER_RUN", "3"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
IPERF_PORT, PUBLISHED_PORT = 5201, 15201
DOCKER_IMAGE = "localhost/busybox:latest"
# The host's iperf3 and its libraries, for a busybox container that has neither.
DOCKER_IPERF_MOUNTS = [
    "-v", "/usr/bin/iperf3:/iperf3:ro",
    "-v", "/usr/lib/x86_64-linux-gnu:/lib/x86_64-linux-gnu:ro",
    "-v", "/lib64/ld-linux-x86-64.so.2:/lib64/ld-linux-x86-64.so.2:ro",
]  # fmt: skip

OURS = ("loopback inside a container", "ours: container -> container (bridge)")
OURS += ("ours: host 127.0.0.1 -> published", "ours: container -> gateway:published")
DOCKER = ("docker: container -> container (docker0)", "docker: host -> published (proxy)")


def gbits(iperf_json: str) -> float:
    return json.loads(iperf_json)["end"]["sum_received"]["bits_per_second"] / 1e9


def iperf_client(prefix: list[str], host: str, port: int, binary: str = "iperf3") -> float:
    argv = [*prefix, binary, "-J", "-c", host, "-p", str(port), "-t", str(SECONDS_PER_RUN)]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=SECONDS_PER_RUN + 30)
    if proc.returncode != 0:
        raise RuntimeError(f"iperf3 -c {host}:{port}: {proc.stdout[-200:]}{proc.stderr[-200:]}")
    return gbits(proc.stdout)


def measure_ours(samples: dict[str, list[float]]) -> None:
    from netns import NetnsSandbox, ProcessNetns, assert_local_route

    from runtime.network.manager import NetworkManager

    sandbox = NetnsSandbox.create(f"composer-netbench-{os.getpid()}-{os.urandom(2).hex()}")
    state = Path(tempfile.mkdtemp(prefix="composer-net-bench-"))
    a = b = server = manager = None
    try:
        with sandbox.enter():  # the thread, and what it starts, live in the sandbox
            manager = NetworkManager(state)
            network = manager.create("bench", project="bench")
            a, b = ProcessNetns(), ProcessNetns()
            attached = manager.attach("a", a.path, "bench")
            manager.attach("b", b.path, "bench")
            manager.publish("a", "bench", [f"{PUBLISHED_PORT}:{IPERF_PORT}"])
            server = a.popen("iperf3", "-s", "-p", str(IPERF_PORT), stdout=subprocess.DEVNULL)
            assert_local_route(attached.ipv4, {"eth0"}, netns=b)
            wait_listening(a, IPERF_PORT)
            in_a = ["nsenter", f"--net={a.path}"]
            in_b = ["nsenter", f"--net={b.path}"]
            targets = {
                OURS[0]: (in_a, "127.0.0.1", IPERF_PORT),
                OURS[1]: (in_b, attached.ipv4, IPERF_PORT),
                OURS[2]: ([], "127.0.0.1", PUBLISHED_PORT),
                OURS[3]: (in_b, network.gateway, PUBLISHED_PORT),
            }
            for _ in range(ROUNDS):
                for label, (prefix, host, port) in targets.items():
                    samples.setdefault(label, []).append(iperf_client(prefix, host, port))
    finally:
        if server is not None:
            server.kill()
            server.wait()
        for container in (a, b):
            if container is not None:
                container.stop()
        if manager is not None:
            with sandbox.enter():
                manager.remove("bench")
        sandbox.remove()  # takes the bridge, veths and nft table with it
        shutil.rmtree(state, ignore_errors=True)


def wait_listening(container, port: int) -> None:
    deadline = time.monotonic() + 10
    while f":{port} " not in container.run("ss", "-Hltn", check=False).stdout:
        if time.monotonic() > deadline:
            raise RuntimeError(f"iperf3 server not listening on {port}")
        time.sleep(0.05)


def measure_docker(samples: dict[str, list[float]]) -> str | None:
    """Docker's rows; returns why they could not be measured."""
    from compose_bench import docker_daemon

    name = f"composer-netbench-{uuid.uuid4().hex[:8]}"
    with docker_daemon() as problem:
        if problem:
            return problem
        try:
            started = subprocess.run(
                ["docker", "run", "-d", "--rm", "--name", name,
                 "-p", f"127.0.0.1:{PUBLISHED_PORT}:{IPERF_PORT}", *DOCKER_IPERF_MOUNTS,
                 DOCKER_IMAGE, "/iperf3", "-s", "-p", str(IPERF_PORT)],
                capture_output=True, text=True,
            )  # fmt: skip
            if started.returncode != 0:
                return f"docker run failed: {started.stderr.strip()[-100:]}"
            address = subprocess.run(
                ["docker", "inspect", "-f", "{{.NetworkSettings.IPAddress}}", name],
                capture_output=True,
                text=True,
            ).stdout.strip()
            route = json.loads(
                subprocess.run(
                    ["ip", "-j", "route", "get", address], capture_output=True, text=True
                ).stdout
                or "[{}]"
            )[0]
            if route.get("dev") != "docker0" or "gateway" in route:
                return f"route to docker's container {address} is not docker0: {route}"
            time.sleep(1)  # the server's listen, inside the container
            client = ["docker", "run", "--rm", "--name", f"{name}-client"]
            client += [*DOCKER_IPERF_MOUNTS, DOCKER_IMAGE]
            for _ in range(ROUNDS):
                samples.setdefault(DOCKER[0], []).append(
                    iperf_client(client, address, IPERF_PORT, binary="/iperf3")
                )
                samples.setdefault(DOCKER[1], []).append(
                    iperf_client([], "127.0.0.1", PUBLISHED_PORT)
                )
        except RuntimeError as e:
            return str(e)[:120]
        finally:
            subprocess.run(["docker", "rm", "-f", name, f"{name}-client"], capture_output=True)
    return None


def report(samples: dict[str, list[float]], docker_problem: str | None) -> None:
    medians = {label: statistics.median(values) for label, values in samples.items()}
    ceiling = medians.get(OURS[0])
    peer = {OURS[1]: DOCKER[0], OURS[2]: DOCKER[1]}
    print(f"\nTCP throughput, iperf3 {SECONDS_PER_RUN} s x {ROUNDS} rounds (medians)")
    print("  ratios of throughput (above 1: faster than loopback / than docker's same path)")
    print(f"  {'path':<42} {'Gbit/s':>8} {'/loopback':>10} {'/docker':>8}")
    for label in (*OURS, *DOCKER):
        if label not in medians:
            continue
        value = medians[label]
        vs_loop = f"{value / ceiling:.2f}" if ceiling else ""
        docker = medians.get(peer.get(label, ""))
        vs_docker = f"{value / docker:.2f}" if docker else ""
        print(f"  {label:<42} {value:>8.1f} {vs_loop:>10} {vs_docker:>8}")
    if docker_problem:
        print(f"  docker rows missing: {docker_problem}")


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("net_bench: run as root")
    if not shutil.which("iperf3"):
        sys.exit("net_bench: iperf3 missing (apt-get install iperf3)")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    samples: dict[str, list[float]] = {}
    try:
        measure_ours(samples)
    except (RuntimeError, AssertionError, OSError, subprocess.SubprocessError) as e:
        print(f"net_bench: our rows stopped early: {str(e)[:200]}")
    docker_problem = measure_docker(samples)
    report(samples, docker_problem)


if __name__ == "__main__":
    main()
