"""OCI hooks: run each with the container state on stdin, honouring its timeout."""

from __future__ import annotations

import sys

from runtime.state import dumps


class HookError(RuntimeError):
    """A hook failed where the runtime-spec makes that an error of the operation."""


# Hooks whose failure is only a warning (runtime-spec: the lifecycle goes on).
WARN_ONLY = {"poststart", "poststop"}
FATAL = {"prestart", "createRuntime", "createContainer", "startContainer"}


def run_hook(hook: dict, state: dict) -> None:
    import subprocess

    args = hook.get("args") or [hook["path"]]
    env = dict(item.split("=", 1) for item in hook.get("env") or [] if "=" in item)
    timeout = hook.get("timeout")
    if timeout is not None and timeout <= 0:
        raise HookError(f"hook {hook['path']}: timeout must be positive, got {timeout}")
    try:
        result = subprocess.run(
            args,
            executable=hook["path"],
            input=dumps(state).encode(),
            env=env,
            timeout=timeout,
            stdout=sys.stderr.fileno(),
            close_fds=True,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise HookError(f"hook {hook['path']} timed out after {timeout}s") from None
    except OSError as err:
        raise HookError(f"hook {hook['path']}: {err}") from None
    if result.returncode != 0:
        raise HookError(f"hook {hook['path']} exited with status {result.returncode}")


def run_hooks(config: dict, stage: str, state: dict) -> None:
    """Run config's hooks of `stage` in order; a failure raises HookError or only warns."""
    for hook in (config.get("hooks") or {}).get(stage) or []:
        try:
            run_hook(hook, state)
        except HookError as err:
            if stage not in WARN_ONLY:
                raise
            print(f"composer-runtime: warning: {stage} {err}", file=sys.stderr)
