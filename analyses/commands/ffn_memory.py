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
from analyses.commands.options import StoreOptions, open_store
from analyses.commands.summary import title
from analyses.intervals import as_json
from analyses.lens import Lens
from analyses.output import Output, markdown_table
from store.arguments import option
from store.schema import FFN_TOPK_INDEX, FFN_TOPK_VALUE, LAYER, LENS_DOWN_PROJ, CaptureConfig

AGREEMENT_PANELS = {  # figure panel -> label -> variable of value_agreement
    "agreement rate": {"top keys": "agreement", "random values": "agreement_random",
                       "top keys, model predicts the label": "agreement_predicted",
                       "top keys, model predicts another token": "agreement_unpredicted"},
    "cosine with the label": {"top keys": "cosine", "random values": "cosine_random"}}


@dataclass(frozen=True, kw_only=True)
class FfnMemoryOptions(StoreOptions):
    n_keys: int = option(3, help="top keys per layer and prefix")
    min_cosine: float = option(0.5, help="label coherence of a 'coherent' key")
    n_draws: int = option(100, help="draws of the random-value baseline (each: as many random values per layer as "
                                    "top keys)")
    seed: int = option(0, help="seed of the random baselines and the bootstrap")
    device: str = option("cpu", help="torch device of the value projections: cpu (see --threads) or cuda[:N]")
    threads: int | None = option(None, help="CPU threads of the value projections (default: torch's)")


class FfnMemory(Command):
    name = "ffn-memory"
    help = "FFN key-value memory over visual prefixes (--template bbox --visual-prefix captures)"
    Options = FfnMemoryOptions

    def run(self, options: FfnMemoryOptions, output: Output) -> None:
        from analyses.label_embeddings import embed_labels

        ds = open_store(options.store, FFN_TOPK_INDEX, FFN_TOPK_VALUE)
        lens_ds = store.reader.open_lens(options.store)
        lens = Lens.from_store(lens_ds, CaptureConfig.of(ds.attrs).compute_dtype)
        down_proj = lens_ds[LENS_DOWN_PROJ]
        project = ffn_memory.value_projector(lens, options.device, options.threads)
        prefixes = ffn_memory.prefix_labels(ds)
        keys = ffn_memory.top_keys(ds, prefixes, options.n_keys)
        table = ffn_memory.key_labels(keys, list(prefixes.label))
        labels = sorted(prefixes.label.unique())
        embeddings = dict(zip(labels, embed_labels(labels), strict=True))
        coherence = ffn_memory.label_coherence(table, embeddings, options.seed)
        agreement = ffn_memory.value_agreement(keys, prefixes, lens, down_proj, embeddings, n_draws=options.n_draws,
                                               seed=options.seed, project=project)
        pairs = ffn_memory.coherent_pairs(table, coherence, lens, down_proj, options.min_cosine, project=project)
        output.csv("key_labels.csv", table)
        output.csv("label_coherence.csv", coherence)
        output.zarr("value_agreement.zarr", agreement)
        output.markdown("coherent_pairs.md", markdown_table(pairs) if len(pairs) else "no coherent key-value pairs\n")
        output.json("ffn_memory.json", _summary(ds, options, prefixes, table, coherence, agreement, pairs))
        if len(coherence):
            output.figure("label_coherence.png",
                          figures.coherence_violins(coherence, f"Label coherence of FFN keys: {title(ds)}"))
        panels = {panel: {label: _curve(agreement, name) for label, name in series.items() if name in agreement}
                  for panel, series in AGREEMENT_PANELS.items()}
        output.figure("value_agreement.png", figures.interval_panels(
            panels, "rate / cosine", f"FFN values vs true labels: {title(ds)}"))


def _curve(agreement: xr.Dataset, name: str) -> xr.Dataset:
    """One curve of `value_agreement` in the `intervals.stack` form."""
    return xr.Dataset({"estimate": agreement[name], "low": agreement[f"{name}_low"], "high": agreement[f"{name}_high"],
                       "n": agreement[f"{name}_n"]})


def _summary(ds: xr.Dataset, options: FfnMemoryOptions, prefixes: pd.DataFrame, table: pd.DataFrame,
             coherence: pd.DataFrame, agreement: xr.Dataset, pairs: pd.DataFrame) -> dict[str, Any]:
    """ffn_memory.json: counts, the label cosine per layer (top labels vs random labels) and the agreement curves,
    each with n and its interval."""
    curves = ffn_memory.coherence_curves(coherence, options.seed) if len(coherence) else {}
    means = coherence.groupby([LAYER, ffn_memory.COHERENCE_KIND]).cosine.mean().unstack() if len(coherence) else None
    predicted = prefixes[ffn_memory.PREDICTED] if ffn_memory.PREDICTED in prefixes else None
    names = [name for series in AGREEMENT_PANELS.values() for name in series.values() if name in agreement]
    return {
        "store": str(options.store), "n_prefixes": len(prefixes), "n_keys_per_layer": options.n_keys,
        "ffn_topk_order": CaptureConfig.of(ds.attrs).ffn_topk_order, "last_position": "checked: position seq_len - 1",
        "model_predicts_label": None if predicted is None else int(predicted.sum()),
        "unique_keys_per_layer": table.groupby(LAYER).key.nunique().to_dict(),
        "mean_label_cosine": means.to_dict() if means is not None else {},
        "label_cosine": {kind: as_json(curve) for kind, curve in curves.items()},
        "random_baseline": f"{agreement.attrs['random_values_per_layer']} random values per layer, "
                           f"{agreement.attrs['n_draws']} draws (interval: central 95% of draws)",
        **{name: as_json(_curve(agreement, name))["estimate"] for name in names},
        "intervals": {name: as_json(_curve(agreement, name)) for name in names},
        "n_coherent_pairs": len(pairs),
    }
