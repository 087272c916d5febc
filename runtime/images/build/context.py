"""The build context: which files a build may read (.dockerignore), globs, and their hash.

.dockerignore rules, as Docker applies them: one pattern a line, `#` comments, surrounding
space trimmed, paths cleaned and a leading `/` dropped; `*`, `?`, `[...]` within one path
element and `**` for any number of them; a pattern also excludes everything under a
directory it matches; `!pattern` re-includes; the last matching line wins.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import stat
from pathlib import Path

from runtime.paths import resolve_in_root
from runtime.record import record


class ContextError(Exception):
    """A source that the context does not have (missing, ignored, or outside it)."""


def clean(path: str) -> str:
    """`path` relative to the context root: normalised, no leading `/`, no `..` above it."""
    path = posixpath.normpath("/" + path.replace(os.sep, "/"))
    return path.lstrip("/") or "."


def _element_regex(pattern: str) -> str:
    """A regex for glob syntax within path elements; `**` crosses `/`."""
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            if pattern.startswith("**", i):
                i += 2
                if pattern.startswith("/", i):
                    out.append("(?:.*/)?")  # `**/` also matches no directory at all
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 2 if pattern.startswith("[!", i) else i + 1)
            if end < 0:
                raise ValueError(f"unterminated [ in pattern {pattern!r}")
            body = pattern[i + 1 : end]
            if body.startswith(("!", "^")):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


@record
class IgnoreRule:
    pattern: str
    exception: bool
    regex: re.Pattern


def parse_ignore(text: str) -> list[IgnoreRule]:
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        exception = line.startswith("!")
        if exception:
            line = line[1:].strip()
        pattern = clean(line)
        if pattern == ".":
            continue  # "." or "/" would ignore the whole context: Docker skips it too
        rules.append(IgnoreRule(pattern, exception, re.compile(_element_regex(pattern) + r"\Z")))
    return rules


def _ancestors_and_self(rel: str) -> list[str]:
    parts = rel.split("/")
    return ["/".join(parts[: n + 1]) for n in range(len(parts))]


class BuildContext:
    """A context directory and its .dockerignore rules."""

    def __init__(self, root: str | os.PathLike, ignore: list[IgnoreRule] | None = None) -> None:
        self.root = Path(root).resolve()
        self.rules = list(ignore or [])
        self._has_exceptions = any(r.exception for r in self.rules)

    @classmethod
    def load(cls, root: str | os.PathLike, dockerfile: str | None = None) -> BuildContext:
        """The context at `root`; `<dockerfile>.dockerignore` beside the Dockerfile wins
        over `.dockerignore` at the root, as in BuildKit."""
        root = Path(root)
        candidates = [root / ".dockerignore"]
        if dockerfile:
            candidates.insert(0, Path(str(root / dockerfile) + ".dockerignore"))
        for candidate in candidates:
            if candidate.is_file():
                return cls(root, parse_ignore(candidate.read_text()))
        return cls(root)

    def excluded(self, rel: str) -> bool:
        """Whether the file or directory `rel` (relative to the root) is ignored."""
        rel = clean(rel)
        if rel == ".":
            return False
        chain = _ancestors_and_self(rel)
        verdict = False
        for rule in self.rules:
            if any(rule.regex.match(p) for p in chain):
                verdict = not rule.exception
        return verdict

    def _may_reinclude_under(self, rel: str) -> bool:
        # An excluded directory is still walked if an exception could match inside it.
        if not self._has_exceptions:
            return False
        prefix = rel + "/"
        return any(
            r.exception and (r.pattern.startswith(prefix) or "*" in r.pattern or "?" in r.pattern)
            for r in self.rules
        )

    def path(self, rel: str) -> Path:
        """The file `rel` names, symlinks on the way followed inside the context only."""
        return Path(resolve_in_root(self.root, clean(rel), follow_last=True))

    def glob(self, pattern: str) -> list[str]:
        """Context paths (relative) matching a COPY source pattern, not ignored, sorted."""
        pattern = clean(pattern)
        if not any(c in pattern for c in "*?["):
            if pattern != "." and self.excluded(pattern):
                return []
            target = self.path(pattern)
            return [pattern] if os.path.lexists(target) else []
        regex = re.compile(_element_regex(pattern) + r"\Z")
        depth = pattern.count("/") if "**" not in pattern else None
        found = []
        for rel, _entry in self.walk(".", max_depth=depth):
            if regex.match(rel):
                found.append(rel)
        return sorted(found)

    def walk(self, rel: str = ".", max_depth: int | None = None):
        """(relative path, os.DirEntry) under `rel`, parents first, ignored ones left out."""
        base = self.path(rel)
        stack = [(base, "" if clean(rel) == "." else clean(rel), 0)]
        while stack:
            directory, prefix, depth = stack.pop()
            try:
                entries = sorted(os.scandir(directory), key=lambda e: e.name)
            except NotADirectoryError:
                continue
            for entry in entries:
                child = f"{prefix}/{entry.name}" if prefix else entry.name
                is_dir = entry.is_dir(follow_symlinks=False)
                if self.excluded(child):
                    if is_dir and self._may_reinclude_under(child):
                        stack.append((Path(entry.path), child, depth + 1))
                    continue
                yield child, entry
                if is_dir and (max_depth is None or depth < max_depth):
                    stack.append((Path(entry.path), child, depth + 1))

    def checksum(self, sources: list[str]) -> str:
        """sha256 over the sources' names, types, modes, owners, contents and link targets.

        Directories count with everything under them that is not ignored.
        """
        digest = hashlib.sha256()
        for rel in sources:
            top = self.path(rel)
            digest.update(b"S" + rel.encode() + b"\0")
            _hash_entry(digest, ".", top)
            if top.is_dir() and not top.is_symlink():
                for child, entry in self.walk(rel):
                    _hash_entry(digest, child[len(rel) + 1 :] if rel != "." else child, entry.path)
        return digest.hexdigest()


def _hash_entry(digest, name: str, path) -> None:
    st = os.lstat(path)
    header = f"{name}\0{st.st_mode:o}\0{st.st_uid}\0{st.st_gid}\0"
    digest.update(header.encode())
    if stat.S_ISREG(st.st_mode):
        digest.update(file_digest(path).encode())
    elif stat.S_ISLNK(st.st_mode):
        digest.update(os.readlink(path).encode())
    elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        digest.update(f"{st.st_rdev}".encode())
    digest.update(b"\n")


def file_digest(path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()
