from __future__ import annotations

import pytest

from composer.loader import LoadOptions
from composer.loader.environment import build_environment
from composer.loader.errors import LoadError
from composer.loader.naming import normalize_name, project_name
from composer.loader.nodes import Mark
from composer.loader.parse import parse_compose

NAMED = "name: from-file\nservices: {}\n"
UNNAMED = "services: {}\n"


def name_of(tmp_path, text=UNNAMED, shell=None, dot_env=None, directory="proj", **kwargs):
    project_dir = tmp_path / directory
    project_dir.mkdir(exist_ok=True)
    if dot_env is not None:
        (project_dir / ".env").write_text(dot_env)
    shell = shell or {}
    options = LoadOptions(environ=shell, cwd=str(tmp_path), **kwargs)
    env = build_environment(shell, [], str(project_dir))
    tree = parse_compose(text, "compose.yaml")
    return project_name(options, tree, str(project_dir), env)


def test_precedence_p_then_shell_then_dot_env_then_name_then_directory(tmp_path):
    everything = {
        "shell": {"COMPOSE_PROJECT_NAME": "shell-name"},
        "dot_env": "COMPOSE_PROJECT_NAME=env-name\n",
    }
    assert name_of(tmp_path, NAMED, project_name="cli", **everything) == (
        "cli",
        "-p / --project-name",
    )
    assert name_of(tmp_path, NAMED, **everything) == (
        "shell-name",
        "COMPOSE_PROJECT_NAME (shell)",
    )
    name, source = name_of(tmp_path, NAMED, dot_env="COMPOSE_PROJECT_NAME=env-name\n")
    assert name == "env-name"
    assert source == f"COMPOSE_PROJECT_NAME ({tmp_path}/proj/.env:1)"
    assert name_of(tmp_path, NAMED, directory="p2") == ("from-file", "'name' at compose.yaml:1:7")
    assert name_of(tmp_path, UNNAMED, directory="p3") == ("p3", "directory 'p3'")


def test_an_empty_variable_does_not_count(tmp_path):
    assert name_of(tmp_path, NAMED, shell={"COMPOSE_PROJECT_NAME": ""})[0] == "from-file"


def test_directory_names_are_normalized_and_the_mapping_shown(tmp_path):
    assert name_of(tmp_path, directory="My App") == ("myapp", "directory 'My App' → 'myapp'")
    assert name_of(tmp_path, directory="_Web.Site-2") == (
        "website-2",
        "directory '_Web.Site-2' → 'website-2'",
    )


def test_a_directory_without_letters_or_digits_is_an_error_with_the_fix(tmp_path):
    with pytest.raises(LoadError) as info:
        name_of(tmp_path, directory="___")
    problem = info.value.problems[0]
    assert "cannot derive a project name from the directory '___'" in problem.message
    assert "-p NAME" in problem.hint and "name:" in problem.hint


def test_an_invalid_name_in_the_file_points_at_it(tmp_path):
    with pytest.raises(LoadError) as info:
        name_of(tmp_path, "services: {}\nname: My_App\n")
    problem = info.value.problems[0]
    assert problem.mark == Mark("compose.yaml", 2, 7)
    assert problem.path == ("name",)
    assert "invalid project name 'My_App'" in problem.message
    assert problem.hint == "write name: my_app"


def test_a_name_that_is_not_text_is_an_error(tmp_path):
    with pytest.raises(LoadError) as info:
        name_of(tmp_path, "name: [a]\n")
    assert info.value.problems[0].mark == Mark("compose.yaml", 1, 7)
    # A number is a fine name.
    assert name_of(tmp_path, "name: 42\n")[0] == "42"


@pytest.mark.parametrize(
    ("kwargs", "origin"),
    [
        ({"project_name": "Bad Name"}, "from -p"),
        ({"shell": {"COMPOSE_PROJECT_NAME": "-x"}}, "in the environment"),
        ({"dot_env": "COMPOSE_PROJECT_NAME=UPPER\n"}, ".env:1"),
    ],
)
def test_explicit_names_must_already_be_valid(tmp_path, kwargs, origin):
    with pytest.raises(LoadError) as info:
        name_of(tmp_path, **kwargs)
    problem = info.value.problems[0]
    assert problem.message.startswith("invalid project name")
    assert origin in problem.message
    assert "lowercase letters, digits" in problem.message


def test_normalize_name():
    assert normalize_name("My App") == "myapp"
    assert normalize_name("--x_y") == "x_y"
    assert normalize_name("été") == "t"
    assert normalize_name("...") == ""
