"""`token-norms` (alias `registers`): hidden-state norms by token kind and high-norm image tokens per stream, with
95% intervals over images."""

from __future__ import annotations

from scipy import stats

from analyses import figures, intervals, token_norms
from analyses.command import Command
from analyses.commands.options import StoreOptions, open_store
from analyses.commands.summary import title
from analyses.output import Output
from store.schema import HIDDEN

N_STD = 2.0  # Neo et al.'s register criterion: norm above the image tokens' mean + 2 std


class TokenNorms(Command):
    name = "token-norms"
    aliases = ("registers",)
    help = "hidden-state norms by token kind, and high-norm (register) image tokens per layer, with 95% intervals"
    Options = StoreOptions

    def run(self, options: StoreOptions, output: Output) -> None:
        ds = open_store(options.store, HIDDEN)
        counts = token_norms.per_image_counts(token_norms.hidden_norms(ds), ds.kind, N_STD).compute()
        curves = token_norms.with_intervals(counts)
        gaussian = float(stats.norm.sf(N_STD))
        output.json("token_norms.json", {
            "store": str(options.store),
            "streams": [int(s) for s in counts.stream.values],
            "interval": "bootstrap over images of the ratio pooled over their tokens (95%)",
            "mean_norm_by_kind": {name.removeprefix("mean_norm:"): intervals.as_json(curve)
                                  for name, curve in curves.items() if name.startswith("mean_norm:")},
            "register_fraction": intervals.as_json(curves["register_fraction"]),
            "register_criterion": f"norm > mean + {N_STD:g} std of the image's image tokens at that stream",
            "register_fraction_if_normal": gaussian,
        })
        output.figure("token_norms.png", figures.token_norms(curves, gaussian, title(ds)))
