"""detect_layout parses only the mountinfo lines that name its root: the filter must keep
every line that matters, escaped names included."""

from __future__ import annotations

from runtime.oci.cgroups import detect_layout
from runtime.oci.linux import cgroup_hierarchies


def test_a_root_with_a_space_is_found_in_its_escaped_form(tmp_path):
    root = tmp_path / "my cg"
    escaped = str(root).replace(" ", "\\040")
    text = (
        f"1 0 0:1 / {tmp_path} rw - tmpfs tmpfs rw\n"
        f"2 1 0:2 / {escaped}/memory rw - cgroup cgroup rw,memory\n"
        f"3 1 0:3 / {escaped}/unified rw - cgroup2 cgroup2 rw\n"
    )
    (root / "unified").mkdir(parents=True)
    (root / "unified" / "cgroup.controllers").write_text("")
    layout = detect_layout(str(root), text)
    assert layout.mode == "hybrid"
    assert layout.serving["memory"].mountpoint == f"{root}/memory"
    assert layout.unified.mountpoint == f"{root}/unified"


def test_lines_outside_the_root_are_left_out_and_an_over_mount_still_counts(tmp_path):
    root = tmp_path / "cg"
    text = (
        f"1 0 0:1 / {tmp_path}/elsewhere/pids rw - cgroup cgroup rw,pids\n"
        f"2 0 0:2 / {root}/memory rw - cgroup cgroup rw,memory\n"
        f"3 0 0:3 / {root}/cpu rw - cgroup cgroup rw,cpu\n"
        f"4 3 0:4 / {root}/cpu rw - tmpfs tmpfs rw\n"
    )
    layout = detect_layout(str(root), text)
    assert sorted(layout.serving) == ["memory"]  # pids is elsewhere, cpu is covered


def test_cgroup_hierarchies_skip_other_filesystems_without_parsing_them():
    text = (
        "1 0 0:1 / / rw - ext4 /dev/vda rw\n"
        "2 1 0:2 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n"
        "not a mountinfo line at all\n"
        "3 1 0:3 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    assert cgroup_hierarchies(text) == [
        ("/sys/fs/cgroup/pids", "pids"),
        ("/sys/fs/cgroup/unified", ""),
    ]
