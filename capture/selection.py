"""Parsing and applying `--layers`, `--streams`, `--arrays` and `--tokens` selections."""

from __future__ import annotations

import numpy as np

from capture.errors import CaptureError
from store.schema import ARRAY_SELECTION, DEFAULT_ARRAYS, TokenKind, TokenSet

TOKEN_SETS = tuple(TokenSet)
ALL = TokenSet.ALL.value  # every layer (--layers), every token (--tokens)


def parse_layers(spec: str | None, n_layers: int, option: str = "--layers") -> tuple[int, ...]:
    """'all' / None -> every layer; otherwise comma-separated indices and ranges ('0-3,7', '-1' = last)."""
    if spec is None or spec == ALL:
        return tuple(range(n_layers))
    layers: set[int] = set()
    try:
        for part in spec.split(","):
            part = part.strip()
            if "-" in part[1:]:
                start, stop = part.split("-", 1)
                layers.update(range(int(start), int(stop) + 1))
            else:
                index = int(part)
                layers.add(index + n_layers if index < 0 else index)
    except ValueError:
        raise CaptureError(f"{option} {spec!r}: expected 'all' or indices/ranges like '0-3,7'") from None
    bad = sorted(i for i in layers if not 0 <= i < n_layers)
    if bad:
        raise CaptureError(f"{option} {spec!r}: {bad} out of range 0..{n_layers - 1}")
    return tuple(sorted(layers))


def parse_streams(spec: str | None, layers: tuple[int, ...], n_layers: int) -> tuple[int, ...]:
    """Hidden streams kept: None -> those of the captured `layers` (`streams_for`); 'all' -> 0..n_layers; otherwise
    indices and ranges ('0,4-6'; '-1' = stream n_layers, the last layer's raw output)."""
    if spec is None:
        return streams_for(layers, n_layers)
    return parse_layers(spec, n_layers + 1, "--streams")


def parse_arrays(spec: str) -> tuple[str, ...]:
    """Comma-separated `--arrays` values (hidden, keys, values, ffn), in the canonical order."""
    chosen = {part.strip() for part in spec.split(",") if part.strip()}
    unknown = sorted(chosen - set(ARRAY_SELECTION))
    if unknown or not chosen:
        raise CaptureError(f"--arrays {spec!r}: choose from {', '.join(ARRAY_SELECTION)} (comma-separated)")
    return tuple(name for name in DEFAULT_ARRAYS if name in chosen)


def streams_for(layers: tuple[int, ...], n_layers: int) -> tuple[int, ...]:
    """Residual streams stored for `layers`: each layer's input, plus the last layer's raw output."""
    return tuple(sorted(set(layers) | ({n_layers} if n_layers - 1 in layers else set())))


def parse_token_sets(spec: str) -> tuple[str, ...]:
    """Comma-separated token sets among all / image / text / last."""
    sets = tuple(dict.fromkeys(part.strip() for part in spec.split(",") if part.strip()))
    unknown = [s for s in sets if s not in TOKEN_SETS]
    if unknown or not sets:
        raise CaptureError(f"token set {spec!r}: choose from {', '.join(TOKEN_SETS)} (comma-separated)")
    return sets


def select_positions(kind: np.ndarray, token_sets: tuple[str, ...]) -> np.ndarray:
    """Sorted sequence positions belonging to any of `token_sets`, given each position's TokenKind.

    image: image and image-newline tokens; text: text and special tokens; last: the final position.
    """
    mask = np.zeros(len(kind), dtype=bool)
    for token_set in token_sets:
        if token_set == TokenSet.ALL:
            mask[:] = True
        elif token_set == TokenSet.IMAGE:
            mask |= np.isin(kind, (TokenKind.IMAGE, TokenKind.IMAGE_NEWLINE))
        elif token_set == TokenSet.TEXT:
            mask |= np.isin(kind, (TokenKind.TEXT, TokenKind.SPECIAL))
        elif token_set == TokenSet.LAST and len(kind):
            mask[-1] = True
    return np.flatnonzero(mask)
