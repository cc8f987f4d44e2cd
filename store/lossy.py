"""Lossy mantissa rounding, applied to activation arrays before they are written (the `--keep-mantissa-bits`
capture option). Keeping N mantissa bits zeroes the rest, which zstd (a core Zarr v3 codec) then compresses
well; the stored values stay in the compute dtype, so every reader sees ordinary numbers.

Round to nearest, ties to even, on the raw bits. The relative error of every normal number is at most
2^-(N+1); NaN and infinity are left alone, and a value that would round past the largest finite number is
truncated instead."""

from __future__ import annotations

import numpy as np

# logical dtype -> (unsigned view, mantissa bits, exponent mask)
FORMATS = {
    "bfloat16": (np.uint16, 7, 0x7F80),
    "float16": (np.uint16, 10, 0x7C00),
    "float32": (np.uint32, 23, 0x7F800000),
}


def max_relative_error(keep_bits: int) -> float:
    """The bound on |rounded - x| / |x| for normal numbers when keeping `keep_bits` mantissa bits."""
    return 2.0 ** -(keep_bits + 1)


def round_mantissa(bits: np.ndarray, logical_dtype: str, keep_bits: int) -> np.ndarray:
    """`bits` (the raw storage bits of `logical_dtype` values) with all but `keep_bits` mantissa bits rounded away,
    in place; returns `bits`."""
    unsigned, mantissa, exponent_mask = FORMATS[logical_dtype]
    if not 0 <= keep_bits <= mantissa:
        raise ValueError(f"keep_bits must be 0..{mantissa} for {logical_dtype}, got {keep_bits}")
    drop = mantissa - keep_bits
    if drop == 0:
        return bits
    u = bits.view(unsigned)
    wide = u.astype(np.uint64)
    special = (wide & exponent_mask) == exponent_mask  # inf / NaN
    half = np.uint64((1 << (drop - 1)) - 1)
    rounded = (wide + half + ((wide >> np.uint64(drop)) & np.uint64(1))) & ~np.uint64((1 << drop) - 1)
    overflow = (rounded & exponent_mask) == exponent_mask  # rounded up into infinity: truncate instead
    truncated = wide & ~np.uint64((1 << drop) - 1)
    result = np.where(special, wide, np.where(overflow, truncated, rounded))
    u[...] = result.astype(unsigned)
    return bits
