"""What a capture reports when it ends: counts, size, time, and where the store went."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from store.location import Location


@dataclass
class CaptureSummary:
    path: Location
    n_samples: int
    captured: int = 0
    skipped: int = 0
    skip_reasons: list[str] = field(default_factory=list)
    bytes_on_disk: int = 0
    seconds: float = 0.0
    resumed_shards: int = 0
    forward_seconds: float = 0.0
    tokens: int = 0
    catalog_row: dict[str, Any] | None = None
    rank: int = 0
    world_size: int = 1
    shards_written: int = 0
    pending_shards: int = 0  # shards not yet complete in the store (other ranks' work)

    def lines(self) -> list[str]:
        per_sample = self.bytes_on_disk / max(self.captured, 1)
        out = [f"store:    {self.path}"]
        if self.world_size > 1:
            out.append(f"rank:     {self.rank} of {self.world_size}: wrote {_shards(self.shards_written)}; "
                       + ("the store is complete" if not self.pending_shards else
                          f"{_shards(self.pending_shards)} still pending on other ranks (the last rank to finish "
                          "completes the store)"))
        out += [
            f"samples:  {self.captured} captured, {self.skipped} skipped, {self.n_samples} in dataset"
            + (f" ({self.resumed_shards} shards already complete)" if self.resumed_shards else ""),
            f"size:     {self.bytes_on_disk / 1e6:.2f} MB on disk ({per_sample / 1e3:.1f} kB per captured sample)",
            f"time:     {self.seconds:.1f} s ({self.forward_seconds:.1f} s in forward passes and extraction)",
        ]
        if self.catalog_row:
            out.append(f"catalog:  {self.catalog_row['store_id']} registered as {self.catalog_row['url']}")
        out += [f"skipped:  {reason}" for reason in self.skip_reasons[:10]]
        if len(self.skip_reasons) > 10:
            out.append(f"skipped:  ... and {len(self.skip_reasons) - 10} more (see the store's skip_reason)")
        return out


def _shards(count: int) -> str:
    return f"{count} shard" + ("" if count == 1 else "s")
