from __future__ import annotations

from runtime.images.obtain import sources


def order(**kwargs):
    settings = dict(
        policy="missing",
        have_local=False,
        registry_named=False,
        registries=[],
        debian=False,
        prefer_bootstrap=False,
    )
    settings.update(kwargs)
    return sources(**settings)


def test_the_local_store_answers_first_unless_the_policy_is_always():
    assert order(have_local=True) == ["local"]
    assert order(have_local=True, policy="always", registries=["r"]) == ["registry", "local"]


def test_never_looks_nowhere_else():
    assert order(policy="never") == []


def test_short_names_go_to_configured_registries_then_the_bootstrap_for_debian():
    assert order() == []
    assert order(registries=["r"]) == ["registry"]
    assert order(registry_named=True) == ["registry"]
    assert order(debian=True) == ["bootstrap"]
    assert order(debian=True, registries=["r"]) == ["registry", "bootstrap"]


def test_prefer_bootstrap_puts_debian_first():
    assert order(debian=True, registries=["r"], prefer_bootstrap=True) == ["bootstrap", "registry"]
    assert order(registries=["r"], prefer_bootstrap=True) == ["registry"]  # not Debian
