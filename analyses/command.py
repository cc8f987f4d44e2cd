"""The shape every subcommand of `python -m analyses` and `python -m interventions` shares: a name, a help line, an
options dataclass (`store.arguments`) and a `run` that writes its results through an `Output`.

From Python, `command(**options)` runs it with keyword options (an unknown keyword is a TypeError) and returns the
paths written; `__main__` builds one subparser per command from the same dataclass.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from analyses.output import Output
from store.arguments import add_options, parsed_options


class Command(ABC):
    """One subcommand. Subclasses set `name`, `help`, `Options` (a dataclass with an `out` folder) and `run`."""

    name: ClassVar[str]
    help: ClassVar[str]
    Options: ClassVar[type]
    aliases: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def run(self, options: Any, output: Output) -> None:
        """Compute and write the results of `options` into `output`."""

    def output(self, options: Any) -> Output:
        """Where the results of `options` go: the folder `options.out`."""
        return Output(options.out)

    def execute(self, options: Any) -> list[Path]:
        """Run with an `Options` instance; the paths written, in order."""
        output = self.output(options)
        self.run(options, output)
        return output.written

    def __call__(self, **options: Any) -> list[Path]:
        return self.execute(self.Options(**options))

    def add_parser(self, subparsers: Any) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(self.name, aliases=list(self.aliases), help=self.help, description=self.help)
        add_options(parser, self.Options)
        return parser

    def options_from(self, namespace: argparse.Namespace) -> Any:
        return self.Options(**parsed_options(self.Options, namespace))


def command_parser(prog: str, description: str, commands: list[Command]) -> tuple[argparse.ArgumentParser, Any]:
    """A parser with one subcommand per command (the chosen one's name in `command`); returns it and its
    subparsers action."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in commands:
        command.add_parser(subparsers)
    return parser, subparsers


def chosen_command(commands: list[Command], name: str) -> Command:
    """The command called `name` (or one of its aliases)."""
    return next(c for c in commands if name == c.name or name in c.aliases)
