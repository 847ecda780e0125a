"""Frozen config dataclasses that round-trip to JSON and reject unknown keys."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

C = TypeVar("C", bound="JsonConfig")
MAX_SEED = 2**32 - 1  # every seed's range: numpy's, which Optuna's samplers use; torch takes more


class ConfigError(ValueError):
    """A config value or key is not allowed. The message names the field."""


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(cls_name: str, name: str, tp: Any, value: Any) -> Any:
    """Return value checked against the annotation tp; ints are accepted where floats are expected."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(cls_name, name, arg, value)
            except ConfigError:
                pass
        raise ConfigError(f"{cls_name}.{name}: expected {tp}, got {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{cls_name}.{name}: must be one of {', '.join(map(repr, allowed))}; got {value!r}")
        return value
    if isinstance(tp, type) and issubclass(tp, JsonConfig):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{cls_name}.{name}: expected a table of {tp.__name__} fields, got {value!r}")
        return tp.from_dict(value)
    if origin in (dict, Mapping) or tp in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{cls_name}.{name}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{cls_name}.{name}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{cls_name}.{name}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{cls_name}.{name}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{cls_name}.{name}: expected a string, got {value!r}")
        return value
    if tp is Any:
        return value
    raise TypeError(f"{cls_name}.{name}: unsupported annotation {_type_name(tp)}")


@dataclasses.dataclass(frozen=True)
class JsonConfig:
    """Base of every config: typed fields, JSON round trip, unknown keys rejected.

    Subclasses call `self.check_types()` first thing in `__post_init__`, then check ranges.
    """

    def check_types(self) -> None:
        hints = _hints(type(self))
        for f in dataclasses.fields(self):
            value = _coerce(type(self).__name__, f.name, hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)

    def __post_init__(self) -> None:
        self.check_types()

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
        if not isinstance(data, Mapping):
            raise ConfigError(f"{cls.__name__}: expected a table, got {data!r}")
        allowed = cls.field_names()
        unknown = [k for k in data if k not in allowed]
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [k for k in required if k not in data]
        if missing:
            raise ConfigError(f"{cls.__name__}: missing key {missing[0]!r}")
        hints = _hints(cls)
        kwargs = {k: _coerce(cls.__name__, k, hints[k], v) for k, v in data.items()}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    @classmethod
    def from_json(cls: type[C], text: str) -> C:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigError(f"{cls.__name__}: not valid JSON ({e.msg} at line {e.lineno})") from None
        return cls.from_dict(data)

    def replace(self: C, **changes: Any) -> C:
        return dataclasses.replace(self, **changes)
