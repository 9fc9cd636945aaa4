"""Loading the typed configuration (``rstar.config``) from YAML and dicts, and listing its
documented fields: unknown keys and values of the wrong type are errors naming the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal


class ConfigError(ValueError):
    """A bad configuration value; the message names the key (dotted path) and the file."""


# -- loading ---------------------------------------------------------------------------------


def from_dict(cls: type, data: Any, where: str = "", base: Any = None) -> Any:
    """Build dataclass ``cls`` from nested dicts, checking keys and types.

    Keys not given keep ``base``'s values (for a nested section: its parent field's default,
    so ``ppm_train: {train: {lr: 1e-4}}`` keeps the PPM's own epochs and batch size rather
    than ``TrainConfig``'s class defaults)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key {_join(where, unknown[0])!r} (known under {where or 'top level'}: "
            f"{', '.join(sorted(fields))})"
        )
    kwargs = {}
    for k, v in data.items():
        if dataclasses.is_dataclass(hints[k]) and isinstance(v, dict):
            kwargs[k] = from_dict(hints[k], v, _join(where, k), _default_of(fields[k], base))
        else:
            kwargs[k] = _coerce(hints[k], v, _join(where, k))
    return dataclasses.replace(base, **kwargs) if base is not None else cls(**kwargs)


def _default_of(f: dataclasses.Field, base: Any) -> Any:
    """The value a nested section starts from: the enclosing object's, else the field default."""
    if base is not None:
        return getattr(base, f.name)
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def load_config(cls: type, path: str | Path | None = None, overrides: dict | None = None) -> Any:
    """``cls`` from a YAML file (if given) with ``overrides`` (dotted keys) applied on top."""
    import yaml

    data: dict = {}
    if path is not None:
        p = Path(path)
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {p}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: invalid YAML: {e}") from None
    for key, value in (overrides or {}).items():
        node = data
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    try:
        return from_dict(cls, data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}" if path else str(e)) from None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(tp))}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError:
                pass
        raise ConfigError(f"{where}: {value!r} does not fit {tp}")
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)[:1] or (Any,)
        items = [_coerce(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads "3e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def field_docs(cls: type, prefix: str = "", instance: Any = None) -> list[tuple[str, str, Any, str]]:
    """(dotted name, type, default, doc) for every field, recursively — the reference docs.

    Defaults are read from ``instance`` (``cls()`` when not given), so a nested field shows the
    value its parent gives it (EvolveConfig's ``engine.kind`` is "auto", though a bare
    EngineConfig's is "scripted")."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    try:
        body = ast.parse(inspect.getsource(cls)).body[0].body  # type: ignore[attr-defined]
    except (OSError, TypeError):
        body = []
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(nxt, ast.Expr):
            if isinstance(nxt.value, ast.Constant) and isinstance(node.target, ast.Name):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())
    hints = typing.get_type_hints(cls)
    if instance is None:
        instance = cls()
    out = []
    for f in dataclasses.fields(cls):
        name = _join(prefix, f.name)
        tp = hints[f.name]
        value = getattr(instance, f.name)
        if dataclasses.is_dataclass(tp):
            out.append((name, tp.__name__, None, docs.get(f.name, "")))
            out.extend(field_docs(tp, name, value))
            continue
        out.append((name, _type_name(tp), value, docs.get(f.name, "")))
    return out


def _type_name(tp: Any) -> str:
    # A Literal's __name__ is a bare "Literal": spell out the values it allows.
    if typing.get_origin(tp) is Literal:
        return "Literal[" + ", ".join(repr(v) for v in typing.get_args(tp)) + "]"
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")
