"""Config dataclasses from YAML files and command-line flags, each field documented once.

A field's documentation is the string literal written under it in the dataclass body
(as in trl's configs); ``field_docs`` reads it from the source, so ``duo train --help``
shows the same text the code does. A YAML file may set any field; flags override it.

A field typed ``Literal[...]`` is an enumeration: its flag lists and checks the choices.
An Optional field takes ``none`` on the command line (``--ablation-beta none``).
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

import yaml

T = TypeVar("T")

InferenceDtype = Literal["fp32", "fp16", "bf16"]
"""Inference precision of `duo pairs`, `duo attack` and `duo eval` (fp16 needs a GPU)."""

SHAPEWORLD = "shapeworld"
"""The embedded pipeline's id (here, torch-free, so that every config module can name it)."""


class _ExplicitNone:
    """What ``--flag none`` parses to: unlike a flag's default (None, 'not given'), it sets None."""

    def __repr__(self) -> str:
        return "none"


EXPLICIT_NONE = _ExplicitNone()


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a dataclass (and its bases), by field name."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for node, nxt in zip(body, body[1:]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                    and isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant) \
                    and isinstance(nxt.value.value, str):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _field_type(cls: type, field: dataclasses.Field) -> Any:
    """The field's type with Optional removed (``float | None`` -> ``float``)."""
    tp = typing.get_type_hints(cls)[field.name]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, types.UnionType) and len(args) == 1:
        return args[0]
    return tp


def _is_optional(cls: type, field: dataclasses.Field) -> bool:
    tp = typing.get_type_hints(cls)[field.name]
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def field_choices(cls: type) -> dict[str, tuple]:
    """The allowed values of every ``Literal``-typed field, by name."""
    return {f.name: typing.get_args(tp) for f in dataclasses.fields(cls)
            if typing.get_origin(tp := _field_type(cls, f)) is typing.Literal}


def check_choices(config: Any) -> None:
    """Raise a ValueError naming the field for a value outside its ``Literal`` choices."""
    cls = type(config)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, choices in field_choices(cls).items():
        value = getattr(config, name)
        if value not in choices and not (value is None and _is_optional(cls, fields[name])):
            raise ValueError(f"{cls.__name__}.{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _with_none(convert: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        return EXPLICIT_NONE if text.lower() == "none" else convert(text)

    parse.__name__ = getattr(convert, "__name__", "value")  # argparse names it in errors
    return parse


def name_value_pairs(value: Any, option: str) -> Any:
    """A dict field as the command line gives it (``NAME=VALUE`` strings, see
    ``add_dataclass_arguments``) as a dict; a mapping from YAML passes through as it is."""
    if not isinstance(value, (list, tuple)):
        return value
    pairs = [item.partition("=") for item in value]
    if any(not sep for _, sep, _ in pairs):
        raise ValueError(f"{option}: give NAME=VALUE pairs, got {list(value)}")
    return {k: v for k, _, v in pairs}


def field_default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    return field.default_factory() if field.default_factory is not dataclasses.MISSING else None


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls: type,
                            aliases: dict[str, tuple[str, ...]] | None = None) -> None:
    """One ``--flag`` per field (dashes for underscores), plus any ``aliases`` by field name;
    defaults stay unset so YAML can fill them."""
    docs = field_docs(cls)
    choices = field_choices(cls)
    for field in dataclasses.fields(cls):
        tp = _field_type(cls, field)
        flag = ["--" + field.name.replace("_", "-"), *(aliases or {}).get(field.name, ())]
        optional = _is_optional(cls, field)
        help_text = f"{docs.get(field.name, '')} (default: {field_default(field)})".strip()
        if optional:
            help_text += "; 'none' unsets it"
        if tp is bool:
            parser.add_argument(*flag, dest=field.name, action=argparse.BooleanOptionalAction, default=None,
                                help=help_text)
        elif typing.get_origin(tp) is dict:  # name=value pairs on the command line
            parser.add_argument(*flag, dest=field.name, nargs="+", type=str, default=None, metavar="NAME=VALUE",
                                help=help_text)
        elif typing.get_origin(tp) in (list, tuple):
            inner = typing.get_args(tp)[0] if typing.get_args(tp) else str
            parser.add_argument(*flag, dest=field.name, nargs="+", type=inner, default=None, help=help_text)
        elif field.name in choices:
            allowed = list(choices[field.name]) + (["none"] if optional else [])
            parser.add_argument(*flag, dest=field.name, choices=[*choices[field.name], EXPLICIT_NONE] if optional
                                else choices[field.name], type=_with_none(str) if optional else str,
                                default=None, metavar="{" + ",".join(map(str, allowed)) + "}", help=help_text)
        else:
            convert = tp if tp in (int, float, str) else str
            parser.add_argument(*flag, dest=field.name, type=_with_none(convert) if optional else convert,
                                default=None, help=help_text)


def load_config(cls: type[T], yaml_path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> T:
    """Defaults, then the YAML file, then explicit overrides (None means 'not given')."""
    values: dict[str, Any] = {}
    names = {f.name for f in dataclasses.fields(cls)}
    if yaml_path:
        path = Path(yaml_path)
        if not path.is_file():
            raise FileNotFoundError(f"config file not found: {path}")
        data = yaml.safe_load(path.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: a config file is a mapping of field: value")
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"{path}: unknown {cls.__name__} fields {unknown}")
        values.update(data)
    for key, value in (overrides or {}).items():
        if key in names and value is not None:
            values[key] = None if value is EXPLICIT_NONE else value
    for field in dataclasses.fields(cls):
        tp, value = _field_type(cls, field), values.get(field.name)
        if typing.get_origin(tp) is tuple and isinstance(value, list):
            values[field.name] = tuple(value)
        elif tp is float and isinstance(value, (str, int)) and not isinstance(value, bool):
            try:  # YAML 1.1 reads 1.5e6 (no exponent sign) as a string
                values[field.name] = float(value)
            except ValueError as err:
                raise ValueError(f"{cls.__name__}.{field.name} must be a number, got {value!r}") from err
    config = cls(**values)
    check_choices(config)
    return config


def config_to_yaml(config: Any) -> str:
    data = dataclasses.asdict(config)
    return yaml.safe_dump({k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}, sort_keys=False)
