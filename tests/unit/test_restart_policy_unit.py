"""The shim's restart decisions: policy, attempts within a window, restart waits; and
deploy.restart_policy and `restart:` as the engine is given them."""

from __future__ import annotations

import pytest

from composer.model import RestartPolicy, Service
from composer.ops.containers import restart_policy, restart_timing
from runtime import shim


@pytest.mark.parametrize(
    ("policy", "exit_code", "restarts", "by_user", "expected"),
    [
        (("no", 0), 1, 0, False, False),
        (("always", 0), 0, 50, False, True),
        (("always", 2), 0, 1, False, True),  # deploy.restart_policy: any + max_attempts
        (("always", 2), 0, 2, False, False),
        (("on-failure", 0), 0, 0, False, False),
        (("on-failure", 0), 1, 99, False, True),
        (("on-failure", 3), 1, 2, False, True),
        (("on-failure", 3), 1, 3, False, False),
        (("unless-stopped", 0), 137, 0, True, False),  # a stop or kill through us
    ],
)
def test_should_restart(policy, exit_code, restarts, by_user, expected):
    assert shim.should_restart(policy, exit_code, restarts, by_user) is expected


def test_a_restart_counts_unless_it_outlasted_the_window():
    assert shim.counts_as_attempt(1000.0, None)  # no window: every restart counts
    assert shim.counts_as_attempt(0.5, 2.0)
    assert not shim.counts_as_attempt(2.0, 2.0)
    assert shim.counts_as_attempt(0.0, 0.0) is False  # window 0: nothing counts


def test_restart_wait_is_the_fixed_delay_else_dockers_backoff():
    assert shim.restart_wait(2.5, 40.0, 0.1) == 2.5
    assert shim.restart_wait(0.0, 40.0, 0.1) == 0.0
    waits, previous = [], 0.0
    for _ in range(12):
        previous = shim.restart_wait(None, previous, 0.1)
        waits.append(previous)
    assert waits[:4] == [0.1, 0.2, 0.4, 0.8]  # from 100 ms, doubling
    assert waits[-1] == shim.RESTART_MAX_DELAY == 60.0  # capped
    assert shim.restart_wait(None, 60.0, shim.RESTART_RESET) == 0.1  # a run of 10 s resets


def test_parse_restart_policy_refuses_what_docker_refuses():
    assert shim.parse_restart_policy("on-failure:4") == ("on-failure", 4)
    assert shim.parse_restart_policy(None) == ("no", 0)
    with pytest.raises(ValueError, match="takes no retry count"):
        shim.parse_restart_policy("always:3")
    with pytest.raises(ValueError, match="unknown restart policy"):
        shim.parse_restart_policy("sometimes")


def _service(**fields) -> Service:
    return Service(name="web", **fields)


def test_deploy_policy_brings_its_delay_window_and_attempts():
    policy = RestartPolicy(condition="any", delay=2.0, max_attempts=3, window=5.0)
    service = _service(restart_policy=policy)
    assert restart_policy(service) == "always"
    assert restart_timing(service) == {
        "restart_delay": 2.0,
        "restart_window": 5.0,
        "restart_max_attempts": 3,
    }


def test_plain_restart_keeps_dockers_backoff():
    policy = RestartPolicy(condition="any", delay=2.0)
    service = _service(restart="on-failure:2", restart_policy=policy)
    assert restart_policy(service) == "on-failure:2"
    assert restart_timing(service) == {}  # `restart:` wins, as docker compose decides
    assert restart_timing(_service()) == {}


def test_unset_delay_leaves_the_backoff_and_none_condition_means_no():
    service = _service(restart_policy=RestartPolicy(condition="none"))
    assert restart_policy(service) == "no"
    assert restart_timing(service)["restart_delay"] is None
