"""Command-line flags made from dataclass fields, so each default lives in one place: the
dataclass, or a named instance of it where a command's defaults differ (the compare demo's
evaluation limits, say). Type, choices and default come from the field; the help text is the
command's."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from mrrtf.commands.arglists import csv_ints, csv_items


def _base_type(hint: Any) -> Any:
    """int for `int | None`, the hint itself otherwise."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return hint


def _hints(defaults: Any) -> dict[str, Any]:
    cls = defaults if isinstance(defaults, type) else type(defaults)
    return {name: _base_type(hint) for name, hint in typing.get_type_hints(cls).items()}


def _default(defaults: Any, name: str) -> Any:
    if not isinstance(defaults, type):
        return getattr(defaults, name)
    field = {f.name: f for f in dataclasses.fields(defaults)}[name]
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    raise TypeError(f"{defaults.__name__}.{name} has no default to give a flag")


def _shown(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return "none" if value is None else str(value)


def flag_name(name: str, flags: Mapping[str, str]) -> str:
    return flags.get(name, "--" + name.replace("_", "-"))


def add_flags(parser: argparse.ArgumentParser, defaults: Any, fields: Mapping[str, str],
              flags: Mapping[str, str] | None = None) -> None:
    """One flag per field named in `fields` (field -> help), stored under the field's name.
    `defaults` is a dataclass or an instance of one; `flags` renames a field's flag (default
    --field-name). Tuples take comma-separated values, bools --x / --no-x, Literals a choice."""
    flags = flags or {}
    hints = _hints(defaults)
    for name, help_text in fields.items():
        hint, default = hints[name], _default(defaults, name)
        kwargs: dict[str, Any] = {"dest": name, "help": f"{help_text} (default: {_shown(default)})"}
        if typing.get_origin(hint) is tuple:
            kwargs.update(default=_shown(default), metavar="A,B")
        elif hint is bool:
            kwargs.update(default=default, action=argparse.BooleanOptionalAction)
        elif typing.get_origin(hint) is Literal:
            kwargs.update(default=default, choices=typing.get_args(hint))
        else:
            kwargs.update(default=default, type=hint)
        parser.add_argument(flag_name(name, flags), **kwargs)


def flag_values(args: argparse.Namespace, defaults: Any, fields: Mapping[str, str] | Any,
                flags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """{field: value} for the fields `add_flags` made, comma lists parsed into tuples (a bad
    item is a ConfigError naming the flag)."""
    hints = _hints(defaults)
    out = {}
    for name in fields:
        value, hint = getattr(args, name), hints[name]
        if typing.get_origin(hint) is tuple:
            item = typing.get_args(hint)[0]
            value = (csv_ints(value, flag_name(name, flags or {})) if item is int
                     else csv_items(value))
        out[name] = value
    return out
