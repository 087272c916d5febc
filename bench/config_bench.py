"""`composer config` speed, side by side with docker compose v2 and podman-compose.

Peers come from ../shared/anchors/setup-anchors.sh (run it first); a missing
peer is reported as such. Ratios are against docker compose v2.

composer answers a repeated `config` from its memo (composer/cli/memo.py) when
nothing it read has changed; "composer, cold" is the same command with the
memo off (COMPOSER_CONFIG_CACHE=0): a first run, or one after an edit.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import Result, print_table, time_command, which

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "flask-redis" / "compose.yaml"
COMPOSER = str(ROOT / ".venv" / "bin" / "composer")
DOCKER_COMPOSE = which("/usr/local/lib/docker/cli-plugins/docker-compose")
PODMAN_COMPOSE = which("/opt/composer-anchors/venv/bin/podman-compose")


def hundred_services(directory: Path) -> Path:
    """A 100-service file in the style of a large real project."""
    lines = ["services:"]
    for i in range(100):
        lines += [
            f"  svc{i:03d}:",
            f"    image: example/app{i % 7}:1.{i}",
            f'    command: ["serve", "--port", "{8000 + i}"]',
            "    environment:",
            f'      SERVICE_INDEX: "{i}"',
            "      LOG_LEVEL: ${LOG_LEVEL:-info}",
            "    ports:",
            f'      - "127.0.0.1:{20000 + i}:{8000 + i}"',
            "    volumes:",
            f"      - data{i % 10}:/var/lib/app",
            "    healthcheck:",
            '      test: ["CMD", "true"]',
            "      interval: 10s",
        ]
        if i:
            lines += ["    depends_on:", f"      - svc{(i - 1) // 2:03d}"]
    lines.append("volumes:")
    lines += [f"  data{i}:" for i in range(10)]
    path = directory / "compose.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


COLD = {**os.environ, "COMPOSER_CONFIG_CACHE": "0"}


def tools() -> list[tuple[str, list[str] | None]]:
    return [
        ("composer", [COMPOSER]),
        ("composer, cold", [COMPOSER]),
        ("docker compose v2", [DOCKER_COMPOSE] if DOCKER_COMPOSE else None),
        ("podman-compose", [PODMAN_COMPOSE] if PODMAN_COMPOSE else None),
    ]


def measure(title: str, args_for: callable, runs: int) -> None:
    results = []
    for name, base in tools():
        if base is None:
            results.append(
                Result(name, None, 0, "not installed (../shared/anchors/setup-anchors.sh)")
            )
            continue
        env = COLD if name == "composer, cold" else None
        results.append(time_command(name, base + args_for(name), runs=runs, env=env))
    print_table(title, results, baseline="docker compose v2")


def main() -> None:
    runs = int(os.environ.get("RUNS", "15"))
    with tempfile.TemporaryDirectory() as tmp:
        big = hundred_services(Path(tmp))
        for label, path in (("flask-redis sample", SAMPLE), ("100 services", big)):
            measure(
                f"config -q, {label}",
                lambda n, p=path: (
                    ["-f", str(p), "config", "-q"]
                    if n != "podman-compose"  # it has no -q; it always prints
                    else ["-f", str(p), "config"]
                ),
                runs,
            )
            measure(f"config (print), {label}", lambda n, p=path: ["-f", str(p), "config"], runs)
    measure("--help", lambda n: ["--help"], runs)


if __name__ == "__main__":
    main()
