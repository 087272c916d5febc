from __future__ import annotations

import pytest

from composer.loader import LoadOptions
from composer.loader.discovery import discover
from composer.loader.errors import LoadError

SERVICE = "services:\n  web:\n    image: busybox\n"


def options(cwd, **kwargs) -> LoadOptions:
    kwargs.setdefault("environ", {})
    return LoadOptions(cwd=str(cwd), **kwargs)


def write(path, text=SERVICE):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_default_file_and_its_override_in_the_working_directory(tmp_path):
    write(tmp_path / "compose.yaml")
    write(tmp_path / "compose.override.yaml", "services: {}\n")
    found = discover(options(tmp_path))
    assert found.paths() == [
        str(tmp_path / "compose.yaml"),
        str(tmp_path / "compose.override.yaml"),
    ]
    assert [f.display for f in found.files] == ["compose.yaml", "compose.override.yaml"]
    assert found.files[0].text == SERVICE
    assert found.project_dir == str(tmp_path) and found.warnings == []


def test_parent_directories_are_searched(tmp_path):
    write(tmp_path / "docker-compose.yml")
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    found = discover(options(deep))
    assert found.paths() == [str(tmp_path / "docker-compose.yml")]
    assert found.project_dir == str(tmp_path)
    assert found.files[0].directory == str(tmp_path)


def test_compose_yaml_wins_over_docker_compose_yml_with_a_warning(tmp_path):
    write(tmp_path / "compose.yaml")
    write(tmp_path / "docker-compose.yml")
    write(tmp_path / "compose.override.yml", "services: {}\n")
    write(tmp_path / "docker-compose.override.yml", "services: {}\n")
    found = discover(options(tmp_path))
    assert found.paths() == [str(tmp_path / "compose.yaml"), str(tmp_path / "compose.override.yml")]
    assert len(found.warnings) == 2
    assert "using compose.yaml" in found.warnings[0]
    assert "docker-compose.yml" in found.warnings[0]


def test_the_matching_override_name_is_preferred(tmp_path):
    write(tmp_path / "docker-compose.yml")
    write(tmp_path / "compose.override.yaml", "services: {}\n")
    write(tmp_path / "docker-compose.override.yml", "services: {}\n")
    found = discover(options(tmp_path))
    assert found.paths()[1] == str(tmp_path / "docker-compose.override.yml")


def test_no_file_lists_the_names_looked_for(tmp_path):
    with pytest.raises(LoadError) as info:
        discover(options(tmp_path))
    message = info.value.problems[0].message
    assert str(tmp_path) in message
    for name in ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"):
        assert name in message
    assert "-f" in info.value.problems[0].hint


def test_f_files_in_order_relative_to_cwd_and_shown_as_given(tmp_path):
    write(tmp_path / "compose.yaml")
    write(tmp_path / "sub" / "extra.yaml", "services: {}\n")
    found = discover(options(tmp_path, files=["sub/extra.yaml", "compose.yaml"]))
    assert found.paths() == [str(tmp_path / "sub" / "extra.yaml"), str(tmp_path / "compose.yaml")]
    assert [f.display for f in found.files] == ["sub/extra.yaml", "compose.yaml"]
    # The first file's directory is the project directory.
    assert found.project_dir == str(tmp_path / "sub")


def test_missing_f_file_is_an_error(tmp_path):
    with pytest.raises(LoadError) as info:
        discover(options(tmp_path, files=["nope.yaml"]))
    assert info.value.problems[0].message == "compose file 'nope.yaml' not found"
    (tmp_path / "dir").mkdir()
    with pytest.raises(LoadError, match="is a directory"):
        discover(options(tmp_path, files=["dir"]))


def test_stdin_is_read_and_the_project_is_the_working_directory(tmp_path):
    found = discover(options(tmp_path, files=["-"], stdin_text=SERVICE))
    assert found.paths() == ["-"]
    assert found.files[0].display == "<stdin>" and found.files[0].text == SERVICE
    assert found.files[0].directory == str(tmp_path)
    assert found.project_dir == str(tmp_path)


def test_project_directory_option_is_where_defaults_are_looked_for(tmp_path):
    write(tmp_path / "app" / "compose.yaml")
    found = discover(options(tmp_path, project_directory="app"))
    assert found.paths() == [str(tmp_path / "app" / "compose.yaml")]
    assert found.files[0].display == "app/compose.yaml"
    assert found.project_dir == str(tmp_path / "app")
    # With -f, --project-directory still names the project directory.
    write(tmp_path / "elsewhere" / "c.yaml")
    found = discover(options(tmp_path, files=["elsewhere/c.yaml"], project_directory="app"))
    assert found.project_dir == str(tmp_path / "app")


def test_compose_file_variable_from_the_shell(tmp_path):
    write(tmp_path / "a.yaml")
    write(tmp_path / "b.yaml", "services: {}\n")
    write(tmp_path / "compose.yaml")
    found = discover(options(tmp_path, environ={"COMPOSE_FILE": "a.yaml:b.yaml"}))
    assert found.paths() == [str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]
    found = discover(
        options(tmp_path, environ={"COMPOSE_FILE": "b.yaml;a.yaml", "COMPOSE_PATH_SEPARATOR": ";"})
    )
    assert found.paths() == [str(tmp_path / "b.yaml"), str(tmp_path / "a.yaml")]
    # -f wins over COMPOSE_FILE.
    found = discover(options(tmp_path, files=["compose.yaml"], environ={"COMPOSE_FILE": "a.yaml"}))
    assert found.paths() == [str(tmp_path / "compose.yaml")]


def test_compose_file_variable_from_dot_env(tmp_path):
    write(tmp_path / "a.yaml")
    write(tmp_path / "b.yaml", "services: {}\n")
    write(tmp_path / ".env", "COMPOSE_PATH_SEPARATOR=,\nCOMPOSE_FILE=b.yaml,a.yaml\n")
    found = discover(options(tmp_path))
    assert found.paths() == [str(tmp_path / "b.yaml"), str(tmp_path / "a.yaml")]
    # The shell's value wins over the file's.
    found = discover(options(tmp_path, environ={"COMPOSE_FILE": "a.yaml"}))
    assert found.paths() == [str(tmp_path / "a.yaml")]
    # --env-file replaces .env as the place to look.
    write(tmp_path / "other.env", "COMPOSE_FILE=a.yaml\n")
    found = discover(options(tmp_path, env_files=["other.env"]))
    assert found.paths() == [str(tmp_path / "a.yaml")]
    # COMPOSE_DISABLE_ENV_FILE turns the default .env off, as for interpolation.
    write(tmp_path / "compose.yaml")
    found = discover(options(tmp_path, environ={"COMPOSE_DISABLE_ENV_FILE": "1"}))
    assert found.paths() == [str(tmp_path / "compose.yaml")]


def test_compose_file_naming_a_missing_file_is_an_error(tmp_path):
    with pytest.raises(LoadError, match=r"'gone\.yaml' not found"):
        discover(options(tmp_path, environ={"COMPOSE_FILE": "gone.yaml"}))
