"""Registry pulls side by side: our pull() next to `skopeo copy ... oci:DIR`, from Debian's
docker-registry on 127.0.0.1 (plain HTTP, temporary storage, stopped at the end).

The image (~100 MB compressed: busybox plus LAYERS layers of incompressible data) is made
in a scratch store and pushed with our push(), untimed. Each run pulls into an empty
store (ours) or an empty OCI directory (skopeo); medians of RUNS, MB/s over the blobs'
compressed bytes, ratio against skopeo. skopeo's time and `composer pull`'s include
process start-up; pull()'s is the call alone. Env: RUNS (3), PULL_MB (100), LAYERS (4).
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import Result

ROOT = Path(__file__).resolve().parent.parent
COMPOSER = str(ROOT / ".venv" / "bin" / "composer")
RUNS = int(os.environ.get("RUNS", "3"))
PULL_MB = int(os.environ.get("PULL_MB", "100"))
LAYERS = int(os.environ.get("LAYERS", "4"))
REPOSITORY = "bench/pull"


def random_layer_tar(index: int, size: int) -> bytes:
    """A layer with one file of random bytes: gzip cannot shrink it, so bytes on the wire
    are the file's size."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo(f"data/blob{index}.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return buffer.getvalue()


def make_image(store) -> int:
    """The pushed image's name in `store`; returns its blobs' total size in bytes."""
    from images import BUSYBOX_CONFIG, busybox_tar

    descriptors = [store.add_layer_from_tar(io.BytesIO(busybox_tar()))[0]]
    per_layer = PULL_MB * 1024 * 1024 // LAYERS
    for index in range(LAYERS):
        layer = random_layer_tar(index, per_layer)
        descriptors.append(store.add_layer_from_tar(io.BytesIO(layer))[0])
    store.put_image(None, {"config": dict(BUSYBOX_CONFIG)}, descriptors, name="bench/pull:src")
    return sum(d.size for d in descriptors)


def timed_runs(label: str, run, fresh_target) -> Result:
    samples = []
    for _ in range(RUNS):
        target = fresh_target()
        start = time.perf_counter()
        try:
            run(target)
        except Exception as e:  # a failing peer or pull is reported, not fatal
            return Result(label, None, 0, f"failed: {str(e).splitlines()[-1][:70]}")
        finally:
            elapsed = time.perf_counter() - start
            shutil.rmtree(target, ignore_errors=True)
        samples.append(elapsed)
    return Result(label, statistics.median(samples), len(samples))


def main() -> None:
    if os.geteuid() != 0:
        sys.exit("pull_bench: run as root")
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "tests"))
    from registry_server import RegistryServer

    from runtime.images.pull import pull
    from runtime.images.push import push
    from runtime.images.registry import RegistrySettings
    from runtime.images.store import ImageStore

    work = Path(tempfile.mkdtemp(prefix="composer-pull-bench-"))
    registry = RegistryServer(work / "registry")
    settings = RegistrySettings()  # no mirrors or insecure lists from the machine's config
    counter = iter(range(1000))
    try:
        source = ImageStore(work / "source")
        total = make_image(source)
        registry.start()
        reference = f"{registry.host}/{REPOSITORY}:latest"
        push("bench/pull:src", reference, source, settings=settings)
        shutil.rmtree(work / "source")

        def ours(target: Path) -> None:
            pull(reference, ImageStore(target), settings=settings)

        compose_file = work / "compose.yaml"
        compose_file.write_text(f"services:\n  big:\n    image: {reference}\n")

        def ours_cli(target: Path) -> None:
            argv = [COMPOSER, "-f", str(compose_file), "-p", "pullbench", "pull", "-q"]
            env = {**os.environ, "COMPOSER_ROOT": str(target)}
            proc = subprocess.run(argv, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr.strip() or f"exit {proc.returncode}")

        def skopeo(target: Path) -> None:
            argv = ["skopeo", "copy", "-q", "--src-tls-verify=false"]
            argv += [f"docker://{reference}", f"oci:{target}:latest"]
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr.strip() or f"exit {proc.returncode}")

        def fresh() -> Path:
            return work / f"target-{next(counter)}"

        rows = [timed_runs("pull() in process", ours, fresh)]
        rows.append(timed_runs("composer pull (whole process)", ours_cli, fresh))
        if shutil.which("skopeo"):
            rows.append(timed_runs("skopeo copy docker:// oci:", skopeo, fresh))
        else:
            rows.append(Result("skopeo copy docker:// oci:", None, 0, "skopeo not installed"))
        report(rows, total)
    finally:
        registry.stop()
        shutil.rmtree(work, ignore_errors=True)


def report(rows: list[Result], total: int) -> None:
    mb = total / 1e6
    base = next((r.median_s for r in rows if r.label.startswith("skopeo") and r.median_s), None)
    print(f"\npull of {mb:.0f} MB ({LAYERS + 1} layers) from 127.0.0.1, {RUNS} runs")
    print(f"  {'what':<34} {'median':>10} {'MB/s':>8} {'time ratio':>11}")
    for r in rows:
        if r.median_s is None:
            print(f"  {r.label:<34} {'-':>10}  {r.note}")
            continue
        ratio = f"{r.median_s / base:.2f}x" if base else ""
        print(f"  {r.label:<34} {r.median_s:>9.2f}s {mb / r.median_s:>8.0f} {ratio:>11}")


if __name__ == "__main__":
    main()
