"""Image commands: `images` (the project's), the `image` group (the whole store), `pull`,
`push`, `login` and `logout`.

Argument parsing and output only; the work is in runtime/images.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator

from composer.cli.output import Output, print_json, print_table

NONE = "<none>"


# -- shared output helpers (volume_cmds uses them too) -------------------------------------


def human_size(size: int) -> str:
    """Decimal units, as docker prints them: 4.27MB."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if value < 1000 or unit == "TB":
            return f"{value:.3g}{unit}" if unit != "B" else f"{int(value)}B"
        value /= 1000
    raise AssertionError("unreachable")


def ago(timestamp: str | None) -> str:
    """Like "3 hours ago", from an RFC 3339 time; "N/A" when unknown."""
    from datetime import UTC, datetime

    if not timestamp:
        return "N/A"
    try:
        when = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = int((datetime.now(UTC) - when).total_seconds())
    for unit, length in (
        ("year", 31536000),
        ("month", 2592000),
        ("week", 604800),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
    ):
        if seconds >= length:
            count = seconds // length
            return f"{count} {unit}{'s' if count > 1 else ''} ago"
    return "Less than a minute ago"


def short_id(digest: str) -> str:
    return digest.removeprefix("sha256:")[:12]


def confirm(question: str, force: bool) -> bool:
    """True with --force, else the user's y on stdin (no answer is a no)."""
    if force:
        return True
    print(f"{question}\nAre you sure you want to continue? [y/N] ", end="", flush=True)
    answer = sys.stdin.readline()
    if not sys.stdin.isatty():
        print()  # the answer was not echoed: end the prompt's line
    return answer.strip().lower() in ("y", "yes")


@contextlib.contextmanager
def _plain_errors() -> Iterator[None]:
    """Registry, credential, reference and file problems are the user's to fix: report
    them as image errors (one line, exit 1), not as our bugs."""
    from runtime.images.reference import ReferenceError
    from runtime.images.store import ImageError

    try:
        yield
    except Exception as e:
        kinds = [ReferenceError]
        # Only modules already imported can have raised it: no import on this path.
        for module, name in (
            ("runtime.images.auth", "AuthError"),
            ("runtime.images.registry", "RegistryError"),
        ):
            if module in sys.modules:
                kinds.append(getattr(sys.modules[module], name))
        tarfile = sys.modules.get("tarfile")
        if tarfile is not None and isinstance(e, tarfile.ReadError):
            raise ImageError("not a tar archive (plain, gzip, bzip2 or xz)") from None
        if isinstance(e, OSError) and e.filename:  # a file named on the command line
            raise ImageError(f"{e.filename}: {e.strerror}") from None
        if isinstance(e, tuple(kinds)):
            raise ImageError(str(e)) from None
        raise


def _store():
    from runtime.images.store import ImageStore

    return ImageStore()


def split_name(name: str | None) -> tuple[str, str]:
    """(repository, tag) of a stored name; <none> for what it lacks."""
    if not name:
        return NONE, NONE
    if "@" in name:
        return name.split("@", 1)[0], NONE
    repository, _, tag = name.rpartition(":")
    if "/" in tag or not repository:  # the colon was a registry port
        return name, NONE
    return repository, tag


def _is_id(text: str) -> bool:
    bare = text.removeprefix("sha256:")
    return 6 <= len(bare) <= 64 and not bare.strip("0123456789abcdef")


# -- images (the project's) ---------------------------------------------------------------


def add_images(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    parser.add_argument("--format", choices=["table", "json"], default="table")


def project_image_rows(project, backend, services: list[str]) -> list[dict]:
    """One row per container of the project: the image it was created from."""
    from composer import labels as L
    from runtime.images.reference import normalize

    rows = []
    for info in backend.containers(project.name):
        labels = info.get("labels") or {}
        service = labels.get(L.SERVICE, "")
        if services and service not in services:
            continue
        digest = labels.get(L.IMAGE, "")
        image = backend.store.resolve(digest) if digest else None
        wanted = project.services.get(service)
        name = None
        if image is not None:
            configured = wanted.image if wanted is not None else None
            preferred = normalize(configured) if configured else None
            name = preferred if preferred in image.names else (sorted(image.names) or [None])[0]
        repository, tag = split_name(name)
        rows.append(
            {
                "ContainerName": info.get("name") or info["id"][:12],
                "Service": service,
                "Repository": repository,
                "Tag": tag,
                "ID": image.id if image is not None else digest,
                "Digest": image.digest if image is not None else digest,
                "Size": image.size if image is not None else 0,
            }
        )
    return rows


def run_images(args: argparse.Namespace) -> int:
    from composer.cli.project_cmds import _backend, _load

    project = _load(args)
    unknown = [s for s in args.services if s not in project.services]
    if unknown:
        Output.from_args(args).error(f"no such service: {', '.join(unknown)}")
        return 1
    rows = project_image_rows(project, _backend(), args.services)
    if args.quiet:
        for image_id in dict.fromkeys(short_id(r["ID"]) for r in rows):
            print(image_id)
    elif args.format == "json":
        print_json(rows)
    else:
        columns = ("CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE")
        print_table(
            columns,
            [
                (
                    r["ContainerName"],
                    r["Repository"],
                    r["Tag"],
                    short_id(r["ID"]),
                    human_size(r["Size"]),
                )
                for r in rows
            ],
        )
    return 0


# -- image group ----------------------------------------------------------------------------


def add_image(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="image_command", metavar="COMMAND", required=True)

    ls = sub.add_parser("ls", aliases=["list"], help="List images in the store")
    ls.add_argument("-q", "--quiet", action="store_true", help="only image ids")
    ls.add_argument("--format", choices=["table", "json"], default="table")
    ls.add_argument("--no-trunc", action="store_true", help="full image ids")
    ls.set_defaults(image_run=_image_ls)

    inspect = sub.add_parser("inspect", help="Show images' details as JSON")
    inspect.add_argument("names", nargs="+", metavar="NAME")
    inspect.set_defaults(image_run=_image_inspect)

    history = sub.add_parser("history", help="Show how an image was built")
    history.add_argument("name", metavar="NAME")
    history.add_argument("--format", choices=["table", "json"], default="table")
    history.add_argument("--no-trunc", action="store_true", help="do not shorten output")
    history.add_argument("-q", "--quiet", action="store_true", help="only layer ids")
    history.set_defaults(image_run=_image_history)

    tag = sub.add_parser("tag", help="Give an image another name")
    tag.add_argument("source", metavar="SOURCE")
    tag.add_argument("target", metavar="TARGET")
    tag.set_defaults(image_run=_image_tag)

    rm = sub.add_parser("rm", aliases=["remove", "rmi"], help="Remove images")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.add_argument("-f", "--force", action="store_true", help="even if a container uses it")
    rm.set_defaults(image_run=_image_rm)

    prune = sub.add_parser("prune", help="Remove unused images")
    prune.add_argument("-a", "--all", action="store_true", help="every image no container uses")
    prune.add_argument("-f", "--force", action="store_true", help="do not ask")
    prune.set_defaults(image_run=_image_prune)

    load = sub.add_parser("load", help="Load images from a docker-save or OCI archive")
    load.add_argument("-i", "--input", metavar="FILE", help="archive to read (default: stdin)")
    load.add_argument("-q", "--quiet", action="store_true")
    load.set_defaults(image_run=_image_load)

    save = sub.add_parser("save", help="Write images to an archive")
    save.add_argument("names", nargs="+", metavar="NAME")
    save.add_argument("-o", "--output", metavar="FILE", help="archive to write (default: stdout)")
    save.add_argument("--format", choices=["docker", "oci"], default="docker")
    save.set_defaults(image_run=_image_save)

    imp = sub.add_parser("import", help="Make a one-layer image from a root filesystem tar")
    imp.add_argument("file", metavar="FILE", help="tar (plain, gzip or zstd); '-' reads stdin")
    imp.add_argument("name", nargs="?", metavar="NAME")
    imp.add_argument(
        "-c",
        "--change",
        action="append",
        default=[],
        metavar="INSTRUCTION",
        help="CMD, ENTRYPOINT, ENV, WORKDIR, USER or EXPOSE line for the config (repeatable)",
    )
    imp.set_defaults(image_run=_image_import)


def run_image(args: argparse.Namespace) -> int:
    with _plain_errors():
        return args.image_run(args)


def image_ls_rows() -> list[dict]:
    rows = []
    for image in _store().list_images():
        repository, tag = split_name(image.name)
        rows.append(
            {
                "Repository": repository,
                "Tag": tag,
                "ID": image.id,
                "Digest": image.digest,
                "Created": image.created,
                "Size": image.size,
            }
        )
    return rows


def _image_ls(args: argparse.Namespace) -> int:
    rows = image_ls_rows()
    if args.quiet:
        for image_id in dict.fromkeys(
            r["ID"] if args.no_trunc else short_id(r["ID"]) for r in rows
        ):
            print(image_id)
    elif args.format == "json":
        print_json(rows)
    else:
        print_table(
            ("REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"),
            [
                (
                    r["Repository"],
                    r["Tag"],
                    r["ID"] if args.no_trunc else short_id(r["ID"]),
                    ago(r["Created"]),
                    human_size(r["Size"]),
                )
                for r in rows
            ],
        )
    return 0


def _image_inspect(args: argparse.Namespace) -> int:
    from runtime.images.store import ImageNotFound, inspect

    store = _store()
    found, missing = [], []
    for name in args.names:
        try:
            found.append(inspect(name, store))
        except ImageNotFound:
            missing.append(name)
    print_json(found)
    for name in missing:
        Output.from_args(args).error(f"Error: no such image: {name}")
    return 1 if missing else 0


def _image_history(args: argparse.Namespace) -> int:
    from runtime.images.store import history

    store = _store()
    steps = history(args.name, store)
    image_id = store.resolve(args.name).id
    if args.quiet:
        for step in steps:
            print(short_id(step["Layer"]) if step["Layer"] else "<missing>")
    elif args.format == "json":
        print_json(steps)
    else:
        rows = []
        for index, step in enumerate(steps):
            created_by = step["CreatedBy"]
            if not args.no_trunc and len(created_by) > 45:
                created_by = created_by[:44] + "…"
            rows.append(
                (
                    (image_id if args.no_trunc else short_id(image_id))
                    if index == 0
                    else "<missing>",
                    ago(step["Created"]),
                    created_by,
                    human_size(step["Size"]),
                    step["Comment"],
                )
            )
        print_table(("IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"), rows)
    return 0


def _image_tag(args: argparse.Namespace) -> int:
    from runtime.images.store import tag

    tag(args.source, args.target, _store())
    return 0


def image_users(image, root=None) -> list[str]:
    """Names of the containers created from `image`."""
    from composer import labels as L
    from runtime.engine import Engine

    digests = {image.digest, image.listed_digest} - {None}
    return [
        info.get("name") or info["id"][:12]
        for info in Engine(root).list()
        if (info.get("labels") or {}).get(L.IMAGE) in digests
    ]


def _image_rm(args: argparse.Namespace) -> int:
    from runtime.images.store import ImageError, ImageNotFound, rm

    store = _store()
    out = Output.from_args(args)
    failed = False
    for name in args.names:
        image = store.resolve(name)
        if image is None:
            out.error(f"Error: no such image: {name}")
            failed = True
            continue
        # Removing one of several names only untags: no container loses its image.
        last_name = len(image.names) <= 1 or _is_id(name)
        users = image_users(image, store.state_root) if last_name and not args.force else []
        if users:
            out.error(
                f"Error: image {name} is in use by container {', '.join(users)} "
                "(remove the container first, or use -f)"
            )
            failed = True
            continue
        try:
            removed = rm([name], force=args.force, store=store)
        except ImageNotFound as e:
            out.error(f"Error: {e}")
            failed = True
            continue
        except ImageError as e:  # in use by a container we do not list (not composer's)
            out.error(f"Error: {e}")
            failed = True
            continue
        for item in removed:
            print(f"Deleted: {item}" if item.startswith("sha256:") else f"Untagged: {item}")
    return 1 if failed else 0


def _blob_sizes(store) -> dict[str, int]:
    import os

    sizes = {}
    directory = store.root / "blobs" / "sha256"
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            with contextlib.suppress(FileNotFoundError):
                sizes[f"sha256:{entry.name}"] = entry.stat().st_size
    return sizes


def _image_prune(args: argparse.Namespace) -> int:
    from runtime.images.store import prune

    what = "all images without at least one container" if args.all else "all dangling images"
    if not confirm(f"WARNING! This will remove {what}.", args.force):
        return 0
    store = _store()
    sizes = _blob_sizes(store)
    removed = prune(all_unused=args.all, store=store)
    if removed["images"]:
        print("Deleted Images:")
        for item in removed["images"]:
            print(f"deleted: {item}" if item.startswith("sha256:") else f"untagged: {item}")
        print()
    reclaimed = sum(sizes.get(digest, 0) for digest in removed["blobs"])
    print(f"Total reclaimed space: {human_size(reclaimed)}")
    return 0


def _image_load(args: argparse.Namespace) -> int:
    from runtime.images.archive import load_archive

    if args.input:
        images = load_archive(args.input, _store())
    else:
        if sys.stdin.isatty():
            Output.from_args(args).error("Error: no archive: give -i FILE or pipe one to stdin")
            return 1
        images = load_archive(sys.stdin.buffer, _store())
    if not args.quiet:
        for image in images:
            for name in image.names or []:
                print(f"Loaded image: {name}")
            if not image.names:
                print(f"Loaded image ID: {image.id}")
    return 0


def _image_save(args: argparse.Namespace) -> int:
    from runtime.images.archive import save_archive

    if args.output:
        save_archive(list(args.names), args.output, format=args.format, store=_store())
        return 0
    if sys.stdout.isatty():
        Output.from_args(args).error(
            "Error: refusing to write an archive to a terminal: give -o FILE or redirect"
        )
        return 1
    sys.stdout.flush()
    save_archive(list(args.names), sys.stdout.buffer, format=args.format, store=_store())
    sys.stdout.buffer.flush()
    return 0


def config_changes(lines: list[str]) -> dict:
    """The runtime config (Cmd, Entrypoint, Env …) a few Dockerfile lines describe."""
    import json

    from runtime.images.store import ImageError

    config: dict = {}
    for line in lines:
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword in ("CMD", "ENTRYPOINT"):
            try:
                value = json.loads(rest) if rest.startswith("[") else ["/bin/sh", "-c", rest]
            except ValueError as e:
                raise ImageError(f"--change {line!r}: bad JSON list: {e}") from None
            config["Cmd" if keyword == "CMD" else "Entrypoint"] = value
        elif keyword == "ENV":
            key, sep, value = rest.partition("=")
            if not sep:
                key, _, value = rest.partition(" ")
            env = [e for e in config.get("Env", []) if not e.startswith(f"{key}=")]
            config["Env"] = [*env, f"{key}={value.strip()}"]
        elif keyword == "WORKDIR":
            config["WorkingDir"] = rest
        elif keyword == "USER":
            config["User"] = rest
        elif keyword == "EXPOSE":
            ports = config.setdefault("ExposedPorts", {})
            for port in rest.split():
                ports[port if "/" in port else f"{port}/tcp"] = {}
        else:
            raise ImageError(
                f"--change {line!r}: only CMD, ENTRYPOINT, ENV, WORKDIR, USER and EXPOSE"
            )
    return config


def _image_import(args: argparse.Namespace) -> int:
    config = config_changes(args.change)
    source = sys.stdin.buffer if args.file == "-" else args.file
    image = _store().import_rootfs_tar(source, args.name, config=config)
    print(image.id)
    return 0


# -- pull / push ----------------------------------------------------------------------------


def add_pull(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "--ignore-pull-failures", action="store_true", help="warn about failures, exit 0"
    )
    parser.add_argument(
        "--policy",
        choices=["missing", "always"],
        default="always",
        help="missing: only images not in the store; always (default): fetch again",
    )


def _wanted_images(args, project, skip: Callable[[object], str | None], report) -> dict:
    """{image name: [services]} of the chosen services; skipped ones are reported."""
    chosen = args.services or list(project.services)
    unknown = [s for s in chosen if s not in project.services]
    if unknown:
        from runtime.images.store import ImageError

        raise ImageError(f"no such service: {', '.join(unknown)}")
    images: dict[str, list] = {}
    for name in chosen:
        service = project.services[name]
        why = skip(service)
        if why:
            report(name, f"Skipped - {why}")
            continue
        images.setdefault(service.image, []).append(service)
    return images


def _layer(digest: str) -> str:
    return f"  {short_id(digest)}"


def _pull_one(reference: str, policy: str, store, display) -> None:
    from runtime.images.reference import configured_registries, parse_reference

    def on_progress(digest: str, done: int, total: int) -> None:
        display.transfer(_layer(digest), done, total, "Downloading")

    if policy == "always" and (parse_reference(reference).registry or configured_registries()):
        from runtime.images.pull import pull

        pull(reference, store, on_progress)  # errors surface, not hidden by a local copy
        return
    from runtime.images.obtain import obtain

    obtain(
        reference,
        store,
        policy=policy,
        on_progress=on_progress,
        on_output=lambda line: display(reference, line),
    )


def run_pull(args: argparse.Namespace) -> int:
    from concurrent.futures import ThreadPoolExecutor

    from composer.cli.progress import open_progress
    from composer.cli.project_cmds import _backend, _load

    project = _load(args, args.services)
    store = _backend().store
    out = Output.from_args(args)
    failures: list[str] = []
    with open_progress("quiet" if args.quiet else args) as display:

        def skip(service) -> str | None:
            if not service.image:
                return "no image to pull (built)"
            if service.pull_policy in ("never", "build"):
                return f"pull_policy: {service.pull_policy}"
            return None

        images = _wanted_images(args, project, skip, display)

        def pull_image(reference: str) -> None:
            services = images[reference]
            if args.policy == "missing" and store.resolve(reference) is not None:
                for service in services:
                    display(service.name, "Skipped - image is already present locally")
                return
            for service in services:
                display(service.name, "Pulling")
            try:
                with _plain_errors():
                    _pull_one(reference, args.policy, store, display)
            except Exception as e:
                if not _is_pull_failure(e):
                    raise
                for service in services:
                    display(service.name, "Error")
                # A service that can build its image needs no pull (as docker compose).
                if all(s.build is not None for s in services):
                    out.warn(f"{reference}: {e} (the service builds it)")
                else:
                    failures.append(f"{', '.join(s.name for s in services)}: {e}")
                return
            for service in services:
                display(service.name, "Pulled")

        workers = max(1, min(args.parallel if args.parallel > 0 else 4, len(images) or 1))
        with ThreadPoolExecutor(workers, thread_name_prefix="pull") as pool:
            for future in [pool.submit(pull_image, name) for name in images]:
                future.result()
    for failure in failures:
        (out.warn if args.ignore_pull_failures else out.error)(failure)
    return 1 if failures and not args.ignore_pull_failures else 0


def _is_pull_failure(error: Exception) -> bool:
    from runtime.images.store import ImageError

    kinds: tuple[type[Exception], ...] = (ImageError, OSError)
    if "runtime.images.obtain" in sys.modules:
        from runtime.images.obtain import ImageUnavailable

        kinds += (ImageUnavailable,)
    return isinstance(error, kinds)


def add_push(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("services", nargs="*", metavar="SERVICE")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    parser.add_argument(
        "--ignore-push-failures", action="store_true", help="warn about failures, exit 0"
    )


def run_push(args: argparse.Namespace) -> int:
    from composer.cli.progress import open_progress
    from composer.cli.project_cmds import _backend, _load
    from runtime.images.push import push

    project = _load(args, args.services)
    store = _backend().store
    out = Output.from_args(args)
    failures: list[str] = []
    how_said = {"exists": "Layer already exists", "mounted": "Mounted", "uploaded": "Pushed"}
    with open_progress("quiet" if args.quiet else args) as display:
        images = _wanted_images(
            args, project, lambda s: None if s.image else "no image name to push", display
        )
        for reference, services in images.items():
            names = ", ".join(s.name for s in services)
            display(names, "Pushing")
            try:
                with _plain_errors():
                    push(
                        reference,
                        reference,
                        store,
                        lambda digest, done, total: display.transfer(
                            _layer(digest), done, total, "Pushing"
                        ),
                        on_blob=lambda digest, how: display(_layer(digest), how_said[how]),
                    )
            except Exception as e:
                if not _is_pull_failure(e):
                    raise
                display(names, "Error")
                failures.append(f"{names}: {e}")
                continue
            display(names, "Pushed")
    for failure in failures:
        (out.warn if args.ignore_push_failures else out.error)(failure)
    return 1 if failures and not args.ignore_push_failures else 0


# -- login / logout -------------------------------------------------------------------------


def add_login(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("registry", nargs="?", metavar="REGISTRY")
    parser.add_argument("-u", "--username")
    secret = parser.add_mutually_exclusive_group()
    secret.add_argument("-p", "--password", help="insecure: others can read command lines")
    secret.add_argument("--password-stdin", action="store_true", help="read the password")


def _registry(args: argparse.Namespace) -> str:
    from runtime.images.reference import configured_registries
    from runtime.images.store import ImageError

    if args.registry:
        return args.registry
    configured = configured_registries()
    if not configured:
        raise ImageError("name a registry: no default is configured (COMPOSER_REGISTRIES)")
    return configured[0]


def run_login(args: argparse.Namespace) -> int:
    from runtime.images import auth
    from runtime.images.store import ImageError

    out = Output.from_args(args)
    with _plain_errors():
        registry = _registry(args)
    username = args.username
    if not username:
        if not sys.stdin.isatty() or args.password_stdin:
            raise ImageError("give the user name with -u USER")
        username = input("Username: ").strip()
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif args.password is not None:
        out.warn("a password on the command line is visible to other users; use --password-stdin")
        password = args.password
    elif sys.stdin.isatty():
        import getpass

        password = getpass.getpass("Password: ")
    else:
        raise ImageError("give the password on stdin with --password-stdin")
    if not password:
        raise ImageError("empty password")
    with _plain_errors():
        path = auth.login(registry, username, password)
    out.note(f"credentials stored in {path}")
    print("Login Succeeded")
    return 0


def add_logout(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("registry", nargs="?", metavar="REGISTRY")


def run_logout(args: argparse.Namespace) -> int:
    from runtime.images.auth import erase_credentials

    with _plain_errors():
        registry = _registry(args)
        if erase_credentials(registry):
            print(f"Removing login credentials for {registry}")
        else:
            print(f"Not logged in to {registry}")
    return 0


COMMANDS: dict[str, tuple[str, Callable, Callable]] = {
    "images": ("List images used by the project's containers", add_images, run_images),
    "image": ("Manage images in the store", add_image, run_image),
    "pull": ("Pull service images", add_pull, run_pull),
    "push": ("Push service images", add_push, run_push),
    "login": ("Log in to a registry", add_login, run_login),
    "logout": ("Log out from a registry", add_logout, run_logout),
}
