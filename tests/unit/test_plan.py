from __future__ import annotations

from composer.model import FrozenMap, Project, Service
from composer.plan import Existing, UpOptions, orphans, plan_service


def project(*services: Service) -> Project:
    return Project(
        name="demo",
        project_dir="/p",
        config_files=("/p/compose.yaml",),
        services=FrozenMap({s.name: s for s in services}),
    )


def existing(
    service: str,
    number: int,
    *,
    status: str = "running",
    config_hash: str = "h1",
    image: str = "img1",
    exit_code: int | None = None,
    oneoff: bool = False,
) -> Existing:
    return Existing(
        id=f"{service}{number}",
        name=f"demo-{service}-{number}",
        service=service,
        number=number,
        config_hash=config_hash,
        image=image,
        status=status,
        exit_code=exit_code,
        oneoff=oneoff,
    )


WEB = Service(name="web", image="web", config_hash="h1")


def kinds(actions):
    return [(a.kind, a.number, a.reason) for a in actions]


def test_missing_containers_are_created_with_docker_style_names():
    actions = plan_service(project(WEB), WEB, [], "img1")
    assert kinds(actions) == [("create", 1, "missing")]
    assert actions[0].name == "demo-web-1"


def test_running_unchanged_containers_are_left_alone():
    assert plan_service(project(WEB), WEB, [existing("web", 1)], "img1") == []


def test_stopped_containers_are_started():
    actions = plan_service(
        project(WEB), WEB, [existing("web", 1, status="exited", exit_code=1)], "img1"
    )
    assert kinds(actions) == [("start", 1, "exited")]


def test_changed_config_or_image_recreates_unless_no_recreate():
    changed = existing("web", 1, config_hash="old")
    assert kinds(plan_service(project(WEB), WEB, [changed], "img1")) == [
        ("recreate", 1, "configuration changed")
    ]
    new_image = existing("web", 1, image="img0")
    assert kinds(plan_service(project(WEB), WEB, [new_image], "img1")) == [
        ("recreate", 1, "image changed")
    ]
    assert plan_service(project(WEB), WEB, [changed], "img1", UpOptions(no_recreate=True)) == []
    assert kinds(
        plan_service(
            project(WEB), WEB, [existing("web", 1)], "img1", UpOptions(force_recreate=True)
        )
    ) == [("recreate", 1, "forced")]


def test_completed_one_shot_jobs_are_not_run_again():
    job = Service(name="migrate", image="m", config_hash="h1")
    done = existing("migrate", 1, status="exited", exit_code=0)
    assert plan_service(project(job), job, [done], "img1") == []
    always = Service(name="migrate", image="m", config_hash="h1", restart="always")
    assert kinds(plan_service(project(always), always, [done], "img1")) == [("start", 1, "exited")]


def test_scaling_creates_and_removes_by_number():
    scaled = Service(name="web", image="web", config_hash="h1", scale=3)
    actions = plan_service(
        project(scaled), scaled, [existing("web", 1), existing("web", 3)], "img1"
    )
    assert kinds(actions) == [("create", 2, "missing")]
    down = plan_service(
        project(scaled),
        scaled,
        [existing("web", n) for n in (1, 2, 3)],
        "img1",
        UpOptions(scale={"web": 1}),
    )
    assert kinds(down) == [("remove", 2, "scaled down"), ("remove", 3, "scaled down")]


def test_one_off_containers_are_not_part_of_the_service():
    run = existing("web", 1, oneoff=True)
    assert kinds(plan_service(project(WEB), WEB, [run], "img1")) == [("create", 1, "missing")]
    assert orphans(project(WEB), [run, existing("gone", 1)]) == [existing("gone", 1)]


def test_container_name_is_honoured():
    named = Service(name="web", image="web", config_hash="h1", container_name="my-web")
    assert plan_service(project(named), named, [], "img1")[0].name == "my-web"


def test_start_only_starts_what_exists():
    only_start = UpOptions(create=False)
    scaled = Service(name="web", image="web", config_hash="old", scale=2)
    stale_and_stopped = existing("web", 1, status="exited", exit_code=0, config_hash="h0")
    surplus = existing("web", 3, status="exited", exit_code=1)
    actions = plan_service(
        project(scaled), scaled, [stale_and_stopped, surplus], "img2", only_start
    )
    # number 2 is missing and 3 is beyond the scale: neither is made nor removed; the stale
    # one is started as it is, not recreated
    assert kinds(actions) == [("start", 1, "exited")]
    assert plan_service(project(WEB), WEB, [], "img1", only_start) == []
