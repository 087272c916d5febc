"""`composer config` and `composer version`, run in-process as a user would run them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from composer.cli.app import run
from composer.exit_codes import CONFIG, OK, USAGE

GOLDEN = Path(__file__).resolve().parent.parent / "golden"


@pytest.fixture
def in_case(monkeypatch):
    def enter(case: str, **env: str) -> Path:
        folder = GOLDEN / case
        monkeypatch.chdir(folder)
        for name in ("TAG", "PORT", "REPLICAS", "COMPOSE_PROFILES", "COMPOSE_FILE", "DEBUG"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        return folder

    return enter


def test_config_prints_the_normalized_project(in_case, capsys):
    in_case("web-db-cache")
    assert run(["config"]) == OK
    out = capsys.readouterr().out
    document = yaml.safe_load(out)
    assert out.startswith("name: web-db-cache\n")
    assert document["services"]["db"]["healthcheck"]["test"] == ["CMD-SHELL", "pg_isready -U shop"]
    assert document["volumes"]["pgdata"]["name"] == "web-db-cache_pgdata"


def test_config_json_is_the_same_document(in_case, capsys):
    in_case("web-db-cache")
    run(["config"])
    as_yaml = yaml.safe_load(capsys.readouterr().out)
    assert run(["config", "--format", "json"]) == OK
    assert json.loads(capsys.readouterr().out) == as_yaml


def test_quiet_prints_nothing(in_case, capsys):
    in_case("web-db-cache")
    assert run(["config", "-q"]) == OK
    assert capsys.readouterr().out == ""


def test_listings(in_case, capsys):
    in_case("profiles")
    assert run(["config", "--services"]) == OK
    assert capsys.readouterr().out.split() == ["app", "db"]
    assert run(["--profile", "debug", "config", "--services"]) == OK
    assert capsys.readouterr().out.split() == ["app", "db", "adminer", "loadgen"]
    assert run(["config", "--profiles"]) == OK
    assert capsys.readouterr().out.split() == ["bench", "debug"]
    assert run(["config", "--images"]) == OK
    assert capsys.readouterr().out.split() == ["app", "postgres:16"]


def test_global_options_after_the_command(in_case, capsys):
    in_case("profiles")
    assert run(["config", "--profile", "bench", "--services"]) == OK
    assert capsys.readouterr().out.split() == ["app", "db", "loadgen"]


def test_naming_a_service_enables_its_profile(in_case, capsys):
    in_case("profiles")
    assert run(["config", "--services", "adminer"]) == OK
    assert "adminer" in capsys.readouterr().out.split()


def test_hash_is_stable_and_follows_the_config(in_case, capsys, tmp_path):
    in_case("web-db-cache")
    assert run(["config", "--hash", "db,cache"]) == OK
    first = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert set(first) == {"db", "cache"} and all(len(h) == 64 for h in first.values())
    assert run(["config", "--hash", "*"]) == OK
    every = dict(line.split() for line in capsys.readouterr().out.splitlines())
    assert every["db"] == first["db"] and set(every) == {"web", "db", "cache"}
    assert run(["config", "--hash", "nope"]) == CONFIG
    assert "no such service: nope" in capsys.readouterr().err


def test_variables_explain_and_environment(in_case, capsys):
    in_case("interpolation", PORT="9000")
    assert run(["config", "--variables"]) == OK
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["NAME", "REQUIRED", "DEFAULT", "VALUE", "ALTERNATE", "VALUE"]
    rows = {line.split()[0]: line.split()[1:] for line in table[1:]}
    assert rows["REPLICAS"] == ["false", "2"] and rows["TAG"] == ["false", "tagged"]
    assert run(["config", "--explain", "PORT"]) == OK
    assert capsys.readouterr().out == "PORT=9000\n  from: shell environment\n"
    assert run(["config", "--explain", "TAG"]) == OK
    assert capsys.readouterr().out == "TAG=1.4.2\n  from: .env:2\n"
    assert run(["config", "--explain", "UNSET_VAR"]) == OK
    assert capsys.readouterr().out == "UNSET_VAR=fallback\n  from: default in compose.yaml:9:17\n"
    assert run(["config", "--environment"]) == OK
    assert "TAG=1.4.2\n" in capsys.readouterr().out


def test_no_interpolate_keeps_the_expressions(in_case, capsys):
    in_case("interpolation")
    assert run(["config", "--no-interpolate"]) == OK
    document = yaml.safe_load(capsys.readouterr().out)
    assert document["services"]["app"]["image"] == "example/app:${TAG}"


def test_output_file(in_case, capsys, tmp_path):
    in_case("web-db-cache")
    target = tmp_path / "out.yaml"
    assert run(["config", "-o", str(target)]) == OK
    assert capsys.readouterr().out == ""
    assert yaml.safe_load(target.read_text())["name"] == "web-db-cache"


def test_printed_config_loads_back_to_the_same_project(in_case, capsys, tmp_path, monkeypatch):
    in_case("interpolation")
    run(["config"])
    first = capsys.readouterr().out
    (tmp_path / "compose.yaml").write_text(first)
    monkeypatch.chdir(tmp_path)
    assert run(["config"]) == OK
    assert capsys.readouterr().out == first


def test_errors_strict_env_and_exit_codes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MISSING_TAG", raising=False)
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: x:${MISSING_TAG}\n")
    assert run(["config", "-q"]) == OK
    assert 'The "MISSING_TAG" variable is not set' in capsys.readouterr().err
    assert run(["config", "-q", "--strict-env"]) == CONFIG
    assert capsys.readouterr().err.startswith("compose.yaml:3:12: ")
    with pytest.raises(SystemExit) as info:
        run(["nonsense"])
    assert info.value.code == USAGE


def test_no_compose_file_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COMPOSE_FILE", raising=False)
    assert run(["config"]) == CONFIG
    err = capsys.readouterr().err
    assert "compose.yaml" in err and "Traceback" not in err


def test_version(capsys):
    assert run(["version"]) == OK
    assert capsys.readouterr().out.startswith("composer version ")
    assert run(["version", "--short"]) == OK
    short = capsys.readouterr().out.strip()
    assert run(["--version"]) == OK
    assert short in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "command", "files", "project", "extra"),
    [
        (["-f", "x.yaml", "logs", "-f", "web"], "logs", ["x.yaml"], None, {"follow": True}),
        (["-p", "up", "up", "-d"], "up", [], "up", {"detach": True}),
        (["logs", "--file", "a.yaml", "-f"], "logs", ["a.yaml"], None, {"follow": True}),
        (["config", "-p", "demo", "-q"], "config", [], "demo", {"quiet": True}),
    ],
)
def test_global_options_go_before_or_after_the_command(argv, command, files, project, extra):
    from composer.cli.app import parse

    args = parse(argv)
    assert (args.command, args.files, args.project_name) == (command, files, project)
    assert all(getattr(args, key) == value for key, value in extra.items())
