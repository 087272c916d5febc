"""`make bench`: every side-by-side benchmark, one after another."""

from __future__ import annotations

import runpy
from pathlib import Path

HERE = Path(__file__).resolve().parent

for script in sorted(HERE.glob("*_bench.py")):
    print(f"### {script.name}")
    runpy.run_path(str(script), run_name="__main__")
