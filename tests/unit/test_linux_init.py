"""Order and flags of the container init's syscalls, with a fake below the syscall seam."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runtime.oci import linux
from runtime.oci import syscalls as real


class FakeSyscalls:
    """Records every call; the constants are the real module's."""

    def __init__(self, missing: tuple[str, ...] = (), bounding: int = (1 << 41) - 1) -> None:
        self.calls: list[tuple] = []
        self.missing = set(missing)
        self.bounding = bounding

    def __getattr__(self, name):
        if name.isupper():
            return getattr(real, name)

        def record(*args):
            self.calls.append((name, *args))
            if name == "mount" and args[1] in self.missing:
                raise FileNotFoundError(2, "No such file or directory", args[1])
            if name == "prctl" and args[0] == real.PR_CAPBSET_READ:
                return (self.bounding >> args[1]) & 1
            if name == "symlink":
                os.symlink(*args)
            if name == "mknod":  # as the kernel: EEXIST over anything, ENOENT without a parent
                if os.path.lexists(args[0]):
                    raise FileExistsError(17, "File exists", args[0])
                Path(args[0]).touch()
            return 0

        return record

    def named(self, name: str) -> list[tuple]:
        return [call[1:] for call in self.calls if call[0] == name]


def test_namespace_plan_joins_user_first_and_unshares_the_rest():
    joins, flags = linux.namespace_plan(
        [
            {"type": "network", "path": "/proc/7/ns/net"},
            {"type": "pid"},
            {"type": "user", "path": "/proc/7/ns/user"},
            {"type": "mount"},
        ]
    )
    assert joins == [("user", "/proc/7/ns/user"), ("network", "/proc/7/ns/net")]
    assert flags == real.CLONE_NEWPID | real.CLONE_NEWNS


@pytest.mark.parametrize(
    "namespaces", [[{"type": "pid"}, {"type": "pid"}], [{"type": "bogus"}]], ids=["twice", "bogus"]
)
def test_namespace_plan_refuses_bad_entries(namespaces):
    with pytest.raises(linux.ConfigError):
        linux.namespace_plan(namespaces)


def test_mount_options_split_into_flags_propagation_and_data():
    flags, propagation, data = linux.parse_mount_options(
        ["nosuid", "noexec", "ro", "rw", "rbind", "rslave", "mode=755", "size=1m", "tmpcopyup"]
    )
    assert flags == real.MS_NOSUID | real.MS_NOEXEC | real.MS_BIND | real.MS_REC
    assert propagation == [real.MS_SLAVE | real.MS_REC]
    assert data == "mode=755,size=1m"


def test_resolve_in_root_never_leaves_the_root(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "escape").symlink_to("/etc")
    (root / "up").symlink_to("../../../../etc")
    (root / "loop").symlink_to("loop")
    assert linux.resolve_in_root(str(root), "/escape/passwd", follow_last=True) == str(
        root / "etc/passwd"
    )
    assert linux.resolve_in_root(str(root), "up/x", follow_last=True) == str(root / "etc/x")
    assert linux.resolve_in_root(str(root), "/../../etc", follow_last=True) == str(root / "etc")
    with pytest.raises(OSError):
        linux.resolve_in_root(str(root), "/loop/x", follow_last=True)


def _bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "rootfs" / "dev").mkdir(parents=True)
    (tmp_path / "host-data").mkdir()
    return bundle


def test_prepare_rootfs_mounts_in_config_order_after_making_root_slave(tmp_path):
    bundle = _bundle(tmp_path)
    config = {
        "root": {"path": "rootfs"},
        "process": {"cwd": "/work"},
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["mode=755"]},
            {
                "destination": "/data",
                "type": "bind",
                "source": str(tmp_path / "host-data"),
                "options": ["rbind", "ro", "rprivate"],
            },
        ],
        "linux": {
            "devices": [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "uid": 5}]
        },
    }
    fake = FakeSyscalls()
    rootfs = linux.prepare_rootfs(config, str(bundle), real.CLONE_NEWNS, False, fake)
    assert rootfs == str(bundle / "rootfs")
    mounts = fake.named("mount")
    assert mounts[0] == (None, "/", None, real.MS_SLAVE | real.MS_REC)
    assert mounts[1] == (rootfs, rootfs, None, real.MS_BIND | real.MS_REC)
    assert mounts[2] == ("proc", rootfs + "/proc", "proc", 0, None)
    assert mounts[3] == ("tmpfs", rootfs + "/dev", "tmpfs", 0, "mode=755")
    data = rootfs + "/data"
    assert mounts[4] == (str(tmp_path / "host-data"), data, None, real.MS_BIND | real.MS_REC)
    remount = real.MS_BIND | real.MS_REMOUNT | real.MS_RDONLY
    assert mounts[5][1] == data and mounts[5][3] & remount == remount
    assert mounts[6] == (None, data, None, real.MS_PRIVATE | real.MS_REC)
    nodes = {call[0]: call for call in fake.named("mknod")}
    assert set(nodes) == {rootfs + "/dev/" + n for n in ("null", "zero", "full", "random")} | {
        rootfs + "/dev/urandom",
        rootfs + "/dev/tty",
        rootfs + "/dev/fuse",
    }
    assert nodes[rootfs + "/dev/fuse"][2:] == (10, 229)
    assert (rootfs + "/dev/fuse", 5, 0) in fake.named("chown")
    assert os.readlink(rootfs + "/dev/ptmx") == "pts/ptmx"
    assert os.readlink(rootfs + "/dev/stderr") == "/proc/self/fd/2"
    assert os.path.isdir(rootfs + "/work")  # cwd made in the image


def test_shared_rootfs_propagation_keeps_the_pivot_parent_unshared(tmp_path):
    bundle = _bundle(tmp_path)
    config = {"root": {"path": "rootfs"}, "linux": {"rootfsPropagation": "shared"}}
    fake = FakeSyscalls()
    linux.prepare_rootfs(config, str(bundle), real.CLONE_NEWNS, False, fake)
    assert fake.named("mount")[0] == (None, "/", None, real.MS_SLAVE | real.MS_REC)
    fake = FakeSyscalls()
    linux.pivot_into(str(bundle / "rootfs"), "shared", fake)
    assert fake.calls[-1] == ("mount", None, "/", None, real.MS_SHARED)


def test_user_namespace_binds_device_nodes_instead_of_mknod(tmp_path):
    bundle = _bundle(tmp_path)
    fake = FakeSyscalls()
    devices = [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]
    linux.create_devices(str(bundle / "rootfs"), devices, True, fake)
    assert fake.named("mknod") == []
    assert fake.named("mount") == [("/dev/null", str(bundle / "rootfs/dev/null"), None, 4096)]


def test_pivot_detaches_the_old_root_after_making_it_slave():
    fake = FakeSyscalls()
    linux.pivot_into("/b/rootfs", None, fake)
    assert fake.calls == [
        ("chdir", "/b/rootfs"),
        ("pivot_root", ".", "."),
        ("mount", None, ".", None, real.MS_SLAVE | real.MS_REC),
        ("umount2", ".", real.MNT_DETACH),
        ("chdir", "/"),
    ]


def test_masked_paths_use_tmpfs_for_dirs_dev_null_for_files_and_skip_missing(tmp_path):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("secret")
    missing = str(tmp_path / "missing")
    fake = FakeSyscalls(missing=(missing,))
    linux.mask_paths([str(tmp_path / "dir"), str(tmp_path / "file"), missing], fake)
    assert fake.named("mount") == [  # the missing path is not even tried
        ("tmpfs", str(tmp_path / "dir"), "tmpfs", real.MS_RDONLY, None),
        ("/dev/null", str(tmp_path / "file"), None, real.MS_BIND),
    ]


def test_readonly_paths_bind_then_remount_read_only(tmp_path):
    fake = FakeSyscalls()
    linux.readonly_paths([str(tmp_path)], fake)
    (bind, remount) = fake.named("mount")
    assert bind == (str(tmp_path), str(tmp_path), None, real.MS_BIND | real.MS_REC)
    assert remount[3] & (real.MS_BIND | real.MS_REMOUNT | real.MS_RDONLY) == (
        real.MS_BIND | real.MS_REMOUNT | real.MS_RDONLY
    )


def test_capabilities_drop_bounding_then_change_user_then_capset_then_ambient():
    fake = FakeSyscalls(bounding=0b1111)
    masks = {"bounding": 0b0101, "effective": 0b0001, "permitted": 0b0101}
    masks.update(inheritable=0b0100, ambient=0b0100)
    linux.set_user_and_capabilities(
        {"uid": 1000, "gid": 100, "additionalGids": [5]}, masks, 3, fake
    )
    calls = [c for c in fake.calls if not (c[0] == "prctl" and c[1] == real.PR_CAPBSET_READ)]
    assert calls == [
        ("prctl", real.PR_CAPBSET_DROP, 1),
        ("prctl", real.PR_CAPBSET_DROP, 3),
        ("prctl", real.PR_SET_KEEPCAPS, 1),
        ("setgroups", [5]),
        ("setresgid", 100, 100, 100),
        ("setresuid", 1000, 1000, 1000),
        ("prctl", real.PR_SET_KEEPCAPS, 0),
        ("capset", 0b0001, 0b0101, 0b0100),
        ("prctl", real.PR_CAP_AMBIENT, real.PR_CAP_AMBIENT_CLEAR_ALL),
        ("prctl", real.PR_CAP_AMBIENT, real.PR_CAP_AMBIENT_RAISE, 2),
    ]


def test_unknown_capability_names_are_refused():
    with pytest.raises(ValueError, match="CAP_MADE_UP"):
        linux.capability_masks({"bounding": ["CAP_KILL", "CAP_MADE_UP"]})


def test_hostname_needs_its_own_uts_namespace():
    fake = FakeSyscalls()
    linux.set_identity({"hostname": "box", "domainname": "example"}, True, fake)
    assert fake.calls == [("sethostname", "box"), ("setdomainname", "example")]
    with pytest.raises(linux.ConfigError):
        linux.set_identity({"hostname": "box"}, False, fake)


def test_cgroup_hierarchies_from_mountinfo():
    mountinfo = (
        "30 25 0:26 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu\n"
        "31 25 0:27 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n"
        "32 25 0:28 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "33 25 0:29 / /tmp rw - tmpfs tmpfs rw\n"
    )
    assert linux.cgroup_hierarchies(mountinfo) == [
        ("/sys/fs/cgroup/cpu", "cpu"),
        ("/sys/fs/cgroup/systemd", "name=systemd"),
        ("/sys/fs/cgroup/unified", ""),
    ]


def test_id_map_text():
    maps = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert linux.id_map_text(maps) == "0 100000 65536\n"


def test_capabilities_we_cannot_grant_are_refused():
    fake = FakeSyscalls(bounding=0b0111)
    masks = dict.fromkeys(("effective", "permitted", "inheritable", "ambient"), 0)
    masks["bounding"] = 0b1001
    with pytest.raises(linux.ConfigError, match="CAP_FOWNER"):
        linux.set_user_and_capabilities({}, masks, 3, fake)


def test_existing_device_file_must_be_that_device(tmp_path):
    rootfs = tmp_path / "rootfs"
    (rootfs / "dev").mkdir(parents=True)
    os.mkfifo(rootfs / "dev" / "pipe")
    (rootfs / "dev" / "null").write_text("not a device")
    fake = FakeSyscalls()
    linux.create_devices(str(rootfs), [{"path": "/dev/pipe", "type": "p"}], False, fake)
    assert fake.named("chmod") == [] and fake.named("chown") == []  # the fifo is kept
    assert stat.S_ISFIFO(os.lstat(rootfs / "dev" / "pipe").st_mode)
    with pytest.raises(linux.ConfigError, match="/dev/null"):
        devices = [{"path": "/dev/null", "type": "c", "major": 1, "minor": 3}]
        linux.create_devices(str(rootfs), devices, False, fake)


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({"linux": {"intelRdt": {"closID": "x"}}}, "intelRdt"),
        ({"process": {"rlimits": [{"type": "RLIMIT_NOPE", "soft": 1, "hard": 1}]}}, "NOPE"),
        (
            {"process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}] * 2}},
            "twice",
        ),
        ({"hooks": {"prestart": [{"path": "relative/hook"}]}}, "absolute"),
        ({"mounts": [{"destination": "/m", "uidMappings": [{"size": 1}]}]}, "idmapped"),
        ({"linux": {"personality": {"domain": "BSD"}}}, "BSD"),
    ],
)
def test_config_errors_the_spec_requires_come_before_anything_runs(config, complaint):
    with pytest.raises(linux.ConfigError, match=complaint):
        linux.check_config(config)


def test_a_plain_config_passes_the_checks():
    linux.check_config(
        {
            "process": {"rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1, "hard": 2}]},
            "hooks": {"poststop": [{"path": "/bin/true"}]},
            "linux": {"personality": {"domain": "LINUX"}},
        }
    )


def test_cpu_lists_parse_like_the_kernel_prints_them():
    assert linux.parse_cpu_list("0-2, 7") == {0, 1, 2, 7}
    assert linux.parse_cpu_list("3") == {3}
    assert linux.parse_cpu_list("") == set()
