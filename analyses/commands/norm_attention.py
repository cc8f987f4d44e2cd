"""`norm-attention`: norm-based attention of the last position, per layer and token kind."""

from __future__ import annotations

from dataclasses import dataclass

import store.reader
from analyses import figures, norm_attention
from analyses.command import Command
from analyses.commands.options import StoreOptions, open_store
from analyses.commands.summary import title
from analyses.intervals import as_json
from analyses.output import Output
from analyses.tokens import captured_samples
from store.arguments import option
from store.schema import ATTENTION_LAST, SAMPLE, VALUES, TokenKind

COMPARED_KINDS = (TokenKind.IMAGE, TokenKind.TEXT)  # the kinds drawn in the norm vs weight figure
SERIES = {"norm_share": "norm-based", "weight_share": "attention weight",
          "token_share": "uniform baseline (share of tokens)"}  # figure label of each share


@dataclass(frozen=True, kw_only=True)
class NormAttentionOptions(StoreOptions):
    sample: int = option(0, help="sample of the layer x token heatmap")


class NormAttention(Command):
    name = "norm-attention"
    help = "norm-based attention of the last position (captures with --attention-last --tokens all)"
    Options = NormAttentionOptions

    def run(self, options: NormAttentionOptions, output: Output) -> None:
        ds = open_store(options.store, ATTENTION_LAST, VALUES)
        lens = store.reader.open_lens(options.store)
        result = norm_attention.norm_based_attention(ds, lens, [int(s) for s in captured_samples(ds)])
        shares = norm_attention.by_kind(result, ds.kind)
        curves = norm_attention.share_intervals(shares)
        output.zarr("norm_attention.zarr", result)
        output.zarr("norm_attention_by_kind.zarr", shares)
        output.json("norm_attention.json", {
            "store": str(options.store), "n_samples": shares.sizes[SAMPLE],
            "share_of": "the whole attention row of the last position (every position is stored)",
            "weight": "attention weight averaged over heads", "baseline": "token_share (uniform attention)",
            "kinds": shares.kind.values.tolist(), "layers": shares.layer.values.tolist(),
            **{share: shares[share].mean(SAMPLE).values.tolist() for share in norm_attention.SHARES},
            "intervals": {kind: {share: as_json(curve) for share, curve in by_share.items()}
                          for kind, by_share in curves.items()}})
        sample = options.sample
        n = int(ds.n_tokens.values[sample])
        output.figure(f"norm_attention_sample{sample}.png", figures.layer_token_heatmap(
            result.norm.sel(sample=sample).isel(token=slice(0, n)), ds.kind.values[sample, :n],
            f"Norm-based attention of the last token: {title(ds)}, sample {sample}"))
        panels = {f"{kind.name.lower()} tokens": {SERIES[share]: curves[kind.name.lower()][share]
                                                  for share in norm_attention.SHARES} for kind in COMPARED_KINDS}
        output.figure("norm_attention_by_kind.png", figures.interval_panels(
            panels, "share of the last position's attention", f"Norm vs weight: {title(ds)}"))
