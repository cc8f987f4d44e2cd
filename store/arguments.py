"""Command-line options declared once, as dataclass fields: every CLI of the project (capture, analyses,
interventions) builds its argparse parser from its options dataclass and turns the parsed arguments back into
that dataclass, so an option is written in one place and an unknown keyword is a TypeError, never dropped.

    @dataclass(frozen=True)
    class Options:
        layers: str = option("all", help="decoder layers: all, or indices/ranges like 0-3,7")
        keys_prerope: bool = option(False, help="also store keys before RoPE")

    add_options(parser, Options); Options(**parsed_options(Options, parser.parse_args()))
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

CLI = "cli"  # the field metadata key


@dataclasses.dataclass(frozen=True)
class Flag:
    """How one dataclass field appears on the command line."""

    help: str
    flag: str | None = None  # default: --field-name
    choices: Sequence[Any] | None = None
    metavar: str | None = None
    type: Callable[[str], Any] | None = None  # default: from the annotation (int, float, Path, str)
    repeat: bool = False  # may be given several times (a list)
    negate: bool = False  # a bool that defaults to True, switched off by the flag (e.g. --no-progress)


def option(default: Any = dataclasses.MISSING, *, help: str, default_factory: Any = dataclasses.MISSING,
           **flag: Any) -> Any:
    """A dataclass field that is also a command-line option (see `Flag` for the keywords)."""
    return dataclasses.field(default=default, default_factory=default_factory, metadata={CLI: Flag(help, **flag)})


def cli_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of options dataclass `cls` that are command-line options."""
    return [f for f in dataclasses.fields(cls) if CLI in f.metadata]


def add_options(parser: argparse.ArgumentParser, cls: type) -> None:
    """One argument per option field of `cls`, with its default, type, choices and help."""
    hints = typing.get_type_hints(cls)
    for field in cli_fields(cls):
        flag: Flag = field.metadata[CLI]
        name = flag.flag or "--" + field.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": field.name, "help": flag.help}
        default = _default(field)
        base = _base_type(hints[field.name])
        if base is bool:
            kwargs["action"] = "store_false" if flag.negate else "store_true"
            kwargs["default"] = default
        else:
            kwargs["default"] = default
            kwargs["type"] = flag.type or (base if base in (int, float, Path) else None)
            if flag.choices is not None:
                kwargs["choices"] = flag.choices
            if flag.metavar:
                kwargs["metavar"] = flag.metavar
            if flag.repeat:
                kwargs["action"] = "append"
                kwargs["default"] = None
        if default is dataclasses.MISSING:
            kwargs.pop("default")
            kwargs["required"] = True
        parser.add_argument(name, **kwargs)


def parsed_options(cls: type, namespace: argparse.Namespace) -> dict[str, Any]:
    """The option fields of `cls` from parsed arguments (repeated options as tuples; an absent one: its default)."""
    values = {}
    for field in cli_fields(cls):
        value = getattr(namespace, field.name)
        if field.metadata[CLI].repeat:
            value = tuple(value) if value is not None else _default(field)
        values[field.name] = value
    return values


def _default(field: dataclasses.Field) -> Any:
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return field.default


def _base_type(annotation: Any) -> Any:
    """`X` of `X`, `X | None`, `tuple[X, ...]`."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _base_type(args[0]) if len(args) == 1 else str
    if origin in (tuple, list):
        return _base_type(typing.get_args(annotation)[0])
    return annotation
