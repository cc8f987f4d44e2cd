"""`norm-attention`: norm-based attention of the last position, per layer and token kind."""

from __future__ import annotations

from dataclasses import dataclass

import store.reader
from analyses import figures, norm_attention
from analyses.command import Command
from analyses.commands.options import StoreOptions
from analyses.commands.summary import title
from analyses.output import Output
from analyses.tokens import captured_samples
from store.arguments import option
from store.schema import TokenKind

COMPARED_KINDS = (TokenKind.IMAGE, TokenKind.TEXT)  # the kinds drawn in the norm vs weight figure


@dataclass(frozen=True, kw_only=True)
class NormAttentionOptions(StoreOptions):
    sample: int = option(0, help="sample of the layer x token heatmap")


class NormAttention(Command):
    name = "norm-attention"
    help = "norm-based attention of the last position (captures with --attention-last)"
    Options = NormAttentionOptions

    def run(self, options: NormAttentionOptions, output: Output) -> None:
        ds = store.reader.open(options.store)
        lens = store.reader.open_lens(options.store)
        result = norm_attention.norm_based_attention(ds, lens, [int(s) for s in captured_samples(ds)])
        shares = norm_attention.by_kind(result, ds.kind)
        output.zarr("norm_attention.zarr", result)
        output.zarr("norm_attention_by_kind.zarr", shares)
        output.json("norm_attention.json", {
            "store": str(options.store), "kinds": shares.kind.values.tolist(), "layers": shares.layer.values.tolist(),
            "norm_share": shares.norm_share.values.tolist(), "weight_share": shares.weight_share.values.tolist()})
        sample = options.sample
        n = int(ds.n_tokens.values[sample])
        output.figure(f"norm_attention_sample{sample}.png", figures.layer_token_heatmap(
            result.norm.sel(sample=sample).isel(token=slice(0, n)), ds.kind.values[sample, :n],
            f"Norm-based attention of the last token: {title(ds)}, sample {sample}"))
        names = [kind.name.lower() for kind in COMPARED_KINDS]  # as by_kind names them
        series = {f"{name} (norm)": shares.norm_share.sel(kind=name) for name in names}
        series.update({f"{name} (weight)": shares.weight_share.sel(kind=name) for name in names})
        output.figure("norm_attention_by_kind.png",
                      figures.per_layer_lines(series, "share of the last position's attention", "Norm vs weight"))
