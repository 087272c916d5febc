from __future__ import annotations

import os

import pytest

from composer.loader import validate as validate_module
from composer.loader.errors import LoadError
from composer.loader.nodes import Mark
from composer.loader.parse import parse_compose
from composer.loader.validate import explain, load_fast_validator, validate


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """The tests compile into a cache dir of their own, never the user's."""
    cache_home = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache_home))
        patch.setattr(validate_module, "_fast_validators", {})
        yield cache_home


def problems_of(text: str, name: str = "c.yaml"):
    with pytest.raises(LoadError) as info:
        validate(parse_compose(text, name))
    return info.value.problems


def only_problem(text: str):
    problems = problems_of(text)
    assert len(problems) == 1, [p.headline() for p in problems]
    return problems[0]


RICH = """\
version: "3.9"
name: shop
x-common: &common
  restart: unless-stopped
services:
  web:
    <<: *common
    build:
      context: ./web
      args: {VERSION: "1"}
      x-note: extensions are allowed here
    image: shop/web:1
    ports: ["8080:80", 443, {target: 9000, published: "9000", protocol: tcp, x-tag: a}]
    environment: [A=1, B]
    depends_on:
      db: {condition: service_healthy, required: true, restart: true}
    healthcheck: {test: [CMD, "true"], interval: 10s, retries: 3}
    deploy: {replicas: 2, resources: {limits: {cpus: "0.5", memory: 256m}}}
    develop:
      watch:
        - {path: ./web, action: sync, target: /app, ignore: [node_modules]}
    post_start: [{command: [echo, hi]}]
    pre_start: [{image: busybox, command: ["true"]}]
    pre_stop: [{command: echo bye, user: root}]
    gpus: all
    use_api_socket: false
    provider: {type: model, options: {model: ai/x, flags: [a, 1]}}
    models: {llm: {endpoint_var: URL}}
    ulimits: {nofile: {soft: 1024, hard: 2048}, nproc: 512}
    volumes: [data:/data, {type: bind, source: ., target: /src, bind: {create_host_path: true}}]
    x-custom: {anything: [1, 2]}
  db:
    image: postgres:16
    networks: {back: {aliases: [database]}, front: null}
    pull_policy: every_12h
    container_name: shop-db
networks: {back: {driver: bridge}, front: null}
volumes: {data: {}}
secrets: {token: {file: ./token.txt}}
configs: {nginx: {content: "server {}"}}
models: {llm: {model: ai/smollm2}}
include: [other.yaml, {path: [a.yaml, b.yaml], env_file: a.env}]
x-top: 1
"""


def test_a_rich_valid_file_passes():
    validate(parse_compose(RICH, "c.yaml"))
    assert explain(parse_compose(RICH, "c.yaml")) == []


def test_unknown_service_key_points_at_the_key_with_a_suggestion():
    problem = only_problem("services:\n  web:\n    imagee: nginx\n")
    assert problem.mark == Mark("c.yaml", 3, 5)
    assert problem.path == ("services", "web")
    assert problem.message == "additional property 'imagee' is not allowed"
    assert problem.hint == "did you mean 'image'?"
    assert problem.headline() == (
        "c.yaml:3:5: services.web: additional property 'imagee' is not allowed"
    )


def test_a_service_written_at_the_top_level_gets_a_services_hint():
    problem = only_problem("services: {}\napache2:\n  image: httpd\n")
    assert problem.mark == Mark("c.yaml", 2, 1)
    assert problem.path == ()
    assert problem.hint == "'apache2' is at the top level; did you mean under 'services:'?"


def test_a_misspelled_top_level_key_gets_a_suggestion():
    problem = only_problem("servics:\n  web: {image: a}\n")
    assert problem.mark == Mark("c.yaml", 1, 1)
    assert problem.hint == "did you mean 'services'?"


def test_an_unknown_key_without_a_near_miss_mentions_extension_keys():
    problem = only_problem("services:\n  web:\n    image: a\n    flavour: mint\n")
    assert problem.hint == "custom keys must start with 'x-'"


def test_extension_keys_are_refused_where_the_spec_refuses_them():
    # blkio_config allows no x-* keys in the Compose Specification.
    problem = only_problem("services:\n  web:\n    image: a\n    blkio_config: {x-a: 1}\n")
    assert problem.mark == Mark("c.yaml", 4, 20)
    assert problem.path == ("services", "web", "blkio_config")


def test_type_errors_name_expected_and_actual_types_at_the_value():
    problem = only_problem("services:\n  web:\n    image: [nginx]\n")
    assert problem.mark == Mark("c.yaml", 3, 12)
    assert problem.path == ("services", "web", "image")
    assert problem.message == "expected a string, got a list"
    problem = only_problem("services:\n  web:\n    image: a\n    hostname: 12\n")
    assert problem.message == "expected a string, got an integer (12)"


def test_alternatives_reduce_to_one_type_error():
    problem = only_problem("services:\n  web:\n    image: a\n    ports:\n      - [80]\n")
    assert problem.mark == Mark("c.yaml", 5, 9)
    assert problem.path == ("services", "web", "ports", 0)
    assert problem.message == "expected a string, a number or a mapping, got a list"
    problem = only_problem("services:\n  web:\n    image: a\n    command: {a: 1}\n")
    assert problem.message == "expected a string, a list or null, got a mapping"


def test_a_scalar_where_a_list_belongs_gets_a_list_hint():
    problem = only_problem("services:\n  web:\n    image: a\n    depends_on: db\n")
    assert problem.message == "expected a mapping or a list, got a string ('db')"
    assert problem.hint == "a single item still goes in a list: ['db']"


def test_alternatives_reduce_to_the_branch_of_the_right_type():
    text = "services:\n  web:\n    image: a\n    ports:\n      - {target: 80, publishd: 8080}\n"
    problem = only_problem(text)
    assert problem.path == ("services", "web", "ports", 0)
    assert problem.mark == Mark("c.yaml", 5, 22)
    assert problem.message == "additional property 'publishd' is not allowed"
    assert problem.hint == "did you mean 'published'?"


def test_missing_required_key_inside_an_alternative():
    text = "services:\n  web:\n    image: a\n    depends_on:\n      db: {restart: true}\n"
    problem = only_problem(text)
    assert problem.path == ("services", "web", "depends_on", "db")
    assert problem.mark == Mark("c.yaml", 5, 11)
    assert problem.message == "missing required key 'condition'"


def test_enum_errors_list_the_choices_and_suggest_one():
    problem = only_problem("services:\n  web:\n    image: a\n    cgroup: hots\n")
    assert problem.mark == Mark("c.yaml", 4, 13)
    assert problem.message == "must be 'host' or 'private', got 'hots'"
    assert problem.hint == "did you mean 'host'?"


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("pull_policy", "always_and_more"),  # the official pattern is unanchored and takes it
        ("pull_policy", "sometimes"),
        ("pull_policy", "every_"),
        ("container_name", "web 1"),
        ("container_name", "-web"),
        ("container_name", "w"),
    ],
)
def test_anchored_patterns_refuse_what_the_spec_lets_through(key, value):
    problem = only_problem(f"services:\n  web:\n    image: a\n    {key}: '{value}'\n")
    assert problem.path == ("services", "web", key)
    assert problem.mark == Mark("c.yaml", 4, 7 + len(key))
    assert problem.message.startswith(f"'{value}' is not valid: ")


@pytest.mark.parametrize(
    "policy", ["always", "never", "missing", "build", "if_not_present", "daily", "every_1h30m"]
)
def test_pull_policies_that_are_valid(policy):
    validate(parse_compose(f"services:\n  web:\n    pull_policy: {policy}\n", "c.yaml"))


def test_numbers_and_bounds():
    problem = only_problem("services:\n  web:\n    image: a\n    cpu_percent: 150\n")
    assert problem.message == "must be at most 100, got 150"
    problem = only_problem("services:\n  web:\n    image: a\n    oom_score_adj: -2000\n")
    assert problem.message == "must be at least -1000, got -2000"


def test_duplicates_point_at_the_repeated_item():
    problem = only_problem(
        "services:\n  web:\n    image: a\n    ports: ['80:80', '81:81', '80:80']\n"
    )
    assert problem.path == ("services", "web", "ports", 2)
    assert problem.mark == Mark("c.yaml", 4, 31)
    assert problem.message == "duplicate entry '80:80' (same as [0])"


def test_invalid_resource_names():
    problem = only_problem("services:\n  'my web':\n    image: a\n")
    assert problem.mark == Mark("c.yaml", 2, 3)
    assert problem.message == "'my web' is not a valid service name"
    assert problem.hint == "use only letters, digits, '.', '_' and '-'"
    problem = only_problem("services: {}\nvolumes:\n  'a/b': {}\n")
    assert problem.message == "'a/b' is not a valid volume name"


def test_every_problem_is_reported_at_once_in_file_order():
    text = (
        "services:\n"
        "  web:\n"
        "    imagee: a\n"
        "    ports: [[1]]\n"
        "  db:\n"
        "    image: 5\n"
        "    restart: {a: 1}\n"
        "networks:\n"
        "  back: {drivr: bridge}\n"
        "volumez: {}\n"
    )
    problems = problems_of(text)
    assert [str(p.mark) for p in problems] == [
        "c.yaml:3:5",
        "c.yaml:4:13",
        "c.yaml:6:12",
        "c.yaml:7:14",
        "c.yaml:9:10",
        "c.yaml:10:1",
    ]
    rendered = LoadError(problems).render()
    assert "hint: did you mean 'driver'?" in rendered
    assert "hint: did you mean 'volumes'?" in rendered


def test_strings_are_accepted_where_interpolation_may_be_left_off():
    # With --no-interpolate, typed fields still hold "${VAR}".
    text = (
        "services:\n"
        "  web:\n"
        "    image: a\n"
        "    cpus: ${CPUS}\n"
        "    read_only: ${RO}\n"
        "    ports: [{target: '${T}', published: '${P}'}]\n"
        "    deploy: {replicas: '${N}'}\n"
        "    healthcheck: {retries: '${R}'}\n"
        "    mem_swappiness: ${S}\n"
    )
    validate(parse_compose(text, "c.yaml"))


def test_marks_come_from_the_file_that_holds_the_value():
    problem = only_problem("services:\n  web:\n    image: a\n    tty: [1]\n")
    assert problem.mark.file == "c.yaml"
    problems = problems_of("services:\n  web:\n    tty: [1]\n", "override.yaml")
    assert problems[0].mark == Mark("override.yaml", 3, 10)


def test_the_compiled_validator_is_cached_on_disk_and_reused(tmp_path, monkeypatch):
    schema = validate_module.SCHEMA_PATH
    with open(schema, "rb") as fh:
        schema_bytes = fh.read()
    cache = tmp_path / "c"
    first = load_fast_validator(schema_bytes, str(cache))
    files = os.listdir(cache)
    assert len(files) == 1 and files[0].startswith("compose-schema-")

    def no_compiling(_schema_bytes):
        raise AssertionError("the cached code should have been used")

    monkeypatch.setattr(validate_module, "_generate_source", no_compiling)
    second = load_fast_validator(schema_bytes, str(cache))
    tree = parse_compose("services:\n  web: {image: a}\n", "c.yaml")
    bad = parse_compose("services:\n  web: {image: 1}\n", "c.yaml")
    assert first(tree) and second(tree)
    assert not first(bad) and not second(bad)


def test_a_changed_schema_gets_its_own_cache_entry(tmp_path):
    cache = tmp_path / "c"
    load_fast_validator(b'{"type": "object"}', str(cache))
    check = load_fast_validator(b'{"type": "array"}', str(cache))
    assert len(os.listdir(cache)) == 2
    assert check([]) and not check({})


def test_an_unwritable_cache_falls_back_to_compiling_in_memory(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    check = load_fast_validator(b'{"type": "object"}', str(blocker / "composer"))
    assert check({}) and not check([])
    assert blocker.read_text() == "not a directory"


def test_a_corrupt_cache_file_is_replaced(tmp_path):
    cache = tmp_path / "c"
    load_fast_validator(b'{"type": "object"}', str(cache))
    (entry,) = os.listdir(cache)
    (cache / entry).write_bytes(b"garbage")
    check = load_fast_validator(b'{"type": "object"}', str(cache))
    assert check({}) and not check([])
    assert (cache / entry).read_bytes() != b"garbage"


def test_a_cache_file_others_may_write_is_not_trusted(tmp_path, monkeypatch):
    cache = tmp_path / "c"
    load_fast_validator(b'{"type": "object"}', str(cache))
    (entry,) = os.listdir(cache)
    assert (cache / entry).stat().st_mode & 0o777 == 0o600
    os.chmod(cache / entry, 0o666)
    compiled = []
    real = validate_module._generate_source
    monkeypatch.setattr(
        validate_module, "_generate_source", lambda b: compiled.append(b) or real(b)
    )
    check = load_fast_validator(b'{"type": "object"}', str(cache))
    assert compiled == [b'{"type": "object"}']
    assert check({}) and not check([])


def test_a_cache_file_holding_something_else_than_code_is_replaced(tmp_path):
    import marshal

    cache = tmp_path / "c"
    load_fast_validator(b'{"type": "object"}', str(cache))
    (entry,) = os.listdir(cache)
    (cache / entry).write_bytes(marshal.dumps(5))
    check = load_fast_validator(b'{"type": "object"}', str(cache))
    assert check({}) and not check([])


def test_validate_uses_the_cache_directory_from_the_environment(private_cache):
    validate(parse_compose("services:\n  web: {image: a}\n", "c.yaml"))
    assert any(n.startswith("compose-schema-") for n in os.listdir(private_cache / "composer"))


@pytest.mark.parametrize(
    "line", ["container_name: ${NAME}", "pull_policy: ${POLICY:-missing}", "pull_policy: $P"]
)
def test_anchored_patterns_let_uninterpolated_variables_through(line):
    # With --no-interpolate the official (unanchored) patterns accept these; so do we.
    validate(parse_compose(f"services:\n  web:\n    image: a\n    {line}\n", "c.yaml"))


def test_if_the_validators_ever_disagree_the_file_is_still_refused(monkeypatch):
    # The fast path says invalid, jsonschema finds nothing: refuse rather than guess.
    monkeypatch.setattr(validate_module, "fast_validator", lambda *_: lambda tree: False)
    problem = only_problem("services:\n  web:\n    image: a\n")
    assert problem.message == "the file does not match the Compose schema"
    assert problem.mark == Mark("c.yaml", 1, 1)
