"""The container commands without a kernel: argument parsing, the one-off service a
`run` makes, path resolution inside a container's files, events from state changes,
process rows and the project list."""

from __future__ import annotations

import json
import os
import time

import pytest

from composer.cli import container_cmds
from composer.cli.app import build_parser
from composer.model import FrozenMap, Port, Project, Service
from composer.ops import commands
from composer.ops.project import OperationError
from composer.ops.run import RunRequest, oneoff_service


def parse(*argv: str):
    return build_parser().parse_args(list(argv))


# -- argument parsing ----------------------------------------------------------------------


def test_exec_passes_everything_after_the_service_to_the_command():
    args = parse("exec", "-T", "-e", "A=1", "-e", "B=2", "-u", "1:2", "web", "ls", "-la", "-e")
    assert args.command == "exec"
    assert args.service == "web" and args.argv == ["ls", "-la", "-e"]
    assert args.env == ["A=1", "B=2"] and args.user == "1:2" and args.no_tty
    assert args.index == 1 and not args.privileged


def test_run_p_publishes_and_project_name_stays_global():
    args = parse(
        "--project-name", "shop", "run", "--rm", "-p", "8080:80", "-v", "/a:/b", "web", "sh"
    )
    assert args.project_name == "shop"
    assert args.publish == ["8080:80"] and args.volume == ["/a:/b"] and args.rm
    assert args.service == "web" and args.argv == ["sh"]


def test_kill_defaults_to_sigkill_and_wait_needs_a_service():
    assert parse("kill").signal == "SIGKILL"
    with pytest.raises(SystemExit):
        parse("wait")


def test_no_terminal_with_T_or_detach():
    assert not container_cmds.wants_terminal(parse("exec", "-T", "web", "sh"))
    assert not container_cmds.wants_terminal(parse("exec", "-d", "web", "sh"))


@pytest.mark.parametrize(
    ("argument", "side"),
    [
        ("web:/etc/hosts", ("web", "/etc/hosts")),
        ("web:relative", ("web", "relative")),
        ("./web:/x", None),
        ("/tmp/a:b", None),
        ("plain", None),
        (":/x", None),
    ],
)
def test_cp_tells_container_paths_from_host_paths(argument, side):
    assert container_cmds.container_side(argument) == side


def test_until_takes_a_duration_from_now_or_a_time():
    now = time.time_ns()
    ahead = container_cmds.until_time("30s")
    assert now + 29_000_000_000 < ahead < now + 60_000_000_000
    assert container_cmds.until_time("2026-01-02T03:04:05Z") == 1767323045 * 10**9
    assert container_cmds.until_time("1767323045") == 1767323045 * 10**9


# -- the one-off service ---------------------------------------------------------------------


def _project(tmp_path) -> tuple[Project, Service]:
    service = Service(
        name="web",
        image="busybox",
        command=("serve",),
        environment=FrozenMap({"KEEP": "1", "OVER": "old"}),
        ports=(Port(target=80, published="8080"),),
        container_name="fixed",
    )
    project = Project(
        name="shop",
        project_dir=str(tmp_path),
        config_files=(str(tmp_path / "compose.yaml"),),
        services=FrozenMap({"web": service}),
    )
    return project, service


def test_oneoff_has_no_ports_unless_asked_and_no_fixed_name(tmp_path):
    project, service = _project(tmp_path)
    plain = oneoff_service(project, service, RunRequest(service="web"))
    assert plain.ports == () and plain.container_name is None
    assert plain.command == ("serve",)
    both = oneoff_service(
        project,
        service,
        RunRequest(service="web", service_ports=True, publish=["127.0.0.1:9000:90/udp"]),
    )
    assert both.ports == (
        Port(target=80, published="8080"),
        Port(target=90, published="9000", host_ip="127.0.0.1", protocol="udp"),
    )


def test_oneoff_environment_command_entrypoint_and_volumes(tmp_path, monkeypatch):
    project, service = _project(tmp_path)
    monkeypatch.setenv("FROM_SHELL", "yes")
    monkeypatch.delenv("NOT_SET", raising=False)
    request = RunRequest(
        service="web",
        command=["echo", "hi"],
        entrypoint=[],
        env=["OVER=new", "FROM_SHELL", "NOT_SET", "EMPTY="],
        volumes=["./data:/data:ro", "cache:/cache"],
        user="1000",
        workdir="/srv",
    )
    oneoff = oneoff_service(project, service, request)
    assert dict(oneoff.environment) == {
        "KEEP": "1",
        "OVER": "new",
        "FROM_SHELL": "yes",
        "EMPTY": "",
    }
    assert oneoff.command == ("echo", "hi") and oneoff.entrypoint == ()
    assert (oneoff.user, oneoff.working_dir) == ("1000", "/srv")
    bind, volume = oneoff.volumes
    assert (bind.type, bind.source, bind.target, bind.read_only) == (
        "bind",
        str(tmp_path / "data"),
        "/data",
        True,
    )
    assert (tmp_path / "data").is_dir()  # a missing bind source is made, as compose does
    assert (volume.type, volume.source, volume.target) == ("volume", "cache", "/cache")


def test_bad_publish_or_volume_is_an_operation_error(tmp_path):
    project, service = _project(tmp_path)
    with pytest.raises(OperationError, match="-p nope"):
        oneoff_service(project, service, RunRequest(service="web", publish=["nope"]))
    with pytest.raises(OperationError, match="-v a:b"):
        oneoff_service(project, service, RunRequest(service="web", volumes=["a:b"]))


# -- paths inside a container ----------------------------------------------------------------


@pytest.fixture
def container_files(tmp_path):
    bundle = tmp_path / "bundle"
    rootfs = tmp_path / "rootfs"
    volume = tmp_path / "volume"
    for d in (bundle, rootfs / "etc", rootfs / "tmp", rootfs / "data", volume / "sub"):
        d.mkdir(parents=True)
    (rootfs / "etc" / "passwd").write_text("root:x:0:0::/:/bin/sh\n")
    (volume / "sub" / "file").write_text("in the volume\n")
    (bundle / "config.json").write_text(
        json.dumps(
            {
                "root": {"path": str(rootfs)},
                "mounts": [
                    {"destination": "/data", "type": "bind", "source": str(volume)},
                    {"destination": "/run", "type": "tmpfs", "source": "tmpfs"},
                ],
            }
        )
    )
    os.symlink("/", rootfs / "tmp" / "root")
    os.symlink("../../../../../etc", rootfs / "tmp" / "up")
    os.symlink("/data/sub", rootfs / "tmp" / "insub")
    os.symlink("loop2", rootfs / "tmp" / "loop1")
    os.symlink("loop1", rootfs / "tmp" / "loop2")
    info = {"id": "c" * 64, "name": "shop-web-1", "bundle": str(bundle)}
    return commands.ContainerFiles(info), rootfs, volume


def test_links_resolve_inside_the_container(container_files):
    files, rootfs, _volume = container_files
    assert files.resolve("/tmp/root/etc/passwd") == "/etc/passwd"
    assert files.resolve("/tmp/up/passwd") == "/etc/passwd"  # `..` stops at its /
    assert files.host_path(files.resolve("/tmp/up/passwd")) == str(rootfs / "etc" / "passwd")
    assert files.resolve("/tmp/root", follow_last=False) == "/tmp/root"
    assert files.resolve("/tmp/nothing/here") == "/tmp/nothing/here"


def test_bind_mounts_map_to_their_source(container_files):
    files, rootfs, volume = container_files
    assert files.host_path(files.resolve("/tmp/insub/file")) == str(volume / "sub" / "file")
    assert files.host_path("/data") == str(volume)
    assert files.host_path("/database") == str(rootfs / "database")  # not under /data


def test_link_loops_and_tmpfs_mounts_are_refused(container_files):
    files, _rootfs, _volume = container_files
    with pytest.raises(OperationError, match="too many levels"):
        files.resolve("/tmp/loop1")
    with pytest.raises(OperationError, match="tmpfs mount"):
        files.host_path("/run/x")


def test_copy_out_follows_links_in_the_container_not_on_the_host(container_files, tmp_path):
    files, _rootfs, _volume = container_files
    out = tmp_path / "out"
    out.mkdir()
    commands.copy_out(files, "/tmp/root/etc/passwd", str(out))
    assert (out / "passwd").read_text() == "root:x:0:0::/:/bin/sh\n"
    commands.copy_out(files, "/tmp/insub", str(out / "linked"))
    assert os.readlink(out / "linked") == "/data/sub"  # a link is copied as a link
    commands.copy_out(files, "/tmp/insub", str(out / "followed"), follow_link=True)
    assert (out / "followed" / "file").read_text() == "in the volume\n"
    with pytest.raises(OperationError, match="no such file"):
        commands.copy_out(files, "/missing", str(out))


def test_copy_out_of_everything_takes_binds_and_leaves_other_mounts(container_files, tmp_path):
    files, rootfs, _volume = container_files
    (rootfs / "run").mkdir()
    (rootfs / "data" / "hidden").write_text("under the mount\n")
    commands.copy_out(files, "/", str(tmp_path / "all"))
    assert (tmp_path / "all" / "data" / "sub" / "file").read_text() == "in the volume\n"
    assert not (tmp_path / "all" / "data" / "hidden").exists()
    assert not (tmp_path / "all" / "run").exists()
    assert (tmp_path / "all" / "etc" / "passwd").exists()


# -- events --------------------------------------------------------------------------------


def _info(**fields) -> dict:
    base = {
        "id": "a" * 64,
        "name": "shop-web-1",
        "labels": {"io.composer.service": "web", "io.composer.image": "sha256:1"},
        "status": "running",
        "created_at": "2026-11-28T10:00:00.000000000Z",
        "started_at": "2026-11-28T10:00:01.000000000Z",
    }
    base.update(fields)
    return base


def _snap(status, health=None, restarts=0, paused=False) -> dict:
    return {"status": status, "health": health, "restarts": restarts, "paused": paused}


def test_a_new_running_container_is_created_and_started():
    events = commands._changes(_info(), None, _snap("running"))
    assert [e["action"] for e in events] == ["create", "start"]
    assert events[0]["time"] == "2026-11-28T10:00:00.000000000Z"
    assert events[1]["service"] == "web" and events[1]["attributes"]["name"] == "shop-web-1"


def test_a_stopped_container_dies_and_stops_a_crashed_one_only_dies():
    stopped = _info(status="exited", exit_code=143, killed=False, finished_at="x")
    events = commands._changes(stopped, _snap("running"), _snap("exited"))
    assert [e["action"] for e in events] == ["die", "stop"]
    assert events[0]["attributes"]["exitCode"] == "143"
    crashed = _info(status="exited", exit_code=2)
    assert [e["action"] for e in commands._changes(crashed, _snap("running"), _snap("exited"))] == [
        "die"
    ]


def test_a_run_between_two_polls_still_starts_and_dies():
    quick = _info(status="exited", exit_code=0)
    actions = [e["action"] for e in commands._changes(quick, _snap("created"), _snap("exited"))]
    assert actions == ["start", "die"]


def test_restarts_health_and_pause_are_events():
    restarted = commands._changes(_info(), _snap("running"), _snap("running", restarts=1))
    assert [e["action"] for e in restarted] == ["die", "start"]
    healthy = commands._changes(_info(), _snap("running"), _snap("running", health="healthy"))
    assert [e["action"] for e in healthy] == ["health_status: healthy"]
    paused = commands._changes(_info(), _snap("running"), _snap("running", paused=True))
    assert [e["action"] for e in paused] == ["pause"]


def test_replay_reports_only_what_happened_since():
    from runtime.logs import parse_time

    info = _info(status="exited", exit_code=1, finished_at="2026-11-28T10:00:05.000000000Z")
    since = parse_time("2026-11-28T10:00:00.500000000Z")
    assert [e["action"] for e in commands._replay(info, since)] == ["start", "die"]


# -- top -----------------------------------------------------------------------------------


def test_process_row_of_ourselves():
    row = commands.process_row(os.getpid())
    assert row["PID"] == os.getpid() and row["PPID"] == os.getppid()
    assert "pytest" in row["CMD"] or "python" in row["CMD"]
    assert len(row["TIME"].split(":")) == 3
    assert commands.process_row(2**22 + 1) is None  # above pid_max: never a process


def test_cpu_time_and_tty_names():
    assert commands._cpu_text(3725) == "01:02:05"
    assert commands._cpu_text(90000) == "1-01:00:00"
    assert commands._tty_name(0) == "?"
    assert commands._tty_name(os.makedev(136, 3)) == "pts/3"


# -- ls ------------------------------------------------------------------------------------


class _FakeEngine:
    def __init__(self, infos):
        self.infos = infos

    def list(self, labels=None):
        return [i for i in self.infos if all(k in i["labels"] for k in labels or {})]


class _FakeBackend:
    def __init__(self, root, infos):
        self.root = root
        self.engine = _FakeEngine(infos)

    def project_dir(self):
        return self.root / "projects"


def test_ls_counts_states_and_hides_stopped_projects_unless_all(tmp_path):
    (tmp_path / "projects").mkdir()
    (tmp_path / "projects" / "idle.json").write_text(
        json.dumps({"name": "idle", "working_dir": "/w", "config_files": ["/w/compose.yaml"]})
    )

    def container(project: str, status: str) -> dict:
        labels = {"io.composer.project": project, "io.composer.project.config-files": "/s/c.yaml"}
        return {"id": os.urandom(4).hex(), "labels": labels, "status": status}

    infos = [container("shop", "exited"), container("shop", "exited"), container("idle", "exited")]
    backend = _FakeBackend(tmp_path, infos)
    assert commands.list_projects(backend) == []
    rows = commands.list_projects(backend, all=True)
    assert rows == [
        {"Name": "idle", "Status": "exited(1)", "ConfigFiles": "/w/compose.yaml"},
        {"Name": "shop", "Status": "exited(2)", "ConfigFiles": "/s/c.yaml"},
    ]
