"""Project.positions: where each key of a loaded project was written, kept through
include, extends and merge (the file shown is the one that set the value), and the
up-time checks that use it (composer.containers.check_host_sources)."""

from __future__ import annotations

import os

import pytest

from composer.containers import MissingSourceError, check_build_context, check_host_sources
from composer.exit_codes import FAILURE
from composer.loader import LoadOptions, load
from composer.loader.errors import SourceCache
from composer.loader.positions import NO_POSITIONS
from composer.model import Project
from runtime.record import replace


@pytest.fixture(autouse=True)
def in_project_dir(tmp_path, monkeypatch):
    # Marks name files as a user would write them: relative to the working directory.
    monkeypatch.chdir(tmp_path)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def project_of(tmp_path, files: dict[str, str], *names: str):
    for name, text in files.items():
        write(tmp_path / name, text)
    options = LoadOptions(files=list(names), cwd=str(tmp_path), environ={})
    return load(options).project


def where(project, *path):
    mark = project.positions.mark(path)
    assert mark is not None, path
    return os.path.basename(mark.file), mark.line, mark.col


BASE = """\
services:
  web:
    image: busybox
    env_file: [base.env]
    volumes:
      - ./data:/data
      - type: bind
        source: ./logs
        target: /logs
    secrets: [token]
secrets:
  token:
    file: ./token.txt
"""


def test_each_value_is_marked_where_it_is_written(tmp_path):
    write(tmp_path / "base.env", "A=1\n")
    project = project_of(tmp_path, {"compose.yaml": BASE}, "compose.yaml")
    assert where(project, "services", "web", "volumes", 0) == ("compose.yaml", 6, 9)
    assert where(project, "services", "web", "volumes", 0, "source") == ("compose.yaml", 6, 9)
    assert where(project, "services", "web", "volumes", 1, "source") == ("compose.yaml", 8, 17)
    assert where(project, "services", "web", "env_file", 0) == ("compose.yaml", 4, 16)
    assert where(project, "secrets", "token", "file") == ("compose.yaml", 13, 11)


def test_an_override_file_marks_what_it_set_and_the_base_keeps_the_rest(tmp_path):
    write(tmp_path / "base.env", "A=1\n")
    override = "services:\n  web:\n    volumes:\n      - ./other:/data\n"
    project = project_of(
        tmp_path, {"compose.yaml": BASE, "override.yaml": override}, "compose.yaml", "override.yaml"
    )
    web = project.services["web"]
    assert web.volumes[0].source == str(tmp_path / "other")
    assert where(project, "services", "web", "volumes", 0, "source") == ("override.yaml", 4, 9)
    assert where(project, "services", "web", "volumes", 1, "source") == ("compose.yaml", 8, 17)
    assert where(project, "services", "web", "image") == ("compose.yaml", 3, 12)


def test_extends_marks_inherited_values_in_the_file_that_set_them(tmp_path):
    common = "services:\n  base:\n    image: busybox\n    volumes: ['./shared:/shared']\n"
    main = (
        "services:\n"
        "  web:\n"
        "    extends: {file: common.yaml, service: base}\n"
        "    volumes: ['./own:/own']\n"
    )
    project = project_of(tmp_path, {"compose.yaml": main, "common.yaml": common}, "compose.yaml")
    sources = [m.source for m in project.services["web"].volumes]
    assert sources == [str(tmp_path / "shared"), str(tmp_path / "own")]
    assert where(project, "services", "web", "volumes", 0, "source")[:2] == ("common.yaml", 4)
    assert where(project, "services", "web", "volumes", 1, "source")[:2] == ("compose.yaml", 4)


def test_an_included_files_services_are_marked_in_that_file(tmp_path):
    included = "services:\n  db:\n    image: busybox\n    volumes:\n      - ./db:/var/db\n"
    main = "include: [sub/db.yaml]\nservices:\n  web:\n    image: busybox\n"
    project = project_of(tmp_path, {"compose.yaml": main, "sub/db.yaml": included}, "compose.yaml")
    assert project.services["db"].volumes[0].source == str(tmp_path / "sub" / "db")
    assert where(project, "services", "db", "volumes", 0, "source") == ("db.yaml", 5, 9)


def test_no_mark_is_guessed_for_what_the_files_do_not_hold(tmp_path):
    write(tmp_path / "base.env", "A=1\n")
    project = project_of(tmp_path, {"compose.yaml": BASE}, "compose.yaml")
    positions = project.positions
    assert positions.mark(("services", "web", "volumes", 5)) is None  # e.g. `run -v`
    assert positions.mark(("services", "web", "nope")) is None
    source = ("services", "web", "volumes", 1, "source")
    assert positions.mark(source, str(tmp_path / "logs")) is not None
    assert positions.mark(source, "/somewhere/else") is None
    assert NO_POSITIONS.mark(("services",)) is None


def test_positions_do_not_change_what_a_project_equals(tmp_path):
    write(tmp_path / "base.env", "A=1\n")
    project = project_of(tmp_path, {"compose.yaml": BASE}, "compose.yaml")
    bare = replace(project, positions=NO_POSITIONS)
    assert bare == project and hash(bare) == hash(project)
    assert Project("p", "/", ()).positions is NO_POSITIONS


# --- the up-time checks ----------------------------------------------------------------------

CHECKED = """\
services:
  web:
    image: busybox
    volumes:
      - ./made:/made
      - type: bind
        source: ./long
        target: /long
      - type: bind
        source: ./allowed
        target: /allowed
        bind: {propagation: rprivate}
      - type: bind
        source: ./refused
        target: /refused
        bind:
          create_host_path: false
    secrets: [token]
    configs: [settings]
secrets:
  token:
    file: ./token.txt
configs:
  settings:
    file: ./settings.conf
"""


def test_missing_host_paths_are_made_when_allowed_else_named_at_their_line(tmp_path):
    project = project_of(tmp_path, {"compose.yaml": CHECKED}, "compose.yaml")
    with pytest.raises(MissingSourceError) as info:
        check_host_sources(project, project.services["web"])
    error = info.value
    assert error.exit_code == FAILURE
    headlines = str(error).splitlines()
    assert headlines == [
        f"compose.yaml:7:17: services.web.volumes[1]: bind source {tmp_path}/long does not exist",
        f"compose.yaml:14:17: services.web.volumes[3]: bind source {tmp_path}/refused "
        "does not exist",
        f"compose.yaml:22:11: secrets.token.file: secret file {tmp_path}/token.txt "
        "does not exist (service web uses it)",
        f"compose.yaml:25:11: configs.settings.file: config file {tmp_path}/settings.conf "
        "does not exist (service web uses it)",
    ]
    # The short syntax and a bind: block without create_host_path make the directory.
    assert (tmp_path / "made").is_dir() and (tmp_path / "allowed").is_dir()
    assert not (tmp_path / "long").exists() and not (tmp_path / "refused").exists()
    sources = SourceCache()
    sources.add("compose.yaml", CHECKED)
    shown = error.render(sources).splitlines()
    assert shown[1:4] == [
        "   7 |         source: ./long",
        "                       ^",
        "  hint: create it, or set bind.create_host_path: true",
    ]


def test_once_the_paths_exist_the_check_passes(tmp_path):
    project = project_of(tmp_path, {"compose.yaml": CHECKED}, "compose.yaml")
    for name in ("long", "refused"):
        (tmp_path / name).mkdir()
    for name in ("token.txt", "settings.conf"):
        (tmp_path / name).write_text("x")
    check_host_sources(project, project.services["web"])


def test_a_mount_the_files_do_not_hold_is_reported_without_a_place(tmp_path):
    project = project_of(tmp_path, {"compose.yaml": CHECKED}, "compose.yaml")
    web = project.services["web"]
    (tmp_path / "long").mkdir()
    (tmp_path / "token.txt").write_text("x")
    (tmp_path / "settings.conf").write_text("x")
    moved = replace(web.volumes[3], source="/nonexistent/elsewhere")
    web = replace(web, volumes=(*web.volumes[:3], moved))
    with pytest.raises(MissingSourceError) as info:
        check_host_sources(project, web)
    (problem,) = info.value.problems
    assert problem.mark is None
    assert str(info.value) == (
        "services.web.volumes[3]: bind source /nonexistent/elsewhere does not exist"
    )


def test_a_missing_build_context_is_named_at_its_line(tmp_path):
    text = "services:\n  app:\n    build:\n      context: ./nothing-here\n"
    project = project_of(tmp_path, {"compose.yaml": text}, "compose.yaml")
    with pytest.raises(MissingSourceError) as info:
        check_build_context(project, project.services["app"])
    assert str(info.value) == (
        f"compose.yaml:4:16: services.app.build.context: build context "
        f"{tmp_path}/nothing-here is not a directory"
    )
    (tmp_path / "nothing-here").mkdir()
    check_build_context(project, project.services["app"])
