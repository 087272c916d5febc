"""Debian bootstrap: bootstrap("debian:bookworm-slim") into an empty store (mmdebstrap, the
-slim rules, the tree packed into a stored image), next to the bare tools on the same
mirror for reference: `mmdebstrap` and `debootstrap` --variant=minbase into a temporary
directory. One run each (30-60 s apiece, network-bound: the mirror is the machine's apt
source), so the ratios are rough. BENCH_QUICK=1 skips the whole bench.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import Result, print_table

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = "debian:bookworm-slim"
SUITE = "bookworm"


def timed(label: str, run) -> Result:
    start = time.perf_counter()
    try:
        run()
    except Exception as e:  # a failing tool is reported, not fatal
        return Result(label, None, 0, f"failed: {(str(e).strip().splitlines() or [''])[-1][:70]}")
    return Result(label, time.perf_counter() - start, 1)


def run_tool(argv: list[str]) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"{argv[0]} exit {proc.returncode}")


def main() -> None:
    if os.environ.get("BENCH_QUICK") == "1":
        print("bootstrap_bench: skipped (BENCH_QUICK=1; it takes 1-3 minutes)")
        return
    if os.geteuid() != 0:
        sys.exit("bootstrap_bench: run as root")
    sys.path.insert(0, str(ROOT))
    from runtime.images.bootstrap import (
        bootstrap,
        machine_sources,
        mirror_lines,
        remove_work,
    )
    from runtime.images.store import ImageStore

    work = Path(tempfile.mkdtemp(prefix="composer-bootstrap-bench-"))
    try:
        mirrors = mirror_lines(machine_sources(), SUITE)
        mirror_uri = mirrors[0].split()[1]
        print(f"mirror: {mirror_uri}")

        def ours() -> None:
            image = bootstrap(REFERENCE, ImageStore(work / "state"))
            print(f"  stored {REFERENCE}: {image.size / 1e6:.0f} MB compressed")

        rows = [timed(f"bootstrap({REFERENCE}) into a store", ours)]
        mmdebstrap = ["mmdebstrap", "--variant=minbase", "--components=main", "--mode=root"]
        mmdebstrap += [SUITE, str(work / "mmdebstrap"), *mirrors]
        debootstrap = ["debootstrap", "--variant=minbase", "--components=main"]
        debootstrap += [SUITE, str(work / "debootstrap"), mirror_uri]
        for tool, argv in (("mmdebstrap", mmdebstrap), ("debootstrap", debootstrap)):
            label = f"{tool} --variant=minbase (bare)"
            if shutil.which(tool):
                rows.append(timed(label, lambda argv=argv: run_tool(argv)))
            else:
                rows.append(Result(label, None, 0, f"{tool} not installed"))
        print_table(f"Debian {SUITE} bootstrap, 1 run each", rows, baseline=rows[-1].label)
    finally:
        remove_work(work)  # unmounts what a tool left mounted before deleting


if __name__ == "__main__":
    main()
