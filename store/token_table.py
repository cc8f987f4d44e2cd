"""The token table of one input sequence: what each position is and where it sits in its image (numpy only).

Capture builds it from the processor's input ids and the family adapter's image layout; interventions resolve
token sets on it; the store keeps the rows of the positions it captured (`store.schema.TOKEN_TABLE_FIELDS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from store.schema import KIND, TOKEN_TABLE_FIELDS


@dataclass
class TokenTable:
    """Per-token layout of one input sequence: every `TOKEN_TABLE_FIELDS` entry as a (seq,) array, plus `box`
    (seq, 4): the token's footprint x0, y0, x1, y1 in [0, 1] of its original image (NaN for non-image tokens)."""

    fields: dict[str, np.ndarray]
    box: np.ndarray

    @classmethod
    def empty(cls, length: int) -> TokenTable:
        """`length` rows of fill values (every token a PAD slot, no box)."""
        fields = {name: np.full(length, fill, dtype) for name, (dtype, fill) in TOKEN_TABLE_FIELDS.items()}
        return cls(fields, np.full((length, 4), np.nan, np.float32))

    def __len__(self) -> int:
        return len(self.fields[KIND])

    def select(self, positions: np.ndarray) -> TokenTable:
        """The rows of `positions`, in that order."""
        return TokenTable({k: v[positions] for k, v in self.fields.items()}, self.box[positions])

    def concat(self, other: TokenTable) -> TokenTable:
        """This table followed by `other`'s rows."""
        return TokenTable({k: np.concatenate([v, other.fields[k]]) for k, v in self.fields.items()},
                          np.concatenate([self.box, other.box]))
