"""Location-carrying containers for the loader's tree.

Parsed YAML becomes plain dicts, lists and scalars, except that every mapping is
a MapNode and every sequence a SeqNode. They remember where each of their keys
and items came from, so every later pass can keep (or copy) those marks and an
error can always name FILE:LINE:COL.
"""

from __future__ import annotations

from typing import Any

from runtime.record import record


@record
class Mark:
    """A place in a source file; line and col are 1-based."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class MapNode(dict):
    """A dict whose keys and values remember their source marks.

    key_marks[k] is where key k is written, value_marks[k] where its value starts;
    tags[k] holds a merge tag ("reset" or "override") written on the value.
    """

    __slots__ = ("key_marks", "mark", "tags", "value_marks")

    def __init__(self, *args: Any, mark: Mark | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mark = mark
        self.key_marks: dict[Any, Mark] = {}
        self.value_marks: dict[Any, Mark] = {}
        self.tags: dict[Any, str] = {}

    def set(self, key: Any, value: Any, key_mark: Mark | None, value_mark: Mark | None) -> None:
        """Set a value together with its marks (a mark of None keeps the old one)."""
        self[key] = value
        if key_mark is not None:
            self.key_marks[key] = key_mark
        if value_mark is not None:
            self.value_marks[key] = value_mark

    def mark_of(self, key: Any) -> Mark | None:
        return self.value_marks.get(key) or self.key_marks.get(key) or self.mark

    def key_mark_of(self, key: Any) -> Mark | None:
        return self.key_marks.get(key) or self.value_marks.get(key) or self.mark

    def copy_marks_from(self, other: MapNode, key: Any, new_key: Any | None = None) -> None:
        """Take key's marks (and tag) from another node, e.g. when merging."""
        target = key if new_key is None else new_key
        if key in other.key_marks:
            self.key_marks[target] = other.key_marks[key]
        if key in other.value_marks:
            self.value_marks[target] = other.value_marks[key]
        if key in other.tags:
            self.tags[target] = other.tags[key]

    def pop_entry(self, key: Any) -> Any:
        """Remove a key and its marks."""
        self.key_marks.pop(key, None)
        self.value_marks.pop(key, None)
        self.tags.pop(key, None)
        return self.pop(key)


class SeqNode(list):
    """A list whose items remember their source marks (item_marks[i]) and tags."""

    __slots__ = ("item_marks", "item_tags", "mark")

    def __init__(self, *args: Any, mark: Mark | None = None) -> None:
        super().__init__(*args)
        self.mark = mark
        self.item_marks: list[Mark | None] = [mark] * len(self)
        self.item_tags: list[str | None] = [None] * len(self)

    def add(self, value: Any, mark: Mark | None, tag: str | None = None) -> None:
        self.append(value)
        self.item_marks.append(mark or self.mark)
        self.item_tags.append(tag)

    def mark_of(self, index: int) -> Mark | None:
        if 0 <= index < len(self.item_marks):
            return self.item_marks[index] or self.mark
        return self.mark


def node_mark(node: Any) -> Mark | None:
    """The mark of a container node itself, if it has one."""
    return getattr(node, "mark", None)


def locate(root: Any, path: tuple | list) -> Mark | None:
    """The most precise mark known for path inside root.

    Walks as deep as the tree allows; a path into a scalar or a missing key
    gives the mark of the deepest node found, so there is always an answer
    when the root has marks.
    """
    node = root
    best = node_mark(root)
    for step in path:
        if isinstance(node, MapNode):
            if step not in node:
                return node.key_mark_of(step) if step in node.key_marks else best
            best = node.mark_of(step) or best
            node = node[step]
        elif isinstance(node, SeqNode):
            if not isinstance(step, int) or not 0 <= step < len(node):
                return best
            best = node.mark_of(step) or best
            node = node[step]
        else:
            return best
    return best


def locate_key(root: Any, path: tuple | list) -> Mark | None:
    """Like locate, but for a mapping entry prefer where its key is written."""
    if not path:
        return node_mark(root)
    parent = root
    for step in path[:-1]:
        try:
            parent = parent[step]
        except (KeyError, IndexError, TypeError):
            return locate(root, path)
    last = path[-1]
    if isinstance(parent, MapNode) and last in parent.key_marks:
        return parent.key_marks[last]
    return locate(root, path)


def to_plain(node: Any) -> Any:
    """Strip marks: nested plain dicts and lists, for output and hashing."""
    if isinstance(node, dict):
        return {k: to_plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [to_plain(v) for v in node]
    return node
