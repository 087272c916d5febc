"""Container start cost: `composer-runtime` next to crun and runc on the same bundles.

Two bundles, one busybox rootfs running `true`:
  runc-spec   `runc spec`-like config (no seccomp), as /work/shared/anchors/runtime-floor.sh
  docker      runtime.oci.spec.build_config: Docker's default capabilities, masked paths
              and seccomp profile (what the engine runs)
Per runtime and bundle: `run` (create+start+wait+delete in one command) and
create/start/delete as three commands. Every command runs twice to warm up, then the
commands take turns, one run each, ROUNDS times (default RUNS), in a new order each
round: a shared machine's load changes within seconds, and blocks of one command each
caught different loads (their ratios moved by 10-20% from one bench run to the next).
Then the engine's start (shim + create + start, until the shim reports the container
running) of a `sleep` container under each runtime. Medians; ratios against crun and runc;
"cpu ms" is user+sys time of a command's whole process tree (steadier on a busy machine).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from rootfs import make_busybox_rootfs  # noqa: E402

RUNTIME = str(ROOT / ".venv" / "bin" / "composer-runtime")
RUNS = int(os.environ.get("RUNS", "30"))
ENGINE_RUNS = int(os.environ.get("ENGINE_RUNS", "10"))
ROUNDS = int(os.environ.get("ROUNDS", RUNS))
PEERS = (("crun", "crun"), ("runc", "runc"), ("composer-runtime", RUNTIME))
# More command rows for an A/B of a change: EXTRA_RUNTIMES="before=/path/to/old/runtime"
EXTRA = [
    tuple(item.split("=", 1)) for item in os.environ.get("EXTRA_RUNTIMES", "").split(",") if item
]


def make_bundles(directory: Path) -> dict[str, Path]:
    from runtime.oci.spec import ContainerSpec, build_config, default_spec

    rootfs = make_busybox_rootfs(directory / "rootfs")
    runc_spec = default_spec(["true"])
    runc_spec["ociVersion"] = "1.0.2"  # what Debian 12's crun and runc accept
    runc_spec["root"] = {"path": str(rootfs), "readonly": True}
    docker = build_config(ContainerSpec(rootfs=str(rootfs), args=["true"]))
    bundles = {}
    for name, config in (("runc-spec", runc_spec), ("docker", docker)):
        bundle = directory / name
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(config))
        bundles[name] = bundle
    return bundles


def commands(bundles: dict[str, Path], state: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for bundle_name, bundle in bundles.items():
        for label, binary in [*PEERS, *EXTRA]:
            if not shutil.which(binary):
                continue
            root = state / label
            cid = f"bench-{os.getpid()}-{label}-{bundle_name}"
            out[f"{label} run ({bundle_name})"] = [
                binary,
                "--root",
                str(root),
                "run",
                "--bundle",
                str(bundle),
                cid,
            ]
            out[f"{label} create+start+delete ({bundle_name})"] = [
                "sh",
                "-c",
                f"{binary} --root {root} create --bundle {bundle} {cid}c && "
                f"{binary} --root {root} start {cid}c && "
                f"{binary} --root {root} delete --force {cid}c",
            ]
    return out


def once(argv: list[str]) -> tuple[float, float]:
    """(wall, cpu) seconds of one command; cpu is user+sys of its whole process tree, far
    less moved than wall time by other work on a shared machine."""
    start = time.perf_counter()
    child = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _pid, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise subprocess.CalledProcessError(os.waitstatus_to_exitcode(status), argv)
    return wall, usage.ru_utime + usage.ru_stime


def engine_starts(rootfs: Path, state: Path) -> dict[str, list[float]]:
    """Engine.start of a `sleep` container per runtime (the shim reports it running)."""
    from runtime.engine import Engine
    from runtime.oci.spec import ContainerSpec

    samples: dict[str, list[float]] = {}
    for label, binary in PEERS:  # an extra runtime would run under today's shim: no A/B
        if not shutil.which(binary):
            continue
        engine = Engine(state / f"engine-{label}", runtime=label)
        times = samples.setdefault(f"engine start: {label}", [])
        for i in range(ENGINE_RUNS + 1):
            cid = engine.create(ContainerSpec(rootfs=str(rootfs), args=["sleep", "60"]))
            try:
                start = time.perf_counter()
                engine.start(cid)
                if i:  # the first is warm-up
                    times.append(time.perf_counter() - start)
            finally:
                engine.remove(cid, force=True)
    return samples


def report(samples: dict[str, list[float]], cpu: dict[str, list[float]]) -> None:
    def base(peer: str, label: str) -> float | None:
        for prefix, _binary in sorted([*PEERS, *EXTRA], key=lambda p: -len(p[0])):
            if label.startswith(prefix) or label.startswith(f"engine start: {prefix}"):
                twin = label.replace(prefix, peer, 1)
                values = samples.get(twin)
                return statistics.median(values) if values else None
        return None

    header = f"{'command':52s} {'median ms':>10s} {'min':>7s} {'x crun':>7s} {'x runc':>7s}"
    print(header + f" {'cpu ms':>7s}")
    for label, values in samples.items():
        median = statistics.median(values)
        ratios = []
        for peer in ("crun", "runc"):
            reference = base(peer, label)
            ratios.append(f"{median / reference:7.2f}" if reference else f"{'-':>7s}")
        used = f"{statistics.median(cpu[label]) * 1e3:7.1f}" if cpu.get(label) else f"{'-':>7s}"
        line = f"{label:52s} {median * 1e3:10.1f} {min(values) * 1e3:7.1f} {' '.join(ratios)}"
        print(f"{line} {used}")


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("runtime_bench needs root")
    # Bytecode up front: where PYTHONDONTWRITEBYTECODE is set every start would recompile.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "runtime")], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        bundles = make_bundles(Path(tmp))
        state = Path(tmp) / "state"
        cmds = commands(bundles, state)
        samples: dict[str, list[float]] = {label: [] for label in cmds}
        cpu: dict[str, list[float]] = {label: [] for label in cmds}
        order = list(cmds.items())
        for round_index in range(ROUNDS):
            # A new order each round: the kernel's work left behind by a container's end
            # (network namespace teardown runs in a kworker) falls on whatever runs next.
            random.Random(round_index).shuffle(order)
            for label, argv in order:
                for i in range(RUNS // ROUNDS + (2 if round_index == 0 else 0)):
                    elapsed, used = once(argv)
                    if round_index or i >= 2:  # first two are warm-up
                        samples[label].append(elapsed)
                        cpu[label].append(used)
        samples.update(engine_starts(Path(tmp) / "rootfs", state))
    report(samples, cpu)


if __name__ == "__main__":
    main()
