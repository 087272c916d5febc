"""Property: whatever a user writes, the loader answers with a project or a LoadError.

Mutated versions of realistic files must never raise anything else (no
traceback may reach a user for bad input), and every problem must carry a
location inside a file we read.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from composer.cli.app import run
from composer.loader import LoadOptions, load
from composer.loader.errors import EXIT_CONFIG, LoadError

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
SEEDS = [
    (GOLDEN / "web-db-cache" / "compose.yaml").read_text(),
    (GOLDEN / "overrides" / "compose.yaml").read_text(),
    (GOLDEN / "interpolation" / "compose.yaml").read_text(),
    (GOLDEN / "profiles" / "compose.yaml").read_text(),
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.sampled_from(
        [
            "80:80",
            "${X}",
            "${X:?boom}",
            "$${Y}",
            "1m30s",
            "512m",
            "service:db",
            "./rel:/abs:ro",
            "a=b",
            "",
            "-1",
            "0755",
            "CMD-SHELL",
            "yes",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(
            st.sampled_from(["image", "ports", "x", "test", "target", "1"]), inner, max_size=3
        ),
    ),
    max_leaves=6,
)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _replace(node, path, value):
    if not path:
        return value
    parent = node
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = value
    return node


def _check(tmp_path: Path, text: str) -> None:
    compose = tmp_path / "compose.yaml"
    compose.write_text(text)
    try:
        load(LoadOptions(cwd=str(tmp_path), environ={}))
    except LoadError as err:
        assert err.problems
        for problem in err.problems:
            assert problem.mark is None or problem.mark.file == "compose.yaml"
        assert err.render()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.sampled_from(SEEDS), data=st.data())
def test_tree_mutations_give_a_project_or_a_load_error(tmp_path, seed, data):
    tree = yaml.safe_load(seed)
    path = data.draw(st.sampled_from(list(_paths(tree))))
    tree = _replace(tree, path, data.draw(values))
    _check(tmp_path, yaml.safe_dump(tree, sort_keys=False))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(seed=st.sampled_from(SEEDS), data=st.data())
def test_text_mutations_give_a_project_or_a_load_error(tmp_path, seed, data):
    lines = seed.splitlines()
    index = data.draw(st.integers(0, len(lines) - 1))
    action = data.draw(st.sampled_from(["delete", "duplicate", "indent", "dedent", "insert"]))
    if action == "delete":
        del lines[index]
    elif action == "duplicate":
        lines.insert(index, lines[index])
    elif action == "indent":
        lines[index] = "  " + lines[index]
    elif action == "dedent":
        lines[index] = lines[index][2:]
    else:
        lines.insert(index, data.draw(st.text(alphabet=" :-[]{}$#&*!|>'\"ab1", max_size=10)))
    _check(tmp_path, "\n".join(lines) + "\n")


def test_cli_reports_bad_input_without_a_traceback(tmp_path, monkeypatch, capsys):
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    imagee: nginx\n")
    monkeypatch.chdir(tmp_path)
    assert run(["config", "-q"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    assert err.startswith("compose.yaml:3:5: ")
