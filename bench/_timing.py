"""Whole-process timing for side-by-side benchmarks: medians and ratios, never asserts."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from dataclasses import dataclass


@dataclass
class Result:
    label: str
    median_s: float | None
    runs: int
    note: str = ""


def time_command(
    label: str,
    argv: list[str],
    runs: int = 15,
    warmup: int = 2,
    cwd: str | None = None,
    env: dict | None = None,
) -> Result:
    """Median wall time of argv, output discarded; a failing command is reported, not timed."""
    samples = []
    for i in range(warmup + runs):
        start = time.perf_counter()
        proc = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or [""]
            return Result(label, None, 0, f"exit {proc.returncode}: {tail[0][:80]}")
        if i >= warmup:
            samples.append(elapsed)
    return Result(label, statistics.median(samples), len(samples))


def print_table(title: str, results: list[Result], baseline: str | None = None) -> None:
    base = next((r.median_s for r in results if r.label == baseline and r.median_s), None)
    print(f"\n{title}")
    print(f"  {'what':<44} {'median':>10} {'ratio':>8}")
    for r in results:
        if r.median_s is None:
            print(f"  {r.label:<44} {'-':>10} {'':>8}  {r.note}")
            continue
        ratio = f"{r.median_s / base:.2f}x" if base else ""
        print(f"  {r.label:<44} {r.median_s * 1000:>8.1f}ms {ratio:>8}")


def which(*candidates: str) -> str | None:
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None
