"""`composer config` answered from its memo only when every input it read is unchanged."""

from __future__ import annotations

import marshal
import os
import re
from pathlib import Path

import pytest

from composer.cli import app as cli_app
from composer.cli import memo
from composer.cli.main import main
from composer.exit_codes import CONFIG, OK

PACKAGE = Path(memo.__file__).resolve().parent.parent
# Everything `composer config` runs: the loader, the model and graph it builds, the command.
CONFIG_CODE = [
    *sorted((PACKAGE / "loader").glob("*.py")),
    *(PACKAGE / name for name in ("model.py", "graph.py", "cli/config_cmd.py")),
]


@pytest.fixture
def project(tmp_path, monkeypatch):
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "compose.yaml").write_text(
        "services:\n  web:\n    image: busybox:${TAG:-1}\n    env_file: web.env\n"
    )
    (folder / "web.env").write_text("GREETING=hi\n")
    monkeypatch.chdir(folder)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("TAG", "COMPOSE_FILE", "COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("COMPOSER_CONFIG_CACHE", raising=False)
    return folder


class Runs:
    """Runs `composer ARGS` in-process and says whether the command itself ran."""

    def __init__(self, monkeypatch, capsys) -> None:
        self.capsys = capsys
        self.loads = 0
        real = cli_app.run

        def counted(argv):
            self.loads += 1
            return real(argv)

        monkeypatch.setattr(cli_app, "run", counted)

    def __call__(self, *argv: str) -> tuple[int, str, str, bool]:
        before = self.loads
        code = main(list(argv))
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err, self.loads > before


@pytest.fixture
def cli(monkeypatch, capsys):
    return Runs(monkeypatch, capsys)


def records() -> list[Path]:
    return sorted((Path(os.environ["XDG_CACHE_HOME"]) / "composer" / "config-memo").glob("*.bin"))


def test_the_same_inputs_replay_the_same_output_without_loading(project, cli):
    first = cli("config")
    assert first[0] == OK and "GREETING: hi" in first[1] and first[3]
    second = cli("config")
    assert second[:3] == first[:3]
    assert not second[3]


def test_a_changed_file_is_read_again(project, cli):
    cli("config")
    (project / "compose.yaml").write_text("services:\n  web:\n    image: redis\n")
    code, out, _, loaded = cli("config")
    assert loaded and code == OK and "image: redis" in out


def test_a_changed_env_file_is_read_again(project, cli):
    cli("config")
    (project / "web.env").write_text("GREETING=bye\n")
    _code, out, _, loaded = cli("config")
    assert loaded and "GREETING: bye" in out


def test_a_file_that_appears_where_the_load_looked_is_read(project, cli):
    cli("config", "-q")
    (project / "compose.override.yaml").write_text("services:\n  web:\n    image: redis\n")
    assert cli("config", "-q")[3]
    assert "image: redis" in cli("config")[1]
    (project / ".env").write_text("TAG=7\n")
    code, _out, _, loaded = cli("config")
    assert loaded and code == OK


def test_only_the_variables_the_load_read_matter(project, cli, monkeypatch):
    cli("config")
    monkeypatch.setenv("SOMETHING_UNRELATED", "x")
    assert not cli("config")[3]
    monkeypatch.setenv("TAG", "2")
    _, out, _, loaded = cli("config")
    assert loaded and "busybox:2" in out
    monkeypatch.setenv("COMPOSE_PROJECT_NAME", "other")
    _code, out, _, loaded = cli("config")
    assert loaded and out.startswith("name: other\n")


def test_listing_the_whole_environment_depends_on_all_of_it(project, cli, monkeypatch):
    cli("config", "--environment")
    assert not cli("config", "--environment")[3]
    monkeypatch.setenv("SOMETHING_UNRELATED", "x")
    _code, out, _, loaded = cli("config", "--environment")
    assert loaded and "SOMETHING_UNRELATED=x" in out


def test_invalid_input_is_replayed_with_its_error(project, cli):
    (project / "compose.yaml").write_text("services:\n  web:\n    imgae: redis\n")
    first = cli("config", "-q")
    assert first[0] == CONFIG and "compose.yaml:3:5" in first[2] and first[3]
    second = cli("config", "-q")
    assert second[:3] == first[:3] and not second[3]


def test_terminals_stdin_and_output_files_are_never_recorded(project, cli, monkeypatch):
    cli("config", "-o", str(project / "out.yaml"))
    assert records() == []
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("services: {a: {image: x}}\n"))
    cli("-f", "-", "config")
    assert records() == []
    monkeypatch.setattr("sys.stdout.isatty", lambda: True)
    assert cli("config")[3] and cli("config")[3]
    assert records() == []


def test_the_memo_can_be_turned_off(project, cli, monkeypatch):
    monkeypatch.setenv("COMPOSER_CONFIG_CACHE", "0")
    cli("config")
    assert cli("config")[3]
    assert records() == []


def test_a_record_others_may_write_is_not_trusted(project, cli):
    cli("config")
    [record] = records()
    record.chmod(0o666)
    assert cli("config")[3]


def test_a_changed_program_is_not_answered_from_an_older_record(project, cli, monkeypatch):
    code_dir = project.parent / "code"
    code_dir.mkdir()
    (code_dir / "module.py").write_text("x = 1\n")
    monkeypatch.setattr(memo, "_CODE_DIRS", (str(code_dir),))
    cli("config")
    assert not cli("config")[3]
    (code_dir / "module.py").write_text("x = 22\n")
    assert cli("config")[3]


def test_a_named_users_home_makes_the_password_database_an_input(project, cli):
    (project / "compose.yaml").write_text(
        "services:\n  web:\n    image: x\n    volumes: ['~root/data:/data']\n"
    )
    cli("config", "-q")
    [record] = records()
    inputs = marshal.loads(record.read_bytes())[1]
    assert ("file", "/etc/passwd") in [(kind, path) for kind, path, _ in inputs]


def test_the_loader_probes_the_file_system_only_through_its_recorded_inputs():
    raw = re.compile(
        r"os\.path\.(isfile|isdir|exists|lexists|expanduser)\(|os\.(stat|listdir|scandir)\("
    )
    offenders = [
        f"{path.name}:{number}"
        for path in CONFIG_CODE
        if path.name != "inputs.py"
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if raw.search(line)
    ]
    assert offenders == []
