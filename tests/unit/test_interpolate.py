from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from composer.loader.environment import build_environment
from composer.loader.errors import LoadError
from composer.loader.interpolate import (
    CAST_TABLE,
    InvalidTemplate,
    MissingRequired,
    Variable,
    cast,
    find_variables,
    interpolate,
    interpolate_string,
    parse_template,
    substitute,
)
from composer.loader.nodes import MapNode, Mark, SeqNode
from composer.loader.parse import parse_compose


def env_of(shell: dict[str, str], tmp_path, strict: bool = False):
    # tmp_path has no .env, so only the shell counts.
    return build_environment(shell, [], str(tmp_path), strict=strict)


def sub(text: str, values: dict[str, str]) -> str:
    return substitute(text, values.get)


# --- the operators, one by one -------------------------------------------------------

SET = {"A": "a", "EMPTY": "", "N": "7"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$A", "a"),
        ("${A}", "a"),
        ("x$A-y", "xa-y"),
        ("$A$N", "a7"),
        ("${A}_${N}", "a_7"),
        ("$UNSET", ""),
        ("${UNSET}", ""),
        ("$EMPTY", ""),
        # :- uses the default when unset OR empty; - only when unset.
        ("${A:-d}", "a"),
        ("${EMPTY:-d}", "d"),
        ("${UNSET:-d}", "d"),
        ("${A-d}", "a"),
        ("${EMPTY-d}", ""),
        ("${UNSET-d}", "d"),
        # :+ gives the alternate when set and non-empty; + when set at all.
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${UNSET:+alt}", ""),
        ("${A+alt}", "alt"),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        # ? and :? pass the value through when it is there.
        ("${A:?msg}", "a"),
        ("${A?msg}", "a"),
        ("${EMPTY?msg}", ""),
        # Empty words are allowed.
        ("${UNSET:-}", ""),
        ("${UNSET-}", ""),
        ("${A:+}", ""),
    ],
)
def test_each_operator_and_the_unset_empty_distinction(text, expected):
    assert sub(text, SET) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$$", "$"),
        ("$$A", "$A"),
        ("$${A}", "${A}"),
        ("$$$A", "$a"),
        ("a$$$$b", "a$$b"),
        ("${UNSET:-$$}", "$"),
        ("${UNSET:-$${A}}", "${A}"),
        # A $ before anything that cannot start a name stays a $.
        ("$", "$"),
        ("cost: 5$", "cost: 5$"),
        ("$1 and $-x and $ 3", "$1 and $-x and $ 3"),
        ("a$.b", "a$.b"),
    ],
)
def test_dollar_escapes_and_lone_dollars(text, expected):
    assert sub(text, SET) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("${UNSET:-${A}}", "a"),
        ("${UNSET:-${OTHER:-x}}", "x"),
        ("${UNSET:-pre-${N}-post}", "pre-7-post"),
        ("${A:+[${N}]}", "[7]"),
        ("${UNSET:-${UNSET2:-${UNSET3-deep}}}", "deep"),
        ("${UNSET:-a}}", "a}"),  # the first balanced } ends the expression
        ("${UNSET:-{x}}", "{x}"),
        ("${A:-${B}}tail$N", "atail7"),
        ("${a}", ""),  # names are case-sensitive; lower case is a different variable
    ],
)
def test_nested_expressions(text, expected):
    assert sub(text, SET) == expected


def test_names_may_be_lower_case_or_start_with_underscore():
    assert sub("$_x ${lower_1}", {"_x": "u", "lower_1": "l"}) == "u l"


def test_default_is_only_evaluated_when_used():
    # The required error in the default does not fire when A is set.
    assert sub("${A:-${UNSET:?boom}}", SET) == "a"
    with pytest.raises(MissingRequired):
        sub("${UNSET:-${UNSET:?boom}}", SET)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET:?must be set}", "required variable UNSET is missing a value: must be set"),
        ("${EMPTY:?must not be empty}", "required variable EMPTY is missing a value"),
        ("${UNSET?}", "required variable UNSET is missing a value"),
        ("${UNSET:?need ${N} of them}", "required variable UNSET is missing a value: need 7"),
    ],
)
def test_required_variables(text, message):
    with pytest.raises(MissingRequired) as info:
        sub(text, SET)
    assert str(info.value).startswith(message)


@pytest.mark.parametrize(
    "text",
    ["${", "${A", "${A:-x", "${}", "${1A}", "${A B}", "${A:x}", "${A!}", "x ${-y}", "${A:-a\n}"],
)
def test_bad_syntax_is_invalid(text):
    with pytest.raises(InvalidTemplate):
        parse_template(text)


def test_parse_template_keeps_the_word_as_written():
    (ref,) = parse_template("${A:-${B:-x}}")
    assert ref.name == "A" and ref.op == ":-" and ref.word_text == "${B:-x}"


# --- the tree pass ---------------------------------------------------------------------

COMPOSE = """\
services:
  web:
    image: "nginx:${TAG:-latest}"
    command: ["echo", "$GREETING", "$$HOME"]
    environment:
      $KEY: ${VALUE}
    labels:
      - "a=${UNSET_ONE}"
      - "b=${UNSET_ONE}${UNSET_TWO}"
"""


def test_interpolate_values_not_keys_and_keep_marks(tmp_path):
    tree = parse_compose(COMPOSE, "c.yaml")
    env = env_of({"GREETING": "hi", "VALUE": "v", "KEY": "nope"}, tmp_path)
    interpolate(tree, env)
    web = tree["services"]["web"]
    assert web["image"] == "nginx:latest"
    assert web["command"] == ["echo", "hi", "$HOME"]
    assert web["environment"] == {"$KEY": "v"}
    assert web["labels"] == ["a=", "b="]
    # Replacing values keeps the node types and every mark.
    assert isinstance(web, MapNode) and isinstance(web["command"], SeqNode)
    assert web.value_marks["image"] == Mark("c.yaml", 3, 12)
    assert web["command"].item_marks[1] == Mark("c.yaml", 4, 23)


def test_unset_variables_warn_once_each_with_the_first_location(tmp_path):
    tree = parse_compose(COMPOSE, "c.yaml")
    env = env_of({}, tmp_path)
    interpolate(tree, env)
    assert env.warnings == [
        'c.yaml:4:23: The "GREETING" variable is not set. Defaulting to a blank string.',
        'c.yaml:6:13: The "VALUE" variable is not set. Defaulting to a blank string.',
        'c.yaml:8:9: The "UNSET_ONE" variable is not set. Defaulting to a blank string.',
        'c.yaml:9:9: The "UNSET_TWO" variable is not set. Defaulting to a blank string.',
    ]


def test_defaults_and_alternates_do_not_warn(tmp_path):
    tree = parse_compose("a: ${X:-1}\nb: ${X-2}\nc: ${X:+3}\nd: ${X+4}\n", "c.yaml")
    env = env_of({}, tmp_path)
    interpolate(tree, env)
    assert tree == {"a": "1", "b": "2", "c": "", "d": ""}
    assert env.warnings == []


def test_default_used_is_recorded_for_explain(tmp_path):
    tree = parse_compose("x:\n  y: ${PORT:-8080}\n  z: ${PORT:-9090}\n", "c.yaml")
    env = env_of({}, tmp_path)
    interpolate(tree, env)
    explanation = env.explain("PORT")
    assert explanation.value == "8080"
    assert explanation.source == "default in c.yaml:2:6"


def test_all_problems_of_the_tree_at_once_with_exact_locations(tmp_path):
    text = (
        "services:\n"
        "  web:\n"
        "    image: ${IMAGE:?set IMAGE to the image to run}\n"
        "    ports:\n"
        "      - '${'\n"
        "    environment:\n"
        "      A: ok ${A:x}\n"
        "      B: ${B?}\n"
    )
    tree = parse_compose(text, "c.yaml")
    with pytest.raises(LoadError) as info:
        interpolate(tree, env_of({}, tmp_path))
    problems = info.value.problems
    assert [(str(p.mark), p.path) for p in problems] == [
        ("c.yaml:3:12", ("services", "web", "image")),
        ("c.yaml:5:9", ("services", "web", "ports", 0)),
        ("c.yaml:7:10", ("services", "web", "environment", "A")),
        ("c.yaml:8:10", ("services", "web", "environment", "B")),
    ]
    assert problems[0].message == (
        "required variable IMAGE is missing a value: set IMAGE to the image to run"
    )
    assert "invalid interpolation format" in problems[1].message
    assert problems[1].hint == "a literal $ is written $$"
    assert "':x'" in problems[2].message or "':'" in problems[2].message
    assert problems[3].message == "required variable B is missing a value"
    rendered = str(info.value)
    assert rendered.splitlines()[0].startswith("c.yaml:3:12: services.web.image: required")


def test_strict_mode_makes_unset_variables_errors(tmp_path):
    tree = parse_compose("a: ${X}\nb: [$Y, '${X:-fine}']\n", "c.yaml")
    env = env_of({}, tmp_path, strict=True)
    with pytest.raises(LoadError) as info:
        interpolate(tree, env)
    problems = info.value.problems
    assert [(str(p.mark), p.path) for p in problems] == [
        ("c.yaml:1:4", ("a",)),
        ("c.yaml:2:5", ("b", 0)),
    ]
    assert problems[0].message == 'the "X" variable is not set (--strict-env)'
    assert "${X:-value}" in problems[0].hint
    assert env.warnings == []


def test_strict_mode_accepts_set_but_empty_variables(tmp_path):
    tree = parse_compose("a: x${E}y\n", "c.yaml")
    interpolate(tree, env_of({"E": ""}, tmp_path, strict=True))
    assert tree["a"] == "xy"


def test_non_string_values_are_left_alone(tmp_path):
    tree = parse_compose("a: 1\nb: true\nc: null\nd: 1.5\ne: 0755\n", "c.yaml")
    before = dict(tree)
    interpolate(tree, env_of({}, tmp_path))
    assert tree == before and repr(tree["e"]) == "0755"


def test_interpolated_text_is_not_interpolated_again(tmp_path):
    tree = parse_compose("a: $X\n", "c.yaml")
    interpolate(tree, env_of({"X": "${Y:?never}"}, tmp_path))
    assert tree["a"] == "${Y:?never}"


def test_interpolate_string_for_other_passes(tmp_path):
    env = env_of({"DIR": "/srv"}, tmp_path)
    mark = Mark("c.yaml", 4, 9)
    assert interpolate_string("${DIR}/app", env, mark, ("include", 0)) == "/srv/app"
    assert interpolate_string("no dollars", env, mark) == "no dollars"
    with pytest.raises(LoadError) as info:
        interpolate_string("${NEED:?please}", env, mark, ("include", 0))
    (problem,) = info.value.problems
    assert problem.mark == mark and problem.path == ("include", 0)
    assert problem.message.endswith("please")
    interpolate_string("$NOPE", env, mark)
    assert env.warnings == [
        'c.yaml:4:9: The "NOPE" variable is not set. Defaulting to a blank string.'
    ]


# --- variables -------------------------------------------------------------------------


def test_find_variables_lists_each_name_once_with_what_its_uses_say():
    tree = parse_compose(
        "services:\n"
        "  web:\n"
        "    image: ${IMAGE:?need it}:${TAG:-latest}\n"
        "    command: [$CMD, '${CMD:-x}', '$${ESCAPED}']\n"
        "    labels: {a: '${FLAG:+on}', b: '${OUTER:-${INNER-deep}}'}\n"
        "    environment: {bad: '${'}\n",
        "c.yaml",
    )
    assert find_variables(tree) == [
        Variable("IMAGE", True, None, None, Mark("c.yaml", 3, 12)),
        Variable("TAG", False, "latest", None, Mark("c.yaml", 3, 12)),
        Variable("CMD", False, "x", None, Mark("c.yaml", 4, 15)),
        Variable("FLAG", False, None, "on", Mark("c.yaml", 5, 17)),
        Variable("OUTER", False, "${INNER-deep}", None, Mark("c.yaml", 5, 35)),
        Variable("INNER", False, "deep", None, Mark("c.yaml", 5, 35)),
    ]


# --- casts -----------------------------------------------------------------------------

TYPED = """\
services:
  web:
    ports:
      - target: "${PORT}"
        published: "${PORT}"
    deploy:
      replicas: "${REPLICAS}"
      update_config: {max_failure_ratio: "0.5"}
    cpus: "${CPUS}"
    read_only: "${RO}"
    tty: "TRUE"
    healthcheck: {retries: "3", disable: "false"}
    stop_grace_period: "${GRACE}"
    mem_swappiness: "60"
    ulimits: {nproc: "65535", nofile: {soft: "1024", hard: "2048"}}
    volumes:
      - {type: volume, source: v, target: /v, read_only: "true", volume: {nocopy: "false"}}
    depends_on: {db: {condition: service_started, required: "false"}}
    pids_limit: "-1"
  db:
    scale: "2"
networks:
  front: {external: "${EXT}"}
volumes:
  v: {external: "false"}
"""


def test_cast_turns_typed_strings_into_numbers_and_booleans(tmp_path):
    tree = parse_compose(TYPED, "c.yaml")
    shell = {"PORT": "80", "REPLICAS": "3", "CPUS": "1.5", "RO": "true", "GRACE": "1m30s"}
    env = env_of({**shell, "EXT": "true"}, tmp_path)
    interpolate(tree, env)
    cast(tree, env)
    web = tree["services"]["web"]
    assert web["ports"][0] == {"target": 80, "published": "80"}  # published stays a string
    assert web["deploy"] == {"replicas": 3, "update_config": {"max_failure_ratio": 0.5}}
    assert web["cpus"] == 1.5 and web["read_only"] is True and web["tty"] is True
    assert web["healthcheck"] == {"retries": 3, "disable": False}
    assert web["stop_grace_period"] == "1m30s" and web["mem_swappiness"] == "60"
    assert web["ulimits"] == {"nproc": 65535, "nofile": {"soft": 1024, "hard": 2048}}
    assert web["volumes"][0]["read_only"] is True and web["volumes"][0]["volume"]["nocopy"] is False
    assert web["depends_on"]["db"]["required"] is False
    assert web["pids_limit"] == -1
    assert tree["services"]["db"]["scale"] == 2
    assert tree["networks"]["front"]["external"] is True
    assert tree["volumes"]["v"]["external"] is False
    # Marks stay where the strings were.
    assert web["deploy"].value_marks["replicas"] == Mark("c.yaml", 7, 17)
    assert env.warnings == []


def test_cast_errors_name_each_place(tmp_path):
    tree = parse_compose(
        "services:\n"
        "  web:\n"
        "    read_only: maybe\n"
        "    cpus: 'one'\n"
        "    scale: '1.5'\n"
        "    ports: [{target: '8080 '}]\n"
        "    pids_limit: '99999999999999999999'\n",
        "c.yaml",
    )
    with pytest.raises(LoadError) as info:
        cast(tree)
    found = [(str(p.mark), p.path, p.message) for p in info.value.problems]
    assert found == [
        (
            "c.yaml:3:16",
            ("services", "web", "read_only"),
            "'maybe' is not a boolean (true or false)",
        ),
        ("c.yaml:4:11", ("services", "web", "cpus"), "'one' is not a number"),
        ("c.yaml:5:12", ("services", "web", "scale"), "'1.5' is not an integer"),
        ("c.yaml:6:22", ("services", "web", "ports", 0, "target"), "'8080 ' is not an integer"),
        (
            "c.yaml:7:17",
            ("services", "web", "pids_limit"),
            "'99999999999999999999' is out of range for an integer",
        ),
    ]


def test_cast_error_of_an_interpolated_value_says_so(tmp_path):
    tree = parse_compose("services:\n  web:\n    cpus: ${CPUS:-lots}\n    scale: x\n", "i.yaml")
    interpolate(tree, env_of({}, tmp_path))
    with pytest.raises(LoadError) as info:
        cast(tree)
    first, second = info.value.problems
    assert first.message == "'lots' is not a number" and "after interpolation" in first.hint
    assert second.hint is None


def test_yaml_11_booleans_are_accepted_with_a_warning(tmp_path):
    tree = parse_compose("services:\n  web:\n    tty: yes\n    init: 'off'\n", "c.yaml")
    env = env_of({}, tmp_path)
    cast(tree, env)
    assert tree["services"]["web"] == {"tty": True, "init": False}
    assert env.warnings == [
        "c.yaml:3:10: 'yes' for a boolean is YAML 1.1; write true (YAML 1.2)",
        "c.yaml:4:11: 'off' for a boolean is YAML 1.1; write false (YAML 1.2)",
    ]


def test_cast_leaves_non_strings_and_other_paths_alone():
    tree = parse_compose(
        "services:\n  web:\n    scale: 2\n    labels: {scale: '2'}\n    x-tty: 'true'\n"
        "x-cpus: '1'\n",
        "c.yaml",
    )
    cast(tree)
    assert tree["services"]["web"] == {"scale": 2, "labels": {"scale": "2"}, "x-tty": "true"}
    assert tree["x-cpus"] == "1"


def test_cast_table_has_compose_go_paths():
    # A few anchors of the table, so an accidental edit shows up.
    assert ("services", "*", "ports", "[]", "target") in CAST_TABLE
    assert ("services", "*", "stop_grace_period") not in CAST_TABLE
    assert ("networks", "*", "enable_ipv6") in CAST_TABLE
    assert len(CAST_TABLE) == 42


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="$${}:-?+AB_x 1\n", max_size=40))
def test_any_value_substitutes_or_fails_with_a_located_problem(tmp_path_factory, text):
    tree = MapNode({"k": text}, mark=Mark("c.yaml", 1, 1))
    tree.value_marks["k"] = Mark("c.yaml", 1, 4)
    env = env_of({"A": "a", "B": ""}, tmp_path_factory.getbasetemp())
    try:
        interpolate(tree, env)
    except LoadError as exc:
        assert [(p.mark, p.path) for p in exc.problems] == [(Mark("c.yaml", 1, 4), ("k",))]
        return
    assert isinstance(tree["k"], str)
    # Without any `$`, nothing changes.
    if "$" not in text:
        assert tree["k"] == text
