"""`composer up` with host files missing: each is named at its file, line and column
with the source line and a caret, like a loader error, and nothing of the service is
left made; what the file allows to be created is created. Exit status: 1 (the command
failed) for what only `up` checks, 15 (invalid configuration) for a missing env_file,
which loading already reads."""

from __future__ import annotations

from composer.exit_codes import CONFIG, FAILURE


def _failed_up(project, *, loads: bool = True) -> list[str]:
    result = project.run("up", "-d", check=False)
    assert result.returncode == (FAILURE if loads else CONFIG), result.stderr
    if loads:  # else no command gets as far as looking
        assert project.ps() == []
    return result.stderr.splitlines()


def test_a_missing_long_syntax_bind_source_is_named_at_its_line(project):
    project.write(
        "services:\n"
        "  web:\n"
        "    image: busybox:latest\n"
        "    command: [sleep, '600']\n"
        "    volumes:\n"
        "      - type: bind\n"
        "        source: ./absent\n"
        "        target: /data\n"
    )
    lines = _failed_up(project)
    absent = project.directory / "absent"
    headline = f"compose.yaml:7:17: services.web.volumes[0]: bind source {absent} does not exist"
    at = lines.index(headline)
    assert lines[at + 1 : at + 3] == ["   7 |         source: ./absent", " " * 23 + "^"]
    assert "create_host_path" in lines[at + 3]
    assert not absent.exists()


def test_the_short_syntax_creates_a_missing_bind_source(project):
    project.write(
        "services:\n"
        "  web:\n"
        "    image: busybox:latest\n"
        "    command: [sh, -c, 'ls -d /data && sleep 600']\n"
        "    volumes: ['./made/here:/data']\n"
    )
    project.run("up", "-d")
    assert (project.directory / "made" / "here").is_dir()
    project.wait_for_log("web", "/data")


def test_a_missing_secret_file_is_named_at_its_line(project):
    project.write(
        "services:\n"
        "  web:\n"
        "    image: busybox:latest\n"
        "    command: [sleep, '600']\n"
        "    secrets: [token]\n"
        "secrets:\n"
        "  token:\n"
        "    file: ./token.txt\n"
    )
    lines = _failed_up(project)
    token = project.directory / "token.txt"
    headline = (
        f"compose.yaml:8:11: secrets.token.file: secret file {token} does not exist "
        "(service web uses it)"
    )
    at = lines.index(headline)
    assert lines[at + 1 : at + 3] == ["   8 |     file: ./token.txt", " " * 17 + "^"]


def test_a_missing_env_file_is_named_at_its_line(project):
    project.write("services:\n  web:\n    image: busybox:latest\n    env_file: [./web.env]\n")
    lines = _failed_up(project, loads=False)
    headline = f"compose.yaml:4:16: services.web.env_file[0]: {project.directory}/web.env not found"
    at = lines.index(headline)
    assert lines[at + 1 : at + 3] == ["   4 |     env_file: [./web.env]", " " * 22 + "^"]


def test_a_missing_build_context_is_named_at_its_line(project):
    project.write("services:\n  app:\n    build:\n      context: ./src\n")
    lines = _failed_up(project)
    source = project.directory / "src"
    headline = (
        f"compose.yaml:4:16: services.app.build.context: build context {source} is not a directory"
    )
    at = lines.index(headline)
    assert lines[at + 1 : at + 3] == ["   4 |       context: ./src", " " * 22 + "^"]
