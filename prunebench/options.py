"""Typed option dataclasses built from user dicts (CLI strings, TOML values), rejecting unknown keys."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

from prunebench.errors import ConfigError

FLOAT32_MAX = 3.4028234663852886e38




def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{where}: {value!r} is not valid; valid: {', '.join(map(repr, args))}")
    if origin in (typing.Union, types.UnionType):
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if annotation is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        else:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if not math.isfinite(out):
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        if abs(out) > FLOAT32_MAX:  # training runs in float32: 1e308 would overflow to inf there
            raise ConfigError(f"{where}: {value!r} overflows float32 (|x| <= 3.4e38), the precision training uses")
        return out
    if annotation is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        inner = args[0] if args else str
        return tuple(_coerce(v.strip() if isinstance(v, str) else v, inner, where) for v in value)
    return value


def build_options(cls: type, raw: dict[str, Any], where: str) -> Any:
    """Instantiate the frozen dataclass ``cls`` from ``raw``, rejecting unknown keys.

    Values given as strings (from the CLI) are coerced by the field annotation. ``__post_init__`` of
    ``cls`` checks ranges and raises :class:`ConfigError`.
    """
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        valid = ", ".join(fields) if fields else "(none)"
        raise ConfigError(f"{where}: unknown option {unknown[0]!r}; valid options: {valid}")
    values = {k: _coerce(v, hints[k], f"{where}: option {k!r}") for k, v in raw.items()}
    return cls(**values)


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, tuple):
        return "+".join(fmt_value(x) for x in v)
    return str(v)
