"""Typed option dataclasses built from user dicts (CLI strings, TOML values), rejecting unknown keys.

One validator for every config in prunebench (the run's :class:`~prunebench.harness.config.TrainConfig`,
each pruner's ``Options``, a study file's ``[recipe]`` and ``options`` tables):

* :func:`option` declares a field with its metadata: a help text and a numeric range (``ge``, ``gt``,
  ``le``, ``lt``), plus whatever a config adds (the run config's identity, CLI flag, ...);
* :func:`check_value` checks one value against a field's annotation: *lenient* for strings typed on the
  command line (``"0.5"`` -> 0.5), *strict* for TOML values, which carry their own type (``epochs = '10'``
  is an error there, not 10);
* :func:`build_options` builds the dataclass from a dict, and :func:`check_ranges` (called by a config's
  ``__post_init__``) checks the declared ranges, each mistake one line naming the field and what is valid.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal

from prunebench.errors import ConfigError

FLOAT32_MAX = 3.4028234663852886e38
_BOUNDS = ("ge", "gt", "le", "lt")


def option(
    default: Any = dataclasses.MISSING,
    *,
    help: str = "",
    default_factory: Any = dataclasses.MISSING,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    **meta: Any,
) -> Any:
    """A dataclass field with its metadata: ``help``, a numeric range (checked by :func:`check_ranges`;
    for a tuple, on each element; ``None`` values are not checked) and a config's own keys (``meta``).

    ``omit_default_in_key=True`` (a pruner option added after runs were keyed, whose default is the
    behaviour before it existed): at its default the option is left out of run keys (:func:`key_options`),
    so the keys of those runs stay valid; any other value is part of the key."""
    metadata = {"help": help, **{k: v for k, v in zip(_BOUNDS, (ge, gt, le, lt)) if v is not None}, **meta}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def range_text(meta: typing.Mapping[str, Any]) -> str:
    """A field's declared range as text: ``>= 1``, ``> 0``, ``in [0, 1)``; ``""`` when it has none."""
    lo = ("[", meta["ge"]) if "ge" in meta else ("(", meta["gt"]) if "gt" in meta else None
    hi = ("]", meta["le"]) if "le" in meta else (")", meta["lt"]) if "lt" in meta else None
    if lo and hi:
        return f"in {lo[0]}{lo[1]:g}, {hi[1]:g}{hi[0]}"
    if lo:
        return f"{'>=' if lo[0] == '[' else '>'} {lo[1]:g}"
    if hi:
        return f"{'<=' if hi[0] == ']' else '<'} {hi[1]:g}"
    return ""


def _in_range(v: Any, meta: typing.Mapping[str, Any]) -> bool:
    return not (
        ("ge" in meta and v < meta["ge"])
        or ("gt" in meta and v <= meta["gt"])
        or ("le" in meta and v > meta["le"])
        or ("lt" in meta and v >= meta["lt"])
    )


def check_ranges(obj: Any, where: str) -> None:
    """Check every field of the dataclass ``obj`` against its declared range (:func:`option`)."""
    for f in dataclasses.fields(obj):
        if not any(b in f.metadata for b in _BOUNDS):
            continue
        v = getattr(obj, f.name)
        values = v if isinstance(v, tuple) else () if v is None else (v,)
        if not all(_in_range(x, f.metadata) for x in values):
            raise ConfigError(f"{where}: {f.name} must be {range_text(f.metadata)}, got {v!r}")


# ---------------------------------------------------------------------------------------------------
# values
# ---------------------------------------------------------------------------------------------------


def type_name(v: Any) -> str:
    """``'a string'``, ``'an integer'``, ...: how an error names the type of a value it got."""
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        tuple: "a list",
        dict: "a table",
    }.get(type(v), type(v).__name__)


def annotation_name(a: Any) -> str:
    """How an error names what a field expects: ``'an integer'``, ``"one of 'sgd', 'adamw'"``, ..."""
    if typing.get_origin(a) is Literal:
        return "one of " + ", ".join(map(repr, typing.get_args(a)))
    if typing.get_origin(a) is tuple:
        return "a list"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a table"}.get(
        a, getattr(a, "__name__", str(a))
    )


def _literal(value: Any, args: tuple, where: str, strict: bool) -> Any:
    if value in args and not (strict and isinstance(value, bool)):
        return value
    raise ConfigError(f"{where}: {value!r} is not valid; valid: {', '.join(map(repr, args))}")


def _union(value: Any, args: tuple, where: str, strict: bool) -> Any:
    if type(None) in args and (
        value is None or (not strict and isinstance(value, str) and value.lower() in ("none", "null"))
    ):
        return None
    errors = []
    for a in args:
        if a is type(None):
            continue
        try:
            return check_value(value, a, where, strict)
        except ConfigError as e:
            errors.append(str(e))
    if strict:
        names = " or ".join(annotation_name(a) for a in args if a is not type(None))
        raise ConfigError(f"{where}: expected {names}, got {type_name(value)} {value!r}")
    raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")


def _bool(value: Any, where: str, strict: bool) -> bool:
    if isinstance(value, bool):
        return value
    if not strict and isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
        return value.lower() in ("true", "1", "yes", "on")
    raise ConfigError(f"{where}: expected true or false, got {_got(value, strict)}")


def _got(value: Any, strict: bool) -> str:
    return f"{type_name(value)} {value!r}" if strict else repr(value)


def _int(value: Any, where: str, strict: bool) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not strict and isinstance(value, float) and value.is_integer():
        return int(value)
    if not strict and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected an integer, got {_got(value, strict)}")


def _float(value: Any, where: str, strict: bool) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value)
    elif not strict and isinstance(value, str):
        try:
            out = float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    else:
        raise ConfigError(f"{where}: expected a number, got {_got(value, strict)}")
    if not math.isfinite(out):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if abs(out) > FLOAT32_MAX:  # training runs in float32: 1e308 would overflow to inf there
        raise ConfigError(f"{where}: {value!r} overflows float32 (|x| <= 3.4e38), the precision training uses")
    return out


def _str(value: Any, where: str, strict: bool) -> str:
    if isinstance(value, str):
        return value
    raise ConfigError(f"{where}: expected a string, got {_got(value, strict)}")


def _tuple(value: Any, args: tuple, where: str, strict: bool) -> tuple:
    if not strict and isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or (strict and not isinstance(value, list)):
        raise ConfigError(f"{where}: expected a list, got {_got(value, strict)}")
    inner = args[0] if args else str
    return tuple(
        check_value(v.strip() if isinstance(v, str) and not strict else v, inner, where, strict) for v in value
    )


def _dict(value: Any, where: str, strict: bool) -> Any:
    if strict and not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a table, got {_got(value, strict)}")
    return value


def check_value(value: Any, annotation: Any, where: str, strict: bool = False) -> Any:
    """``value`` as the type ``annotation`` names, or a :class:`ConfigError` ``"{where}: ..."``.

    Lenient (``strict=False``, values typed on a command line): strings are parsed (``"0.5"``, ``"true"``,
    ``"none"``, ``"1,2"`` for a tuple). Strict (TOML values, which are typed): a string where a number is
    meant is an error, and so is a number for a boolean.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return _literal(value, args, where, strict)
    if origin in (typing.Union, types.UnionType):
        return _union(value, args, where, strict)
    if origin is tuple:
        return _tuple(value, args, where, strict)
    simple = {bool: _bool, int: _int, float: _float, str: _str, dict: _dict}.get(annotation)
    return simple(value, where, strict) if simple is not None else value


def build_options(
    cls: type, raw: dict[str, Any], where: str, strict: bool = False, key: typing.Callable[[str], str] | None = None
) -> Any:
    """Instantiate the frozen dataclass ``cls`` from ``raw``, rejecting unknown keys.

    Values are checked by the field annotation (:func:`check_value`; ``strict`` for TOML values), each
    error prefixed with ``key(name)`` (default ``"{where}: option 'name'"``). ``__post_init__`` of ``cls``
    checks ranges (:func:`check_ranges`) and raises :class:`ConfigError`.
    """
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        valid = ", ".join(fields) if fields else "(none)"
        raise ConfigError(f"{where}: unknown option {unknown[0]!r}; valid options: {valid}")
    key = key or (lambda k: f"{where}: option {k!r}")
    values = {k: check_value(v, hints[k], key(k), strict) for k, v in raw.items()}
    return cls(**values)


def key_options(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """The options of ``cls`` (every one, defaults filled in: ``values`` is ``dataclasses.asdict`` of an
    instance) that a run key hashes: all but those declared ``omit_default_in_key`` left at their default."""
    omit = {f.name: f.default for f in dataclasses.fields(cls) if f.metadata.get("omit_default_in_key")}
    return {k: v for k, v in values.items() if not (k in omit and v == omit[k])}


def fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, tuple):
        return "+".join(fmt_value(x) for x in v)
    return str(v)
