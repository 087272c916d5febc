"""In a user's suite, the plugin leaves our modules to the plain importer (see
composer.testing._leave_our_modules_unrewritten)."""

from __future__ import annotations

pytest_plugins = ["pytester"]

SUITE = """
import importlib


def test_our_modules_load_unrewritten():
    for name in ("composer.ops.up", "runtime.images.store", "runtime.network.dns"):
        module = importlib.import_module(name)
        assert type(module.__loader__).__name__ != "AssertionRewritingHook", name


def test_the_suites_own_asserts_are_still_rewritten():
    left, right = [1, 2], [1, 3]
    assert left == right
"""


def test_only_the_users_modules_are_rewritten(pytester):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*At index 1 diff: 2 != 3*"])
