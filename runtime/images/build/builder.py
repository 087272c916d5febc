"""Dockerfile builds into the image store.

Each stage is a BuildState (layers + image config) changed one instruction at a time.
Filesystem steps (RUN, COPY, ADD, WORKDIR) mount the state's layers with overlayfs
(rootfs.prepare_rootfs), change the mounted tree, and the overlay's upper dir becomes the
step's layer; RUN runs the OCI runtime directly on a bundle from spec.build_config, in the
host network namespace so package installs reach the machine's mirrors. Every step's
result is cached by a key chaining its parent's key (cache.py), so an unchanged rebuild
starts no container and writes no layer.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from runtime.images.build.cache import BuildCache, BuildState, step_key
from runtime.images.build.context import BuildContext, clean, resolve_in_root
from runtime.images.build.dockerfile import (
    Dockerfile,
    DockerfileError,
    Instruction,
    Stage,
    arg_declarations,
    expand,
    expand_words,
    key_values,
    parse,
    parse_duration,
    parse_onbuild,
)

DEFAULT_SHELL = ["/bin/sh", "-c"]
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
# Predefined args: usable without an ARG line, and kept out of the image's history.
PROXY_ARGS = frozenset(_PROXIES) | {name.lower() for name in _PROXIES}
OUTPUT_KEPT = 200  # lines of a failing RUN's output kept in the BuildError
URL_TIMEOUT = 10.0
# Mount points the runtime makes in a root filesystem that lacks them; not part of a layer.
RUNTIME_MOUNT_POINTS = ("proc", "sys", "dev")


class BuildError(Exception):
    """A build step failed; `line`/`instruction` name it and `output` has what it printed."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        instruction: str | None = None,
        step: int | None = None,
        output: str = "",
    ) -> None:
        self.file = file
        self.line = line
        self.instruction = instruction
        self.step = step
        self.output = output
        where = f"{file}:{line}: " if file and line else ""
        what = f"{instruction}: " if instruction else ""
        super().__init__(f"{where}{what}{message}")


def build(
    context_dir: str | os.PathLike,
    dockerfile: str = "Dockerfile",
    *,
    inline: str | None = None,
    target: str | None = None,
    args: dict | None = None,
    labels: dict | None = None,
    tags=(),
    no_cache: bool = False,
    pull: bool = False,
    store,
    on_step: Callable[[int, int, str, bool], None] | None = None,
    on_output: Callable[[str], None] | None = None,
):
    """Build the Dockerfile (or the `inline` text) in `context_dir`; return the Image.

    on_step(step_index, total, text, cached) is called as each step completes (FROM
    counts as one); on_output(line) gets each line a RUN prints.
    """
    builder = Builder(
        context_dir,
        dockerfile,
        inline=inline,
        args=args,
        no_cache=no_cache,
        pull=pull,
        store=store,
        on_step=on_step,
        on_output=on_output,
    )
    return builder.build(target=target, labels=labels, tags=tags)


def _platform_text(platform: dict) -> str:
    parts = [platform["os"], platform["architecture"]]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(parts)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Builder:
    """One build: the parsed Dockerfile, its context, and the stages built so far."""

    def __init__(
        self,
        context_dir,
        dockerfile="Dockerfile",
        *,
        inline=None,
        args=None,
        no_cache=False,
        pull=False,
        store,
        on_step=None,
        on_output=None,
    ) -> None:
        from runtime.images.store import host_platform

        self.store = store
        self.cache = BuildCache(store.state_root)
        self.context_dir = Path(context_dir)
        self.no_cache = no_cache
        self.pull = pull
        self.on_step = on_step or (lambda *_: None)
        self.on_output = on_output or (lambda _line: None)
        self.build_args = {k: str(v) for k, v in (args or {}).items()}
        self.containers_run = 0  # RUN containers started: tests check a cached build has none
        if inline is not None:
            self.path = "dockerfile_inline"
            text = inline
            self.context = BuildContext.load(self.context_dir)
        else:
            dockerfile_path = Path(dockerfile)
            if not dockerfile_path.is_absolute():
                dockerfile_path = self.context_dir / dockerfile_path
            self.path = str(dockerfile_path)
            try:
                text = dockerfile_path.read_text()
            except OSError as e:
                raise DockerfileError(self.path, 0, f"cannot read the Dockerfile: {e}") from e
            self.context = BuildContext.load(self.context_dir, str(dockerfile))
        self.df: Dockerfile = parse(text, self.path)
        self.platform = host_platform()
        text_platform = _platform_text(self.platform)
        # Docker's automatic platform args, usable in FROM and after a bare `ARG NAME`.
        self.automatic = {
            "BUILDPLATFORM": text_platform,
            "TARGETPLATFORM": text_platform,
            "BUILDOS": self.platform["os"],
            "TARGETOS": self.platform["os"],
            "BUILDARCH": self.platform["architecture"],
            "TARGETARCH": self.platform["architecture"],
            "BUILDVARIANT": self.platform.get("variant", ""),
            "TARGETVARIANT": self.platform.get("variant", ""),
        }
        self.meta = dict(self.automatic)
        for inst in self.df.meta_args:
            for name, default in arg_declarations(
                inst, self._lookup_in(self.meta), self.df.escape, self.path
            ):
                if name in self.build_args:
                    self.meta[name] = self.build_args[name]
                elif default is not None:
                    self.meta[name] = default
                else:
                    self.meta.setdefault(name, None)
        self.results: dict[int, BuildState] = {}
        self.step = 0
        self.total = 0

    # ------------------------------------------------------------ top level

    def build(self, target=None, labels=None, tags=()):
        from runtime.images.store import Descriptor

        if target:
            index = self.df.stage_index(target)
            if index is None:
                raise BuildError(
                    f"target stage {target!r} is not in the Dockerfile", file=self.path
                )
        else:
            index = len(self.df.stages) - 1
        needed = self._needed(index)
        self.total = sum(1 + len(self.df.stages[i].instructions) for i in needed)
        for dependency in needed:  # in order, so steps are reported stage by stage
            state = self._stage(dependency)
        config = json.loads(json.dumps(state.config))
        if labels:
            inner = config.setdefault("config", {})
            inner["Labels"] = {**(inner.get("Labels") or {}), **labels}
        history = config.get("history") or []
        config["created"] = history[-1]["created"] if history else "1970-01-01T00:00:00Z"
        config["rootfs"] = {"type": "layers", "diff_ids": list(state.diff_ids)}
        final_key = step_key(state.key, "image", json.dumps(labels or {}, sort_keys=True))
        digest = None if self.no_cache else self.cache.get_image(final_key, self.store)
        if digest is None:
            layers = [Descriptor.from_dict(d) for d in state.layers]
            digest = self.store.put_image(None, config, layers)
            config_digest = self.store.read_json_blob(digest)["config"]["digest"]
            self.cache.put_image(final_key, digest, config_digest)
        for tag in tags:
            current = self.store.resolve(tag)
            if current is None or current.digest != digest:  # an unchanged tag costs no write
                self.store.tag(tag, digest)
        image = self.store.resolve(tags[0] if tags else digest)
        return image

    def _needed(self, index: int, seen: set[int] | None = None) -> list[int]:
        """The stages `index` depends on (FROM and COPY --from by stage name), then itself."""
        seen = set() if seen is None else seen
        if index in seen:
            return []
        seen.add(index)
        order: list[int] = []
        stage = self.df.stages[index]
        refs = [self._expand_meta(stage.base, stage.line)]
        refs += [i.flags["from"] for i in stage.instructions if "from" in i.flags]
        for ref in refs:
            other = self.df.stage_index(ref)
            if other is not None and other < index:
                order += self._needed(other, seen)
        return [*order, index]

    def _expand_meta(self, text: str, line: int) -> str:
        return expand(text, self._lookup_in(self.meta), self.df.escape, where=self._where(line))

    def _where(self, line: int):
        return lambda message: DockerfileError(self.path, line, message)

    @staticmethod
    def _lookup_in(table: dict):
        return lambda name: table.get(name)

    def _report(self, text: str, cached: bool) -> None:
        self.step += 1
        self.on_step(self.step, self.total, text, cached)

    # ------------------------------------------------------------ stages

    def _stage(self, index: int) -> BuildState:
        if index in self.results:
            return self.results[index]
        stage = self.df.stages[index]
        base = self._expand_meta(stage.base, stage.line)
        if stage.platform:
            wanted = self._expand_meta(stage.platform, stage.line)
            ours = _platform_text(self.platform)
            if wanted not in (ours, f"{self.platform['os']}/{self.platform['architecture']}"):
                raise BuildError(
                    f"platform {wanted} cannot be built on this machine ({ours})",
                    file=self.path,
                    line=stage.line,
                    instruction=f"FROM --platform={stage.platform} {stage.base}",
                )
        other = self.df.stage_index(base)
        if other is not None and other < index and not base.isdigit():
            state = self._stage(other).copy()
        elif base.lower() == "scratch":
            platform = self.platform
            state = BuildState(
                config={
                    "architecture": platform["architecture"],
                    "os": platform["os"],
                    "config": {"Env": ["PATH=" + _default_path()]},
                    "history": [],
                },
                key=step_key("scratch", _platform_text(platform)),
            )
        else:
            image = self._base_image(base, stage)
            config = json.loads(json.dumps(image.config))
            config.pop("created", None)
            config.setdefault("config", {})
            config.setdefault("history", [])
            state = BuildState(
                [d.to_dict() for d in image.layers],
                list(image.diff_ids),
                config,
                step_key("image", image.digest),
            )
        self._report(f"FROM {base}" + (f" AS {stage.name}" if stage.name else ""), True)
        scope = _Scope(index)
        triggers = state.config.get("config", {}).pop("OnBuild", None) or []
        if triggers:  # the config lost its triggers: a different state from the base's
            state.key = step_key(state.key, "ONBUILD triggers ran", *triggers)
        for text in triggers:
            carrier = Instruction("ONBUILD", text, stage.line, stage.line, f"ONBUILD {text}")
            inst = parse_onbuild(carrier, self.path)
            state = self._instruction(inst, state, scope)
        for inst in stage.instructions:
            state = self._instruction(inst, state, scope)
            self._report(inst.original, self._last_cached)
        self.results[index] = state
        return state

    # ------------------------------------------------------------ one instruction

    def _instruction(self, inst: Instruction, state: BuildState, scope: _Scope) -> BuildState:
        where = self._where(inst.line)
        variables = scope.variables
        config = state.config.setdefault("config", {})
        env = _env_dict(config.get("Env") or [])

        def lookup(name: str):
            if name in env:
                return env[name]
            return variables.get(name)

        def subst(text: str) -> str:
            return expand(text, lookup, self.df.escape, where=where)

        keyword = inst.keyword
        self._last_cached = False
        if keyword == "ARG":
            declared = []
            for name, default in arg_declarations(inst, lookup, self.df.escape, self.path):
                if name in self.build_args:
                    variables[name] = self.build_args[name]
                elif default is not None:
                    variables[name] = default
                else:
                    variables[name] = self.meta.get(name, self.automatic.get(name))
                declared.append((name, variables[name]))
            # No layer and no history: only later steps' keys change with the value.
            self._last_cached = True
            return state.copy(step_key(state.key, "ARG", json.dumps(declared)))
        if keyword == "RUN":
            return self._run(inst, state, variables)
        if keyword in ("COPY", "ADD"):
            return self._copy(inst, state, scope, lookup)
        if keyword == "WORKDIR":
            path = subst(inst.args)
            base = config.get("WorkingDir") or "/"
            path = os.path.normpath(os.path.join(base, path))
            return self._workdir(inst, state, path)
        if keyword == "CMD":
            scope.cmd_set = True
        return self._metadata(inst, state, subst, lookup, scope)

    def _cached(self, key: str) -> BuildState | None:
        if self.no_cache:
            return None
        hit = self.cache.get(key, self.store)
        self._last_cached = hit is not None
        return hit

    def _finish(self, key: str, state: BuildState, inst: Instruction, empty: bool) -> BuildState:
        state.key = key
        state.config.setdefault("history", []).append(
            {"created": _now(), "created_by": inst.original, "comment": "composer build"}
            | ({"empty_layer": True} if empty else {})
        )
        self.cache.put(key, state)
        return state

    def _metadata(self, inst: Instruction, state: BuildState, subst, lookup, scope) -> BuildState:
        keyword = inst.keyword
        escape = self.df.escape
        where = self._where(inst.line)
        new = state.copy()
        config = new.config.setdefault("config", {})
        if keyword == "ENV":
            pairs = key_values(inst, lookup, escape, self.path)
            env = _env_dict(config.get("Env") or [])
            env.update(pairs)
            config["Env"] = [f"{k}={v}" for k, v in env.items()]
            text = json.dumps(pairs)
        elif keyword == "LABEL":
            pairs = key_values(inst, lookup, escape, self.path)
            config["Labels"] = {**(config.get("Labels") or {}), **dict(pairs)}
            text = json.dumps(pairs)
        elif keyword == "USER":
            config["User"] = text = subst(inst.args)
        elif keyword == "STOPSIGNAL":
            config["StopSignal"] = text = subst(inst.args)
        elif keyword == "EXPOSE":
            ports = config.get("ExposedPorts") or {}
            for word in expand_words(inst.args, lookup, escape, where=where):
                port, _, proto = word.partition("/")
                if not port or not all(p.isdigit() for p in port.split("-")):
                    raise where(f"invalid port {word!r}")
                ports[f"{port}/{(proto or 'tcp').lower()}"] = {}
            config["ExposedPorts"] = ports
            text = json.dumps(sorted(ports))
        elif keyword == "VOLUME":
            paths = inst.exec_form
            if paths is None:
                paths = expand_words(inst.args, lookup, escape, where=where)
            else:
                paths = [subst(p) for p in paths]
            config["Volumes"] = {**(config.get("Volumes") or {}), **{p: {} for p in paths}}
            text = json.dumps(paths)
        elif keyword in ("CMD", "ENTRYPOINT"):
            command = self._command(inst, config)
            field = "Cmd" if keyword == "CMD" else "Entrypoint"
            config[field] = command
            if keyword == "ENTRYPOINT" and not scope.cmd_set:
                config.pop("Cmd", None)  # an inherited CMD goes with a new ENTRYPOINT
            text = json.dumps(command)
        elif keyword == "SHELL":
            config["Shell"] = list(inst.exec_form or [])
            text = json.dumps(config["Shell"])
        elif keyword == "HEALTHCHECK":
            config["Healthcheck"] = self._healthcheck(inst, config)
            text = json.dumps(config["Healthcheck"], sort_keys=True)
        elif keyword == "ONBUILD":
            parse_onbuild(inst, self.path)
            config["OnBuild"] = [*(config.get("OnBuild") or []), inst.args]
            text = inst.args
        elif keyword == "MAINTAINER":
            new.config["author"] = text = inst.args
        else:  # pragma: no cover - the parser refuses unknown instructions
            raise where(f"unsupported instruction {keyword}")
        key = step_key(state.key, keyword, text)
        hit = self._cached(key)
        if hit is not None:
            return hit
        return self._finish(key, new, inst, empty=True)

    def _command(self, inst: Instruction, config: dict) -> list[str]:
        if inst.exec_form is not None:
            return list(inst.exec_form)
        if not inst.args:
            return []
        return [*(config.get("Shell") or DEFAULT_SHELL), inst.args]

    def _healthcheck(self, inst: Instruction, config: dict) -> dict:
        where = self._where(inst.line)
        words = inst.args.split(None, 1)
        kind = words[0].upper() if words else ""
        if kind == "NONE":
            if inst.flags:
                raise where("HEALTHCHECK NONE takes no options")
            return {"Test": ["NONE"]}
        if kind != "CMD" or len(words) < 2:
            raise where("HEALTHCHECK needs CMD <command> or NONE")
        rest = words[1].strip()
        from runtime.images.build.dockerfile import _json_array

        exec_form = _json_array(rest)
        test = ["CMD", *exec_form] if exec_form is not None else ["CMD-SHELL", rest]
        check: dict = {"Test": test}
        names = {
            "interval": "Interval",
            "timeout": "Timeout",
            "start-period": "StartPeriod",
            "start-interval": "StartInterval",
        }
        for flag, field in names.items():
            if flag in inst.flags:
                try:
                    check[field] = int(parse_duration(inst.flags[flag]) * 1e9)
                except ValueError as e:
                    raise where(f"HEALTHCHECK --{flag}: {e}") from None
        if "retries" in inst.flags:
            try:
                check["Retries"] = int(inst.flags["retries"])
            except ValueError:
                raise where(
                    f"HEALTHCHECK --retries must be a number: {inst.flags['retries']!r}"
                ) from None
        return check

    # ------------------------------------------------------------ filesystem steps

    @contextmanager
    def _mounted(self, state: BuildState):
        """(root filesystem to change, directory whose content becomes the layer, is overlay)."""
        from runtime.images.rootfs import prepare_rootfs, release_rootfs
        from runtime.images.store import Descriptor, Image
        from runtime.state import containers_dir

        directory = containers_dir(self.store.state_root) / f"build-{os.urandom(8).hex()}"
        directory.mkdir(parents=True)
        try:
            if not state.layers:
                upper = directory / "upper"
                upper.mkdir(mode=0o755)
                yield upper, upper, False
                return
            image = Image(
                None,
                "",
                {},
                state.config,
                [Descriptor.from_dict(d) for d in state.layers],
                list(state.diff_ids),
            )
            rootfs = prepare_rootfs(image, directory, self.store)
            try:
                yield rootfs, directory / "upper", True
            finally:
                release_rootfs(directory, self.store.state_root)
        finally:
            from runtime.images.layers import remove_tree

            remove_tree(directory)

    def _commit(self, state: BuildState, changes: Path, overlay: bool) -> tuple[BuildState, bool]:
        """`state` plus the layer in `changes`; (new state, whether it was empty)."""
        new = state.copy()
        if not any(os.scandir(changes)):
            return new, True
        descriptor, diff_id = self.store.commit_layer_dir(changes, overlay_upper=overlay)
        new.layers.append(descriptor.to_dict())
        new.diff_ids.append(diff_id)
        return new, False

    def _workdir(self, inst: Instruction, state: BuildState, path: str) -> BuildState:
        key = step_key(state.key, "WORKDIR", path)
        hit = self._cached(key)
        if hit is not None:
            return hit
        with self._mounted(state) as (rootfs, changes, overlay):
            target = resolve_in_root(rootfs, path, follow_last=True)
            if not os.path.isdir(target):
                make_dirs(rootfs, path, 0, 0)
            new, empty = self._commit(state, changes, overlay)
        new.config.setdefault("config", {})["WorkingDir"] = path
        return self._finish(key, new, inst, empty)

    # ------------------------------------------------------------ RUN

    def _run(self, inst: Instruction, state: BuildState, variables: dict) -> BuildState:
        config = state.config.get("config", {})
        env = _env_dict(config.get("Env") or [])
        # Build args reach RUN's environment, below ENV; proxy args only when given.
        arg_env = {k: v for k, v in variables.items() if v is not None and k not in env}
        for name in PROXY_ARGS:
            if name in self.build_args and name not in env:
                arg_env[name] = self.build_args[name]
        args, script = self._run_args(inst, config)
        network = inst.flags.get("network", "default")
        if network not in ("default", "host", "none"):
            raise self._where(inst.line)(f"RUN --network={network}: use default, host or none")
        if "mount" in inst.flags or "security" in inst.flags:
            raise self._where(inst.line)("RUN --mount and --security are not supported")
        # Proxy settings change how a download travels, not what it gets: not in the key.
        keyed_env = {k: v for k, v in arg_env.items() if k not in PROXY_ARGS or k in variables}
        key = step_key(
            state.key,
            "RUN",
            json.dumps(args),
            script or "",
            json.dumps(sorted(keyed_env.items())),
            network,
        )
        hit = self._cached(key)
        if hit is not None:
            return hit
        with self._mounted(state) as (rootfs, changes, overlay):
            if not overlay:
                raise BuildError(
                    "RUN needs a base image with a shell; this stage is FROM scratch with no files",
                    file=self.path,
                    line=inst.line,
                    instruction=inst.original,
                )
            self._run_container(inst, rootfs, args, script, {**arg_env, **env}, config, network)
            new, empty = self._commit(state, changes, overlay)
        return self._finish(key, new, inst, empty)

    def _run_args(self, inst: Instruction, config: dict) -> tuple[list[str], str | None]:
        """The RUN command line, and a heredoc script to run instead of a command."""
        shell = config.get("Shell") or DEFAULT_SHELL
        if inst.exec_form is not None:
            return list(inst.exec_form), None
        if inst.heredocs:
            bare = inst.args.strip().lstrip("<").lstrip("-").strip("\"'")
            if len(inst.heredocs) == 1 and bare == inst.heredocs[0].name:
                content = inst.heredocs[0].content
                if content.startswith("#!"):
                    return [], content  # run as a script file with its own interpreter
                return [*shell, content], None
            # The shell reads the heredocs itself: give it the instruction as written.
            text = inst.args + "\n" + "".join(f"{h.content}{h.name}\n" for h in inst.heredocs)
            return [*shell, text], None
        return [*shell, inst.args], None

    def _run_container(self, inst, rootfs: Path, args, script, env, config, network) -> None:
        from runtime.engine import DEFAULT_RUNTIME, runtime_command
        from runtime.oci.spec import Bind, ContainerSpec, build_config
        from runtime.state import atomic_write_json, runtimes_dir

        try:
            uid, gid, groups = resolve_user(rootfs, config.get("User") or "0")
        except BuildError as e:
            raise BuildError(
                str(e), file=self.path, line=inst.line, instruction=inst.original
            ) from None
        binds = []
        for name in ("resolv.conf", "hosts"):
            inside = resolve_in_root(rootfs, f"/etc/{name}", follow_last=True)
            if os.path.isfile(f"/etc/{name}") and os.path.isfile(inside):
                binds.append(Bind(f"/etc/{name}", f"/etc/{name}", readonly=True))
        bundle = rootfs.parent / "bundle"
        bundle.mkdir(exist_ok=True)
        if script is not None:
            script_path = bundle / "script"
            script_path.write_text(script)
            script_path.chmod(0o755)
            binds.append(Bind(str(script_path), "/dev/.build-script", readonly=True))
            args = ["/dev/.build-script"]
        existing = {p for p in RUNTIME_MOUNT_POINTS if os.path.lexists(rootfs / p)}
        container_id = f"build-{os.urandom(8).hex()}"
        spec = ContainerSpec(
            rootfs=str(rootfs),
            args=args,
            env=[f"{k}={v}" for k, v in env.items()],
            cwd=config.get("WorkingDir") or "/",
            uid=uid,
            gid=gid,
            additional_gids=groups,
            hostname="composer-build",
            binds=binds,
            namespaces={} if network == "none" else {"network": "host"},
            cgroups_path=f"/composer/{container_id}",
        )
        atomic_write_json(bundle / "config.json", build_config(spec))
        state_dir = runtimes_dir(self.store.state_root) / DEFAULT_RUNTIME
        state_dir.mkdir(parents=True, exist_ok=True)
        base = [*runtime_command(DEFAULT_RUNTIME), "--root", str(state_dir)]
        output: list[str] = []
        self.containers_run += 1
        try:
            proc = subprocess.Popen(
                [*base, "run", "--bundle", str(bundle), container_id],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = raw.decode(errors="replace").rstrip("\n")
                output.append(line)
                del output[:-OUTPUT_KEPT]
                self.on_output(line)
            code = proc.wait()
        finally:
            # `run` deletes the container when it ends; one left over (we were interrupted,
            # or the runtime failed midway) is deleted here.
            if (state_dir / container_id).exists():
                subprocess.run(
                    [*base, "delete", "--force", container_id],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                )
        for name in RUNTIME_MOUNT_POINTS:
            path = rootfs / name
            if name not in existing and os.path.isdir(path) and not os.path.islink(path):
                try:
                    os.rmdir(path)
                except OSError:
                    pass  # the command put files there: they belong to the layer
        if code != 0:
            raise BuildError(
                f"the command returned a non-zero code: {code}",
                file=self.path,
                line=inst.line,
                instruction=inst.original,
                step=self.step + 1,
                output="\n".join(output),
            )

    # ------------------------------------------------------------ COPY / ADD

    def _copy(self, inst: Instruction, state: BuildState, scope: _Scope, lookup) -> BuildState:
        where = self._where(inst.line)
        escape = self.df.escape
        add = inst.keyword == "ADD"
        if inst.exec_form is not None:
            words = [expand(w, lookup, escape, where=where) for w in inst.exec_form]
        else:
            words = expand_words(inst.args, lookup, escape, where=where)
        heredoc_names = {f"<<{h.name}" for h in inst.heredocs} | {
            f"<<-{h.name}" for h in inst.heredocs
        }
        heredoc_names |= {f"<<{q}{h.name}{q}" for h in inst.heredocs for q in "\"'"}
        words = [w for w in words if w not in heredoc_names and not w.startswith("<<")]
        if not words or (len(words) < 2 and not inst.heredocs):
            raise where(f"{inst.keyword} needs a source and a destination")
        dest, sources = words[-1], words[:-1]
        config = state.config.get("config", {})
        workdir = config.get("WorkingDir") or "/"
        dest_is_dir = dest.endswith("/") or len(sources) + len(inst.heredocs) > 1
        dest = os.path.normpath(os.path.join(workdir, dest))
        chown = (
            expand(inst.flags["chown"], lookup, escape, where=where)
            if "chown" in inst.flags
            else None
        )
        chmod = None
        if "chmod" in inst.flags:
            try:
                chmod = int(inst.flags["chmod"], 8)
            except ValueError:
                raise where(f"--chmod={inst.flags['chmod']}: give an octal mode") from None
        heredocs = [
            (
                h.name,
                expand(h.content, lookup, escape, quotes=False, where=where)
                if h.expand
                else h.content,
            )
            for h in inst.heredocs
        ]
        unsupported = [f for f in ("parents", "exclude", "keep-git-dir") if f in inst.flags]
        if unsupported:
            raise where(f"{inst.keyword} --{unsupported[0]} is not supported")
        source_from = inst.flags.get("from")
        urls = [s for s in sources if add and s.startswith(("http://", "https://"))]
        fetched: dict[str, bytes] = {url: self._fetch(url, inst) for url in urls}
        if "checksum" in inst.flags:
            wanted = expand(inst.flags["checksum"], lookup, escape, where=where)
            if len(fetched) != 1 or len(sources) != 1:
                raise where("ADD --checksum needs exactly one URL source")
            actual = "sha256:" + _sha256(next(iter(fetched.values())))
            if wanted != actual:
                raise where(f"ADD --checksum: {urls[0]} has {actual}, expected {wanted}")
        local = [s for s in sources if s not in fetched]
        key_parts = [inst.keyword, dest, str(dest_is_dir), chown or "", inst.flags.get("chmod", "")]
        key_parts += [f"{name}\0{content}" for name, content in heredocs]
        key_parts += [f"{u}\0{_sha256(b)}" for u, b in fetched.items()]
        source_state = None
        if source_from is not None:
            source_from = expand(source_from, lookup, escape, where=where)
            source_state = self._source_state(source_from, inst, scope)
            matched = local
            key_parts += ["from", source_state.key, *local]
        else:
            matched = []
            for pattern in local:
                found = self.context.glob(pattern)
                if not found:
                    raise BuildError(
                        f"{pattern}: not found in the build context (or excluded by .dockerignore)",
                        file=self.path,
                        line=inst.line,
                        instruction=inst.original,
                    )
                matched += found
            if len(matched) > 1:
                dest_is_dir = True
            key_parts += ["context", *matched, self.context.checksum(matched)]
        key = step_key(state.key, *key_parts)
        hit = self._cached(key)
        if hit is not None:
            return hit
        with self._mounted(state) as (rootfs, changes, overlay):
            uid, gid = (0, 0)
            if chown:
                try:
                    uid, gid, _ = resolve_user(rootfs, chown, group_default_from_user=True)
                except BuildError as e:
                    raise BuildError(
                        f"--chown: {e}", file=self.path, line=inst.line, instruction=inst.original
                    ) from None
            if not dest_is_dir:
                existing = resolve_in_root(rootfs, dest, follow_last=True)
                dest_is_dir = os.path.isdir(existing)
            copier = _Copier(rootfs, uid, gid, chmod)
            if source_state is not None:
                self._copy_from_state(source_state, matched, dest, dest_is_dir, copier, inst)
            else:
                for rel in matched:
                    source = self.context.path(rel)
                    if add and source.is_file() and _is_archive(source):
                        _extract_into(source, rootfs, dest, copier)
                        continue
                    copier.copy_tree(source, rel, dest, dest_is_dir, self.context)
            for name, content in heredocs:
                target = os.path.join(dest, name) if dest_is_dir else dest
                copier.write_file(target, content.encode(), 0o644)
            for url, data in fetched.items():
                name = url.rstrip("/").rsplit("/", 1)[-1] or "index.html"
                target = os.path.join(dest, name) if dest_is_dir else dest
                copier.write_file(target, data, 0o600)
            new, empty = self._commit(state, changes, overlay)
        return self._finish(key, new, inst, empty)

    def _source_state(self, ref: str, inst: Instruction, scope: _Scope) -> BuildState:
        index = self.df.stage_index(ref)
        if index is not None and index < scope.stage_index:
            return self._stage(index)
        if index is not None:
            raise BuildError(
                f"--from={ref} names this stage or a later one; only earlier stages can be used",
                file=self.path,
                line=inst.line,
                instruction=inst.original,
            )
        image = self._base_image(ref, None, inst)
        return BuildState(
            [d.to_dict() for d in image.layers],
            list(image.diff_ids),
            image.config,
            step_key("image", image.digest),
        )

    def _copy_from_state(self, source_state, patterns, dest, dest_is_dir, copier, inst) -> None:
        with self._mounted(source_state) as (source_root, _changes, _overlay):
            matched = []
            for pattern in patterns:
                found = glob_in_root(source_root, pattern)
                if not found:
                    raise BuildError(
                        f"{pattern}: not found in {inst.flags.get('from')}",
                        file=self.path,
                        line=inst.line,
                        instruction=inst.original,
                    )
                matched += found
            if len(matched) > 1:
                dest_is_dir = True
            for rel in matched:
                source = Path(resolve_in_root(source_root, rel, follow_last=True))
                copier.copy_tree(source, rel, dest, dest_is_dir, None)

    def _fetch(self, url: str, inst: Instruction) -> bytes:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(url, timeout=URL_TIMEOUT) as response:
                return response.read()
        except (urllib.error.URLError, OSError, ValueError) as e:
            reason = getattr(e, "reason", e)
            raise BuildError(
                f"cannot fetch {url}: this machine is offline or cannot reach that host "
                f"({reason}); put the file in the build context and COPY it instead",
                file=self.path,
                line=inst.line,
                instruction=inst.original,
            ) from None

    # ------------------------------------------------------------ base images

    def _base_image(self, name: str, stage: Stage | None, inst: Instruction | None = None):
        line = stage.line if stage else inst.line
        text = f"FROM {name}" if stage else inst.original
        self._resolve_local(name, line, text)  # a malformed name is this line's error
        from runtime.images.obtain import ImageUnavailable, obtain

        try:
            return obtain(
                name,
                self.store,
                policy="always" if self.pull else "missing",
                on_output=self.on_output,
            )
        except ImageUnavailable as e:
            raise BuildError(str(e), file=self.path, line=line, instruction=text) from None

    def _resolve_local(self, name, line, text):
        from runtime.images.store import ImageError

        try:
            return self.store.resolve(name)
        except ImageError as e:
            raise BuildError(str(e), file=self.path, line=line, instruction=text) from None


# ---------------------------------------------------------------- helpers


class _Scope:
    """What one stage's instructions share beyond the image config."""

    def __init__(self, stage_index: int) -> None:
        self.stage_index = stage_index
        self.variables: dict[str, str | None] = {}  # ARGs declared in the stage
        self.cmd_set = False  # an ENTRYPOINT keeps CMD only if the stage set one


def _default_path() -> str:
    return "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _env_dict(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def make_dirs(root, path: str, uid: int, gid: int) -> str:
    """mkdir -p of `path` inside `root` (new dirs 0755, owned by uid:gid)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current = "/"
    for part in parts:
        current = os.path.join(current, part)
        host = resolve_in_root(root, current, follow_last=True)
        if not os.path.isdir(host):
            if os.path.lexists(host):
                os.unlink(host)
            os.mkdir(host, 0o755)
            os.chmod(host, 0o755)  # not narrowed by the umask
            os.chown(host, uid, gid)
    return resolve_in_root(root, path, follow_last=True)


def glob_in_root(root, pattern: str) -> list[str]:
    """Paths (relative to `root`) matching a COPY --from source pattern."""
    from runtime.images.build.context import BuildContext

    return BuildContext(root).glob(pattern) if pattern.strip("/") else ["."]


def resolve_user(rootfs, user: str, group_default_from_user: bool = False):
    """(uid, gid, extra gids) for "name|uid[:group|gid]" using the rootfs's passwd/group."""
    name, _, group = user.partition(":")
    passwd = _read_db(rootfs, "/etc/passwd")
    groups = _read_db(rootfs, "/etc/group")
    if name.isdigit():
        uid = int(name)
        entry = next((e for e in passwd if e[2:3] == [name]), None)
    else:
        entry = next((e for e in passwd if e[0] == name), None)
        if entry is None:
            raise BuildError(f"user {name!r} is not in the image's /etc/passwd")
        uid = int(entry[2])
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            match = next((g for g in groups if g[0] == group), None)
            if match is None:
                raise BuildError(f"group {group!r} is not in the image's /etc/group")
            gid = int(match[2])
    elif group_default_from_user and name.isdigit():
        gid = uid  # --chown=1000 means 1000:1000
    else:
        gid = int(entry[3]) if entry and len(entry) > 3 and entry[3].isdigit() else 0
    extra = []
    if entry is not None and not group:
        for g in groups:
            if len(g) > 3 and entry[0] in g[3].split(",") and g[2].isdigit():
                extra.append(int(g[2]))
    return uid, gid, sorted(set(extra) - {gid})


def _read_db(rootfs, path: str) -> list[list[str]]:
    try:
        with open(resolve_in_root(rootfs, path, follow_last=True)) as f:
            return [line.split(":") for line in f.read().splitlines() if line and ":" in line]
    except OSError:
        return []


class _Copier:
    """Copies files into a root filesystem, owned uid:gid, with an optional fixed mode."""

    def __init__(self, rootfs, uid: int, gid: int, chmod: int | None) -> None:
        self.rootfs = rootfs
        self.uid = uid
        self.gid = gid
        self.chmod = chmod

    def _prepare_parent(self, target: str) -> str:
        parent = os.path.dirname(target.rstrip("/")) or "/"
        make_dirs(self.rootfs, parent, self.uid, self.gid)
        host = resolve_in_root(self.rootfs, target)
        if os.path.lexists(host) and not (os.path.isdir(host) and not os.path.islink(host)):
            os.unlink(host)
        return host

    def write_file(self, target: str, data: bytes, mode: int) -> None:
        host = self._prepare_parent(target)
        if os.path.isdir(host) and not os.path.islink(host):
            shutil.rmtree(host)
        with open(host, "wb") as f:
            f.write(data)
        os.chown(host, self.uid, self.gid)
        os.chmod(host, self.chmod if self.chmod is not None else mode)

    def copy_tree(self, source: Path, rel: str, dest: str, dest_is_dir: bool, context) -> None:
        """Copy `source` (a file, link or directory's contents) to `dest` in the rootfs."""
        st = os.lstat(source)
        if stat.S_ISDIR(st.st_mode):
            # A directory's contents are copied, not the directory: dest keeps its own mode.
            if not os.path.isdir(resolve_in_root(self.rootfs, dest, follow_last=True)):
                make_dirs(self.rootfs, dest, self.uid, self.gid)
            if context is not None:
                children = ((child, entry.path) for child, entry in context.walk(rel))
                prefix = len(rel) + 1 if clean(rel) != "." else 0
                for child, path in children:
                    self._entry(Path(path), os.path.join(dest, child[prefix:]), os.lstat(path))
            else:
                for directory, dirnames, filenames in os.walk(source):
                    dirnames.sort()
                    for name in [*dirnames, *sorted(filenames)]:
                        path = os.path.join(directory, name)
                        inner = os.path.relpath(path, source)
                        self._entry(Path(path), os.path.join(dest, inner), os.lstat(path))
            return
        target = os.path.join(dest, os.path.basename(rel.rstrip("/"))) if dest_is_dir else dest
        self._entry(source, target, st)

    def _entry(self, source: Path, target: str, st: os.stat_result) -> None:
        if stat.S_ISDIR(st.st_mode):
            host = resolve_in_root(self.rootfs, target, follow_last=True)
            if not os.path.isdir(host):
                make_dirs(self.rootfs, target, self.uid, self.gid)
            mode = self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode)
            os.chown(host, self.uid, self.gid)
            os.chmod(host, mode)
            os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))
            return
        host = self._prepare_parent(target)
        if os.path.isdir(host) and not os.path.islink(host):
            shutil.rmtree(host)
        if stat.S_ISLNK(st.st_mode):
            os.symlink(os.readlink(source), host)
            os.chown(host, self.uid, self.gid, follow_symlinks=False)
            return
        if stat.S_ISREG(st.st_mode):
            shutil.copyfile(source, host, follow_symlinks=False)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            os.mknod(host, st.st_mode, st.st_rdev)
        else:
            return  # sockets are not copied
        os.chown(host, self.uid, self.gid)
        os.chmod(host, self.chmod if self.chmod is not None else stat.S_IMODE(st.st_mode))
        os.utime(host, ns=(st.st_atime_ns, st.st_mtime_ns))


def _is_archive(path: Path) -> bool:
    import tarfile

    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError):
        return False


def _extract_into(archive: Path, rootfs, dest: str, copier: _Copier) -> None:
    """ADD of a local tar: its files land in `dest` with the tar's owners and modes."""
    import tarfile
    import tempfile

    with tempfile.TemporaryDirectory(prefix="composer-add-") as scratch:
        with tarfile.open(archive) as tar:
            tar.extractall(scratch, filter="tar")  # refuses absolute paths and escapes
        keep_owner = _Copier(rootfs, 0, 0, None)
        make_dirs(rootfs, dest, copier.uid, copier.gid)
        for directory, dirnames, filenames in os.walk(scratch):
            dirnames.sort()
            for name in [*dirnames, *sorted(filenames)]:
                path = os.path.join(directory, name)
                st = os.lstat(path)
                keep_owner.uid, keep_owner.gid = st.st_uid, st.st_gid
                keep_owner._entry(
                    Path(path), os.path.join(dest, os.path.relpath(path, scratch)), st
                )
