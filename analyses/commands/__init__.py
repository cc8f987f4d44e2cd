"""The subcommands of `python -m analyses`, one module each: its options dataclass and its run (open the store,
call the analysis functions, write through `analyses.output.Output`). Add an analysis by writing a module here and
listing its command in COMMANDS."""

from __future__ import annotations

from analyses.command import Command
from analyses.commands.clustering import Clustering
from analyses.commands.correspondence import Correspondence
from analyses.commands.cosine import Cosine
from analyses.commands.ffn_memory import FfnMemory
from analyses.commands.logit_lens import LogitLens
from analyses.commands.norm_attention import NormAttention
from analyses.commands.probing import Probing
from analyses.commands.token_norms import TokenNorms
from analyses.commands.variance import Variance

COMMANDS: list[Command] = [TokenNorms(), Variance(), Correspondence(), Clustering(), LogitLens(), FfnMemory(),
                           NormAttention(), Probing(), Cosine()]

__all__ = ["COMMANDS", "Clustering", "Correspondence", "Cosine", "FfnMemory", "LogitLens", "NormAttention", "Probing",
           "TokenNorms", "Variance"]
