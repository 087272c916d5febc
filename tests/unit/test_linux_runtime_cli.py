"""composer-runtime's option parser (runc's command line) and its light start-up."""

from __future__ import annotations

import subprocess
import sys

import pytest

from runtime.cli import UsageError, parse_args
from runtime.oci import container


def test_global_and_command_options_in_runc_order():
    global_options = ["--root", "/r", "--log=/l", "--log-format", "json"]
    args = parse_args(
        [*global_options, "create", "-b", "/b", "--pid-file=/p", "--console-socket", "/s", "c1"]
    )
    assert (args.root, args.log, args.log_format) == ("/r", "/l", "json")
    assert (args.command, args.bundle, args.pid_file, args.console_socket, args.id) == (
        "create",
        "/b",
        "/p",
        "/s",
        "c1",
    )


def test_exec_keeps_the_command_line_of_the_process_intact():
    args = parse_args(["exec", "-t", "-e", "A=1", "--env", "B=2", "c1", "sh", "-c", "ls -l"])
    assert args.tty and args.env == ["A=1", "B=2"]
    assert (args.id, args.args) == ("c1", ["sh", "-c", "ls -l"])
    assert parse_args(["exec", "c1", "--", "ls", "--all"]).args == ["ls", "--all"]
    assert parse_args(["exec", "c1", "ls", "-h"]).args == ["ls", "-h"]  # not our --help


def test_optional_signal_and_flags():
    assert parse_args(["kill", "c1"]).signal == "SIGTERM"
    killed = parse_args(["kill", "--all", "c1", "KILL"])
    assert (killed.all, killed.signal) == (True, "KILL")
    assert parse_args(["delete", "--force", "c1"]).force
    assert parse_args(["list", "-f", "json"]).format == "json"


@pytest.mark.parametrize(
    "argv",
    [
        ["create"],
        ["state", "a", "b"],
        ["nonsense"],
        ["kill", "--nope", "x"],
        ["ps", "-f", "xml", "c"],
    ],
)
def test_bad_command_lines_are_usage_errors(argv):
    with pytest.raises(UsageError):
        parse_args(argv)


def test_signal_names_and_numbers():
    assert container.parse_signal("KILL") == 9
    assert container.parse_signal("SIGUSR1") == 10
    assert container.parse_signal("15") == 15
    with pytest.raises(container.ContainerError):
        container.parse_signal("SIGNOPE")


def test_exec_process_inherits_the_container_process():
    base = {
        "args": ["sleep", "9"],
        "env": ["PATH=/bin", "A=1"],
        "cwd": "/srv",
        "user": {"uid": 5, "gid": 5},
        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"]},
        "noNewPrivileges": True,
        "terminal": True,
    }
    merged = container.exec_process_config(
        base, {"args": ["ls"], "env": ["B=2"], "cwd": "/tmp"}, extra_caps=["CAP_CHOWN"]
    )
    assert merged["args"] == ["ls"] and merged["terminal"] is False
    assert merged["env"] == ["PATH=/bin", "A=1", "B=2"]
    assert merged["cwd"] == "/tmp" and merged["user"] == {"uid": 5, "gid": 5}
    assert merged["capabilities"]["bounding"] == ["CAP_CHOWN", "CAP_KILL"]
    assert merged["noNewPrivileges"] is True


def test_start_up_imports_stay_small():
    code = (
        "import sys, runtime.cli;"
        "heavy = {'argparse', 're', 'json', 'enum', 'subprocess', 'pyroute2', 'jsonschema',"
        " 'rich', 'networkx', 'yaml', 'shutil', 'socket', 'asyncio'} & set(sys.modules);"
        "print(sorted(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_spec_writes_a_default_config_once_and_refuses_rootless(tmp_path, capsys):
    from runtime.cli import main
    from runtime.state import read_json

    assert main(["spec", "--bundle", str(tmp_path)]) == 0
    config = read_json(tmp_path / "config.json")
    assert config["root"]["path"] == "rootfs" and config["process"]["args"]
    assert main(["spec", "--bundle", str(tmp_path)]) == 1  # never overwrites
    assert main(["spec", "--rootless", "--bundle", str(tmp_path / "x")]) == 1
    assert "rootless" in capsys.readouterr().err


def test_errors_are_one_line_and_logged_as_json(tmp_path, capsys):
    from runtime.cli import main
    from runtime.state import read_json

    log = tmp_path / "runtime.log"
    args = ["--root", str(tmp_path), "--log", str(log), "--log-format", "json"]
    assert main([*args, "state", "nothing-here"]) == 1
    assert capsys.readouterr().err.strip().endswith("'nothing-here' does not exist")
    assert read_json(log)["level"] == "error"


@pytest.mark.parametrize("argv", [["--help"], ["exec", "--help"], ["kill", "-h", "c1"], ["help"]])
def test_help_exits_zero(argv, capsys):
    with pytest.raises(SystemExit) as done:
        parse_args(argv)
    assert done.value.code == 0
    assert "usage: composer-runtime" in capsys.readouterr().out
