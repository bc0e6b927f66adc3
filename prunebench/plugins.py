"""Plugins: Python files or modules that register pruners when imported (see docs/adding-a-pruner.md).

Three ways to load one, all equivalent:

- ``--plugin my_pruner.py`` (or ``--plugin mypkg.pruners``) on any ``prunebench`` command, repeatable;
- ``plugins = ["my_pruner.py"]`` in a study file's ``[study]`` table (paths relative to the study file);
- an installed package's entry point in the group ``prunebench.pruners`` (loaded with the registry).

Loading a plugin runs its code: that is what it is for, so only files and modules a user named are
loaded. A file gets a module name derived from its resolved path, so loading it twice (the flag and the
study file) is a no-op and a leaderboard's worker processes, which load the same list
(:func:`loaded_plugins`), import it under the same name.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
from collections.abc import Iterable
from pathlib import Path

from prunebench.errors import ConfigError, PrunebenchError

_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_LOADED: dict[str, str] = {}  # what loads it again (absolute path or module name) -> module name


def _is_path(spec: str, base: str | Path | None) -> bool:
    """A path: ends with .py, has a folder part, or names something on disk (``notes.txt``); else a module."""
    return (
        spec.endswith(".py")
        or "/" in spec
        or "\\" in spec
        or spec.startswith((".", "~"))
        or (Path(base or ".") / spec).exists()
    )


def _module_name(path: Path) -> str:
    stem = re.sub(r"\W", "_", path.stem)
    return f"prunebench_plugin_{stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:10]}"


def load_plugin(spec: str, base: str | Path | None = None) -> str:
    """Import the plugin ``spec`` (a ``.py`` file path, relative to ``base`` or the working directory, or
    a module name) once; returns its module name. Every failure is a :class:`ConfigError` of one line."""
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"plugin {spec!r}: expected a .py file path or a module name (e.g. my_pruner.py, mypkg.pruners)"
        )
    spec = spec.strip()
    if _is_path(spec, base):
        path = Path(spec).expanduser()
        if not path.is_absolute() and base is not None:
            path = Path(base) / path
        if path.suffix != ".py":
            raise ConfigError(f"plugin {spec}: not a .py file; valid: a Python file (my_pruner.py) or a module name")
        if not path.exists():
            raise ConfigError(f"plugin {spec}: file not found ({path})")
        if not path.is_file():
            raise ConfigError(f"plugin {spec}: not a regular file ({path})")
        key = str(path.resolve())
        if key in _LOADED:
            return _LOADED[key]
        name = _module_name(Path(key))
        mod_spec = importlib.util.spec_from_file_location(name, key)
        if mod_spec is None or mod_spec.loader is None:  # pragma: no cover - .py files always have a loader
            raise ConfigError(f"plugin {spec}: cannot be imported as a Python file")
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module  # before running it: pickling its classes (worker processes) needs it
        try:
            mod_spec.loader.exec_module(module)
        except BaseException as e:
            del sys.modules[name]
            _reraise(spec, e)
    else:
        if not _MODULE.match(spec):
            raise ConfigError(
                f"plugin {spec!r}: not a .py file path or a module name; valid: my_pruner.py, "
                f"path/to/my_pruner.py, mypkg.pruners"
            )
        key = name = spec
        if key in _LOADED:
            return name
        try:
            importlib.import_module(spec)
        except ModuleNotFoundError as e:
            if e.name and spec.startswith(e.name):
                raise ConfigError(
                    f"plugin {spec}: no module named {e.name!r} (valid: an importable module, or a .py file path)"
                ) from None
            _reraise(spec, e)
        except BaseException as e:
            _reraise(spec, e)
    _LOADED[key] = name
    return name


def _reraise(spec: str, e: BaseException) -> None:
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        raise e
    msg = " ".join(str(e).split())
    if isinstance(e, PrunebenchError):
        raise ConfigError(f"plugin {spec}: {msg}") from None
    raise ConfigError(f"plugin {spec}: importing it failed ({type(e).__name__}: {msg})") from None


def load_plugins(specs: Iterable[str] | None, base: str | Path | None = None) -> list[str]:
    """:func:`load_plugin` for each of ``specs`` in order; returns their module names."""
    return [load_plugin(s, base) for s in specs or ()]


def loaded_plugins() -> list[str]:
    """The plugins loaded in this process, as absolute paths or module names (what another process passes
    to :func:`load_plugins` to register the same pruners)."""
    return list(_LOADED)
