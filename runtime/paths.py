"""Paths inside a root filesystem, resolved as the kernel would inside it: for the
runtime's mounts and devices, the builder's COPY and the image's files alike."""

import os


def resolve_in_root(root, path: str, follow_last: bool = False) -> str:
    """The host path of `path` inside `root`, symlinks followed as if `root` were `/`.

    No symlink (absolute or with `..`) can lead outside `root`. The last component is
    followed only with `follow_last`, so it can be created or replaced.
    """
    root = os.fspath(root)
    pending = [p for p in path.split("/") if p not in ("", ".")]
    done: list[str] = []
    hops = 0
    while pending:
        part = pending.pop(0)
        if part == "..":
            if done:
                done.pop()
            continue
        candidate = os.path.join(root, *done, part)
        if (pending or follow_last) and os.path.islink(candidate):
            hops += 1
            if hops > 40:
                raise OSError(f"too many levels of symbolic links in {path}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                done = []
            pending = [p for p in target.split("/") if p not in ("", ".")] + pending
            continue
        done.append(part)
    return os.path.join(root, *done)
