"""Healthchecks: the settings, and the rules that turn probe results into a status.

The shim runs the probes (an `exec` into the container); this module only decides:
when the next probe is due, and what a result does to the status. Compose and docker
semantics:

- status "starting" until the first success ("healthy") or until `retries` failures
  in a row ("unhealthy"); a success always makes it healthy again;
- during `start_period` after a start, failures do not count (the streak stays), and
  probes come every `start_interval` instead of `interval`;
- the first probe runs as soon as the container has started (our choice: a service
  is ready as soon as it says so, not an interval later);
- the last LOG_ENTRIES results are kept, each output cut to OUTPUT_LIMIT bytes.

It runs inside the shim, so it imports nothing beyond the standard library's C parts.
"""

from __future__ import annotations

# docker's defaults, in seconds
DEFAULT_INTERVAL = 30.0
DEFAULT_TIMEOUT = 30.0
DEFAULT_START_PERIOD = 0.0
DEFAULT_START_INTERVAL = 5.0
DEFAULT_RETRIES = 3

LOG_ENTRIES = 5
OUTPUT_LIMIT = 4096

STARTING = "starting"
HEALTHY = "healthy"
UNHEALTHY = "unhealthy"

_DURATIONS = ("interval", "timeout", "start_period", "start_interval")


def normalize(healthcheck) -> dict | None:
    """Settings for the shim from a dict or an object with the same attributes (such as
    composer.model.Healthcheck); None when there is no check (absent, NONE, disabled).

    test: ["CMD", prog, arg...], ["CMD-SHELL", "command"], ["NONE"] or a plain string
    (a shell command); durations in seconds, zero or None meaning docker's default.
    Returns {"argv", "interval", "timeout", "start_period", "start_interval", "retries"}.
    """
    if healthcheck is None:
        return None

    def field(name):
        if isinstance(healthcheck, dict):
            return healthcheck.get(name)
        return getattr(healthcheck, name, None)

    if field("disable"):
        return None
    argv = probe_argv(field("test"))
    if argv is None:
        return None
    settings: dict = {"argv": argv}
    defaults = (DEFAULT_INTERVAL, DEFAULT_TIMEOUT, DEFAULT_START_PERIOD, DEFAULT_START_INTERVAL)
    for name, default in zip(_DURATIONS, defaults, strict=True):
        value = field(name)
        value = default if value is None else float(value)
        if value < 0:
            raise ValueError(f"healthcheck {name} must not be negative: {value:g}")
        # Zero means "the default" in docker's API, except for the start period.
        settings[name] = value if value > 0 or name == "start_period" else default
    retries = field("retries")
    retries = DEFAULT_RETRIES if retries is None else int(retries)
    if retries < 0:
        raise ValueError(f"healthcheck retries must not be negative: {retries}")
    settings["retries"] = retries or DEFAULT_RETRIES
    return settings


def probe_argv(test) -> list[str] | None:
    """The command a probe runs; None for NONE or no test (the check is disabled)."""
    if test is None:
        return None
    if isinstance(test, str):
        return ["/bin/sh", "-c", test] if test.strip() else None
    test = [str(part) for part in test]
    if not test:
        return None
    kind, rest = test[0], test[1:]
    if kind == "NONE":
        return None
    if kind == "CMD":
        if not rest:
            raise ValueError("healthcheck test CMD needs a program")
        return rest
    if kind == "CMD-SHELL":
        if len(rest) != 1:
            raise ValueError("healthcheck test CMD-SHELL takes exactly one command string")
        return ["/bin/sh", "-c", rest[0]]
    raise ValueError(f"healthcheck test must start with CMD, CMD-SHELL or NONE, not {kind!r}")


def timeout_output(timeout: float) -> str:
    return f"Health check exceeded timeout ({timeout:g}s)"


class Health:
    """The health of one container across its runs; `record()` applies a probe result.

    Times are time.monotonic() seconds, except the RFC 3339 texts kept in the log.
    """

    def __init__(self, settings: dict) -> None:
        self.settings = settings
        self.status = STARTING
        self.failing_streak = 0
        self.log: list[dict] = []
        self.started = 0.0  # when the current run started

    def restarted(self, now: float) -> None:
        """A new run: starting again, the streak forgotten, the log kept (as docker)."""
        self.started = now
        self.status = STARTING
        self.failing_streak = 0

    def in_start_period(self, at: float) -> bool:
        return at - self.started < self.settings["start_period"]

    def next_delay(self, now: float) -> float:
        """Seconds from the end of a probe to the next one."""
        if self.status == STARTING and self.in_start_period(now):
            return self.settings["start_interval"]
        return self.settings["interval"]

    def record(self, entry: dict, probe_began: float) -> None:
        """Apply one result: entry is {"start", "end", "exit_code", "output"}, probe_began
        the monotonic time the probe started (it decides whether it was in the start
        period)."""
        output = entry.get("output", "")
        if len(output.encode()) > OUTPUT_LIMIT:
            output = output.encode()[:OUTPUT_LIMIT].decode(errors="ignore")
        self.log = [*self.log, {**entry, "output": output}][-LOG_ENTRIES:]
        if entry["exit_code"] == 0:
            self.failing_streak = 0
            self.status = HEALTHY
            return
        if self.status == STARTING and self.in_start_period(probe_began):
            return  # failures while the service boots do not count
        self.failing_streak += 1
        if self.failing_streak >= self.settings["retries"]:
            self.status = UNHEALTHY

    def as_dict(self) -> dict:
        """What state.json keeps under "health" (docker inspect's State.Health)."""
        return {"status": self.status, "failing_streak": self.failing_streak, "log": self.log}
