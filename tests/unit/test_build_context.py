"""The build context: .dockerignore rules, COPY globs, and the content hash of sources."""

from __future__ import annotations

import os

import pytest

from runtime.images.build.context import BuildContext, clean, parse_ignore, resolve_in_root


@pytest.fixture
def tree(tmp_path):
    for rel in (
        "app/main.py",
        "app/util.py",
        "app/test_main.py",
        "docs/a.md",
        "docs/keep.md",
        "node_modules/x/index.js",
        "deep/a/b/c.log",
        "top.log",
        "README.md",
    ):
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
    return tmp_path


def ctx(root, ignore: str) -> BuildContext:
    return BuildContext(root, parse_ignore(ignore))


@pytest.mark.parametrize(
    ("path", "expected"),
    [("a/../../b", "b"), ("/x/y/", "x/y"), (".", "."), ("./a", "a"), ("", ".")],
)
def test_clean(path, expected):
    assert clean(path) == expected


def test_comments_blank_lines_and_root_pattern_are_skipped():
    rules = parse_ignore("# comment\n\n  *.log  \n/\n!keep\n")
    assert [(r.pattern, r.exception) for r in rules] == [("*.log", False), ("keep", True)]


def test_star_is_one_element_and_double_star_any(tree):
    c = ctx(tree, "*.log\n")
    assert c.excluded("top.log")
    assert not c.excluded("deep/a/b/c.log")
    c = ctx(tree, "**/*.log\n")
    assert c.excluded("top.log") and c.excluded("deep/a/b/c.log")


def test_directory_pattern_excludes_its_contents(tree):
    c = ctx(tree, "node_modules\n")
    assert c.excluded("node_modules/x/index.js")
    assert not c.excluded("app/main.py")


def test_exception_and_last_match_wins(tree):
    c = ctx(tree, "docs\n!docs/keep.md\n")
    assert c.excluded("docs/a.md")
    assert not c.excluded("docs/keep.md")
    c = ctx(tree, "!docs/keep.md\ndocs\n")
    assert c.excluded("docs/keep.md")


def test_question_mark_and_classes(tree):
    c = ctx(tree, "app/?til.py\napp/[m]ain.py\n")
    assert c.excluded("app/util.py") and c.excluded("app/main.py")
    assert not c.excluded("app/test_main.py")
    c = ctx(tree, "app/[!m]*.py\n")
    assert c.excluded("app/util.py") and not c.excluded("app/main.py")


def test_leading_slash_and_dot_segments(tree):
    c = ctx(tree, "/app/./test_*.py\n")
    assert c.excluded("app/test_main.py") and not c.excluded("app/main.py")


def test_walk_leaves_out_ignored_but_finds_exceptions(tree):
    c = ctx(tree, "docs\n!docs/keep.md\nnode_modules\n")
    found = [rel for rel, _ in c.walk()]
    assert "docs/keep.md" in found
    assert "docs/a.md" not in found
    assert not any(rel.startswith("node_modules") for rel in found)


def test_load_reads_dockerignore_and_per_dockerfile_file(tree):
    (tree / ".dockerignore").write_text("*.md\n")
    assert BuildContext.load(tree).excluded("README.md")
    (tree / "Special.dockerignore").write_text("top.log\n")
    special = BuildContext.load(tree, "Special")
    assert special.excluded("top.log") and not special.excluded("README.md")


def test_glob(tree):
    c = ctx(tree, "app/test_*\n")
    assert c.glob("app/*.py") == ["app/main.py", "app/util.py"]
    assert c.glob("*.md") == ["README.md"]
    assert c.glob("**/*.log") == ["deep/a/b/c.log", "top.log"]
    assert c.glob("app/test_main.py") == []  # ignored
    assert c.glob("missing*") == []
    assert c.glob("../../app") == ["app"]  # cannot climb out of the context


def test_checksum_follows_content_mode_and_names(tree):
    c = ctx(tree, "app/test_*\n")
    first = c.checksum(["app"])
    assert c.checksum(["app"]) == first
    (tree / "app/test_main.py").write_text("ignored change")
    assert c.checksum(["app"]) == first
    (tree / "app/util.py").write_text("changed")
    second = c.checksum(["app"])
    assert second != first
    os.chmod(tree / "app/util.py", 0o600)
    third = c.checksum(["app"])
    assert third != second
    (tree / "app/util.py").rename(tree / "app/util2.py")
    assert c.checksum(["app"]) != third


def test_checksum_of_a_symlink_is_its_target(tree):
    os.symlink("main.py", tree / "app/link")
    c = ctx(tree, "")
    before = c.checksum(["app/link"])
    os.unlink(tree / "app/link")
    os.symlink("util.py", tree / "app/link")
    assert c.checksum(["app/link"]) != before


def test_resolve_in_root_keeps_symlinks_inside(tmp_path):
    root = tmp_path / "root"
    (root / "real/dir").mkdir(parents=True)
    os.symlink("/real", root / "abs")  # absolute: means root/real, not the host's /real
    os.symlink("../../../../..", root / "real/up")
    os.symlink("/etc", root / "etc-link")
    assert resolve_in_root(root, "/abs/dir", follow_last=True) == str(root / "real/dir")
    assert resolve_in_root(root, "/real/up/real", follow_last=True) == str(root / "real")
    assert resolve_in_root(root, "../../etc-link/passwd") == str(root / "etc/passwd")
    assert resolve_in_root(root, "/abs") == str(root / "abs")  # the last one kept as is


def test_resolve_in_root_refuses_loops(tmp_path):
    os.symlink("loop", tmp_path / "loop")
    with pytest.raises(OSError, match="symbolic links"):
        resolve_in_root(tmp_path, "loop/x")


def test_context_symlinks_cannot_reach_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("host secret")
    context = tmp_path / "ctx"
    context.mkdir()
    os.symlink(str(outside), context / "link")
    c = BuildContext(context)
    inside = c.path("link/secret")
    assert inside == context / str(outside).lstrip("/") / "secret"  # re-rooted in the context
    assert c.glob("link/secret") == []
