"""Frozen record classes, cheap to define.

`@record` gives what `@dataclass(frozen=True, slots=True)` gives — an __init__
from the annotations (defaults and default factories), __slots__, equality,
hashing, a readable repr and immutability — without generating and exec()ing
code per class. dataclasses spend ~0.8 ms per class on that, ~25 ms of every
`composer` start for the model, the loader's and the runtime's types; here
it is ~20 µs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING = object()


class FrozenError(AttributeError):
    """Raised on an attempt to change a frozen record."""


class FieldSpec:
    """A field's default when a plain value will not do (see `field`)."""

    __slots__ = ("compare", "default", "default_factory")

    def __init__(self, default: Any, default_factory: Callable[[], Any] | None, compare: bool):
        self.default = default
        self.default_factory = default_factory
        self.compare = compare


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] | None = None,
    compare: bool = True,
) -> Any:
    """A default factory (for mutable defaults) or a field left out of == and hash."""
    return FieldSpec(default, default_factory, compare)


def field_names(cls: type) -> tuple[str, ...]:
    return cls.__record_fields__


def as_dict(obj: Any) -> dict[str, Any]:
    """The fields by name; shallow: nested records and containers are kept as they are
    (dataclasses.asdict would convert and copy them)."""
    return {name: getattr(obj, name) for name in obj.__record_fields__}


def replace(obj: T, **changes: Any) -> T:
    values = {name: getattr(obj, name) for name in obj.__record_fields__}
    values.update(changes)
    return type(obj)(**values)


def _own_annotations(cls: type) -> list[str]:
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        # Not inspect.get_annotations: importing inspect is the cost this module avoids.
        own = klass.__dict__.get("__annotations__", {})  # noqa: RUF063
        for name, annotation in own.items():
            if "ClassVar" in str(annotation) or name in names:
                continue
            names.append(name)
    return names


def record(cls: type[T] | None = None, *, frozen: bool = True) -> Any:
    """Use as `@record`, or `@record(frozen=False)` for a mutable (unhashable) record."""
    if cls is None:
        return lambda klass: _make(klass, frozen)
    return _make(cls, frozen)


def _make(cls: type[T], frozen: bool) -> type[T]:
    names = tuple(_own_annotations(cls))
    defaults: dict[str, Any] = {}
    factories: dict[str, Callable[[], Any]] = {}
    compared: list[str] = []
    for base in cls.__mro__[1:]:
        defaults.update(getattr(base, "__record_defaults__", {}))
        factories.update(getattr(base, "__record_factories__", {}))
    for name in names:
        value = cls.__dict__.get(name, _MISSING)
        if isinstance(value, FieldSpec):
            if value.default_factory is not None:
                factories[name] = value.default_factory
            elif value.default is not _MISSING:
                defaults[name] = value.default
            if value.compare:
                compared.append(name)
            continue
        if value is not _MISSING:
            defaults[name] = value
        compared.append(name)

    namespace = {
        key: value
        for key, value in cls.__dict__.items()
        if key not in names and key not in ("__dict__", "__weakref__")
    }
    inherited_slots = {slot for base in cls.__mro__[1:] for slot in getattr(base, "__slots__", ())}
    namespace["__slots__"] = tuple(name for name in names if name not in inherited_slots)
    namespace["__record_fields__"] = names
    namespace["__record_defaults__"] = defaults
    namespace["__record_factories__"] = factories
    namespace["__record_compared__"] = tuple(compared)
    namespace["__match_args__"] = names
    namespace["__init__"] = _init
    namespace["__repr__"] = _repr
    namespace["__eq__"] = _eq
    if frozen:
        namespace["__hash__"] = _hash
        namespace["__setattr__"] = _frozen
        namespace["__delattr__"] = _frozen
    else:
        namespace["__hash__"] = None
    namespace["__getstate__"] = _getstate
    namespace["__setstate__"] = _setstate
    return type(cls)(cls.__name__, cls.__bases__, namespace)


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    names = self.__record_fields__
    if len(args) > len(names):
        raise TypeError(f"{type(self).__name__}() takes {len(names)} arguments, got {len(args)}")
    set_value = object.__setattr__
    for name, value in zip(names, args, strict=False):
        if name in kwargs:
            raise TypeError(f"{type(self).__name__}() got two values for {name!r}")
        set_value(self, name, value)
    for name in names[len(args) :]:
        if name in kwargs:
            set_value(self, name, kwargs.pop(name))
        elif name in self.__record_defaults__:
            set_value(self, name, self.__record_defaults__[name])
        elif name in self.__record_factories__:
            set_value(self, name, self.__record_factories__[name]())
        else:
            raise TypeError(f"{type(self).__name__}() missing argument {name!r}")
    if kwargs:
        raise TypeError(f"{type(self).__name__}() got unexpected arguments {sorted(kwargs)}")
    post_init = getattr(self, "__post_init__", None)
    if post_init is not None:
        post_init()


def _values(self: Any, names: tuple[str, ...]) -> tuple:
    return tuple(getattr(self, name) for name in names)


def _repr(self: Any) -> str:
    inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__record_fields__)
    return f"{type(self).__name__}({inner})"


def _eq(self: Any, other: Any) -> bool:
    if other.__class__ is not self.__class__:
        return NotImplemented
    return _values(self, self.__record_compared__) == _values(other, other.__record_compared__)


def _hash(self: Any) -> int:
    return hash(_values(self, self.__record_compared__))


def _frozen(self: Any, name: str, *_: Any) -> None:
    raise FrozenError(f"{type(self).__name__} is frozen; cannot change {name!r}")


def _getstate(self: Any) -> tuple:
    return _values(self, self.__record_fields__)


def _setstate(self: Any, state: tuple) -> None:
    for name, value in zip(self.__record_fields__, state, strict=True):
        object.__setattr__(self, name, value)
