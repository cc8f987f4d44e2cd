"""`token-norms` (alias `registers`): hidden-state norms by token kind and high-norm image tokens per stream."""

from __future__ import annotations

from analyses import figures, token_norms
from analyses.command import Command
from analyses.commands.options import StoreOptions, open_store
from analyses.commands.summary import title
from analyses.output import Output
from store.schema import HIDDEN


class TokenNorms(Command):
    name = "token-norms"
    aliases = ("registers",)
    help = "hidden-state norms by token kind, and high-norm (register) image tokens per layer"
    Options = StoreOptions

    def run(self, options: StoreOptions, output: Output) -> None:
        ds = open_store(options.store, HIDDEN)
        norms = token_norms.hidden_norms(ds)
        by_kind = token_norms.mean_norm_by_kind(norms, ds.kind).compute()
        registers = token_norms.register_fraction(norms, ds.kind).compute()
        output.json("token_norms.json", {
            "store": str(options.store),
            "streams": [int(s) for s in by_kind.stream.values],
            "mean_norm_by_kind": {str(k): [float(v) for v in by_kind.sel(kind=k).values] for k in by_kind.kind.values},
            "register_fraction": [float(v) for v in registers.values],
        })
        output.figure("token_norms.png", figures.token_norms(by_kind, registers, title(ds)))
