from __future__ import annotations

import os

import pytest

from composer.loader.environment import SHELL, Explanation, build_environment
from composer.loader.errors import LoadError, display_name
from composer.loader.interpolate import interpolate
from composer.loader.nodes import Mark
from composer.loader.parse import parse_compose


@pytest.fixture
def project(tmp_path):
    folder = tmp_path / "proj"
    folder.mkdir()
    return folder


def write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_dot_env_of_the_project_is_read_when_no_env_file_is_given(project, tmp_path):
    write(project / ".env", "A=from-dotenv\nB=from-dotenv\n")
    env = build_environment({"B": "from-shell"}, [], str(project), cwd=str(tmp_path))
    assert env.lookup("A") == "from-dotenv"
    assert env.lookup("B") == "from-shell"  # the shell always wins
    assert env.lookup("C") is None
    assert env.files == [display_name(str(project / ".env"))]


def test_env_files_replace_dot_env_and_later_ones_win(project, tmp_path):
    write(project / ".env", "DOTENV=yes\n")
    write(tmp_path / "one.env", "A=1\nB=1\nSHELLY=file\n")
    write(tmp_path / "two.env", "B=2\nC=${A}-${B}\n")
    env = build_environment(
        {"SHELLY": "shell"}, ["one.env", "two.env"], str(project), cwd=str(tmp_path)
    )
    assert env.as_dict() == {"A": "1", "B": "2", "C": "1-2", "SHELLY": "shell"}
    assert env.lookup("DOTENV") is None  # .env only counts when no --env-file is given


def test_values_in_env_files_see_the_shell_first(project):
    write(project / ".env", "A=file\nB=${A}\nHOME_COPY=$HOME\n")
    env = build_environment({"A": "shell", "HOME": "/root"}, [], str(project))
    assert env.lookup("B") == "shell"
    assert env.lookup("HOME_COPY") == "/root"


def test_a_missing_env_file_is_an_error(project, tmp_path):
    write(tmp_path / "ok.env", "A=1\n")
    with pytest.raises(LoadError) as info:
        build_environment({}, ["ok.env", "nope.env"], str(project), cwd=str(tmp_path))
    (problem,) = info.value.problems
    assert problem.message == f"env file nope.env not found ({tmp_path / 'nope.env'})"
    assert "current directory" in problem.hint


def test_an_env_file_that_is_a_directory_is_an_error(project, tmp_path):
    (tmp_path / "dir.env").mkdir()
    with pytest.raises(LoadError) as info:
        build_environment({}, [str(tmp_path / "dir.env")], str(project))
    assert "is a directory" in info.value.problems[0].message


def test_a_missing_dot_env_is_fine_and_a_dot_env_directory_is_ignored(project):
    assert build_environment({}, [], str(project)).as_dict() == {}
    (project / ".env").mkdir()
    assert build_environment({"X": "1"}, [], str(project)).as_dict() == {"X": "1"}


def test_compose_disable_env_file_skips_dot_env(project):
    write(project / ".env", "A=1\n")
    env = build_environment({"COMPOSE_DISABLE_ENV_FILE": "true"}, [], str(project))
    assert env.lookup("A") is None
    env = build_environment({"COMPOSE_DISABLE_ENV_FILE": "0"}, [], str(project))
    assert env.lookup("A") == "1"
    with pytest.raises(LoadError):
        build_environment({"COMPOSE_DISABLE_ENV_FILE": "maybe"}, [], str(project))


def test_errors_in_env_files_point_into_them(project, tmp_path):
    path = write(tmp_path / "bad.env", "OK=1\nNOT OK=2\n")
    with pytest.raises(LoadError) as info:
        build_environment({}, [path], str(project))
    (problem,) = info.value.problems
    assert problem.mark.file == display_name(str(path))
    assert (problem.mark.line, problem.mark.col) == (2, 1)


def test_an_env_file_that_is_not_utf8_names_the_byte(project):
    (project / ".env").write_bytes(b"A=1\nB=caf\xe9\n")
    with pytest.raises(LoadError) as info:
        build_environment({}, [], str(project))
    problem = info.value.problems[0]
    assert (problem.mark.line, problem.mark.col) == (2, 6)


def test_explain_names_the_source(project):
    write(project / ".env", "# comment\nFROM_FILE=f\nBOTH=file\n")
    env = build_environment({"BOTH": "shell"}, [], str(project))
    dotenv = display_name(str(project / ".env"))
    assert env.explain("FROM_FILE") == Explanation("FROM_FILE", "f", f"{dotenv}:2")
    assert env.explain("BOTH") == Explanation("BOTH", "shell", SHELL)
    assert env.explain("NOPE") == Explanation("NOPE", None, "not set")
    assert str(env.explain("FROM_FILE")) == f"FROM_FILE='f'  # {dotenv}:2"


def test_explain_reports_a_default_that_interpolation_used(project):
    env = build_environment({"EMPTY": "", "SET": "yes"}, [], str(project))
    tree = parse_compose("a: ${PORT:-80}\nb: ${EMPTY:-e}\nc: ${SET:-no}\n", "c.yaml")
    interpolate(tree, env)
    assert env.explain("PORT") == Explanation("PORT", "80", "default in c.yaml:1:4")
    assert env.explain("EMPTY") == Explanation("EMPTY", "e", "default in c.yaml:2:4")
    assert env.explain("SET") == Explanation("SET", "yes", SHELL)  # its default went unused


def test_profiles_and_settings(project):
    env = build_environment(
        {"COMPOSE_PROFILES": " debug, ,frontend ", "COMPOSE_PROJECT_NAME": "demo"}, [], str(project)
    )
    assert env.profiles() == ["debug", "frontend"]
    assert env.get("COMPOSE_PROJECT_NAME") == "demo"
    assert env.get("COMPOSE_FILE") is None
    assert env.get("COMPOSE_PATH_SEPARATOR", ":") == ":"
    assert build_environment({}, [], str(project)).profiles() == []


def test_profiles_can_come_from_dot_env(project):
    write(project / ".env", "COMPOSE_PROFILES=a,b\n")
    assert build_environment({}, [], str(project)).profiles() == ["a", "b"]


def test_child_environment_of_an_included_project(project, tmp_path):
    write(project / ".env", "SHARED=parent\nPARENT_ONLY=p\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub / ".env", "SHARED=child\nCHILD_ONLY=c-${PARENT_ONLY}\n")
    parent = build_environment({"SHELL_VAR": "s"}, [], str(project), strict=True)
    child = parent.child(str(sub))
    # The parent's resolved values win; the child's .env fills in the rest.
    assert child.lookup("SHARED") == "parent"
    assert child.lookup("CHILD_ONLY") == "c-p"
    assert child.lookup("SHELL_VAR") == "s"
    assert parent.lookup("CHILD_ONLY") is None
    assert child.project_dir == str(sub)
    assert child.strict is True
    assert child.explain("CHILD_ONLY").source == f"{display_name(str(sub / '.env'))}:2"
    # Warnings land in one list, once per name across both.
    parent.report_unset("X", None)
    child.report_unset("X", None)
    child.report_unset("Y", None)
    assert parent.warnings == child.warnings and len(parent.warnings) == 2


def test_child_with_explicit_env_files(project, tmp_path):
    write(project / "inc.env", "FROM_INC=1\n")
    sub = tmp_path / "sub"
    sub.mkdir()
    write(sub / ".env", "FROM_SUB_DOTENV=1\n")
    parent = build_environment({}, [], str(project))
    child = parent.child(str(sub), ["inc.env", os.devnull])
    assert child.lookup("FROM_INC") == "1"
    assert child.lookup("FROM_SUB_DOTENV") is None  # explicit files replace .env
    where = Mark("compose.yaml", 3, 14)
    with pytest.raises(LoadError) as info:
        parent.child(str(sub), ["missing.env"], mark=where, path=("include", 0, "env_file"))
    (problem,) = info.value.problems
    assert problem.mark == where and problem.path == ("include", 0, "env_file")
    assert problem.message.startswith("env file missing.env not found")


def test_strict_is_kept(project):
    assert build_environment({}, [], str(project), strict=True).strict is True
    assert build_environment({}, [], str(project)).strict is False


def test_unset_variables_in_env_files_warn_once_like_the_compose_file(project):
    write(project / ".env", "A=${NOPE}\nB=$NOPE\n")
    env = build_environment({}, [], str(project))
    dotenv = display_name(str(project / ".env"))
    assert env.warnings == [
        f'{dotenv}:1:3: The "NOPE" variable is not set. Defaulting to a blank string.'
    ]
    tree = parse_compose("x: $NOPE\n", "c.yaml")
    interpolate(tree, env)
    assert len(env.warnings) == 1
