"""Options the analyses share: the store read and the folder written (every command), and the choice of token
vectors (array and image view) of the per-(layer, head) analyses; `open_store`, which every command opens its stores
with, refuses a store that lacks an array the analysis needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import xarray as xr

import store.reader
from store import location, schema
from store.arguments import option
from store.location import Location
from store.schema import HIDDEN, KEYS, KEYS_PREROPE, VALUES, CaptureConfig

VECTOR_ARRAYS = (VALUES, KEYS, KEYS_PREROPE, HIDDEN)  # arrays with a vector per token (analyses.tokens.as_units)
PARTS = ("auto", "base", "grid")  # image view: "auto" is the high-resolution grid where there is one


@dataclass(frozen=True, kw_only=True)
class StoreOptions:
    """One store in, one folder of results out."""

    store: Location = option(help="store path or URL (s3://...)", type=location.normalise)
    out: Path = option(help="directory for results and figures")

    def stores(self) -> list[Location]:
        """Every store the analysis reads (each must exist before it runs)."""
        return [self.store]


@dataclass(frozen=True, kw_only=True)
class VectorOptions(StoreOptions):
    """A store whose per-(layer, KV head) token vectors an analysis compares."""

    array: str = option(VALUES, choices=VECTOR_ARRAYS, help="the token vectors compared")
    part: str = option("auto", choices=PARTS, help="image view whose tokens are used (auto: the high-resolution "
                                                   "grid where the layout has one, else the base view)")


def open_store(path: Location, *arrays: str) -> xr.Dataset:
    """The store at `path` (`store.reader.open`); ValueError in one line, naming the missing array and the capture
    option that keeps it, when it lacks any of `arrays`."""
    ds = store.reader.open(path)
    missing = [name for name in arrays if name not in ds.data_vars]
    if missing:
        raise ValueError(missing_array_message(path, CaptureConfig.of(ds.attrs), missing))
    return ds


def missing_array_message(path: Location, config: CaptureConfig, missing: list[str]) -> str:
    """'PATH holds no 'hidden' array (captured with --arrays keys): recapture with --arrays keys,hidden'."""
    wanted = [choice for name in missing if (choice := schema.selection_of(name))]
    arrays = [choice for choice in schema.DEFAULT_ARRAYS if choice in config.arrays or choice in wanted]
    remedies = []
    if [c for c in arrays if c not in config.arrays]:
        remedies.append(f"--arrays {','.join(arrays)}")
    if "ffn" in wanted and "ffn" in config.arrays:
        remedies.append("--ffn-topk above 0")  # asked for ffn, kept none
    remedies += list(dict.fromkeys(schema.OPTIONAL_ARRAY_OPTIONS[n] for n in missing if n in schema.OPTIONAL_ARRAY_OPTIONS))
    names = ", ".join(repr(name) for name in missing)
    return (f"{path} holds no {names} array{'s' if len(missing) > 1 else ''} (captured with --arrays "
            f"{','.join(config.arrays)}): recapture with {' and '.join(remedies)}")
