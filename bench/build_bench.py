"""Dockerfile builds side by side: `composer build` (whole process) and the in-process
build() next to `podman build`, on the same multi-stage context FROM localhost/busybox.

Three cases, each RUNS times (medians): a full build (--no-cache), a rebuild with nothing
changed (all cached), and a rebuild after one copied file's content changed (the last
stage's COPY and what follows run again). Ratios against podman. Our side uses a
temporary COMPOSER_ROOT; podman's new images are removed at the end. Env: RUNS (3).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import Result, print_table

ROOT = Path(__file__).resolve().parent.parent
COMPOSER = str(ROOT / ".venv" / "bin" / "composer")
BASE = "localhost/busybox:latest"
RUNS = int(os.environ.get("RUNS", "3"))

DOCKERFILE = f"""\
FROM {BASE} AS gather
COPY data/ /data/
RUN cat /data/* | wc -c > /size && mkdir -p /out && cp /data/a.txt /out/
FROM {BASE}
COPY --from=gather /size /out/ /report/
COPY app.txt /app/app.txt
RUN wc -l /app/app.txt > /app/lines
CMD ["cat", "/report/size"]
"""


def make_context(directory: Path) -> Path:
    (directory / "data").mkdir(parents=True)
    for name in "abcd":
        (directory / "data" / f"{name}.txt").write_text(f"{name}\n" * 2000)
    (directory / "app.txt").write_text("one\n")
    (directory / "Dockerfile").write_text(DOCKERFILE)
    (directory / "compose.yaml").write_text(
        "services:\n  app:\n    build: .\n    image: benchbuild/app:latest\n"
    )
    return directory


def change_copied_file(context: Path) -> None:
    with open(context / "app.txt", "a") as fh:
        fh.write(f"{uuid.uuid4().hex}\n")  # new content: a touch alone keeps the cache


def median_of(label: str, run: Callable[[], None], prepare: Callable[[], None]) -> Result:
    samples = []
    for _ in range(RUNS):
        prepare()
        start = time.perf_counter()
        try:
            run()
        except (subprocess.CalledProcessError, OSError, RuntimeError) as e:
            return Result(label, None, 0, f"failed: {str(e)[:70]}")
        samples.append(time.perf_counter() - start)
    return Result(label, statistics.median(samples), len(samples))


def check(argv: list[str], **kwargs) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or [""])[-1]
        raise RuntimeError(f"{argv[0]} exit {proc.returncode}: {tail}")


def podman_image_ids() -> set[str]:
    out = subprocess.run(
        ["podman", "images", "-a", "-q", "--no-trunc"], capture_output=True, text=True
    )
    return set(out.stdout.split())


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("build_bench: run as root")
    sys.path.insert(0, str(ROOT))
    from compose_bench import import_busybox

    from runtime.images.build import build
    from runtime.images.store import ImageStore

    work = Path(tempfile.mkdtemp(prefix="composer-build-bench-"))
    state = work / "state"
    context = make_context(work / "context")
    env = {**os.environ, "COMPOSER_ROOT": str(state)}
    project = f"bb{uuid.uuid4().hex[:8]}"
    cli = [COMPOSER, "-f", str(context / "compose.yaml"), "-p", project, "build"]
    cli += ["--progress", "quiet"]
    has_podman = shutil.which("podman") is not None
    podman_tag = f"localhost/composer-build-bench-{project}:latest"
    podman = ["podman", "build", "-q", "-t", podman_tag, str(context)]
    before = podman_image_ids() if has_podman else set()
    try:
        import_busybox(state)
        store = ImageStore(state)

        def ours_cli(*extra: str) -> Callable[[], None]:
            return lambda: check([*cli, *extra], env=env, cwd=context)

        def ours_in_process(no_cache: bool) -> Callable[[], None]:
            return lambda: build(
                context, store=store, tags=["bench/inproc:latest"], no_cache=no_cache
            )

        def podman_run(*extra: str) -> Callable[[], None]:
            return lambda: check([podman[0], podman[1], *extra, *podman[2:]])

        nothing = lambda: None  # noqa: E731
        cases = [
            ("full build (--no-cache)", ("--no-cache",), True, nothing),
            ("no-op rebuild", (), False, nothing),
            ("rebuild, one copied file changed", (), False, lambda: change_copied_file(context)),
        ]
        for title, extra, no_cache, prepare in cases:
            rows = [median_of("composer build (whole process)", ours_cli(*extra), prepare)]
            rows.append(median_of("build() in process", ours_in_process(no_cache), prepare))
            if has_podman:
                rows.append(median_of("podman build", podman_run(*extra), prepare))
            else:
                rows.append(Result("podman build", None, 0, "podman not installed"))
            print_table(f"{title}, {RUNS} runs", rows, baseline="podman build")
    finally:
        if has_podman:
            new = podman_image_ids() - before
            if new:
                subprocess.run(["podman", "rmi", "-f", *new], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
