"""Where each value of a loaded project was written, for checks made after loading.

The model is plain frozen data without marks, yet a check that can only run at
`up` time (a bind source that is gone, a secret file that is missing) must name
FILE:LINE:COL like any loader error. SourcePositions answers from the normalized
tree the loader built anyway: nothing is copied or walked at load time, so
`composer config` pays nothing for it. The marks are those the loader passes
kept, so after include, extends and merge they name the file that set the value.
"""

from __future__ import annotations

from typing import Any

from composer.loader.errors import Problem
from composer.loader.nodes import MapNode, Mark, SeqNode

_ABSENT = object()


class SourcePositions:
    """Marks of a project's keys by path, e.g. ("services", "web", "volumes", 0)."""

    __slots__ = ("_root",)

    def __init__(self, root: Any) -> None:
        self._root = root

    def __repr__(self) -> str:
        return "SourcePositions(...)"

    def find(self, path: tuple | list) -> tuple[Any, Mark | None]:
        """(value, mark) at path; (_ABSENT, None) when the files do not have it.

        No guess from a parent node: a value that came from elsewhere (the
        command line) must not be shown at a line that did not set it.
        """
        node, mark = self._root, getattr(self._root, "mark", None)
        for step in path:
            if (isinstance(node, MapNode) and step in node) or (
                isinstance(node, SeqNode) and isinstance(step, int) and 0 <= step < len(node)
            ):
                mark = node.mark_of(step)
            else:
                return _ABSENT, None
            node = node[step]
        return node, mark

    def mark(self, path: tuple | list, value: Any = _ABSENT) -> Mark | None:
        """Where path's value is written; None when the files do not have it, or (if
        value is given) when the files' value there is another one."""
        found, mark = self.find(path)
        if found is _ABSENT or (value is not _ABSENT and found != value):
            return None
        return mark

    def problem(
        self,
        message: str,
        path: tuple,
        *,
        value: Any = _ABSENT,
        mark_path: tuple | None = None,
        hint: str | None = None,
    ) -> Problem:
        """A Problem shown as `FILE:LINE:COL: path: message`, marked where mark_path
        (a more precise place, path by default) holds value; unmarked when it does not."""
        return Problem(message, self.mark(mark_path or path, value), tuple(path), hint)


NO_POSITIONS = SourcePositions(None)
