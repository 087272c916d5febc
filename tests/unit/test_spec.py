from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from runtime.oci import capabilities, spec
from runtime.oci.spec import Bind, ContainerSpec, Device, Resources, Tmpfs, build_config

DEFAULT_MOUNT_ORDER = [
    "/proc",
    "/dev",
    "/dev/pts",
    "/dev/shm",
    "/dev/mqueue",
    "/sys",
    "/sys/fs/cgroup",
]


def _caps(config: dict) -> dict:
    return config["process"]["capabilities"]


def _mount(config: dict, destination: str) -> dict:
    (found,) = [m for m in config["mounts"] if m["destination"] == destination]
    return found


def test_default_spec_is_like_runc_spec():
    config = spec.default_spec()
    assert spec.validate_config(config) == []
    assert config["ociVersion"] == "1.3.0"
    assert config["process"]["args"] == ["sh"]
    assert config["process"]["terminal"] is False
    assert config["root"] == {"path": "rootfs", "readonly": True}
    assert [m["destination"] for m in config["mounts"]] == DEFAULT_MOUNT_ORDER
    assert [n["type"] for n in config["linux"]["namespaces"]] == [
        "pid",
        "network",
        "ipc",
        "uts",
        "mount",
        "cgroup",
    ]
    assert {"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024} in config["process"]["rlimits"]
    assert "/proc/kcore" in config["linux"]["maskedPaths"]
    assert "/proc/sys" in config["linux"]["readonlyPaths"]


def test_default_spec_args_and_terminal():
    config = spec.default_spec(args=["echo", "hi"], terminal=True, oci_version="1.1.0")
    assert config["ociVersion"] == "1.1.0"
    assert config["process"]["args"] == ["echo", "hi"]
    assert config["process"]["terminal"] is True
    # the capability lists are separate objects: editing one must not edit the others
    config["process"]["capabilities"]["bounding"].append("CAP_CHOWN")
    assert "CAP_CHOWN" not in config["process"]["capabilities"]["effective"]


def test_schema_version_matches_the_copy():
    schema = json.loads((spec.SCHEMA_DIR / "config-schema.json").read_text())
    assert schema["$schema"].startswith("http://json-schema.org/draft-04/")
    assert spec.OCI_VERSION == "1.3.0"


def test_build_config_defaults_are_dockers():
    config = build_config(ContainerSpec(rootfs="/r"))
    assert spec.validate_config(config) == []
    caps = _caps(config)
    assert caps["bounding"] == list(capabilities.DOCKER_DEFAULT)
    assert len(caps["effective"]) == 14 and caps["permitted"] == caps["bounding"]
    assert caps["inheritable"] == [] and caps["ambient"] == []
    assert [m["destination"] for m in config["mounts"]] == DEFAULT_MOUNT_ORDER
    assert "ro" in _mount(config, "/sys")["options"]
    assert "ro" in _mount(config, "/sys/fs/cgroup")["options"]
    assert f"size={64 * 1024 * 1024}" in _mount(config, "/dev/shm")["options"]
    assert config["linux"]["maskedPaths"] == list(spec.DEFAULT_MASKED_PATHS)
    assert config["linux"]["readonlyPaths"] == list(spec.DEFAULT_READONLY_PATHS)
    assert {
        "/proc/kcore",
        "/proc/keys",
        "/proc/timer_list",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/acpi",
        "/proc/scsi",
    } <= set(config["linux"]["maskedPaths"])
    assert config["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert config["process"]["noNewPrivileges"] is False
    assert config["process"]["env"][0].startswith("PATH=")
    assert config["process"]["cwd"] == "/"
    assert config["process"]["user"] == {"uid": 0, "gid": 0}
    assert config["root"] == {"path": "/r", "readonly": False}
    devices = config["linux"]["resources"]["devices"]
    assert devices[0] == {"allow": False, "access": "rwm"}
    assert {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"} in devices
    assert "devices" not in config["linux"]  # the runtime creates the default nodes
    import resource

    own_hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert config["process"]["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": min(524288, own_hard)}
    ]
    assert "hostname" not in config
    assert config["ociVersion"] == spec.PORTABLE_OCI_VERSION == "1.1.0"
    assert build_config(ContainerSpec(rootfs="/r"), oci_version="1.3.0")["ociVersion"] == "1.3.0"


def test_privileged_differences():
    plain = build_config(ContainerSpec(rootfs="/r"))
    priv = build_config(ContainerSpec(rootfs="/r", privileged=True, cap_drop=["chown"]))
    assert spec.validate_config(priv) == []
    assert _caps(priv)["bounding"] == capabilities.available()
    assert "CAP_SYS_ADMIN" in _caps(priv)["effective"]
    assert "CAP_SYS_ADMIN" not in _caps(plain)["effective"]
    assert priv["linux"]["maskedPaths"] == [] and priv["linux"]["readonlyPaths"] == []
    assert "seccomp" not in priv["linux"]
    assert "ro" not in _mount(priv, "/sys")["options"]
    assert "rw" in _mount(priv, "/sys")["options"]
    assert "rw" in _mount(priv, "/sys/fs/cgroup")["options"]
    assert priv["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    paths = {d["path"] for d in priv["linux"]["devices"]}
    assert {"/dev/null", "/dev/zero"} <= paths
    assert not any(p.startswith("/dev/pts/") for p in paths)
    assert "/dev/ptmx" not in paths  # the runtime links it to the container's pts/ptmx
    null = next(d for d in priv["linux"]["devices"] if d["path"] == "/dev/null")
    assert (null["type"], null["major"], null["minor"]) == ("c", 1, 3)


def test_unknown_caps_are_refused():
    with pytest.raises(ValueError, match="CAP_TELEPORT"):
        build_config(ContainerSpec(rootfs="/r", cap_add=["CAP_TELEPORT"]))
    with pytest.raises(ValueError, match="teleport"):
        build_config(ContainerSpec(rootfs="/r", cap_drop=["teleport"]))
    config = build_config(ContainerSpec(rootfs="/r"))
    config["process"]["capabilities"]["bounding"].append("CAP_TELEPORT")
    errors = spec.validate_config(config)
    assert errors == ["$.process.capabilities.bounding: unknown capability 'CAP_TELEPORT'"]


def test_cap_add_opens_matching_seccomp_rules():
    config = build_config(ContainerSpec(rootfs="/r", cap_add=["SYS_ADMIN"], cap_drop=["MKNOD"]))
    assert "CAP_SYS_ADMIN" in _caps(config)["bounding"]
    assert "CAP_MKNOD" not in _caps(config)["bounding"]
    allowed = {
        n
        for rule in config["linux"]["seccomp"]["syscalls"]
        if rule["action"] == "SCMP_ACT_ALLOW" and not rule.get("args")
        for n in rule["names"]
    }
    assert {"mount", "unshare"} <= allowed


def test_seccomp_unconfined_and_from_file(tmp_path):
    assert "seccomp" not in build_config(ContainerSpec(rootfs="/r", seccomp="unconfined"))["linux"]
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"name": "reboot", "action": "SCMP_ACT_ERRNO"},
            {"names": ["mount"], "action": "SCMP_ACT_ERRNO", "includes": {"caps": ["CAP_BPF"]}},
        ],
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    config = build_config(ContainerSpec(rootfs="/r", seccomp=str(path)))
    assert config["linux"]["seccomp"]["syscalls"] == [
        {"names": ["reboot"], "action": "SCMP_ACT_ERRNO"}
    ]
    assert spec.validate_config(config) == []


def test_process_fields():
    config = build_config(
        ContainerSpec(
            rootfs="/r",
            args=["redis-server", "--port", "6380"],
            env=["A=1", "PATH=/bin"],
            cwd="/data",
            uid=1000,
            gid=1000,
            additional_gids=[10, 20],
            umask=0o022,
            hostname="web",
            domainname="example.test",
            terminal=True,
            no_new_privileges=True,
            oom_score_adj=500,
            rlimits={"nofile": (4096, 8192), "RLIMIT_NPROC": 100},
        )
    )
    assert spec.validate_config(config) == []
    process = config["process"]
    assert process["args"] == ["redis-server", "--port", "6380"]
    assert process["env"] == ["A=1", "PATH=/bin", "HOSTNAME=web"]
    assert process["cwd"] == "/data"
    assert process["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 18}
    assert process["terminal"] is True and process["noNewPrivileges"] is True
    assert process["oomScoreAdj"] == 500
    assert process["rlimits"] == [
        {"type": "RLIMIT_NOFILE", "soft": 4096, "hard": 8192},
        {"type": "RLIMIT_NPROC", "soft": 100, "hard": 100},
    ]
    assert config["hostname"] == "web" and config["domainname"] == "example.test"


def test_init_runs_first_and_is_mounted():
    config = build_config(ContainerSpec(rootfs="/r", args=["sleep", "9"], init="/usr/bin/tini"))
    assert config["process"]["args"] == [spec.INIT_PATH_IN_CONTAINER, "--", "sleep", "9"]
    init = _mount(config, spec.INIT_PATH_IN_CONTAINER)
    assert init["source"] == "/usr/bin/tini" and "ro" in init["options"]
    assert spec.validate_config(config) == []


def test_mounts_binds_tmpfs_and_shm():
    config = build_config(
        ContainerSpec(
            rootfs="/r",
            readonly_rootfs=True,
            shm_size=1 << 20,
            binds=[
                Bind("/srv/data/sub", "/data/sub", readonly=True),
                Bind("/srv/data", "/data", options=("rshared",)),
            ],
            tmpfs=[Tmpfs("/run", size=1 << 20, mode=0o755), Tmpfs("/tmp")],
        )
    )
    assert spec.validate_config(config) == []
    assert config["root"]["readonly"] is True
    dests = [m["destination"] for m in config["mounts"]]
    assert dests[:7] == DEFAULT_MOUNT_ORDER
    assert dests.index("/data") < dests.index("/data/sub")  # parents first
    sub = _mount(config, "/data/sub")
    assert sub["type"] == "bind" and sub["options"] == ["rbind", "ro", "rprivate"]
    assert _mount(config, "/data")["options"] == ["rbind", "rw", "rshared"]
    run = _mount(config, "/run")
    assert run["type"] == "tmpfs"
    assert {"nosuid", "nodev", "noexec", "size=1048576", "mode=755"} <= set(run["options"])
    assert "size=1048576" in _mount(config, "/dev/shm")["options"]


def test_bind_ro_in_options_is_not_contradicted():
    config = build_config(ContainerSpec(rootfs="/r", binds=[Bind("/a", "/b", options=("ro",))]))
    assert _mount(config, "/b")["options"] == ["rbind", "ro", "rprivate"]


def test_user_mount_replaces_a_default_one():
    config = build_config(ContainerSpec(rootfs="/r", binds=[Bind("/host/shm", "/dev/shm")]))
    shm = [m for m in config["mounts"] if m["destination"] == "/dev/shm"]
    assert len(shm) == 1 and shm[0]["type"] == "bind"


def test_namespaces_join_share_and_add():
    config = build_config(
        ContainerSpec(
            rootfs="/r",
            namespaces={"network": "/proc/42/ns/net", "ipc": "/proc/42/ns/ipc", "pid": "host"},
        )
    )
    assert spec.validate_config(config) == []
    namespaces = config["linux"]["namespaces"]
    assert {"type": "network", "path": "/proc/42/ns/net"} in namespaces
    assert {"type": "ipc", "path": "/proc/42/ns/ipc"} in namespaces
    assert "pid" not in {n["type"] for n in namespaces}
    assert {"type": "uts"} in namespaces and {"type": "mount"} in namespaces
    with_user = build_config(ContainerSpec(rootfs="/r", namespaces={"time": ""}))
    assert {"type": "time"} in with_user["linux"]["namespaces"]
    with pytest.raises(ValueError, match="bogus"):
        build_config(ContainerSpec(rootfs="/r", namespaces={"bogus": "/x"}))


def test_resources():
    config = build_config(
        ContainerSpec(
            rootfs="/r",
            resources=Resources(
                memory=256 << 20,
                memory_reservation=128 << 20,
                cpu_shares=512,
                cpus=1.5,
                cpuset="0",
                cpuset_mems="0",
                pids_limit=100,
                blkio_weight=300,
            ),
            cgroups_path="/composer/t1",
        )
    )
    assert spec.validate_config(config) == []
    resources = config["linux"]["resources"]
    assert resources["memory"] == {
        "limit": 256 << 20,
        "reservation": 128 << 20,
        "swap": 512 << 20,
    }
    assert resources["cpu"] == {
        "shares": 512,
        "period": 100000,
        "quota": 150000,
        "cpus": "0",
        "mems": "0",
    }
    assert resources["pids"] == {"limit": 100}
    assert resources["blockIO"] == {"weight": 300}
    assert config["linux"]["cgroupsPath"] == "/composer/t1"


def test_explicit_quota_and_swap_win():
    resources = build_config(
        ContainerSpec(
            rootfs="/r",
            resources=Resources(memory=1 << 20, memory_swap=-1, cpus=2, cpu_quota=5000),
        )
    )["linux"]["resources"]
    assert resources["memory"]["swap"] == -1
    assert resources["cpu"] == {"quota": 5000, "period": 100000}
    assert "memory" not in build_config(ContainerSpec(rootfs="/r"))["linux"]["resources"]


def test_devices_from_host():
    config = build_config(
        ContainerSpec(
            rootfs="/r", devices=[Device("/dev/null", "/dev/mynull", "rw"), Device("/dev/zero")]
        )
    )
    assert spec.validate_config(config) == []
    nodes = config["linux"]["devices"]
    assert nodes[0]["path"] == "/dev/mynull" and nodes[0]["type"] == "c"
    assert (nodes[0]["major"], nodes[0]["minor"]) == (1, 3)
    assert nodes[1]["path"] == "/dev/zero"
    rule = config["linux"]["resources"]["devices"][-2]
    assert rule == {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rw"}
    with pytest.raises(ValueError, match="not a device"):
        build_config(ContainerSpec(rootfs="/r", devices=[Device("/etc/hostname")]))


def test_masked_and_readonly_overrides_sysctls_annotations_hooks():
    hooks = {"prestart": [{"path": "/bin/true", "args": ["true"], "timeout": 5}]}
    config = build_config(
        ContainerSpec(
            rootfs="/r",
            masked_paths=["/proc/kcore"],
            readonly_paths=[],
            sysctls={"net.ipv4.ip_forward": "1"},
            annotations={"com.example.k": "v"},
            hooks=hooks,
        )
    )
    assert spec.validate_config(config) == []
    assert config["linux"]["maskedPaths"] == ["/proc/kcore"]
    assert config["linux"]["readonlyPaths"] == []
    assert config["linux"]["sysctl"] == {"net.ipv4.ip_forward": "1"}
    assert config["annotations"] == {"com.example.k": "v"}
    assert config["hooks"] == hooks


VARIATIONS = [
    {},
    {"privileged": True},
    {"cap_drop": ["ALL"]},
    {"cap_add": ["ALL"], "seccomp": "unconfined"},
    {"cap_drop": ["ALL"], "cap_add": ["NET_BIND_SERVICE"], "no_new_privileges": True},
    {"readonly_rootfs": True, "tmpfs": [Tmpfs("/tmp", size=1 << 20)]},
    {"uid": 65534, "gid": 65534, "additional_gids": [1, 2, 3]},
    {"namespaces": {"network": "/proc/1/ns/net", "uts": "host"}},
    {"namespaces": {"user": "", "time": ""}},
    {"resources": Resources(memory=1 << 30, memory_swap=2 << 30, pids_limit=-1)},
    {"resources": Resources(cpu_period=50000, cpus=0.5, cpuset="0-1")},
    {"rlimits": {}},
    {"oom_score_adj": -1000},
    {"init": "/usr/bin/tini", "terminal": True},
    {"binds": [Bind("/a", "/b/c/d"), Bind("/e", "/b", readonly=True, options=("nosuid",))]},
    {"devices": [Device("/dev/full")]},
    {"hostname": "h", "domainname": "d", "env": ["TERM=dumb"]},
]


@pytest.mark.parametrize("fields", VARIATIONS)
def test_variations_validate_against_the_schema(fields):
    config = build_config(ContainerSpec(rootfs="rootfs", **fields))
    assert spec.validate_config(config) == []
    json.dumps(config)  # plain JSON data, nothing else


def test_validate_reports_schema_errors():
    config = build_config(ContainerSpec(rootfs="/r"))
    config["process"]["rlimits"][0]["soft"] = -1
    config["linux"]["namespaces"].append({"type": "galaxy"})
    config["linux"]["seccomp"]["defaultAction"] = "SCMP_ACT_PANIC"
    del config["process"]["cwd"]
    errors = spec.validate_config(config)
    assert len(errors) == 4
    joined = "\n".join(errors)
    for needle in ("rlimits[0].soft", "namespaces[6]", "defaultAction", "'cwd' is a required"):
        assert needle in joined
    assert spec.validate_config({}) == ["$: 'ociVersion' is a required property"]


def test_import_is_cheap():
    code = (
        "import sys, runtime.oci.spec; "
        "print(sorted(m for m in ('jsonschema', 'referencing', 'ctypes', 'runtime.oci.seccomp')"
        " if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_runc_spec_and_ours_agree_on_the_essentials(tmp_path):
    """runc is a Debian package here: its `runc spec` is the reference for default_spec."""
    if not os.path.exists("/usr/sbin/runc") and not os.path.exists("/usr/bin/runc"):
        pytest.fail("runc is not installed (Makefile APT_PACKAGES lists it)")
    subprocess.run(["runc", "spec", "--bundle", str(tmp_path)], check=True)
    theirs = json.loads((tmp_path / "config.json").read_text())
    ours = spec.default_spec()
    assert [m["destination"] for m in ours["mounts"]] == [
        m["destination"] for m in theirs["mounts"]
    ]
    # runc 1.1 predates its private cgroup namespace default; ours has it
    ours_ns = [n["type"] for n in ours["linux"]["namespaces"]]
    assert [t for t in ours_ns if t != "cgroup"] == [
        n["type"] for n in theirs["linux"]["namespaces"] if n["type"] != "cgroup"
    ]
    assert set(theirs["linux"]["maskedPaths"]) <= set(ours["linux"]["maskedPaths"])
    assert set(theirs["linux"]["readonlyPaths"]) == set(ours["linux"]["readonlyPaths"])
    assert ours["process"]["rlimits"] == theirs["process"]["rlimits"]
