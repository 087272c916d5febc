"""Healthcheck settings and status rules (runtime.health) and the restart policy rules
(runtime.shim): pure logic, no processes."""

from __future__ import annotations

import pytest

from runtime import health
from runtime.health import HEALTHY, STARTING, UNHEALTHY, Health, normalize, probe_argv
from runtime.shim import next_backoff, parse_restart_policy, should_restart


def test_probe_argv_forms():
    assert probe_argv(["CMD", "curl", "-f", "http://x"]) == ["curl", "-f", "http://x"]
    assert probe_argv(["CMD-SHELL", "test -f /tmp/ok"]) == ["/bin/sh", "-c", "test -f /tmp/ok"]
    assert probe_argv("test -f /tmp/ok") == ["/bin/sh", "-c", "test -f /tmp/ok"]
    assert probe_argv(["NONE"]) is None
    assert probe_argv([]) is None
    assert probe_argv(None) is None


@pytest.mark.parametrize(
    "test", [["CMD"], ["CMD-SHELL"], ["CMD-SHELL", "a", "b"], ["SHELL", "x"], ["curl"]]
)
def test_bad_tests_are_refused(test):
    with pytest.raises(ValueError):
        probe_argv(test)


def test_normalize_fills_docker_defaults():
    settings = normalize({"test": ["CMD", "true"]})
    assert settings == {
        "argv": ["true"],
        "interval": 30.0,
        "timeout": 30.0,
        "start_period": 0.0,
        "start_interval": 5.0,
        "retries": 3,
    }


def test_normalize_reads_an_object_and_zero_means_default():
    class Check:  # shaped like composer.model.Healthcheck
        test = ("CMD-SHELL", "true")
        interval = 0
        timeout = 2
        start_period = 0
        start_interval = None
        retries = 0
        disable = False

    settings = normalize(Check())
    assert settings["interval"] == health.DEFAULT_INTERVAL
    assert settings["timeout"] == 2.0
    assert settings["start_period"] == 0.0
    assert settings["retries"] == health.DEFAULT_RETRIES


def test_disabled_checks_normalize_to_none():
    assert normalize(None) is None
    assert normalize({"test": ["NONE"]}) is None
    assert normalize({"test": ["CMD", "true"], "disable": True}) is None


def test_negative_settings_are_refused():
    with pytest.raises(ValueError, match="interval"):
        normalize({"test": "true", "interval": -1})
    with pytest.raises(ValueError, match="retries"):
        normalize({"test": "true", "retries": -2})


def _entry(code: int, output: str = "") -> dict:
    return {"start": "s", "end": "e", "exit_code": code, "output": output}


def _health(**overrides) -> Health:
    settings = normalize({"test": "true", "retries": 3, **overrides})
    h = Health(settings)
    h.restarted(100.0)
    return h


def test_starting_to_unhealthy_after_retries_then_healthy():
    h = _health()
    seen = []
    for code in (1, 1, 1, 1, 0):
        h.record(_entry(code), probe_began=200.0)
        seen.append((h.status, h.failing_streak))
    assert seen == [
        (STARTING, 1),
        (STARTING, 2),
        (UNHEALTHY, 3),
        (UNHEALTHY, 4),
        (HEALTHY, 0),
    ]


def test_failures_in_start_period_do_not_count_but_a_success_does():
    h = _health(start_period=10)
    h.record(_entry(1), probe_began=105.0)
    h.record(_entry(1), probe_began=109.9)
    assert (h.status, h.failing_streak) == (STARTING, 0)
    h.record(_entry(1), probe_began=110.0)  # the period is over
    assert (h.status, h.failing_streak) == (STARTING, 1)
    h.record(_entry(0), probe_began=111.0)
    assert h.status == HEALTHY


def test_failures_count_in_start_period_once_healthy():
    h = _health(start_period=60, retries=1)
    h.record(_entry(0), probe_began=101.0)
    h.record(_entry(1), probe_began=102.0)
    assert (h.status, h.failing_streak) == (UNHEALTHY, 1)


def test_start_interval_applies_while_starting_in_the_start_period():
    h = _health(start_period=10, start_interval=0.5, interval=30)
    assert h.next_delay(101.0) == 0.5
    assert h.next_delay(111.0) == 30  # period over
    h.record(_entry(0), probe_began=102.0)
    assert h.next_delay(103.0) == 30  # healthy: the normal interval


def test_log_keeps_the_last_five_and_cuts_output():
    h = _health()
    for i in range(7):
        h.record(_entry(1, f"run {i}"), probe_began=200.0)
    assert [e["output"] for e in h.log] == [f"run {i}" for i in range(2, 7)]
    h.record(_entry(1, "é" * 3000), probe_began=200.0)  # 6000 bytes of UTF-8
    assert len(h.log[-1]["output"].encode()) <= health.OUTPUT_LIMIT
    assert h.log[-1]["output"] == "é" * (health.OUTPUT_LIMIT // 2)


def test_restart_resets_status_and_streak_but_keeps_log():
    h = _health(retries=1)
    h.record(_entry(1), probe_began=200.0)
    assert h.status == UNHEALTHY
    h.restarted(300.0)
    assert h.as_dict() == {"status": STARTING, "failing_streak": 0, "log": h.log}
    assert len(h.log) == 1


def test_restart_policy_parsing():
    assert parse_restart_policy(None) == ("no", 0)
    assert parse_restart_policy("always") == ("always", 0)
    assert parse_restart_policy("on-failure") == ("on-failure", 0)
    assert parse_restart_policy("on-failure:2") == ("on-failure", 2)
    assert parse_restart_policy("unless-stopped") == ("unless-stopped", 0)
    for bad in ("sometimes", "always:3", "on-failure:x", "on-failure:-1"):
        with pytest.raises(ValueError):
            parse_restart_policy(bad)


def test_should_restart_rules():
    assert not should_restart(("no", 0), 1, 0, False)
    assert should_restart(("always", 0), 0, 99, False)
    assert should_restart(("unless-stopped", 0), 0, 0, False)
    assert not should_restart(("always", 0), 1, 0, True)  # the user stopped it
    assert not should_restart(("unless-stopped", 0), 137, 0, True)
    assert should_restart(("on-failure", 2), 1, 1, False)
    assert not should_restart(("on-failure", 2), 1, 2, False)  # retries used up
    assert not should_restart(("on-failure", 2), 0, 0, False)  # success
    assert should_restart(("on-failure", 0), 1, 1000, False)  # no limit


def test_backoff_doubles_caps_and_resets():
    delays = []
    delay = 0.0
    for _ in range(12):
        delay = next_backoff(delay, ran_for=0.5)
        delays.append(delay)
    assert delays[:4] == [0.1, 0.2, 0.4, 0.8]
    assert delays[-1] == 60.0 and max(delays) == 60.0
    assert next_backoff(60.0, ran_for=10.0) == 0.1  # a run of 10 s resets it
