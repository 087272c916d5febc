"""Marks each test by its folder: unit (no root), integration (root, real kernel), e2e."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

_KINDS = ("unit", "integration", "e2e")

# A run started in the background (`make test &`) inherits SIGINT ignored, and so would
# every `composer` the tests start and then stop with Ctrl-C (SIGINT): give the children
# the default again, as an interactive run has.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        for kind in _KINDS:
            if kind in parts:
                item.add_marker(getattr(pytest.mark, kind))


@pytest.fixture(autouse=True, scope="session")
def _private_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """The validator's compiled-schema cache goes to a temporary folder, not ~/.cache."""
    previous = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if previous is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = previous


@pytest.fixture(autouse=True, scope="session")
def _crun_compatible_cgroups():
    """crun/runc (the differential tests' peers) refuse hybrid hosts whose cgroup2
    mount owns a controller; see tests/hybrid_cgroups.py."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from hybrid_cgroups import v1_for_unified_controllers

    with v1_for_unified_controllers():
        yield
