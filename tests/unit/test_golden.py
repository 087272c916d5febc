"""Realistic projects and their expected normalized output (`composer config`).

Regenerate with UPDATE_GOLDEN=1 after a deliberate change, then read the diff:
these files are the specification of what the loader produces.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from composer.cli.config_cmd import dump_yaml, project_document
from composer.loader import LoadOptions, load

GOLDEN = Path(__file__).resolve().parent.parent / "golden"

# expected file → (case folder, options)
CASES = {
    "web-db-cache/expected.yaml": ("web-db-cache", {}),
    "overrides/expected.yaml": ("overrides", {}),
    "profiles/expected.yaml": ("profiles", {}),
    "profiles/expected.debug.yaml": ("profiles", {"profiles": ["debug"]}),
    "profiles/expected.selected.yaml": ("profiles", {"selected_services": ["loadgen"]}),
    "extends/expected.yaml": ("extends", {}),
    "interpolation/expected.yaml": ("interpolation", {}),
    "include/expected.yaml": ("include", {}),
}


def render(case: str, options: dict) -> str:
    folder = GOLDEN / case
    result = load(LoadOptions(cwd=str(folder), environ={}, **options))
    # Absolute paths depend on where the checkout is; name the folder instead.
    return dump_yaml(project_document(result)).replace(str(folder), "<project>")


@pytest.mark.parametrize("expected_file", sorted(CASES))
def test_golden(expected_file: str) -> None:
    case, options = CASES[expected_file]
    actual = render(case, options)
    expected_path = GOLDEN / expected_file
    if os.environ.get("UPDATE_GOLDEN"):
        expected_path.write_text(actual)
    assert actual == expected_path.read_text()
