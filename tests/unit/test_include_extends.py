from __future__ import annotations

import pytest

from composer.loader import LoadOptions
from composer.loader.discovery import discover
from composer.loader.environment import build_environment
from composer.loader.errors import LoadError
from composer.loader.extends import apply_extends
from composer.loader.include import apply_includes
from composer.loader.interpolate import cast, interpolate
from composer.loader.nodes import Mark, locate, locate_key, to_plain
from composer.loader.parse import parse_compose


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def load(tmp_path, main: str, others: dict[str, str] | None = None, environ=None):
    """The per-file passes up to extends, as composer.loader.load runs them."""
    write(tmp_path / "compose.yaml", main)
    for name, text in (others or {}).items():
        write(tmp_path / name, text)
    options = LoadOptions(cwd=str(tmp_path), environ=environ or {})
    found = discover(options)
    env = build_environment(options.shell_environ(), [], found.project_dir)
    source = found.files[0]
    tree = parse_compose(source.text, source.display)
    interpolate(tree, env)
    cast(tree)
    tree = apply_includes(tree, source, env, options)
    return apply_extends(tree, source, env, options)


def problem_of(tmp_path, main, others=None, environ=None):
    with pytest.raises(LoadError) as info:
        load(tmp_path, main, others, environ)
    assert len(info.value.problems) == 1, info.value.problems
    return info.value.problems[0]


def service(tree, name):
    return to_plain(tree["services"][name])


# --- extends ------------------------------------------------------------------------------


def test_extends_in_the_same_file_merges_with_local_values_winning(tmp_path):
    tree = load(
        tmp_path,
        "services:\n"
        "  base:\n"
        "    image: busybox\n"
        "    environment: [TZ=utc, PORT=80]\n"
        "    ports: ['8080:80']\n"
        "  web:\n"
        "    extends: base\n"
        "    environment:\n"
        "      PORT: 8080\n"
        "    ports: ['9090:90']\n"
        "  cli:\n"
        "    extends: {service: web}\n"
        "    command: [sh]\n",
    )
    web = service(tree, "web")
    assert web == {
        "image": "busybox",
        "environment": {"TZ": "utc", "PORT": 8080},
        "ports": ["8080:80", "9090:90"],
    }
    assert service(tree, "cli") == {**web, "command": ["sh"]}
    assert service(tree, "base")["environment"] == ["TZ=utc", "PORT=80"]
    # Inherited values point at the base service, local ones at the extending one.
    assert locate(tree, ("services", "web", "image")) == Mark("compose.yaml", 3, 12)
    assert locate(tree, ("services", "web", "environment", "PORT")) == Mark("compose.yaml", 9, 13)
    assert locate(tree, ("services", "cli", "ports", 1)) == Mark("compose.yaml", 10, 13)
    assert locate_key(tree, ("services", "cli")) == Mark("compose.yaml", 11, 3)


def test_two_services_extending_one_base_do_not_share_nodes(tmp_path):
    tree = load(
        tmp_path,
        "services:\n  base:\n    image: x\n    environment: {A: '1'}\n"
        "  one: {extends: base}\n  two: {extends: base}\n",
    )
    services = tree["services"]
    assert services["one"]["environment"] is not services["two"]["environment"]
    assert services["one"]["environment"] is not services["base"]["environment"]
    services["one"]["environment"]["A"] = "changed"
    assert services["two"]["environment"]["A"] == "1"


def test_extends_inherits_dependencies_as_the_spec_says(tmp_path):
    tree = load(
        tmp_path,
        "services:\n  db: {image: x}\n  base:\n    image: y\n    depends_on: [db]\n"
        "    volumes_from: [db]\n  web:\n    extends: base\n",
    )
    assert service(tree, "web")["depends_on"] == ["db"]
    assert service(tree, "web")["volumes_from"] == ["db"]


def test_reset_in_the_extending_service_drops_the_inherited_value(tmp_path):
    tree = load(
        tmp_path,
        "services:\n  base:\n    image: y\n    ports: ['1:1']\n"
        "  web:\n    extends: base\n    ports: !reset []\n",
    )
    assert service(tree, "web") == {"image": "y"}


def test_extends_from_another_file_rebases_its_relative_paths(tmp_path):
    tree = load(
        tmp_path,
        "services:\n  web:\n    extends:\n      file: common/services.yaml\n      service: app\n"
        "    volumes: ['./mine:/mine']\n",
        {
            "common/services.yaml": "services:\n"
            "  app:\n"
            "    extends: root\n"
            "    build: .\n"
            "    volumes: ['./data:/data', 'named:/named']\n"
            "    env_file: [app.env]\n"
            "  root:\n"
            "    image: base\n",
        },
    )
    common = tmp_path / "common"
    assert service(tree, "web") == {
        "image": "base",
        "build": str(common),
        "volumes": [f"{common}/data:/data", "named:/named", "./mine:/mine"],
        "env_file": [f"{common}/app.env"],
    }
    assert locate(tree, ("services", "web", "image")) == Mark("common/services.yaml", 8, 12)


def test_extends_cycle_is_reported_once_with_every_edge(tmp_path):
    problem = problem_of(
        tmp_path,
        "services:\n  a:\n    extends: b\n  b:\n    extends: c\n  c:\n    extends:\n"
        "      service: a\n",
    )
    assert problem.message == "extends cycle: a → b → c → a"
    assert problem.mark == Mark("compose.yaml", 3, 14)
    assert problem.path == ("services", "a", "extends")
    assert problem.related == (
        ("a extends b", Mark("compose.yaml", 3, 14)),
        ("b extends c", Mark("compose.yaml", 5, 14)),
        ("c extends a", Mark("compose.yaml", 8, 7)),
    )


def test_a_service_extending_itself(tmp_path):
    problem = problem_of(tmp_path, "services:\n  a:\n    image: x\n    extends: a\n")
    assert problem.message == "extends cycle: a → a"
    assert problem.mark == Mark("compose.yaml", 4, 14)


def test_extends_cycle_across_files_names_the_files(tmp_path):
    problem = problem_of(
        tmp_path,
        "services:\n  a:\n    extends: {file: other.yaml, service: b}\n",
        {"other.yaml": "services:\n  b:\n    extends: {file: compose.yaml, service: a}\n"},
    )
    assert problem.message == "extends cycle: a → b (other.yaml) → a"
    assert problem.related[1] == ("b (other.yaml) extends a", Mark("other.yaml", 3, 14))


def test_extending_a_missing_service(tmp_path):
    problem = problem_of(
        tmp_path, "services:\n  web:\n    extends:\n      service: nope\n  db: {image: x}\n"
    )
    assert problem.message == "cannot extend service 'nope': no such service"
    assert problem.mark == Mark("compose.yaml", 4, 16)
    assert problem.path == ("services", "web", "extends", "service")
    assert problem.hint == "services there: db, web"
    short = problem_of(tmp_path, "services:\n  web:\n    extends: nope\n")
    assert short.mark == Mark("compose.yaml", 3, 14)


def test_extending_from_a_missing_file_or_service_in_it(tmp_path):
    problem = problem_of(
        tmp_path, "services:\n  web:\n    extends: {service: a, file: gone.yaml}\n"
    )
    assert problem.message == "file 'gone.yaml' not found"
    assert problem.mark == Mark("compose.yaml", 3, 33)
    problem = problem_of(
        tmp_path,
        "services:\n  web:\n    extends: {service: a, file: other.yaml}\n",
        {"other.yaml": "services:\n  b: {image: x}\n"},
    )
    assert problem.message == "cannot extend service 'a': no such service in other.yaml"
    assert problem.mark == Mark("compose.yaml", 3, 24)


def test_bad_extends_values(tmp_path):
    with pytest.raises(LoadError) as info:
        load(
            tmp_path,
            "services:\n  web:\n    extends: {srvice: a}\n  db:\n    extends: [a]\n",
        )
    problems = {(p.message, p.mark) for p in info.value.problems}
    assert ("unknown extends option 'srvice'", Mark("compose.yaml", 3, 15)) in problems
    assert ("extends needs 'service' (a service name)", Mark("compose.yaml", 3, 14)) in problems
    assert (
        "extends must be a service name or a mapping with 'service'",
        Mark("compose.yaml", 5, 14),
    ) in problems


# --- include ------------------------------------------------------------------------------


def test_include_short_syntax_imports_resources_with_their_own_marks(tmp_path):
    tree = load(
        tmp_path,
        "include:\n  - sub/compose.yaml\nservices:\n  web:\n    image: w\n    depends_on: [db]\n",
        {
            "sub/compose.yaml": "services:\n  db:\n    image: postgres\nvolumes:\n  data: {}\n"
            "networks:\n  back: {}\n",
        },
    )
    assert "include" not in tree
    assert service(tree, "db") == {"image": "postgres"}
    assert to_plain(tree["volumes"]) == {"data": {}}
    assert to_plain(tree["networks"]) == {"back": {}}
    assert locate(tree, ("services", "db", "image")) == Mark("sub/compose.yaml", 3, 12)
    assert locate_key(tree, ("volumes", "data")) == Mark("sub/compose.yaml", 5, 3)


def test_included_relative_paths_become_absolute_against_its_directory(tmp_path):
    tree = load(
        tmp_path,
        "include:\n  - lib/compose.yaml\n",
        {
            "lib/compose.yaml": "services:\n"
            "  app:\n"
            "    build:\n      dockerfile: Dev.Dockerfile\n"
            "    volumes:\n      - ./data:/data\n      - type: bind\n        source: ../shared\n"
            "        target: /shared\n      - cache:/cache\n"
            "    env_file: [./app.env, {path: extra.env, required: false}]\n"
            "  tool:\n    build: ./tool\n"
            "secrets:\n  token: {file: ./token.txt}\n",
        },
    )
    lib = tmp_path / "lib"
    app = service(tree, "app")
    assert app["build"] == {"dockerfile": "Dev.Dockerfile", "context": str(lib)}
    assert app["volumes"][0] == f"{lib}/data:/data"
    assert app["volumes"][1]["source"] == str(tmp_path / "shared")
    assert app["volumes"][2] == "cache:/cache"
    assert app["env_file"] == [f"{lib}/app.env", {"path": f"{lib}/extra.env", "required": False}]
    assert service(tree, "tool")["build"] == f"{lib}/tool"
    assert to_plain(tree["secrets"]) == {"token": {"file": f"{lib}/token.txt"}}


def test_included_file_reads_its_own_dot_env_under_the_parent_environment(tmp_path):
    others = {
        "sub/compose.yaml": "services:\n  db:\n    image: ${IMAGE}\n    user: ${WHO}\n",
        "sub/.env": "IMAGE=from-sub\nWHO=sub\n",
        ".env": "WHO=parent\n",
    }
    tree = load(tmp_path, "include: [sub/compose.yaml]\n", others)
    assert service(tree, "db") == {"image": "from-sub", "user": "parent"}
    tree = load(tmp_path, "include: [sub/compose.yaml]\n", others, environ={"IMAGE": "shell"})
    assert service(tree, "db")["image"] == "shell"


def test_include_long_syntax_merges_paths_with_project_directory_and_env_file(tmp_path):
    tree = load(
        tmp_path,
        "include:\n"
        "  - path: [stack/base.yaml, stack/override.yaml]\n"
        "    project_directory: proj\n"
        "    env_file: stack/vars.env\n",
        {
            "stack/base.yaml": "services:\n  db:\n    image: ${IMAGE}\n    build: .\n",
            "stack/override.yaml": "services:\n  db:\n    environment: [A=1]\n",
            "stack/vars.env": "IMAGE=pg\n",
        },
    )
    assert service(tree, "db") == {
        "image": "pg",
        "build": str(tmp_path / "proj"),
        "environment": ["A=1"],
    }


def test_nested_includes_and_extends_inside_an_included_file(tmp_path):
    tree = load(
        tmp_path,
        "include: [a/compose.yaml]\n",
        {
            "a/compose.yaml": "include: [b/compose.yaml]\nservices:\n  one:\n"
            "    extends: {file: base.yaml, service: base}\n",
            "a/base.yaml": "services:\n  base: {image: one, build: ctx}\n",
            "a/b/compose.yaml": "services:\n  two: {image: two}\n",
        },
    )
    assert service(tree, "one") == {"image": "one", "build": str(tmp_path / "a" / "ctx")}
    assert service(tree, "two") == {"image": "two"}


def test_a_resource_defined_twice_names_both_places(tmp_path):
    problem = problem_of(
        tmp_path,
        "include:\n  - sub.yaml\nservices:\n  db:\n    image: mine\n",
        {"sub.yaml": "services:\n  db:\n    image: theirs\n"},
    )
    assert problem.mark == Mark("compose.yaml", 4, 3)
    assert problem.path == ("services", "db")
    assert "compose.yaml:4:3" in problem.message and "sub.yaml:2:3" in problem.message
    assert problem.related == (
        ("service 'db' included from", Mark("sub.yaml", 2, 3)),
        ("by the include at", Mark("compose.yaml", 2, 5)),
    )


def test_two_includes_defining_the_same_network_conflict(tmp_path):
    problem = problem_of(
        tmp_path,
        "include: [one.yaml, two.yaml]\n",
        {"one.yaml": "networks:\n  net: {}\n", "two.yaml": "networks:\n  net: {}\n"},
    )
    assert problem.mark == Mark("one.yaml", 2, 3)
    assert problem.related[0] == ("network 'net' included from", Mark("two.yaml", 2, 3))


def test_include_cycle_is_reported_as_a_chain(tmp_path):
    problem = problem_of(
        tmp_path,
        "include: [a.yaml]\n",
        {"a.yaml": "include: [b.yaml]\n", "b.yaml": "include:\n  - compose.yaml\n"},
    )
    assert problem.message == "include cycle: compose.yaml → a.yaml → b.yaml → compose.yaml"
    assert problem.mark == Mark("b.yaml", 2, 5)
    assert problem.related == (
        ("compose.yaml includes a.yaml", Mark("compose.yaml", 1, 11)),
        ("a.yaml includes b.yaml", Mark("a.yaml", 1, 11)),
        ("b.yaml includes compose.yaml", Mark("b.yaml", 2, 5)),
    )


def test_missing_included_file_points_at_the_entry(tmp_path):
    problem = problem_of(tmp_path, "include:\n  - path: gone.yaml\n")
    assert problem.message == "file 'gone.yaml' not found"
    assert problem.mark == Mark("compose.yaml", 2, 11)


def test_bad_include_entries_are_all_reported(tmp_path):
    with pytest.raises(LoadError) as info:
        load(
            tmp_path,
            "include:\n  - pth: x.yaml\n  - 42\n  - path: [1]\n",
        )
    found = [(p.message, p.mark) for p in info.value.problems]
    assert ("unknown include option 'pth'", Mark("compose.yaml", 2, 5)) in found
    assert ("an include entry needs 'path'", Mark("compose.yaml", 2, 5)) in found
    assert (
        "an include entry must be a path or a mapping with 'path'",
        Mark("compose.yaml", 3, 5),
    ) in found
    assert ("path must be a string or a list of strings", Mark("compose.yaml", 4, 11)) in found
    problem = problem_of(tmp_path, "include: sub.yaml\n")
    assert problem.message == "include must be a list" and problem.mark == Mark(
        "compose.yaml", 1, 10
    )
