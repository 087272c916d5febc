"""Container DNS side by side: our server (python -m runtime.network.dns) next to
podman's aardvark-dns, both serving the same records (5 services x 4 replicas, each with
an alias, plus the client: 21 containers) in a private network namespace.

A second namespace is the client, joined to the server's by a bridge and veth of their
own (nothing touches the host's network). Per server and round: a sequential run of
SEQUENTIAL queries from one socket (p50/p99 latency of a lone query) and a dnsperf load
of DNSPERF_SECONDS with 8 clients (queries/s, mean latency); medians over ROUNDS rounds,
the servers taking turns within each. dnsperf gives no percentiles, hence the
sequential run. The serving processes' CPU time a dnsperf query (from /proc) is the
figure a busy machine disturbs least. Also: names only aardvark knows, through our
server (its forwarding path, aardvark as the upstream) and straight from aardvark.
Env: DNSPERF_SECONDS (2), SEQUENTIAL (1000), ROUNDS (3).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = str(ROOT / ".venv" / "bin" / "python")
AARDVARK = "/usr/lib/podman/aardvark-dns"
DNSPERF_SECONDS = int(os.environ.get("DNSPERF_SECONDS", "2"))
SEQUENTIAL = int(os.environ.get("SEQUENTIAL", "1000"))
ROUNDS = int(os.environ.get("ROUNDS", "3"))
PROJECT = "bench"
NETWORK = "bench_default"
SUBNET, GATEWAY, CLIENT = "10.89.77.0/24", "10.89.77.1", "10.89.77.2"
AARDVARK_PORT = 5533

# Runs in the client namespace: one socket, one query at a time; p50/p99 in microseconds.
SEQUENTIAL_PROBE = """
import json, socket, sys, time
import dns.message
server, port, names, count = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), int(sys.argv[4])
wires = [dns.message.make_query(n, "A").to_wire() for n in names]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2); s.connect((server, port))
samples, failed = [], 0
for i in range(count):
    start = time.perf_counter(); s.send(wires[i % len(wires)])
    try:
        reply = dns.message.from_wire(s.recv(4096))
    except (TimeoutError, dns.exception.DNSException):
        failed += 1; continue
    samples.append((time.perf_counter() - start) * 1e6)
    failed += reply.rcode() != 0 or not reply.answer
samples.sort()
pick = lambda q: samples[min(len(samples) - 1, int(len(samples) * q))] if samples else None
print(json.dumps({"p50": pick(0.5), "p99": pick(0.99), "failed": failed}))
"""


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def write_records(root: Path, aardvark_dir: Path) -> tuple[list[str], list[str]]:
    """The same containers for both servers; returns (our names, names only aardvark has)."""
    from runtime.network.dns_records import add_container
    from runtime.state import atomic_write_json

    network = {"name": NETWORK, "project": PROJECT, "state": "ready", "internal": False}
    network["ipv4"] = {"subnet": SUBNET, "gateway": GATEWAY}
    atomic_write_json(root / "networks" / f"{NETWORK}.json", network)
    # aardvark's format: the gateway line, then "id ipv4s ipv6s names" a container.
    lines = [GATEWAY]
    add_container(PROJECT, NETWORK, "client", "bench-client-1", "client", [CLIENT], root=root)
    lines.append(f"client {CLIENT}  bench-client-1,client")
    names, host = [], 10
    for service in range(5):
        for replica in range(4):
            cid = f"{service:02d}{replica:02d}" * 8
            name, alias = f"bench-svc{service}-{replica + 1}", f"alias{service}x{replica}"
            address = f"10.89.77.{host}"
            add_container(
                PROJECT, NETWORK, cid, name, f"svc{service}", [address], [alias], root=root
            )
            lines.append(f"{cid} {address}  {name},svc{service},{alias}")
            names += [name, alias]
            host += 1
        names.append(f"svc{service}")
    external = [f"ext{e}" for e in range(20)]
    lines += [f"ext{e:02d}{e:02d}{e:02d} 10.89.77.{100 + e}  ext{e}" for e in range(20)]
    (aardvark_dir / NETWORK).write_text("\n".join(lines) + "\n")
    return names, external


def wait_for(check, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")
        time.sleep(0.05)


def answers(client_ns: str, port: int, name: str) -> bool:
    probe = ["ip", "netns", "exec", client_ns, PY, "-c", SEQUENTIAL_PROBE]
    out = subprocess.run([*probe, GATEWAY, str(port), name, "1"], capture_output=True, text=True)
    return out.returncode == 0 and json.loads(out.stdout)["failed"] == 0


def cpu_seconds(pids: list[int]) -> float:
    """User + system time of these processes (all their threads) so far."""
    ticks = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def measure(client_ns: str, port: int, names: list[str], query_file: Path, pids: list[int]) -> dict:
    probe = ["ip", "netns", "exec", client_ns, PY, "-c", SEQUENTIAL_PROBE]
    seq = subprocess.run(
        [*probe, GATEWAY, str(port), ",".join(names), str(SEQUENTIAL)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    result = json.loads(seq.stdout) if seq.returncode == 0 else {"error": seq.stderr[-200:]}
    cpu_before = cpu_seconds(pids)
    load = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            client_ns,
            "dnsperf",
            "-s",
            GATEWAY,
            "-p",
            str(port),
            "-d",
            str(query_file),
            "-l",
            str(DNSPERF_SECONDS),
            "-c",
            "8",
            "-t",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=DNSPERF_SECONDS + 60,
    )
    cpu = cpu_seconds(pids) - cpu_before
    for key, pattern in (
        ("qps", r"Queries per second:\s+([\d.]+)"),
        ("mean_s", r"Average Latency \(s\):\s+([\d.]+)"),
        ("lost", r"Queries lost:\s+(\d+)"),
        ("sent", r"Queries sent:\s+(\d+)"),
        ("completed", r"Queries completed:\s+(\d+)"),
    ):
        match = re.search(pattern, load.stdout)
        result[key] = float(match.group(1)) if match else None
    # The servers' CPU a query: what the load costs them, whatever else the machine runs.
    result["cpu_us"] = cpu * 1e6 / result["completed"] if result["completed"] else None
    return result


def combine(results: list[dict]) -> dict:
    """Medians over the rounds; lost queries and failed answers are summed."""
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        return {"error": errors[0]}
    combined = {}
    for key in ("qps", "mean_s", "p50", "p99", "cpu_us"):
        values = [r[key] for r in results if r.get(key) is not None]
        combined[key] = statistics.median(values) if values else None
    for key in ("lost", "failed"):
        combined[key] = sum(r.get(key) or 0 for r in results)
    for key in ("qps", "p99"):  # the spread, to tell a change from noise
        combined[f"{key}_rounds"] = " ".join(
            f"{r[key]:.0f}" if r.get(key) else "-" for r in results
        )
    return combined


def stop(proc: subprocess.Popen | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


def stop_daemonized_aardvark(config_dir: Path) -> None:
    """aardvark-dns `run` forks and leaves; the server's pid is in its config directory."""
    try:
        pid = int((config_dir / "aardvark.pid").read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return
    if str(config_dir).encode() not in cmdline:
        return  # that pid is no longer our aardvark
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            break  # gone, waiting for its parent to reap it
        time.sleep(0.05)


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("dns_bench: run as root")
    if not shutil.which("dnsperf"):
        sys.exit("dns_bench: dnsperf missing (apt-get install dnsperf)")
    sys.path.insert(0, str(ROOT))
    tag = f"b2{os.getpid()}{os.urandom(2).hex()}"
    server_ns, client_ns = f"composer-{tag}-s", f"composer-{tag}-c"
    work = Path(tempfile.mkdtemp(prefix="composer-dns-bench-"))
    root, aardvark_dir = work / "root", work / "aardvark"
    (root / "networks").mkdir(parents=True)
    aardvark_dir.mkdir()
    ours = aardvark = log = None
    made: list[str] = []
    try:
        for ns in (server_ns, client_ns):
            ip("netns", "add", ns)
            made.append(ns)
            ip("-n", ns, "link", "set", "lo", "up")
        ip("-n", server_ns, "link", "add", "br0", "type", "bridge")
        ip("-n", server_ns, "addr", "add", f"{GATEWAY}/24", "dev", "br0")
        ip("-n", server_ns, "link", "set", "br0", "up")
        ip("-n", server_ns, "link", "add", "veth0", "type", "veth", "peer", "name", "eth0")
        ip("-n", server_ns, "link", "set", "eth0", "netns", client_ns)
        ip("-n", server_ns, "link", "set", "veth0", "master", "br0", "up")
        ip("-n", client_ns, "addr", "add", f"{CLIENT}/24", "dev", "eth0")
        ip("-n", client_ns, "link", "set", "eth0", "up")

        names, external = write_records(root, aardvark_dir)
        queries, external_queries = work / "queries", work / "queries.external"
        queries.write_text("".join(f"{n} A\n" for n in names))
        external_queries.write_text("".join(f"{n} A\n" for n in external))

        in_server = ["ip", "netns", "exec", server_ns]
        log = os.open(work / "servers.log", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
        ours = subprocess.Popen(
            [
                *in_server,
                PY,
                "-m",
                "runtime.network.dns",
                "--project",
                PROJECT,
                "--root",
                str(root),
                "--upstream",
                f"{GATEWAY}:{AARDVARK_PORT}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            cwd=ROOT,
        )
        wait_for(lambda: answers(client_ns, 53, "svc0"), "our DNS server")
        aardvark_problem = None
        if not os.access(AARDVARK, os.X_OK):
            aardvark_problem = f"{AARDVARK} not installed (podman's aardvark-dns)"
        else:
            aardvark = subprocess.Popen(
                [
                    *in_server,
                    AARDVARK,
                    "--config",
                    str(aardvark_dir),
                    "-p",
                    str(AARDVARK_PORT),
                    "run",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
            try:
                wait_for(lambda: answers(client_ns, AARDVARK_PORT, "svc0"), "aardvark-dns")
            except RuntimeError as e:
                aardvark_problem = f"aardvark-dns could not be configured: {e}"
        targets = [("ours", 53, names, queries, [ours.pid])]  # `ip netns exec` execs
        if aardvark_problem is None:
            aardvark_pid = int((aardvark_dir / "aardvark.pid").read_text())
            both = [ours.pid, aardvark_pid]
            targets += [
                ("aardvark-dns", AARDVARK_PORT, names, queries, [aardvark_pid]),
                ("ours, forwarding to aardvark", 53, external, external_queries, both),
                (
                    "aardvark-dns, same names",
                    AARDVARK_PORT,
                    external,
                    external_queries,
                    [aardvark_pid],
                ),
            ]
        # Servers take turns within a round, so machine drift spreads over all of them.
        runs: dict[str, list[dict]] = {label: [] for label, *_ in targets}
        for _ in range(ROUNDS):
            for label, port, asked, query_file, pids in targets:
                runs[label].append(measure(client_ns, port, asked, query_file, pids))
        rows = [(label, combine(results)) for label, results in runs.items()]
        report(rows, aardvark_problem)
    finally:
        stop(ours)
        stop(aardvark)
        stop_daemonized_aardvark(aardvark_dir)
        if log is not None:
            os.close(log)
        for ns in made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def report(rows: list[tuple[str, dict]], aardvark_problem: str | None) -> None:
    print(
        f"\nDNS, 21 containers' records; {ROUNDS} rounds of dnsperf {DNSPERF_SECONDS} s x 8 "
        f"clients and {SEQUENTIAL} sequential queries (medians; lost summed)"
    )
    print(
        f"  {'server':<30} {'queries/s':>10} {'mean':>8} {'p50':>8} {'p99':>8} {'lost':>6} {'bad':>4}"
        f" {'cpu/q':>7}"
    )
    base = dict(rows).get("aardvark-dns", {}).get("qps")
    for label, r in rows:
        if "error" in r:
            print(f"  {label:<30} sequential probe failed: {r['error'].strip()[-70:]}")
            continue
        qps = f"{r['qps']:.0f}" if r.get("qps") else "-"
        mean = f"{r['mean_s'] * 1e6:.0f}us" if r.get("mean_s") is not None else "-"
        p50 = f"{r['p50']:.0f}us" if r.get("p50") is not None else "-"
        p99 = f"{r['p99']:.0f}us" if r.get("p99") is not None else "-"
        lost = f"{r['lost']:.0f}" if r.get("lost") is not None else "-"
        bad = f"{r['failed']:.0f}" if r.get("failed") is not None else "-"
        cpu = f"{r['cpu_us']:.1f}us" if r.get("cpu_us") is not None else "-"
        print(f"  {label:<30} {qps:>10} {mean:>8} {p50:>8} {p99:>8} {lost:>6} {bad:>4} {cpu:>7}")
    for label, r in rows:
        if "error" not in r:
            print(f"  rounds, {label}: q/s {r['qps_rounds']}, p99 {r['p99_rounds']}")
    if base and rows[0][1].get("qps"):
        print(f"  ours / aardvark-dns queries/s: {rows[0][1]['qps'] / base:.2f}x")
    cpu_base = dict(rows).get("aardvark-dns", {}).get("cpu_us")
    if cpu_base and rows[0][1].get("cpu_us"):
        print(f"  ours / aardvark-dns server CPU a query: {rows[0][1]['cpu_us'] / cpu_base:.2f}x")
    print("  lost: dnsperf queries unanswered; bad: sequential queries failed or empty")
    print("  cpu/q: the serving processes' CPU time over the dnsperf run / queries answered")
    if aardvark_problem:
        print(f"  aardvark-dns: {aardvark_problem}")


if __name__ == "__main__":
    main()
