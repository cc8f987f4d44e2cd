"""Options the analyses share: the store read and the folder written (every command), and the choice of token
vectors (array and image view) of the per-(layer, head) analyses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from store import location
from store.arguments import option
from store.location import Location
from store.schema import HIDDEN, KEYS, KEYS_PREROPE, VALUES

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
