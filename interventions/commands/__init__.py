"""The subcommands of `python -m interventions`, one module each (its options dataclass and its run), in the shape
of the analyses' commands (`analyses.command.Command`)."""

from __future__ import annotations

from analyses.command import Command
from interventions.commands.describe import Describe
from interventions.commands.loss import Loss
from interventions.commands.poll import Poll
from interventions.commands.scenarios import Scenarios
from interventions.commands.spec import Spec
from interventions.commands.vqa import Vqa

COMMANDS: list[Command] = [Spec(), Scenarios(), Poll(), Vqa(), Describe(), Loss()]

__all__ = ["COMMANDS", "Describe", "Loss", "Poll", "Scenarios", "Spec", "Vqa"]
