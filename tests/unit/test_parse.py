from __future__ import annotations

import math

import pytest

from composer.loader.errors import LoadError
from composer.loader.nodes import MapNode, Mark, SeqNode, locate
from composer.loader.parse import LeadingZeroInt, parse, parse_compose


def test_yaml_11_traps_follow_the_12_core_schema():
    tree = parse(
        "ports:\n  - 22:22\n  - 1:20:30\nmode: 0755\nflags: [yes, no, on, off, y, n]\n"
        "when: 2001-12-14\nt: [true, False, TRUE, 0o17, 0x1F, 1e3, .inf, ~, null, '']\n",
        "c.yaml",
    )
    assert tree["ports"] == ["22:22", "1:20:30"]
    assert tree["mode"] == 755 and isinstance(tree["mode"], LeadingZeroInt)
    assert tree["mode"].text == "0755"
    assert tree["flags"] == ["yes", "no", "on", "off", "y", "n"]
    assert tree["when"] == "2001-12-14"
    t = tree["t"]
    assert t[:6] == [True, False, True, 15, 31, 1000.0]
    assert math.isinf(t[6]) and t[7] is None and t[8] is None and t[9] == ""


def test_every_key_and_value_keeps_its_mark():
    tree = parse("services:\n  web:\n    image: nginx\n    ports:\n      - '80:80'\n", "c.yaml")
    web = tree["services"]["web"]
    assert isinstance(web, MapNode) and isinstance(web["ports"], SeqNode)
    assert web.key_marks["image"] == Mark("c.yaml", 3, 5)
    assert web.value_marks["image"] == Mark("c.yaml", 3, 12)
    assert locate(tree, ("services", "web", "ports", 0)) == Mark("c.yaml", 5, 9)
    # A path that runs past the tree stops at the deepest mark known.
    assert locate(tree, ("services", "web", "ports", 7)) == Mark("c.yaml", 5, 7)


def test_anchors_aliases_and_merge_keys():
    tree = parse(
        "x-base: &base\n  image: busybox\n  environment: {A: '1'}\n"
        "services:\n  a:\n    <<: *base\n    image: alpine\n  b: *base\n"
        "  c:\n    <<: [{user: u1}, {user: u2, tty: true}]\n",
        "c.yaml",
    )
    a, b, c = (tree["services"][k] for k in "abc")
    assert a["image"] == "alpine" and a["environment"] == {"A": "1"}
    assert b["image"] == "busybox"
    # Each alias use is its own copy, so passes may edit one service safely.
    a["environment"]["A"] = "changed"
    assert b["environment"]["A"] == "1"
    assert c == {"user": "u1", "tty": True}


def test_duplicate_keys_are_errors_with_both_places():
    with pytest.raises(LoadError) as info:
        parse("services:\n  web:\n    image: a\n    image: b\n", "c.yaml")
    problem = info.value.problems[0]
    assert problem.mark == Mark("c.yaml", 4, 5)
    assert "duplicate key 'image'" in problem.message and "c.yaml:3:5" in problem.message


def test_merge_tags_are_recorded_on_the_parent():
    tree = parse("web:\n  ports: !reset []\n  command: !override [a]\n", "c.yaml")
    assert tree["web"].tags == {"ports": "reset", "command": "override"}
    assert tree["web"]["ports"] == [] and tree["web"]["command"] == ["a"]


def test_syntax_error_has_a_location_and_excerpt():
    with pytest.raises(LoadError) as info:
        parse("services:\n  web: [a\n  db: b\n", "c.yaml")
    err = info.value
    assert err.problems[0].mark.file == "c.yaml"
    assert err.problems[0].mark.line == 3
    rendered = err.render()
    assert "YAML syntax error" in rendered and "^" in rendered


@pytest.mark.parametrize("text", ["", "# only a comment\n", "- a\n- b\n", "just text\n"])
def test_compose_document_must_be_a_mapping(text):
    with pytest.raises(LoadError) as info:
        parse_compose(text, "c.yaml")
    assert info.value.problems[0].mark == Mark("c.yaml", 1, 1)


def test_alias_bomb_is_refused():
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 8):
        prev = f"*a{i - 1}"
        lines.append(f"a{i}: &a{i} [{', '.join([prev] * 10)}]")
    with pytest.raises(LoadError) as info:
        parse("\n".join(lines) + "\n", "bomb.yaml")
    assert "expands" in info.value.problems[0].message
