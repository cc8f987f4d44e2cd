"""`ffn-memory`: FFN layers as key-value memories over visual prefixes (key labels, their coherence, and whether
the values name the prefixes' labels)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
import xarray as xr

import store.reader
from analyses import ffn_memory, figures
from analyses.command import Command
from analyses.commands.options import StoreOptions
from analyses.commands.summary import title
from analyses.lens import Lens
from analyses.output import Output, markdown_table
from store.arguments import option
from store.schema import LAYER, LENS_DOWN_PROJ, CaptureConfig

AGREEMENT_SERIES = {"agreement": "agreement", "agreement (random values)": "agreement_random", "cosine": "cosine",
                    "cosine (random values)": "cosine_random"}  # figure label -> variable of value_agreement


@dataclass(frozen=True, kw_only=True)
class FfnMemoryOptions(StoreOptions):
    n_keys: int = option(3, help="top keys per layer and prefix")
    min_cosine: float = option(0.5, help="label coherence of a 'coherent' key")


class FfnMemory(Command):
    name = "ffn-memory"
    help = "FFN key-value memory over visual prefixes (--template bbox --visual-prefix captures)"
    Options = FfnMemoryOptions

    def run(self, options: FfnMemoryOptions, output: Output) -> None:
        from analyses.label_embeddings import embed_labels

        ds = store.reader.open(options.store)
        lens_ds = store.reader.open_lens(options.store)
        lens = Lens.from_store(lens_ds, CaptureConfig.of(ds.attrs).compute_dtype)
        down_proj = lens_ds[LENS_DOWN_PROJ]
        prefixes = ffn_memory.prefix_labels(ds)
        keys = ffn_memory.top_keys(ds, prefixes, options.n_keys)
        table = ffn_memory.key_labels(keys, list(prefixes.label))
        labels = sorted(prefixes.label.unique())
        embeddings = dict(zip(labels, embed_labels(labels), strict=True))
        coherence = ffn_memory.label_coherence(table, embeddings)
        agreement = ffn_memory.value_agreement(keys, prefixes, lens, down_proj, embeddings)
        pairs = ffn_memory.coherent_pairs(table, coherence, lens, down_proj, options.min_cosine)
        output.csv("key_labels.csv", table)
        output.csv("label_coherence.csv", coherence)
        output.zarr("value_agreement.zarr", agreement)
        output.markdown("coherent_pairs.md", markdown_table(pairs) if len(pairs) else "no coherent key-value pairs\n")
        output.json("ffn_memory.json", _summary(options, prefixes, table, coherence, agreement, pairs))
        if len(coherence):
            output.figure("label_coherence.png",
                          figures.coherence_violins(coherence, f"Label coherence of FFN keys: {title(ds)}"))
        output.figure("value_agreement.png", figures.per_layer_lines(
            {label: agreement[name] for label, name in AGREEMENT_SERIES.items()}, "rate / cosine",
            f"FFN values vs true labels: {title(ds)}"))


def _summary(options: FfnMemoryOptions, prefixes: pd.DataFrame, table: pd.DataFrame, coherence: pd.DataFrame,
             agreement: xr.Dataset, pairs: pd.DataFrame) -> dict[str, Any]:
    """ffn_memory.json: counts, the mean label cosine per (layer, kind), and the agreement curves."""
    means = coherence.groupby([LAYER, ffn_memory.COHERENCE_KIND]).cosine.mean().unstack() if len(coherence) else None
    return {
        "store": str(options.store), "n_prefixes": len(prefixes), "n_keys_per_layer": options.n_keys,
        "unique_keys_per_layer": table.groupby(LAYER).key.nunique().to_dict(),
        "mean_label_cosine": means.to_dict() if means is not None else {},
        **{name: agreement[name].values.tolist() for name in AGREEMENT_SERIES.values()},
        "n_coherent_pairs": len(pairs),
    }
