from __future__ import annotations

import pytest

from composer.loader.errors import LoadError
from composer.loader.nodes import Mark
from composer.loader.parse import parse_compose
from composer.loader.profiles import all_profiles, apply_profiles

PROJECT = """\
services:
  app:
    image: app
  db:
    image: postgres
  adminer:
    image: adminer
    profiles: [debug]
    depends_on: [db]
  loadgen:
    image: loadgen
    profiles: [bench, debug]
  seed:
    image: seed
    profiles: [tools]
    depends_on:
      migrate: {condition: service_completed_successfully}
  migrate:
    image: migrate
    profiles: [migrations]
"""


def enabled(active, selected=(), text=PROJECT):
    tree = parse_compose(text, "c.yaml")
    selection = apply_profiles(tree, list(active), list(selected))
    return list(tree["services"]), selection


def test_services_without_profiles_are_always_enabled():
    names, selection = enabled([])
    assert names == ["app", "db"]
    assert list(selection.disabled) == ["adminer", "loadgen", "seed", "migrate"]
    assert selection.all_profiles == ["bench", "debug", "migrations", "tools"]


def test_a_service_is_enabled_when_any_of_its_profiles_is_active():
    assert enabled(["debug"])[0] == ["app", "db", "adminer", "loadgen"]
    assert enabled(["bench"])[0] == ["app", "db", "loadgen"]
    assert enabled(["bench", "migrations"])[0] == ["app", "db", "loadgen", "migrate"]


def test_star_activates_every_profile():
    assert enabled(["*"])[0] == ["app", "db", "adminer", "loadgen", "seed", "migrate"]


def test_blank_profile_names_are_ignored():
    # COMPOSE_PROFILES="debug," splits into an empty name too.
    names, selection = enabled(["debug", "", " "])
    assert names == ["app", "db", "adminer", "loadgen"]
    assert selection.active == ["debug"]


def test_a_named_service_is_enabled_without_its_profile_and_alone():
    names, _ = enabled([], ["loadgen"])
    # loadgen's other profile members (adminer) stay disabled.
    assert names == ["app", "db", "loadgen"]


def test_a_named_service_brings_its_dependencies_whatever_their_profiles():
    names, selection = enabled([], ["seed"])
    assert names == ["app", "db", "seed", "migrate"]
    assert "migrate" not in selection.disabled


def test_disabled_services_keep_their_marks_for_later_messages():
    tree = parse_compose(PROJECT, "c.yaml")
    selection = apply_profiles(tree, [], [])
    assert selection.disabled["adminer"].key_marks["image"] == Mark("c.yaml", 7, 5)
    assert "adminer" not in tree["services"].key_marks
    assert selection.how_to_enable("adminer") == (
        "enable it with --profile debug, or name 'adminer' on the command line"
    )
    assert selection.how_to_enable("app") is None


def test_unknown_selected_services_are_errors_all_at_once():
    tree = parse_compose(PROJECT, "c.yaml")
    with pytest.raises(LoadError) as info:
        apply_profiles(tree, [], ["admin", "nope", "app"])
    problems = info.value.problems
    assert [p.message for p in problems] == ["no such service: admin", "no such service: nope"]
    assert problems[0].hint == "did you mean 'adminer'?"
    assert problems[1].hint == "services: app, db, adminer, loadgen, seed, migrate"
    assert list(tree["services"]) == ["app", "db", "adminer", "loadgen", "seed", "migrate"]


def test_a_dependency_on_a_disabled_service_names_the_profile_to_enable():
    with pytest.raises(LoadError) as info:
        enabled(["tools"])
    (problem,) = info.value.problems
    assert problem.path == ("services", "seed", "depends_on", "migrate")
    assert problem.mark == Mark("c.yaml", 17, 7)
    assert problem.message == (
        "service 'seed' depends on 'migrate', which is disabled by its profiles"
    )
    assert problem.hint == (
        "enable it with --profile migrations, or name 'migrate' on the command line"
    )


def test_list_form_dependencies_and_other_references_are_checked_too():
    text = """\
services:
  web:
    image: web
    depends_on: [cache]
    links: ["cache:c"]
    network_mode: "service:cache"
    volumes_from: ["cache:ro", "container:other"]
  cache:
    image: redis
    profiles: [cache, full]
"""
    with pytest.raises(LoadError) as info:
        enabled([], text=text)
    problems = info.value.problems
    assert [(str(p.mark), p.message) for p in problems] == [
        ("c.yaml:4:18", "service 'web' depends on 'cache', which is disabled by its profiles"),
        ("c.yaml:5:13", "service 'web' links to 'cache', which is disabled by its profiles"),
        (
            "c.yaml:6:19",
            "service 'web' shares its network_mode with 'cache', which is disabled by its profiles",
        ),
        (
            "c.yaml:7:20",
            "service 'web' mounts volumes from 'cache', which is disabled by its profiles",
        ),
    ]
    assert problems[0].hint == (
        "enable it with --profile cache or --profile full, or name 'cache' on the command line"
    )


def test_an_optional_dependency_on_a_disabled_service_is_dropped():
    text = """\
services:
  web:
    image: web
    depends_on:
      metrics: {condition: service_started, required: false}
      db: {condition: service_healthy}
  db:
    image: db
  metrics:
    image: metrics
    profiles: [observability]
"""
    tree = parse_compose(text, "c.yaml")
    apply_profiles(tree, [], [])
    depends_on = tree["services"]["web"]["depends_on"]
    assert list(depends_on) == ["db"]
    assert "metrics" not in depends_on.key_marks
    # With the profile on, the optional dependency stays.
    tree = parse_compose(text, "c.yaml")
    apply_profiles(tree, ["observability"], [])
    assert list(tree["services"]["web"]["depends_on"]) == ["metrics", "db"]


def test_disabled_services_may_refer_to_each_other():
    # adminer depends on db (enabled); a disabled service needing another is fine.
    text = PROJECT.replace("depends_on: [db]", "depends_on: [loadgen]")
    names, _ = enabled([], text=text)
    assert names == ["app", "db"]


def test_a_file_without_services():
    tree = parse_compose("name: empty\n", "c.yaml")
    selection = apply_profiles(tree, ["debug"], [])
    assert selection.disabled == {} and selection.all_profiles == []
    with pytest.raises(LoadError) as info:
        apply_profiles(tree, [], ["web"])
    assert info.value.problems[0].message == "no such service: web"


def test_all_profiles_lists_each_once_sorted():
    assert all_profiles(parse_compose(PROJECT, "c.yaml")) == [
        "bench",
        "debug",
        "migrations",
        "tools",
    ]
