from __future__ import annotations

import pickle

import pytest

from runtime.record import as_dict, field, field_names, record, replace


@record
class Point:
    x: int
    y: int = 0
    tags: list = field(default_factory=list)
    note: str = field(default="", compare=False)

    def total(self) -> int:
        return self.x + self.y


def test_init_defaults_and_factories():
    p = Point(1)
    assert (p.x, p.y, p.tags, p.note) == (1, 0, [], "")
    assert Point(1).tags is not Point(1).tags
    assert Point(1, y=2).total() == 3
    assert field_names(Point) == ("x", "y", "tags", "note")


def test_frozen_equal_hashable_and_uncompared_fields():
    a, b = Point(1, 2, note="a"), Point(1, 2, note="b")
    assert a == b and a != Point(2, 2)
    # Like a frozen dataclass: hashable when its values are.
    assert hash(Point(1, 2, tags=(), note="a")) == hash(Point(1, 2, tags=(), note="b"))
    with pytest.raises(AttributeError):
        a.x = 5
    assert not hasattr(a, "__dict__")
    assert repr(a) == "Point(x=1, y=2, tags=[], note='a')"


def test_bad_arguments_are_type_errors():
    with pytest.raises(TypeError):
        Point()
    with pytest.raises(TypeError):
        Point(1, z=3)
    with pytest.raises(TypeError):
        Point(1, x=1)


def test_replace_and_pickle_and_subclass():
    a = Point(1, 2)
    assert replace(a, y=5) == Point(1, 5)
    assert pickle.loads(pickle.dumps(a)) == a

    @record
    class Point3(Point):
        z: int = 0

    p = Point3(1, 2, z=3)
    assert field_names(Point3) == ("x", "y", "tags", "note", "z")
    assert p.total() == 3 and p.z == 3 and p != Point(1, 2)


def test_mutable_records_can_change_and_are_not_hashable():
    @record(frozen=False)
    class Options:
        files: list = field(default_factory=list)
        name: str | None = None

    options = Options()
    options.name = "x"
    options.files.append("a")
    assert options == Options(["a"], "x")
    with pytest.raises(TypeError):
        hash(options)


def test_as_dict_is_the_fields_by_name_shallow():
    tags = [Point(0)]
    as_mapping = as_dict(Point(1, 2, tags=tags, note="n"))
    assert as_mapping == {"x": 1, "y": 2, "tags": tags, "note": "n"}
    assert as_mapping["tags"] is tags  # not copied, nor converted
