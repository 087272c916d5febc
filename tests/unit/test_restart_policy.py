"""deploy.restart_policy and `restart:` as the engine is given them."""

from __future__ import annotations

from composer.model import RestartPolicy, Service
from composer.ops.containers import restart_policy, restart_timing


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
